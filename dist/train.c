// train.c: the training driver of train.h.
//
// One optimizer step takes the next `train.batch_size` examples of the
// epoch's global permutation; rank r takes its contiguous share of them
// (shard_range), runs forward/backward in micro-batches, and the gradients
// (dense arena and item table) are summed over ranks, so the trajectory is
// that of one rank at the same global batch. The loss is the mean over the
// global batch's loss rows, so every rank scales by 1 / M_total.
//
// Checkpoints (DESIGN §4; the collective protocol is ckpt_writer.h's). What
// one holds:
//   items shard of rank r: rows shard_items(I+1, r, P) of the table's
//     w, m, v (Adam moments) and of the best model's table (4 arrays);
//   dense shard: the dense parameters followed by the loop-state block
//     (ckpt_resume.h: epoch loss so far, best score, patience counter, best
//     epoch), their m, v, and the best model's dense parameters (4 arrays
//     of n_params + 16 floats); aux = the Adam step (= the step);
//   manifest: step, epoch, cursor (steps done in that epoch), rng seed =
//     train.seed, rng counters = (epoch, step, 0, 0): every random stream is
//     counter-based on (seed, epoch, example id, ...), so this is the whole
//     RNG state; the trajectory config (config_to_json_trajectory).
// Checkpoints are taken at step boundaries: every train.checkpoint.every_steps
// steps, at the last step of every every_epochs-th epoch (before its
// validation, which a resumed run redoes), and when a stop is requested.
// Resuming recomputes the epoch's permutation from (seed, epoch) and skips
// the first `cursor` steps, so the resumed run computes exactly what the
// uninterrupted one would have (bit for bit at the same P).
#include "train.h"

#include <errno.h>    // errno
#include <math.h>     // log, sqrt
#include <stdarg.h>   // va_list
#include <stdio.h>    // FILE
#include <stdlib.h>   // free
#include <string.h>   // memset, memcpy
#include <sys/resource.h> // getrusage
#include <sys/stat.h> // mkdir
#include <time.h>     // time
#include <unistd.h>   // isatty

#include "ckpt.h"
#include "ckpt_resume.h"
#include "ckpt_writer.h"
#include "comm.h"
#include "dataset.h"
#include "embed.h"
#include "eval.h"
#include "gradsync.h"
#include "jobcheck.h"
#include "examples.h"
#include "gemm.h"
#include "par.h"
#include "itemtab.h"
#include "loss.h"
#include "lr.h"
#include "model.h"
#include "modelfile.h"
#include "optim.h"
#include "rng.h"
#include "shard.h"
#include "table.h"

typedef struct {
  const lr_config *c;
  lr_dataset ds;
  lr_data_fp data_fp; // of ds (every rank's, checked alike)
  lr_examples ex;
  lr_model model;
  lr_table table;
  lr_gradsync *gsync; // dense gradient allreduce
  int64_t *user_lo;   // (P+1) rank r owns users user_lo[r] .. user_lo[r+1]-1
  float *pop;         // (I+1) training counts
  double *pop_cdf;    // (I+1) for the pop negative sampler
  int64_t Bm;         // micro-batch
  lr_table_mode table_mode;
  int64_t N, D, C;    // C = candidates per loss row (sampled objectives)
  int dense_table;    // every own table row gets gradient each step (full CE)
  // the current step's examples
  int64_t *local_ex;  // (batch) this rank's examples
  int64_t *rank_cnt;  // (P) examples of each rank
  // micro-batch buffers
  int32_t *ids, *lens, *tgt, *idx; // (Bm,N), (Bm), (Bm,N), (Bm,N)
  uint64_t *ex_ids, *row_ids;      // (Bm), (Bm*N)
  float *hs, *dhs, *dout;          // (Bm*N,D) x2, (Bm,N,D)
  int32_t *ltgt;                   // (Bm*N) targets of loss rows
  int32_t *lgrp;                   // (Bm*N) the micro-batch example of each loss row
  int64_t *lrow;                   // (Bm*N) (b*N+t) of each loss row
  lr_xs loss_x;                    // this step's loss rows' losses (exact)
  uint32_t bad;                    // sampled loss terms out of xsum.h's range this step
  int32_t *cand, *cand_ids;        // (Bm*N, C)
  float *s_scratch;                // (Bm*N*C)
  // best model (this rank's table rows)
  float *best_dense, *best_items;
  FILE *metrics;          // rank 0: OUT/metrics.jsonl (NULL elsewhere, and for bench)
  char metrics_path[LR_PATH_MAX + 32];
  int metrics_errno;      // the first failed write (sticky; 0: none)
  // seconds of this rank in the step's phases outside the model (the model's
  // own are in model.phase_s): loss (with the sharded CE's collectives),
  // optimizer (clipping, Adam), communication (row exchange, gradient
  // reductions: the time spent waiting in them)
  double ph_loss, ph_opt, ph_comm;
  // checkpoints
  char ckpt_root[LR_PATH_MAX + 32]; // train.checkpoint.dir or OUT/checkpoints
  char *traj_json;                  // config_to_json_trajectory (free())
  ckpt_manifest resume_from;        // the manifest resumed from
  ckpt_writer *ckw;
  int64_t n_dense;          // floats per dense checkpoint array (n_params + loop block)
  float *dense_stage;       // (CK_DENSE_ARRAYS, n_dense) packed dense arrays
  int64_t item_lo, item_hi; // this rank's item shard in checkpoints
  int64_t ckpt_last;        // step of the last committed or resumed checkpoint, -1
  const char *ck_reason;    // of the pending checkpoint: "steps", "epochs", "signal"
  int64_t ck_epoch, ck_cursor;
  double ck_start_s;        // its start on this thread (pack, snapshot; fg: the write)
} trainer;

// Activation memory the default evaluation passes aim at (train.micro_batch = 0).
// The smallest default micro-batch with a sharded table on several ranks
// (ML-20M shape, P=2: 16 and 256 sequences alike, 2 +17% per step).
#define SHARDED_MIN_MICRO 16
#define ACTS_BUDGET_BYTES ((size_t)256 << 20)

#define CK_ITEM_ARRAYS 4  // w, m, v, best w
#define CK_DENSE_ARRAYS 4 // params + loop block, m, v, best params

static void trainer_free(trainer *t) {
  ckpt_writer_free(t->ckw); // first: joins a writer thread still reading the arrays below
  ckpt_manifest_free(&t->resume_from);
  free(t->traj_json);
  lr_free(t->dense_stage);
  dataset_free(&t->ds);
  examples_free(&t->ex);
  model_free(&t->model);
  table_free(&t->table);
  gradsync_free(t->gsync);
  void *bufs[] = {t->user_lo, t->pop,      t->pop_cdf,  t->local_ex,  t->rank_cnt, t->ids,
                  t->lens,    t->tgt,      t->idx,      t->ex_ids,    t->row_ids,  t->hs,
                  t->dhs,     t->dout,     t->ltgt,     t->lgrp,      t->lrow,     t->cand,     t->cand_ids,
                  t->s_scratch, t->best_dense, t->best_items};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) lr_free(bufs[i]);
  if (t->metrics) fclose(t->metrics);
  memset(t, 0, sizeof *t);
}

