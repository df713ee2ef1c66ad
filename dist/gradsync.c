// gradsync.c: bucketed non-blocking allreduce of the dense gradients (the
// limbs of the model's exact accumulator, xsum.h).
#include "gradsync.h"

#include <mpi.h>    // MPI_Iallreduce, MPI_Testall, MPI_Waitall
#include <stdio.h>  // snprintf
#include <stdlib.h> // calloc, free

#include "comm_internal.h"
#include "lr.h"

#define MAX_BUCKETS 64 // layers + 1 (config caps layers at 31)

struct lr_gradsync {
  lr_model *m;
  int n_buckets;        // L + 1: bucket b < L is layer L-1-b, the last is the embedding part
  int n_slices[MAX_BUCKETS];
  size_t off[MAX_BUCKETS][LR_MAX_TENSORS], cnt[MAX_BUCKETS][LR_MAX_TENSORS];
  MPI_Request req[MAX_BUCKETS * LR_MAX_TENSORS];
  int n_req;
  int next;             // next bucket to start
  int armed;
  int error;            // first MPI error code seen in the hook (reported by finish)
  double t_start;
  dist_stats st;
};

// Buckets in issue order: layer L-1 first (its gradients complete first).
static int bucket_of_layer(const lr_gradsync *gs, int64_t layer) {
  return layer < 0 ? gs->n_buckets - 1 : (int)(gs->m->cfg.layers - 1 - layer);
}

static void start_bucket(lr_gradsync *gs, int b) {
  if (dist_size() == 1 || gs->error) return;
  for (int s = 0; s < gs->n_slices[b]; s++) {
    size_t n = gs->cnt[b][s];
    if (n == 0) continue;
    LR_ASSERT(n <= (size_t)1 << 28);
    // the exact gradient's limbs: an integer sum, the same in any order
    int rc = MPI_Iallreduce(MPI_IN_PLACE, gs->m->gx + gs->off[b][s], (int)(LR_XS_LIMBS * n),
                            MPI_INT64_T,
                            MPI_SUM, dist_comm_(), &gs->req[gs->n_req++]);
    if (rc != MPI_SUCCESS) gs->error = rc;
    int64_t bytes = (int64_t)(2.0 * (double)n * (double)sizeof(lr_xs) * (dist_size() - 1) / dist_size());
    gs->st.bytes_sent += bytes;
    gs->st.bytes_recv += bytes;
  }
  // Let earlier buckets progress (Open MPI progresses inside MPI calls).
  int flag;
  if (gs->n_req) MPI_Testall(gs->n_req, gs->req, &flag, MPI_STATUSES_IGNORE);
}

static void hook(void *ctx, int64_t layer) {
  lr_gradsync *gs = ctx;
  int b = bucket_of_layer(gs, layer);
  // Buckets must start in order; a layer reported early waits for its turn.
  while (gs->next <= b) start_bucket(gs, gs->next++);
}

int gradsync_init(lr_gradsync **out, lr_model *m) {
  *out = NULL;
  LR_CHECK(m->cfg.layers + 1 <= MAX_BUCKETS, LR_ERR_ARG, "gradsync: too many layers (%lld)",
           (long long)m->cfg.layers);
  lr_gradsync *gs = calloc(1, sizeof *gs);
  LR_CHECK(gs, LR_ERR_NOMEM, "gradsync: out of memory");
  gs->m = m;
  gs->n_buckets = (int)m->cfg.layers + 1;
  for (int b = 0; b < gs->n_buckets; b++) {
    int64_t layer = b == gs->n_buckets - 1 ? -1 : m->cfg.layers - 1 - b;
    gs->n_slices[b] = model_layer_slices(&m->cfg, layer, gs->off[b], gs->cnt[b]);
  }
  *out = gs;
  return LR_OK;
}

void gradsync_free(lr_gradsync *gs) {
  if (gs && gs->m && gs->m->hook_ctx == gs) model_set_backward_hook(gs->m, NULL, NULL);
  free(gs);
}

void gradsync_arm(lr_gradsync *gs) {
  gs->armed = 1;
  gs->next = 0;
  gs->n_req = 0;
  gs->t_start = dist_wtime();
  model_set_backward_hook(gs->m, hook, gs);
}

int gradsync_finish(lr_gradsync *gs) {
  if (!gs->armed) gradsync_arm(gs);
  while (gs->next < gs->n_buckets) start_bucket(gs, gs->next++);
  model_set_backward_hook(gs->m, NULL, NULL);
  gs->armed = 0;
  int rc = gs->error;
  gs->error = 0;
  if (rc == MPI_SUCCESS && gs->n_req) rc = MPI_Waitall(gs->n_req, gs->req, MPI_STATUSES_IGNORE);
  gs->st.calls++;
  gs->st.seconds += dist_wtime() - gs->t_start;
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return lr_error(LR_ERR_MPI, __FILE__, __LINE__, "[rank %d/%d] MPI_Iallreduce/MPI_Waitall: %s",
                    dist_rank(), dist_size(), msg);
  }
  return LR_OK;
}

dist_stats gradsync_stats(const lr_gradsync *gs) { return gs->st; }
