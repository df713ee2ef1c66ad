// bench.c: `linrec bench` (train.h): steps of the trainer on full-length
// examples without evaluation or files, timed by phase, and the sgemm peak
// of the same ranks and threads for comparison.
#include <string.h>       // memset
#include <sys/resource.h> // getrusage

#include "comm.h"
#include "gemm.h" // lr_sgemm_peak_gflops, lr_blas_sgemm_peak_gflops, lr_matmul_is_bf16
#include "gemm_bf16.h" // lr_bf16_peak_gflops
#include "lr.h"
#include "par.h" // lr_par_for, lr_par_threads
#include "train_internal.h"

// ---- bench ---------------------------------------------------------------------------

const char *const LR_BENCH_PHASE_NAMES[LR_BENCH_PHASES] = {
    "embedding", "attention", "projections", "ffn", "loss", "optimizer", "communication", "other"};

// This rank's phase seconds so far: the model's four, then the trainer's.
static void phases_now(const trainer *t, double ph[LR_BENCH_PHASES]) {
  for (int k = 0; k < LR_MODEL_PHASES; k++)
    ph[k] = t->st.model.phase_s[k];
  ph[4] = t->ph_loss, ph[5] = t->ph_opt, ph[6] = t->ph_comm, ph[7] = 0;
}

// lr_bf16_peak_gflops on every thread of the team at once, summed (0
// without AVX512-BF16).
typedef struct {
  double seconds, gflops[256];
} bf16_peak_job;

static void bf16_peak_part(void *ctx, int64_t lo, int64_t hi) {
  bf16_peak_job *j = ctx;
  for (int64_t t = lo; t < hi; t++)
    j->gflops[t] = lr_bf16_peak_gflops(j->seconds);
}

static double bf16_peak_team(double seconds) {
  bf16_peak_job j = {seconds, {0}};
  int64_t n = lr_par_threads();
  if (n > 256) n = 256;
  lr_par_for(n, 1, bf16_peak_part, &j);
  double sum = 0;
  for (int64_t t = 0; t < n; t++)
    sum += j.gflops[t];
  return sum;
}

static int bench(trainer *t, const lr_config *c, lr_bench_result *r) {
  const int P = dist_size();
  LR_CALL(trainer_init(t, c));
  const int64_t G = c->train_batch_size;
  // Keep the examples whose N positions are all real, in shuffled order.
  lr_examples *ex = &t->ex;
  examples_shuffle(ex, (uint64_t)c->train_seed, 1);
  int64_t n_full = 0;
  for (int64_t i = 0; i < ex->n_examples; i++)
    if (examples_input_len(ex, ex->perm[i]) == t->N) ex->perm[n_full++] = ex->perm[i];
  // (alike on every rank: agreed, reported once)
  LR_CALL(dist_agree(
      n_full >= G
          ? LR_OK
          : lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                     "bench: %lld of %lld training examples have all model.max_len=%lld "
                     "positions real, fewer than train.batch_size=%lld: raise "
                     "data.synthetic.mean_len or data.synthetic.users",
                     (long long)n_full, (long long)ex->n_examples, (long long)t->N, (long long)G)));
  r->steps = c->bench_steps, r->warmup = c->bench_warmup, r->batch = G, r->full_examples = n_full;
  r->table_sharded = t->st.table.mode == LR_TABLE_SHARDED;
  r->blas_threads = lr_par_threads();
  int64_t loss_rows = t->ex.all ? t->N : 1;
  int64_t cands = c->train_objective == LR_OBJ_CE ? t->ds.n_items + 1 : t->C;
  r->flops_per_seq = model_train_flops(&t->st.model.cfg, loss_rows, cands);
  dist_log0("bench: %lld warm-up + %lld timed steps of %lld sequences, %lld full-length "
            "examples, %d rank%s x %d BLAS thread%s\n",
            (long long)r->warmup, (long long)r->steps, (long long)G, (long long)n_full, P,
            P == 1 ? "" : "s", r->blas_threads, r->blas_threads == 1 ? "" : "s");
  double ph0[LR_BENCH_PHASES], ph1[LR_BENCH_PHASES], t0 = 0, loss;
  int64_t start = 0;
  for (int64_t s = 0; s < r->warmup + r->steps; s++) {
    if (s == r->warmup) {
      LR_CALL(dist_barrier());
      phases_now(t, ph0);
      t0 = dist_wtime();
    }
    if (start + G > n_full) start = 0;
    LR_CALL(dist_agree(train_step(t, start, G, 1, s + 1, &loss))); // (a divergence: report once)
    start += G;
  }
  double el = dist_wtime() - t0;
  LR_CALL(dist_barrier());
  phases_now(t, ph1);
  double wall[1] = {el};
  LR_CALL(dist_allreduce_max_d(wall, 1));
  r->step_s = wall[0] / (double)r->steps;
  r->seq_per_s = (double)G / r->step_s;
  r->gflops = r->flops_per_seq * r->seq_per_s / 1e9;
  double sum = 0;
  for (int k = 0; k < LR_BENCH_PHASES - 1; k++) {
    r->phase_s[k] = (ph1[k] - ph0[k]) / (double)r->steps;
    sum += r->phase_s[k];
  }
  r->phase_s[LR_BENCH_PHASES - 1] = el / (double)r->steps - sum;
  LR_CALL(dist_allreduce_sum_d(r->phase_s, LR_BENCH_PHASES));
  for (int k = 0; k < LR_BENCH_PHASES; k++)
    r->phase_s[k] /= P;
  // The sgemm peak of the same ranks and threads, all at once.
  LR_CALL(dist_barrier());
  double peak[2] = {lr_sgemm_peak_gflops(1536, 1.0), 0};
  LR_CALL(dist_barrier());
  peak[1] = lr_blas_sgemm_peak_gflops(1536, 1.0);
  int ok = peak[0] > 0 && peak[1] > 0;
  LR_CALL(dist_agree(ok ? LR_OK : LR_ERR_NOMEM));
  LR_CALL(dist_allreduce_sum_d(peak, 2));
  r->sgemm_peak_gflops = peak[0];
  r->blas_peak_gflops = peak[1];
  // The bf16 dot-product limit of the same ranks and threads, all at once.
  LR_CALL(dist_barrier());
  double bf[1] = {bf16_peak_team(1.0)};
  LR_CALL(dist_allreduce_sum_d(bf, 1));
  r->bf16_peak_gflops = bf[0];
  r->bf16 = lr_matmul_is_bf16();
  struct rusage ru;
  double rss[1] = {getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0};
  LR_CALL(dist_allreduce_max_d(rss, 1));
  r->peak_rss_mib = rss[0];
  return LR_OK;
}

int train_bench(const lr_config *c, lr_bench_result *r) {
  memset(r, 0, sizeof *r);
  trainer t;
  memset(&t, 0, sizeof t);
  int rc = bench(&t, c, r);
  trainer_free(&t);
  return rc;
}