static int trainer_alloc(trainer *t) {
  size_t BN = (size_t)(t->Bm * t->N), D = (size_t)t->D, C = (size_t)t->C;
#define ALLOC(p, n, what)                                                                    \
  if (!((p) = lr_calloc((n), sizeof *(p), what))) goto nomem;
  ALLOC(t->local_ex, (size_t)t->c->train_batch_size, "step examples");
  ALLOC(t->rank_cnt, (size_t)dist_size(), "step examples per rank");
  ALLOC(t->ids, BN, "batch ids");
  ALLOC(t->lens, (size_t)t->Bm, "batch lengths");
  ALLOC(t->tgt, BN, "batch targets");
  ALLOC(t->idx, BN, "batch row index");
  ALLOC(t->ex_ids, (size_t)t->Bm, "batch example ids");
  ALLOC(t->row_ids, BN, "batch dropout keys");
  ALLOC(t->hs, BN * D, "loss hidden states");
  ALLOC(t->dhs, BN * D, "loss hidden gradients");
  ALLOC(t->dout, BN * D, "output gradient");
  ALLOC(t->ltgt, BN, "loss targets");
  ALLOC(t->lgrp, BN, "loss row examples");
  ALLOC(t->lrow, BN, "loss rows");
  ALLOC(t->cand, BN * C, "sampled candidates");
  ALLOC(t->cand_ids, BN * C, "sampled candidate ids");
  ALLOC(t->s_scratch, BN * C, "sampled scores");
  ALLOC(t->best_dense, t->model.n_params, "best model parameters");
  ALLOC(t->best_items, (size_t)itemtab_rows(&t->table.tab) * D, "best model item rows");
#undef ALLOC
  return LR_OK;
nomem:
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

// ---- metrics.jsonl and the progress line ------------------------------------------
//
// Rank 0 writes the events; an event is metrics_put pieces ended by
// metrics_end (newline, fflush). A failed write (a full disk, an I/O error)
// is remembered, not retried; the ranks agree on it at the next step
// boundary and at the end of the run (metrics_status), so the run fails
// cleanly (exit 1) naming the file and the reason instead of going on
// without its record.

__attribute__((format(printf, 2, 3))) static void metrics_put(trainer *t, const char *fmt, ...) {
  if (!t->metrics || t->metrics_errno) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vfprintf(t->metrics, fmt, ap);
  va_end(ap);
  if (n < 0) t->metrics_errno = errno ? errno : EIO;
}

static void metrics_end(trainer *t) {
  if (!t->metrics || t->metrics_errno) return;
  errno = 0;
  if (fputc('\n', t->metrics) == EOF || fflush(t->metrics) != 0 || ferror(t->metrics))
    t->metrics_errno = errno ? errno : EIO;
}

// LR_OK, or LR_ERR_IO for the first failed write. Local (rank 0 only fails).
static int metrics_status(const trainer *t) {
  if (!t->metrics_errno) return LR_OK;
  return lr_error(LR_ERR_IO, __FILE__, __LINE__,
                  "%s: write failed: %s\nHINT: the run stops here (the last committed "
                  "checkpoint is `latest`); free space on its file system or fix it, then resume "
                  "with --resume latest",
                  t->metrics_path, strerror(t->metrics_errno));
}

// Rank 0 opens OUT/metrics.jsonl (appended to when resuming from `from`,
// else created anew) and writes the attempt's start event. Collective (the
// outcome is agreed).
static int metrics_open(trainer *t, const char *out_dir, const char *from) {
  int rc = LR_OK;
  if (dist_rank() == 0) {
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/metrics.jsonl", out_dir);
    t->metrics = fopen(t->metrics_path, from[0] ? "a" : "w");
    if (!t->metrics)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot create: %s", t->metrics_path,
                    strerror(errno));
  }
  metrics_put(t, "{\"event\":\"start\",\"ranks\":%d,\"resume\":\"%s\",\"time_unix\":%lld}",
              dist_size(), from, (long long)time(NULL));
  metrics_end(t);
  return dist_agree(rc != LR_OK ? rc : metrics_status(t));
}

static void metrics_event_eval(trainer *t, const char *split, int epoch, const lr_metrics *m) {
  metrics_put(t, "{\"event\":\"eval\",\"split\":\"%s\",\"epoch\":%d,\"users\":%lld", split,
              epoch, (long long)m->n);
  for (int i = 0; i < m->nk; i++)
    metrics_put(t, ",\"recall@%d\":%.6f,\"mrr@%d\":%.6f,\"ndcg@%d\":%.6f", m->k[i], m->recall[i],
                m->k[i], m->mrr[i], m->k[i], m->ndcg[i]);
  metrics_put(t, "}");
  metrics_end(t);
}

// NDCG at the cutoff used for early stopping: K=10 if requested, else the first K.
static double stop_metric(const lr_metrics *m) {
  for (int i = 0; i < m->nk; i++)
    if (m->k[i] == 10) return m->ndcg[i];
  return m->ndcg[0];
}

typedef struct {
  int mode; // 0 redraw, 1 plain, 2 off
  double t0, last_print;
} progress;

static void progress_show(progress *p, int epoch, int64_t epochs, int64_t step, int64_t total,
                          double loss, double seq_per_s, int64_t steps_left, double step_s,
                          int final) {
  if (dist_rank() != 0 || p->mode == 2) return;
  double now = dist_wtime();
  if (!final && now - p->last_print < (p->mode == 0 ? 0.2 : 5.0)) return;
  p->last_print = now;
  double eta = (double)steps_left * step_s;
  char line[256];
  snprintf(line, sizeof line,
           "epoch %d/%lld  step %lld/%lld  loss %.4f  %.0f seq/s  ETA %02d:%02d:%02d", epoch,
           (long long)epochs, (long long)step, (long long)total, loss, seq_per_s,
           (int)(eta / 3600), (int)(eta / 60) % 60, (int)eta % 60);
  if (p->mode == 0) printf("\r%-78s%s", line, final ? "\n" : "");
  else printf("%s\n", line);
  fflush(stdout);
}

// ---- one optimizer step --------------------------------------------------------------

