// ref_toy_arch.c: the `toy_userbias` architecture of ref_toy_arch.h, built on
// the sasrec architecture's tables and passes (model_arch.h) plus one
// activation buffer of its own, the biased output.
#include "ref_toy_arch.h"

#include <string.h> // memcpy

#include "model_arch.h"

extern const lr_arch lr_arch_sasrec;

#define USER_KEY 201u // init key of the users rows

static int toy_acts(const lr_model_cfg *c, lr_act a[LR_MAX_ACTS]) {
  const int n = lr_arch_sasrec.acts(c, a);
  a[n] = (lr_act){"toy_out", (size_t)c->d, 0, 0};
  return n + 1;
}

static int toy_groups(const lr_model_cfg *c, lr_seq_group g[LR_MAX_SEQ_GROUPS]) {
  g[0] = (lr_seq_group){"users", c->d, USER_KEY};
  return 1;
}

// The last activation buffer is ours.
static float *toy_out(const lr_model *m) { return model_act(m, m->n_acts - 1); }

static void toy_fwd(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_arch_sasrec.fwd(j, z);
  const lr_model *m = j->m;
  const int64_t N = m->cfg.max_len, D = m->cfg.d;
  const float *h = lr_arch_sasrec.output(m) + z->oD;
  float *o = toy_out(m) + z->oD;
  for (int64_t b = z->b0; b < z->b1; b++) {
    const float *u = j->seq_rows[0] + b * D;
    for (int64_t t = 0; t < N; t++, h += D, o += D)
      for (int64_t c = 0; c < D; c++)
        o[c] = h[c] + u[c];
  }
}

// The bias sits after the last layer: its gradient is the sum of the output
// gradient over the sequence's positions; the rest is sasrec's.
static void toy_bwd(const lr_lane_job *j, const lr_lane_rows *z) {
  const lr_model *m = j->m;
  if (j->l == m->cfg.layers - 1) {
    const int64_t N = m->cfg.max_len, D = m->cfg.d;
    float *du = model_lane_seq_stage(m, 0);
    const float *dh = j->dh + z->oD;
    for (int64_t t = 0; t < N * (z->b1 - z->b0); t++)
      for (int64_t c = 0; c < D; c++)
        du[c] += dh[t * D + c];
  }
  lr_arch_sasrec.bwd(j, z);
}

static const float *toy_output(const lr_model *m) { return toy_out(m); }

// sasrec's table with our functions in (filled at registration: a constant
// initialiser cannot copy another object's members).
static lr_arch g_arch;

int ref_toy_arch_register(void) {
  for (int id = 0; id < model_arch_count(); id++)
    if (model_arch_get(id) == &g_arch) return id;
  g_arch = lr_arch_sasrec;
  g_arch.name = "toy_userbias";
  g_arch.acts = toy_acts;
  g_arch.fwd = toy_fwd;
  g_arch.bwd = toy_bwd;
  g_arch.output = toy_output;
  g_arch.seq_groups = toy_groups;
  return model_arch_register(&g_arch);
}