// Negatives for loss row (example e, position t), counter-based: they depend
// on (seed, epoch, e, t) only, not on the rank or micro-batch.
static int32_t draw_negative(const trainer *t, uint64_t e, int64_t pos, int64_t j,
                             uint32_t epoch) {
  const lr_config *c = t->c;
  int64_t I = t->ds.n_items;
  lr_rng4 r = lr_philox((uint64_t)c->train_seed, LR_STREAM_NEGATIVES, (uint32_t)e,
                        (uint32_t)(e >> 32), epoch, (uint32_t)(pos * (t->C - 1) + j));
  if (c->train_sampler == LR_SAMPLER_POP && t->pop_cdf[I] > 0) {
    double x = lr_u01d(r.v[0], r.v[1]) * t->pop_cdf[I];
    int64_t lo = 1, hi = I;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (t->pop_cdf[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    return (int32_t)lo;
  }
  return (int32_t)(1 + lr_below(r.v[2], r.v[3], (uint64_t)I));
}

// The rank owning user u (user_lo is sorted). Local.
static int user_rank(const trainer *t, int64_t u) {
  int lo = 0, hi = dist_size(); // user_lo[lo] <= u < user_lo[hi]
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (t->user_lo[mid] <= u) lo = mid;
    else hi = mid;
  }
  return lo;
}

// Forward, loss and backward of one micro-batch: this rank's nb examples
// exs (nb may be 0: the rank still takes part in the table's collectives).
// coef = 1/M_total weighs each loss row's gradient; the rows' losses go to
// t->loss_x (exact). Collective in sharded mode.
static int micro_step(trainer *t, const int64_t *exs, int64_t nb, float coef, uint32_t epoch) {
  const lr_config *c = t->c;
  const int64_t N = t->N, D = t->D, C = t->C;
  int64_t M = 0;
  if (nb > 0) {
    examples_fill(&t->ex, exs, nb, t->ids, t->lens, t->tgt, t->ex_ids);
    for (int64_t b = 0; b < nb; b++)
      for (int64_t p = 0; p < N; p++)
        t->row_ids[b * N + p] = t->ex_ids[b] * (uint64_t)N + (uint64_t)p;
    for (int64_t b = 0; b < nb; b++) {
      if (t->ex.all) {
        for (int64_t p = 0; p < t->lens[b]; p++) {
          t->lrow[M] = b * N + p;
          t->lgrp[M] = (int32_t)b;
          t->ltgt[M++] = t->tgt[b * N + p];
        }
      } else {
        t->lrow[M] = b * N + t->lens[b] - 1;
        t->lgrp[M] = (int32_t)b;
        t->ltgt[M++] = t->tgt[b];
      }
    }
  }
  int sampled = c->train_objective != LR_OBJ_CE;
  if (sampled) {
    for (int64_t m = 0; m < M; m++) {
      int64_t b = t->lrow[m] / N, p = t->lrow[m] % N;
      t->cand_ids[m * C] = t->ltgt[m];
      for (int64_t j = 1; j < C; j++)
        t->cand_ids[m * C + j] = draw_negative(t, t->ex_ids[b], p, j - 1, epoch);
    }
  }
  const float *rows;
  lr_xs *drows;
  double t0 = dist_wtime();
  LR_CALL(table_lookup(&t->table, &rows, &drows, t->idx, t->ids, nb * N, t->cand, t->cand_ids,
                       sampled ? M * C : 0));
  t->ph_comm += dist_wtime() - t0;
  lr_dropout dp = {(uint64_t)c->train_seed, epoch, 0, (float)c->model_dropout, NULL};
  const float *h = nb > 0 ? model_forward(&t->model, t->idx, rows, t->lens, t->row_ids, nb, dp, NULL)
                          : NULL;
  double t1 = dist_wtime();
  if (nb > 0) {
    for (int64_t m = 0; m < M; m++)
      memcpy(t->hs + m * D, h + t->lrow[m] * D, (size_t)D * sizeof(float));
    memset(t->dhs, 0, (size_t)(M * D) * sizeof(float));
  }
  if (!sampled) {
    LR_CALL(table_ce(&t->table, &t->loss_x, t->dhs, t->hs, t->ltgt, t->lgrp, M, coef));
  } else if (M > 0) {
    lr_sampled_kind kind = c->train_objective == LR_OBJ_BCE ? LR_SAMPLED_BCE : LR_SAMPLED_SOFTMAX;
    t->bad |= sampled_forward_backward(&t->loss_x, t->dhs, drows, t->hs, t->cand, t->cand_ids,
                                       rows, M, C, D, kind, coef, t->s_scratch);
  }
  if (nb > 0) {
    // Scatter the loss-row gradients into the output gradient and backprop.
    memset(t->dout, 0, (size_t)(nb * N * D) * sizeof(float));
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < D; j++) t->dout[t->lrow[m] * D + j] += t->dhs[m * D + j];
    t->ph_loss += dist_wtime() - t1;
    model_backward(&t->model, drows, t->dout, t->idx, t->row_ids, dp, NULL);
  } else {
    t->ph_loss += dist_wtime() - t1;
  }
  double t2 = dist_wtime();
  int rc = table_push(&t->table);
  t->ph_comm += dist_wtime() - t2;
  return rc;
}

// Injected failure for the fault tests: LINREC_INJECT_FAULT=RANK:STEP makes
// that rank fail at that step as a real error would.
static int injected_fault(int64_t step) {
  const char *f = getenv("LINREC_INJECT_FAULT");
  long r, s;
  if (f && sscanf(f, "%ld:%ld", &r, &s) == 2 && r == dist_rank() && s == step)
    return lr_error(LR_ERR_STATE, __FILE__, __LINE__,
                    "injected fault at step %lld (LINREC_INJECT_FAULT)", (long long)step);
  return LR_OK;
}

// One optimizer step over the global batch perm[start .. start+G): every
// rank takes the examples of its own users, all ranks run the same number of
// micro-batches (the largest share decides), gradients are summed. Collective.
static int train_step(trainer *t, int64_t start, int64_t G, uint32_t epoch, int64_t step_no,
                      double *loss_out) {
  const lr_config *c = t->c;
  const int P = dist_size(), me = dist_rank();
  LR_CALL(injected_fault(step_no));
  int64_t n_local = 0;
  memset(t->rank_cnt, 0, (size_t)P * sizeof(int64_t));
  for (int64_t i = 0; i < G; i++) {
    int64_t e = t->ex.perm[start + i];
    int q = user_rank(t, examples_user(&t->ex, e));
    t->rank_cnt[q]++;
    if (q == me) t->local_ex[n_local++] = e;
  }
  int64_t most = 0;
  for (int q = 0; q < P; q++) most = t->rank_cnt[q] > most ? t->rank_cnt[q] : most;
  int64_t n_micro = (most + t->Bm - 1) / t->Bm;
  int64_t M_total = examples_loss_rows(&t->ex, start, G);
  const float coef = (float)(1.0 / (double)M_total);
  model_zero_grad(&t->model);
  table_zero_grad(&t->table, t->dense_table);
  t->loss_x = (lr_xs){0, 0, 0};
  t->bad = 0;
  for (int64_t k = 0; k < n_micro; k++) {
    int64_t off = k * t->Bm, nb = n_local - off;
    nb = nb < 0 ? 0 : nb > t->Bm ? t->Bm : nb;
    if (k == n_micro - 1) gradsync_arm(t->gsync); // the last micro-batch starts the buckets
    LR_CALL(micro_step(t, t->local_ex + off, nb, coef, epoch));
  }
  double t0 = dist_wtime();
  LR_CALL(gradsync_finish(t->gsync));
  model_grads_to_float(&t->model);
  LR_CALL(table_sync(&t->table, t->dense_table));
  // the loss and the out-of-range flags of every rank (exact sums)
  lr_xs red[2] = {t->loss_x, {t->model.grad_bad | t->table.bad | t->bad, 0, 0}};
  LR_CALL(dist_allreduce_xs(red, 2));
  *loss_out = xsum_value(red[0]) / (double)M_total;
  double t1 = dist_wtime();
  t->ph_comm += t1 - t0;
  // Every rank sees the same flags and loss: they agree, one reports.
  int drc = LR_OK;
  if (!xsum_is_zero(red[1]) || !isfinite(*loss_out)) {
    char last[LR_PATH_MAX + 96] = "no checkpoint yet";
    if (t->ckpt_last >= 0)
      snprintf(last, sizeof last, "the last checkpoint is %s/step-%08lld", t->ckpt_root,
               (long long)t->ckpt_last);
    drc = lr_error(LR_ERR_DIVERGED, __FILE__, __LINE__,
                   "step %lld: the loss (%g) or a gradient is not finite or beyond 2^7 in one "
                   "example: the run diverges (%s; lower train.lr or set train.clip_norm)",
                   (long long)step_no, *loss_out, last);
  }
  LR_CALL(dist_agree(drc));
  if (c->train_clip_norm > 0) {
    lr_xs tab_sq = table_grad_sumsq(&t->table);
    if (t->table.mode == LR_TABLE_SHARDED) LR_CALL(dist_allreduce_xs(&tab_sq, 1));
    double nrm = sqrt(grad_sumsq(t->model.grads_mem, (int64_t)t->model.n_params) +
                      xsum_value(tab_sq));
    if (nrm > c->train_clip_norm) {
      float s = (float)(c->train_clip_norm / nrm);
      grad_scale(t->model.grads_mem, (int64_t)t->model.n_params, s);
      table_grad_scale(&t->table, s);
    }
  }
  lr_adam_cfg ac = {(float)c->train_lr, (float)c->train_beta1, (float)c->train_beta2,
                    (float)c->train_adam_eps, (float)c->train_weight_decay};
  adam_update(t->model.params_mem, t->model.m_mem, t->model.v_mem, t->model.grads_mem,
              (int64_t)t->model.n_params, ac, step_no);
  table_adam(&t->table, ac, step_no, t->dense_table);
  t->ph_opt += dist_wtime() - t1;
  return LR_OK;
}

// ---- set-up --------------------------------------------------------------------------

// Bytes one step moves for the item table in each layout (per rank, both
// directions), to choose dist.item_table=auto.
static lr_table_mode choose_table(const trainer *t, int64_t rows_per_step) {
  const lr_config *c = t->c;
  int P = dist_size();
  if (c->dist_item_table == 1) return LR_TABLE_SHARDED;
  if (c->dist_item_table == 2) return LR_TABLE_REPLICATED;
  double f = P > 1 ? (double)(P - 1) / P : 0.0;
  double D = (double)t->D, I1 = (double)(t->ds.n_items + 1);
  // replicated: the table gradient allreduce, 2 * (I+1) * D floats
  double repl = 2.0 * I1 * D * 4.0 * f;
  // sharded: rows of the distinct ids out and their gradients back (at most
  // one per id), plus the vocab-parallel loss (allgather H, reduce-scatter dH)
  double ids = (double)t->c->train_batch_size * (double)t->N * (double)t->C;
  double uniq = ids < I1 ? ids : I1;
  double shard = 2.0 * uniq * D * 4.0 * f;
  if (c->train_objective == LR_OBJ_CE) shard += 2.0 * (double)rows_per_step * D * 4.0 * (P - 1);
  lr_table_mode m = shard <= repl ? LR_TABLE_SHARDED : LR_TABLE_REPLICATED;
  dist_log0("dist.item_table=auto: %s (per step about %.1f MiB sharded vs %.1f MiB replicated)\n",
            m == LR_TABLE_SHARDED ? "sharded" : "replicated", shard / (1 << 20), repl / (1 << 20));
  return m;
}

int train_check_config(const lr_config *c) {
  const lr_attn_ops *k = attn_get(c->model_attention);
  LR_CHECK(k, LR_ERR_CONFIG, "key \"model.attention\": no attention kind has id %d",
           c->model_attention);
  LR_CHECK(c->train_positions != LR_POS_ALL || k->causal, LR_ERR_CONFIG,
           "key \"train.positions\": \"all\" needs a causal attention kind; model.attention "
           "is \"%s\"",
           k->name);
  return LR_OK;
}

// Everything before the first collective: data, examples, user ranges, model.
static int trainer_init_local(trainer *t, const lr_config *c) {
  LR_CALL(train_check_config(c));
  const int P = dist_size();
  lr_data_opts dopt = config_data_opts(c);
  double t0 = dist_wtime();
  LR_CALL(data_load(&t->ds, &dopt));
  dist_log0("data: %lld users, %lld items, %lld interactions (%s, %.1f s)\n",
            (long long)t->ds.n_users, (long long)t->ds.n_items, (long long)t->ds.n_inter,
            data_format_name((lr_data_format)c->data_format), dist_wtime() - t0);
  LR_CHECK(t->ds.n_items >= 1 && t->ds.n_users >= 1, LR_ERR_DATA,
           "%s: no interactions left after preprocessing", c->data_path[0] ? c->data_path : "data");
  LR_CALL(config_check_catalog(c, t->ds.n_items));
  t->N = c->model_max_len;
  t->D = c->model_d;
  t->C = c->train_objective == LR_OBJ_CE ? 1 : 1 + c->train_negatives;
  t->dense_table = c->train_objective == LR_OBJ_CE;
  LR_CALL(examples_init(&t->ex, &t->ds, t->N, c->train_positions == LR_POS_ALL));
  LR_CHECK(t->ex.n_examples > 0, LR_ERR_DATA,
           "no training examples: every user needs at least 2 training interactions");
  // Users by interaction count.
  t->user_lo = lr_calloc((size_t)P + 1, sizeof(int64_t), "user ranges");
  if (!t->user_lo) return LR_ERR_NOMEM;
  shard_users_by_inter(t->user_lo, t->ds.offsets, t->ds.n_users, P);
  if (P > 1)
    dist_log0("users: %d ranks, interaction imbalance %.3f (max/mean)\n", P,
              shard_imbalance(t->user_lo, t->ds.offsets, P));
  lr_model_cfg mc = {t->ds.n_items, c->model_max_len, c->model_d, c->model_heads,
                     c->model_layers, c->model_inner, (float)c->model_dropout,
                     (float)c->model_ln_eps, attn_get(c->model_attention), NULL};
  // Micro-batch: train.micro_batch, which also bounds the evaluation passes;
  // else one model chunk per lane (core/model.h: forward, loss and backward
  // of a few sequences at a time keep their activations in cache), with
  // evaluation passes of up to eval.batch_size users within the activation
  // budget. The activation arena is sized once for the larger of the two.
  // A sharded table over several ranks exchanges rows per micro-batch (a
  // few collectives each): then at least SHARDED_MIN_MICRO sequences.
  t->table_mode = choose_table(t, c->train_batch_size * (t->ex.all ? t->N : 1));
  int64_t max_B;
  if (c->train_micro_batch) {
    t->Bm = max_B = c->train_micro_batch;
  } else {
    t->Bm = (int64_t)lr_par_threads() * model_chunk_seqs(&mc);
    if (t->table_mode == LR_TABLE_SHARDED && P > 1 && t->Bm < SHARDED_MIN_MICRO)
      t->Bm = SHARDED_MIN_MICRO;
    if (t->Bm > c->train_batch_size) t->Bm = c->train_batch_size;
    int64_t fit = (int64_t)(ACTS_BUDGET_BYTES / (model_acts_elems(&mc, 1) * sizeof(float)));
    fit = fit < 1 ? 1 : fit > 256 ? 256 : fit;
    max_B = c->eval_batch_size < fit ? c->eval_batch_size : fit;
    if (max_B < t->Bm) max_B = t->Bm;
  }
  LR_CALL(model_init(&t->model, &mc, max_B, (uint64_t)c->train_seed));
  LR_CALL(gradsync_init(&t->gsync, &t->model));
  return LR_OK;
}

static int trainer_init(trainer *t, const lr_config *c) {
  t->c = c;
  const int P = dist_size();
  // Data and config errors are alike on every rank: agree, report once.
  LR_CALL(dist_agree(trainer_init_local(t, c)));
  data_fingerprint(&t->ds, &t->data_fp);
  LR_CALL(jobcheck_data(&t->data_fp, c));
  int64_t loss_rows = t->Bm * (t->ex.all ? t->N : 1);
  // evaluation passes: at most the model's capacity (dist/eval.c)
  int64_t Be = c->eval_batch_size < t->model.max_B ? c->eval_batch_size : t->model.max_B;
  int64_t eval_ids = Be * (t->N + 101);
  int64_t max_ids = t->Bm * t->N + loss_rows * t->C;
  if (max_ids < eval_ids) max_ids = eval_ids;
  int64_t ce_rows = c->train_objective == LR_OBJ_CE ? loss_rows : 0;
  if (ce_rows < Be) ce_rows = Be;
  const lr_table_mode mode = t->table_mode;
  // CE chunks of whole examples: at least one sequence's loss rows
  const int64_t rchunk = t->N > 256 ? t->N : 256;
  LR_CALL(table_init(&t->table, mode, t->ds.n_items + 1, t->D, max_ids, ce_rows,
                     c->train_loss_tile, rchunk, (uint64_t)c->train_seed));
  if (mode == LR_TABLE_SHARDED && P > 1) {
    // Every rank's row range, printed by rank 0 (recorded in checkpoints too).
    for (int q = 0; q < P; q++) {
      lr_shard s = shard_items(t->ds.n_items + 1, q, P);
      dist_log0("  rank %d: users [%lld, %lld), item rows [%lld, %lld)\n", q,
                (long long)t->user_lo[q], (long long)t->user_lo[q + 1], (long long)s.offset,
                (long long)(s.offset + s.count));
    }
  }
  t->pop = eval_popularity(&t->ds);
  t->pop_cdf = lr_calloc((size_t)t->ds.n_items + 1, sizeof(double), "popularity cdf");
  if (!t->pop || !t->pop_cdf) return LR_ERR_NOMEM;
  for (int64_t v = 1; v <= t->ds.n_items; v++) t->pop_cdf[v] = t->pop_cdf[v - 1] + t->pop[v];
  LR_CALL(trainer_alloc(t));
  dist_log0("model: %s, d=%lld heads=%lld layers=%lld inner=%lld N=%lld; %zu dense + %lld item "
            "parameters (%s table); activations %.1f MiB for %lld sequences (micro-batch %lld)\n",
            t->model.cfg.attn->name, (long long)t->model.cfg.d,
            (long long)t->model.cfg.heads, (long long)t->model.cfg.layers,
            (long long)t->model.cfg.inner, (long long)t->model.cfg.max_len, t->model.n_params,
            (long long)((t->ds.n_items + 1) * t->D),
            mode == LR_TABLE_SHARDED ? "sharded" : "replicated",
            (double)t->model.acts_elems * 4.0 / (1 << 20), (long long)t->model.max_B,
            (long long)t->Bm);
  return LR_OK;
}

static void snapshot_best(trainer *t) {
  lr_itemtab *tb = &t->table.tab;
  memcpy(t->best_dense, t->model.params_mem, t->model.n_params * sizeof(float));
  memcpy(t->best_items, tb->w, (size_t)itemtab_rows(tb) * (size_t)t->D * sizeof(float));
}

static void restore_best(trainer *t) {
  lr_itemtab *tb = &t->table.tab;
  memcpy(t->model.params_mem, t->best_dense, t->model.n_params * sizeof(float));
  memcpy(tb->w, t->best_items, (size_t)itemtab_rows(tb) * (size_t)t->D * sizeof(float));
}

// mkdir -p: create dir and its missing parents.
static int make_dir(const char *dir) {
  char path[LR_PATH_MAX];
  LR_CHECK(strlen(dir) < sizeof path, LR_ERR_CONFIG, "--out: path too long: %.60s...", dir);
  strcpy(path, dir);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char saved = *p;
    *p = 0;
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot create directory: %s", path,
                      strerror(errno));
    *p = saved;
    if (!saved) break;
  }
  return LR_OK;
}

// Floats per message when the shards of a sharded table travel to rank 0
// for model.lrm (16 MiB).
#define SAVE_CHUNK ((int64_t)1 << 22)

// out_dir/model.lrm, written by rank 0 as a stream: the dense parameters, its
// own rows, then every other rank's rows in rank order, SAVE_CHUNK floats at
// a time, so no rank ever holds more of the table than its shard plus one
// chunk. Collective; the outcome is agreed (dist_agree).
static int save_model(trainer *t, const char *out_dir) {
  const int P = dist_size(), me = dist_rank();
  const lr_itemtab *tb = &t->table.tab;
  const int64_t n_rows = t->ds.n_items + 1, D = t->D;
  const int sharded = t->table.mode == LR_TABLE_SHARDED && P > 1;
  lr_modelfile_writer *w = NULL;
  float *chunk = NULL;
  int rc = LR_OK;
  if (me == 0) {
    char path[LR_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.lrm", out_dir);
    char *json = config_to_json(t->c);
    if (!json) rc = LR_ERR_NOMEM;
    else rc = modelfile_begin(&w, path, json, t->model.n_params, n_rows, D);
    free(json);
    if (rc == LR_OK) rc = modelfile_append(w, t->model.params_mem, t->model.n_params);
    if (rc == LR_OK) rc = modelfile_append(w, tb->w, (size_t)(itemtab_rows(tb) * D));
    if (rc == LR_OK && sharded &&
        !(chunk = lr_calloc((size_t)SAVE_CHUNK, sizeof *chunk, "model file chunk")))
      rc = LR_ERR_NOMEM;
  }
  // The other ranks send only to a rank 0 that can receive; a write error on
  // rank 0 after that is remembered (wrc) while the transfer completes, so
  // no sender is left blocked. An MPI error ends the loop (it aborts the job).
  int wrc = rc;
  if (sharded && (rc = dist_agree(rc)) == LR_OK) {
    for (int q = 1; q < P && rc == LR_OK; q++) {
      int64_t n = shard_items(n_rows, q, P).count * D;
      for (int64_t off = 0; off < n && rc == LR_OK; off += SAVE_CHUNK) {
        int64_t k = n - off < SAVE_CHUNK ? n - off : SAVE_CHUNK;
        if (me == q) rc = dist_send_f(tb->w + off, k, 0);
        if (me == 0 && (rc = dist_recv_f(chunk, k, q)) == LR_OK && wrc == LR_OK)
          wrc = modelfile_append(w, chunk, (size_t)k);
      }
    }
  }
  if (rc == LR_OK) rc = wrc;
  if (me == 0) {
    if (rc == LR_OK) rc = modelfile_commit(w);
    else modelfile_abandon(w);
  }
  lr_free(chunk);
  return P > 1 ? dist_agree(rc) : rc;
}

// ---- the state hash ----------------------------------------------------------------

static uint64_t mix64(uint64_t x) { // splitmix64's finaliser
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t hash_floats(uint64_t h, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, sizeof u);
    h = mix64(h ^ u) + (uint64_t)i;
  }
  return h;
}

// res->state_hash: the dense parameters and moments (counted once) plus, per
// item row, a hash of its id, weights and moments, summed mod 2^64 over the
// rows (so any cut of the rows into ranks gives the same sum). Collective.
static int state_hash(const trainer *t, uint64_t *out) {
  const lr_model *m = &t->model;
  const lr_itemtab *tb = &t->table.tab;
  const int64_t D = t->D;
  const int me = dist_rank();
  uint64_t acc = 0;
  if (me == 0) {
    uint64_t h = hash_floats(1, m->params_mem, (int64_t)m->n_params);
    h = hash_floats(h, m->m_mem, (int64_t)m->n_params);
    acc += hash_floats(h, m->v_mem, (int64_t)m->n_params);
  }
  if (t->table.mode == LR_TABLE_SHARDED || me == 0)
    for (int64_t r = 0; r < itemtab_rows(tb); r++) {
      uint64_t h = mix64((uint64_t)(tb->lo + r) + UINT64_C(0x9e3779b97f4a7c15));
      h = hash_floats(h, tb->w + r * D, D);
      h = hash_floats(h, tb->m + r * D, D);
      acc += hash_floats(h, tb->v + r * D, D);
    }
  int64_t halves[2] = {(int64_t)(acc & 0xffffffffu), (int64_t)(acc >> 32)}; // no overflow in the sum
  LR_CALL(dist_allreduce_sum_i64(halves, 2));
  *out = (uint64_t)halves[0] + ((uint64_t)halves[1] << 32);
  return LR_OK;
}

// Communication by kind: lookup, gradient push, loss collectives, dense
// allreduce, replicated-table allreduce.
#define N_COMM 5
static const char *const COMM_NAMES[N_COMM] = {"lookup", "push", "loss", "dense",
                                               "table_allreduce"};

static void comm_take(const trainer *t, dist_stats s[N_COMM]) {
  table_stats(&t->table, &s[0], &s[1], &s[2], &s[4]);
  s[3] = gradsync_stats(t->gsync);
}

// Per-step bytes (this rank, sent + received) and milliseconds by kind
// between two snapshots, as JSON fields and as a log line.
static void comm_report(const dist_stats a[N_COMM], const dist_stats b[N_COMM], int64_t steps,
                        char *json, size_t jcap, char *line, size_t lcap) {
  size_t jn = (size_t)snprintf(json, jcap, "\"comm_per_step\":{");
  size_t ln = (size_t)snprintf(line, lcap, "comm per step (rank 0):");
  double st = steps > 0 ? (double)steps : 1.0;
  for (int k = 0; k < N_COMM; k++) {
    double bytes = (double)(b[k].bytes_sent + b[k].bytes_recv - a[k].bytes_sent - a[k].bytes_recv) / st;
    double ms = 1e3 * (b[k].seconds - a[k].seconds) / st;
    if (jn < jcap)
      jn += (size_t)snprintf(json + jn, jcap - jn, "%s\"%s_bytes\":%.0f,\"%s_ms\":%.3f",
                             k ? "," : "", COMM_NAMES[k], bytes, COMM_NAMES[k], ms);
    if (ln < lcap)
      ln += (size_t)snprintf(line + ln, lcap - ln, " %s %.1f KiB %.2f ms%s", COMM_NAMES[k],
                             bytes / 1024, ms, k + 1 < N_COMM ? ";" : "");
  }
  if (jn < jcap) snprintf(json + jn, jcap - jn, "}");
}

// ---- checkpoints ---------------------------------------------------------------------

// train.checkpoint.dir, or OUT/checkpoints.
static int ckpt_root_path(char *root, size_t size, const lr_config *c, const char *out_dir) {
  int n = c->ckpt_dir[0] ? snprintf(root, size, "%s", c->ckpt_dir)
                         : snprintf(root, size, "%s/checkpoints", out_dir);
  LR_CHECK(n > 0 && (size_t)n < size, LR_ERR_CONFIG, "train.checkpoint.dir: path too long");
  return LR_OK;
}

// The staging buffer of the dense arrays and the writer (with snapshot
// buffers when periodic checkpoints are on). Collective.
static int ckpt_setup(trainer *t) {
  const lr_config *c = t->c;
  const int64_t n_rows = t->ds.n_items + 1;
  t->n_dense = (int64_t)t->model.n_params + CKPT_LOOP_STATE_FLOATS;
  lr_shard s = shard_items(n_rows, dist_rank(), dist_size());
  t->item_lo = s.offset, t->item_hi = s.offset + s.count;
  t->ckpt_last = -1;
  int periodic = c->ckpt_every_steps > 0 || c->ckpt_every_epochs > 0;
  ckpt_writer_cfg wc = {t->ckpt_root,    t->traj_json,          (int)c->ckpt_keep_last,
                        (int)c->ckpt_zstd_level, n_rows,        t->D,
                        t->item_lo,      t->item_hi,            CK_ITEM_ARRAYS,
                        periodic ? 3 : 0, t->n_dense,           CK_DENSE_ARRAYS,
                        t->data_fp};
  t->dense_stage = lr_calloc((size_t)(CK_DENSE_ARRAYS * t->n_dense), sizeof(float),
                             "checkpoint dense arrays");
  int rc = t->dense_stage ? ckpt_writer_init(&t->ckw, &wc) : LR_ERR_NOMEM;
  return dist_agree(rc);
}

// The arrays of a checkpoint; rank 0 packs the dense ones (with the loop
// state) into dense_stage. Local.
static void ckpt_source_fill(trainer *t, ckpt_source *src, const ckpt_loop_state *ls) {
  memset(src, 0, sizeof *src);
  const lr_itemtab *tb = &t->table.tab;
  size_t off = (size_t)(t->item_lo - tb->lo) * (size_t)t->D;
  src->items[0] = tb->w + off;
  src->items[1] = tb->m + off;
  src->items[2] = tb->v + off;
  src->items[3] = t->best_items + off;
  if (dist_rank() != 0) return;
  const size_t n = t->model.n_params, nd = (size_t)t->n_dense, tail = nd - n;
  const float *from[CK_DENSE_ARRAYS] = {t->model.params_mem, t->model.m_mem, t->model.v_mem,
                                        t->best_dense};
  for (int a = 0; a < CK_DENSE_ARRAYS; a++) {
    float *d = t->dense_stage + (size_t)a * nd;
    memcpy(d, from[a], n * sizeof(float));
    memset(d + n, 0, tail * sizeof(float));
    src->dense[a] = d;
  }
  ckpt_loop_state_pack(t->dense_stage + n, ls);
}

// Start the checkpoint of `step` (cursor steps of `epoch` done), in the
// background or on this thread. Collective.
static int ckpt_start(trainer *t, int64_t step, int epoch, int64_t cursor,
                      const ckpt_loop_state *ls, const char *reason, int background) {
  double t0 = dist_wtime();
  ckpt_source src;
  ckpt_source_fill(t, &src, ls);
  ckpt_point pt = {step, epoch, cursor, (uint64_t)t->c->train_seed, {(uint64_t)epoch, (uint64_t)step, 0, 0},
                   step};
  t->ck_reason = reason, t->ck_epoch = epoch, t->ck_cursor = cursor;
  LR_CALL(ckpt_writer_start(t->ckw, &pt, &src, background));
  t->ck_start_s = dist_wtime() - t0;
  return LR_OK;
}

// Commit the pending checkpoint, if any; report it (log line, metrics event).
// Collective.
static int ckpt_commit(trainer *t, lr_train_result *res) {
  if (!ckpt_writer_pending(t->ckw)) return LR_OK;
  ckpt_stats st;
  LR_CALL(ckpt_writer_commit(t->ckw, &st));
  t->ckpt_last = st.step;
  snprintf(res->checkpoint, sizeof res->checkpoint, "%s/%s", t->ckpt_root, st.name);
  double stall = t->ck_start_s + st.wait_s + st.commit_s;
  dist_log0("checkpoint %s (%s): %.2f MB (raw %.2f MB), written in %.3f s%s; training stalled "
            "%.1f ms\n",
            st.name, t->ck_reason, st.bytes / 1e6, st.raw_bytes / 1e6, st.write_s,
            st.background ? " in the background" : "", 1e3 * stall);
  metrics_put(t,
          "{\"event\":\"checkpoint\",\"step\":%lld,\"epoch\":%lld,\"cursor\":%lld,"
          "\"reason\":\"%s\",\"dir\":\"%s\",\"ranks\":%d,\"background\":%s,\"bytes\":%.0f,"
          "\"raw_bytes\":%.0f,\"stall_ms\":%.3f,\"start_ms\":%.3f,\"snapshot_ms\":%.3f,"
          "\"wait_ms\":%.3f,\"commit_ms\":%.3f,\"write_ms\":%.3f,\"compress_ms\":%.3f,"
          "\"write_mb_s\":%.1f,\"pruned\":%d}",
          (long long)st.step, (long long)t->ck_epoch, (long long)t->ck_cursor, t->ck_reason,
          st.name, dist_size(), st.background ? "true" : "false", st.bytes, st.raw_bytes,
          1e3 * stall, 1e3 * st.start_s, 1e3 * st.snapshot_s, 1e3 * st.wait_s,
          1e3 * st.commit_s, 1e3 * st.write_s, 1e3 * st.compress_s,
          st.write_s > 0 ? st.raw_bytes / 1e6 / st.write_s : 0.0, st.n_pruned);
  metrics_end(t);
  return LR_OK;
}

// The step boundary after `step` (cursor of spe steps of `epoch` done): agree
// on a stop request and on a failed metrics.jsonl write (one allreduce, so
// every rank stops at the same step; a failed write is then the run's error);
// commit a pending checkpoint once every writer is done (waiting for it when
// the next one is due or the run stops); start the one due now. On a stop
// request the checkpoint is written and committed before returning, with
// *stop_sig = the signal. Collective.
static int ckpt_boundary(trainer *t, const lr_train_opts *o, int64_t step, int epoch,
                         int64_t cursor, int64_t spe, const ckpt_loop_state *ls,
                         lr_train_result *res, int *stop_sig) {
  const lr_config *c = t->c;
  *stop_sig = 0;
  int64_t f[3] = {o && o->stop ? (int64_t)*o->stop : 0, ckpt_writer_busy(t->ckw),
                  t->metrics_errno != 0};
  LR_CALL(dist_allreduce_max_i64(f, 3));
  if (f[2]) return dist_agree(metrics_status(t)); // metrics.jsonl failed on rank 0
  int by_steps = c->ckpt_every_steps > 0 && step % c->ckpt_every_steps == 0;
  int by_epochs = c->ckpt_every_epochs > 0 && cursor == spe && epoch % c->ckpt_every_epochs == 0;
  int due = (by_steps || by_epochs) && step != t->ckpt_last;
  if (ckpt_writer_pending(t->ckw) && (!f[1] || f[0] || due)) LR_CALL(ckpt_commit(t, res));
  if (f[0]) {
    *stop_sig = (int)f[0];
    dist_log0("stop requested (signal %d): checkpointing step %lld\n", *stop_sig, (long long)step);
    if (step != t->ckpt_last) {
      LR_CALL(ckpt_start(t, step, epoch, cursor, ls, "signal", 0));
      LR_CALL(ckpt_commit(t, res));
    }
    return LR_OK;
  }
  if (due) LR_CALL(ckpt_start(t, step, epoch, cursor, ls, by_steps ? "steps" : "epochs", 1));
  return LR_OK;
}

// Load the checkpoint resumed from into the model, the table, the best model
// and *ls. Collective.
static int ckpt_restore(trainer *t, const char *dir, int64_t steps_per_epoch,
                        ckpt_loop_state *ls) {
  const ckpt_manifest *m = &t->resume_from;
  lr_itemtab *tb = &t->table.tab;
  const size_t n = t->model.n_params, nd = (size_t)t->n_dense;
  float *items[CK_ITEM_ARRAYS] = {tb->w, tb->m, tb->v, t->best_items};
  float *dense[CK_DENSE_ARRAYS];
  for (int a = 0; a < CK_DENSE_ARRAYS; a++) dense[a] = t->dense_stage + (size_t)a * nd;
  ckpt_resume_shape sh = {t->ds.n_items + 1, t->D, CK_ITEM_ARRAYS, t->n_dense, CK_DENSE_ARRAYS};
  LR_CALL(ckpt_resume_load(dir, m, &sh, tb->lo, tb->hi, items, dense));
  memcpy(t->model.params_mem, dense[0], n * sizeof(float));
  memcpy(t->model.m_mem, dense[1], n * sizeof(float));
  memcpy(t->model.v_mem, dense[2], n * sizeof(float));
  memcpy(t->best_dense, dense[3], n * sizeof(float));
  int rc = ckpt_loop_state_unpack(ls, dense[0] + n, dir);
  if (rc == LR_OK && (m->epoch < 1 || m->epoch > INT32_MAX || m->cursor < 0 ||
                      m->cursor > steps_per_epoch || m->step < 0))
    rc = lr_error(LR_ERR_CORRUPT, __FILE__, __LINE__,
                  "%s: epoch %lld, cursor %lld do not fit this run's %lld steps per epoch", dir,
                  (long long)m->epoch, (long long)m->cursor, (long long)steps_per_epoch);
  return dist_agree(rc);
}

// The training data of the checkpoint resumed from against this run's (the
// fingerprints of dataset.h): other data is LR_ERR_CONFIG unless allowed.
// Alike on every rank (both fingerprints are checked alike). Local.
static int ckpt_check_data(const trainer *t, const char *dir, int allow) {
  const lr_data_fp *was = &t->resume_from.data, *now = &t->data_fp;
  if (was->n_inter < 0) {
    dist_log0("resume: %s records no data fingerprint (written by an older linrec): the "
              "training data is not compared\n", dir);
    return LR_OK;
  }
  if (data_fp_equal(was, now)) return LR_OK;
  char a[160], b[160];
  data_fp_text(was, a, sizeof a);
  data_fp_text(now, b, sizeof b);
  const char *how = was->n_users == now->n_users && was->n_items == now->n_items &&
                            was->n_inter == now->n_inter
                        ? " (same counts: the interactions or their order differ)"
                        : "";
  if (allow) {
    dist_log0("resume: --allow-data-change: the training data differs from the checkpoint's "
              "(checkpoint: %s; this run: %s)%s; training continues on this run's data\n",
              a, b, how);
    return LR_OK;
  }
  return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                  "%s: the checkpoint was written on other training data: checkpoint: %s; this "
                  "run: %s%s\nHINT: resume with the data it was written on (data.path and "
                  "data.*), or pass --allow-data-change to continue training from it on this data",
                  dir, a, b, how);
}

// ---- the run -------------------------------------------------------------------------

static void metrics_event_resume(trainer *t, const char *dir) {
  const ckpt_manifest *m = &t->resume_from;
  metrics_put(t,
              "{\"event\":\"resume\",\"step\":%lld,\"epoch\":%lld,\"cursor\":%lld,\"from\":\"%s\","
              "\"written_by_ranks\":%d,\"ranks\":%d}",
              (long long)m->step, (long long)m->epoch, (long long)m->cursor, dir, m->world_size,
              dist_size());
  metrics_end(t);
}

static int run(trainer *t, const lr_config *c, const char *out_dir, const lr_train_opts *o,
               lr_train_result *res) {
  const int P = dist_size();
  const double t_enter = dist_wtime();
  LR_CALL(make_dir(out_dir));
  // Which checkpoint, if any: before the data, so a damaged or mismatching
  // one fails fast.
  t->c = c;
  LR_CALL(ckpt_root_path(t->ckpt_root, sizeof t->ckpt_root, c, out_dir));
  t->traj_json = config_to_json_trajectory(c);
  LR_CALL(dist_agree(t->traj_json ? LR_OK : LR_ERR_NOMEM));
  char from[LR_PATH_MAX + 64] = "";
  if (o && o->resume) LR_CALL(ckpt_resume_find(t->ckpt_root, o->resume, from, sizeof from));
  else LR_CALL(ckpt_resume_check_fresh(t->ckpt_root));
  const int resuming = from[0] != 0;
  if (resuming) {
    LR_CALL(ckpt_resume_open(from, c, &t->resume_from));
    LR_CALL(jobcheck_resume(from, &t->resume_from));
  }
  LR_CALL(metrics_open(t, out_dir, from));
  LR_CALL(trainer_init(t, c));
  if (resuming) LR_CALL(dist_agree(ckpt_check_data(t, from, o && o->allow_data_change)));
  LR_CALL(ckpt_setup(t));
  lr_scorer sc = {&t->model, &t->table, t->pop, t->user_lo[dist_rank()],
                  t->user_lo[dist_rank() + 1]};
  int64_t G = c->train_batch_size;
  int64_t steps_per_epoch = (t->ex.n_examples + G - 1) / G;
  int64_t total_steps = steps_per_epoch * c->train_epochs;
  if (c->train_max_steps && c->train_max_steps < total_steps) total_steps = c->train_max_steps;
  dist_log0("train: %lld examples, batch %lld (micro %lld x %d ranks), %lld steps/epoch, %lld "
            "steps\n",
            (long long)t->ex.n_examples, (long long)G, (long long)t->Bm, dist_size(),
            (long long)steps_per_epoch, (long long)total_steps);
  // Open MPI gives ranks a pseudo-terminal even when mpirun's output goes to a
  // file, so under mpirun "auto" prints plain lines.
  int redraw = isatty(1) && !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK");
  progress pg = {c->log_progress == 0 ? (redraw ? 0 : 1) : c->log_progress, dist_wtime(), 0};
  double t_start = dist_wtime();
  ckpt_loop_state ls = {0, -1, 0, 0};
  int valid_known = 0, epoch0 = 1, stop_sig = 0, started = 0;
  int64_t step = 0, cursor0 = 0;
  if (resuming) {
    LR_CALL(ckpt_restore(t, from, steps_per_epoch, &ls));
    const ckpt_manifest *m = &t->resume_from;
    step = m->step, epoch0 = (int)m->epoch, cursor0 = m->cursor;
    LR_CALL(ckpt_resume_adopt(t->ckpt_root, from, step));
    t->ckpt_last = step;
    res->resumed_step = step;
    res->best_epoch = (int)ls.best_epoch;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", from);
    dist_log0("resume: step %lld (epoch %d, %lld of its %lld steps done) from %s, written by %d "
              "rank%s%s\n",
              (long long)step, epoch0, (long long)cursor0, (long long)steps_per_epoch, from,
              m->world_size, m->world_size == 1 ? "" : "s",
              m->world_size != P ? ": item rows re-cut for this run's ranks" : "");
    metrics_event_resume(t, from);
  } else {
    snapshot_best(t);
  }
  for (int epoch = epoch0; epoch <= c->train_epochs; epoch++) {
    // A resumed epoch (cursor > 0) is finished even when no step is left:
    // its validation is still due.
    int64_t s0 = epoch == epoch0 ? cursor0 : 0;
    if (s0 == 0 && step >= total_steps) break;
    examples_shuffle(&t->ex, (uint64_t)c->train_seed, (uint32_t)epoch);
    dist_stats comm0[N_COMM], comm1[N_COMM];
    comm_take(t, comm0);
    double ep_t0 = dist_wtime();
    if (s0 == 0) ls.epoch_loss = 0; // else: the loss sum of the steps before the cursor
    int64_t ep_steps = s0, new_steps = 0, new_seqs = 0;
    for (int64_t s = s0; s < steps_per_epoch && step < total_steps; s++) {
      int64_t start = s * G, g = t->ex.n_examples - start < G ? t->ex.n_examples - start : G;
      double loss;
      LR_CALL(train_step(t, start, g, (uint32_t)epoch, step + 1, &loss));
      step++, ep_steps++, new_steps++, new_seqs += g;
      ls.epoch_loss += loss;
      if (!started) { // this attempt trains (the Slurm script tells launch failures by it)
        started = 1;
        metrics_put(t, "{\"event\":\"started\",\"step\":%lld,\"seconds\":%.3f}", (long long)step,
                    dist_wtime() - t_enter);
        metrics_end(t);
      }
      if (c->log_every_steps && step % c->log_every_steps == 0) {
        metrics_put(t, "{\"event\":\"step\",\"step\":%lld,\"epoch\":%d,\"loss\":%.17g}",
                    (long long)step, epoch, loss);
        metrics_end(t);
      }
      double el = dist_wtime() - ep_t0;
      progress_show(&pg, epoch, c->train_epochs, step, total_steps,
                    ls.epoch_loss / (double)ep_steps, (double)new_seqs / el, total_steps - step,
                    el / (double)new_steps, 0);
      LR_CALL(ckpt_boundary(t, o, step, epoch, s + 1, steps_per_epoch, &ls, res, &stop_sig));
      if (stop_sig) goto stopped;
    }
    double ep_s = dist_wtime() - ep_t0, seq_s = new_steps ? (double)new_seqs / ep_s : 0.0;
    double ep_mean = ep_steps ? ls.epoch_loss / (double)ep_steps : 0.0;
    progress_show(&pg, epoch, c->train_epochs, step, total_steps, ep_mean, seq_s,
                  total_steps - step, new_steps ? ep_s / (double)new_steps : 0.0, 1);
    comm_take(t, comm1);
    char cjson[1024], cline[512];
    comm_report(comm0, comm1, new_steps, cjson, sizeof cjson, cline, sizeof cline);
    if (P > 1) dist_log0("%s\n", cline);
    metrics_put(t,
                "{\"event\":\"epoch\",\"epoch\":%d,\"step\":%lld,\"loss\":%.7g,\"seq_per_s\":%.1f,"
                "\"seconds\":%.3f,%s}",
                epoch, (long long)step, ep_mean, seq_s, ep_s, cjson);
    metrics_end(t);
    lr_metrics vm;
    LR_CALL(eval_split(&vm, &sc, &t->ds, LR_SPLIT_VALID, c));
    metrics_event_eval(t, "valid", epoch, &vm);
    double score = stop_metric(&vm);
    dist_log0("epoch %d: loss %.4f, valid ndcg@%d %.4f recall@%d %.4f%s\n", epoch, ep_mean,
              vm.k[0], vm.ndcg[0], vm.k[0], vm.recall[0], score > ls.best_score ? " (best)" : "");
    if (score > ls.best_score) {
      ls.best_score = score, ls.since_best = 0, ls.best_epoch = epoch;
      res->valid = vm, valid_known = 1;
      res->best_epoch = epoch;
      LR_CALL(ckpt_commit(t, res)); // a writer may still be reading the best rows
      snapshot_best(t);
    } else if (c->train_patience && ++ls.since_best >= c->train_patience) {
      dist_log0("early stop: no better validation NDCG for %lld evaluations\n",
                (long long)ls.since_best);
      break;
    }
  }
  LR_CALL(ckpt_commit(t, res));
  LR_CALL(state_hash(t, &res->state_hash));
  restore_best(t);
  if (!valid_known) LR_CALL(eval_split(&res->valid, &sc, &t->ds, LR_SPLIT_VALID, c));
  LR_CALL(eval_split(&res->test, &sc, &t->ds, LR_SPLIT_TEST, c));
  metrics_event_eval(t, "test", res->best_epoch, &res->test);
  res->steps = step;
  res->seconds = dist_wtime() - t_start;
  metrics_put(t,
              "{\"event\":\"done\",\"steps\":%lld,\"best_epoch\":%d,\"seconds\":%.3f,\"ranks\":%d,"
              "\"state_hash\":\"%016llx\"",
              (long long)step, res->best_epoch, res->seconds, dist_size(),
              (unsigned long long)res->state_hash);
  for (int i = 0; i < res->test.nk; i++)
    metrics_put(t, ",\"test_ndcg@%d\":%.6f,\"test_recall@%d\":%.6f", res->test.k[i],
                res->test.ndcg[i], res->test.k[i], res->test.recall[i]);
  metrics_put(t, "}");
  metrics_end(t);
  LR_CALL(dist_agree(metrics_status(t)));
  LR_CALL(save_model(t, out_dir));
  return LR_OK;
stopped:
  // The checkpoint is committed; no final evaluation, no model file (the
  // run is not finished).
  res->stop_signal = stop_sig;
  res->steps = step;
  res->seconds = dist_wtime() - t_start;
  metrics_put(t,
              "{\"event\":\"stopped\",\"signal\":%d,\"step\":%lld,\"checkpoint\":\"%s\","
              "\"seconds\":%.3f}",
              stop_sig, (long long)step, res->checkpoint, res->seconds);
  metrics_end(t);
  return dist_agree(metrics_status(t));
}

int train_run(const lr_config *c, const char *out_dir, const lr_train_opts *opts,
              lr_train_result *res) {
  memset(res, 0, sizeof *res);
  trainer t;
  memset(&t, 0, sizeof t);
  int rc = run(&t, c, out_dir, opts, res);
  trainer_free(&t);
  return rc;
}

// ---- bench ---------------------------------------------------------------------------

const char *const LR_BENCH_PHASE_NAMES[LR_BENCH_PHASES] = {
    "embedding", "attention", "projections", "ffn", "loss", "optimizer", "communication", "other"};

// This rank's phase seconds so far: the model's four, then the trainer's.
static void phases_now(const trainer *t, double ph[LR_BENCH_PHASES]) {
  for (int k = 0; k < LR_MODEL_PHASES; k++) ph[k] = t->model.phase_s[k];
  ph[4] = t->ph_loss, ph[5] = t->ph_opt, ph[6] = t->ph_comm, ph[7] = 0;
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
      n_full >= G ? LR_OK
                  : lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                             "bench: %lld of %lld training examples have all model.max_len=%lld "
                             "positions real, fewer than train.batch_size=%lld: raise "
                             "data.synthetic.mean_len or data.synthetic.users",
                             (long long)n_full, (long long)ex->n_examples, (long long)t->N,
                             (long long)G)));
  r->steps = c->bench_steps, r->warmup = c->bench_warmup, r->batch = G, r->full_examples = n_full;
  r->table_sharded = t->table.mode == LR_TABLE_SHARDED;
  r->blas_threads = lr_par_threads();
  int64_t loss_rows = t->ex.all ? t->N : 1;
  int64_t cands = c->train_objective == LR_OBJ_CE ? t->ds.n_items + 1 : t->C;
  r->flops_per_seq = model_train_flops(&t->model.cfg, loss_rows, cands);
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
    LR_CALL(train_step(t, start, G, 1, s + 1, &loss));
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
  for (int k = 0; k < LR_BENCH_PHASES; k++) r->phase_s[k] /= P;
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
