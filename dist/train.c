// train.c: the training driver of train.h.
//
// One optimizer step takes the next `train.batch_size` examples of the
// epoch's global permutation; rank r takes its contiguous share of them
// (shard_range), runs forward/backward in micro-batches, and the gradients
// (dense arena and item table) are summed over ranks, so the trajectory is
// that of one rank at the same global batch. The loss is the mean over the
// global batch's loss rows, so every rank scales by 1 / M_total.
#include "train.h"

#include <errno.h>    // errno
#include <math.h>     // log, sqrt
#include <stdio.h>    // FILE
#include <stdlib.h>   // free
#include <string.h>   // memset, memcpy
#include <sys/stat.h> // mkdir
#include <unistd.h>   // isatty

#include "comm.h"
#include "dataset.h"
#include "embed.h"
#include "eval.h"
#include "gradsync.h"
#include "examples.h"
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
  lr_examples ex;
  lr_model model;
  lr_table table;
  lr_gradsync *gsync; // dense gradient allreduce
  int64_t *user_lo;   // (P+1) rank r owns users user_lo[r] .. user_lo[r+1]-1
  float *pop;         // (I+1) training counts
  double *pop_cdf;    // (I+1) for the pop negative sampler
  int64_t Bm;         // micro-batch
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
  int64_t *lrow;                   // (Bm*N) (b*N+t) of each loss row
  int32_t *cand, *cand_ids;        // (Bm*N, C)
  float *s_scratch;                // (Bm*N*C)
  // best model (this rank's table rows)
  float *best_dense, *best_items;
  FILE *metrics;
  double t_model, t_loss_local; // seconds in forward/backward; local loss work
} trainer;

static void trainer_free(trainer *t) {
  dataset_free(&t->ds);
  examples_free(&t->ex);
  model_free(&t->model);
  table_free(&t->table);
  gradsync_free(t->gsync);
  void *bufs[] = {t->user_lo, t->pop,      t->pop_cdf,  t->local_ex,  t->rank_cnt, t->ids,
                  t->lens,    t->tgt,      t->idx,      t->ex_ids,    t->row_ids,  t->hs,
                  t->dhs,     t->dout,     t->ltgt,     t->lrow,      t->cand,     t->cand_ids,
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

static void metrics_event_eval(FILE *f, const char *split, int epoch, const lr_metrics *m) {
  if (!f) return;
  fprintf(f, "{\"event\":\"eval\",\"split\":\"%s\",\"epoch\":%d,\"users\":%lld", split, epoch,
          (long long)m->n);
  for (int i = 0; i < m->nk; i++)
    fprintf(f, ",\"recall@%d\":%.6f,\"mrr@%d\":%.6f,\"ndcg@%d\":%.6f", m->k[i], m->recall[i],
            m->k[i], m->mrr[i], m->k[i], m->ndcg[i]);
  fprintf(f, "}\n");
  fflush(f);
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
// Adds this rank's share of the loss to *loss_local (replicated CE and
// sampled objectives) or the all-rank loss to *loss_global (sharded CE).
// Collective in sharded mode.
static int micro_step(trainer *t, const int64_t *exs, int64_t nb, int64_t M_total,
                      uint32_t epoch, double *loss_local, double *loss_global) {
  const lr_config *c = t->c;
  const int64_t N = t->N, D = t->D, C = t->C;
  double t0 = dist_wtime();
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
          t->ltgt[M++] = t->tgt[b * N + p];
        }
      } else {
        t->lrow[M] = b * N + t->lens[b] - 1;
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
  float *drows;
  LR_CALL(table_lookup(&t->table, &rows, &drows, t->idx, t->ids, nb * N, t->cand, t->cand_ids,
                       sampled ? M * C : 0));
  lr_dropout dp = {(uint64_t)c->train_seed, epoch, 0, (float)c->model_dropout};
  if (nb > 0) {
    const float *h = model_forward(&t->model, t->idx, rows, t->lens, t->row_ids, nb, dp);
    for (int64_t m = 0; m < M; m++)
      memcpy(t->hs + m * D, h + t->lrow[m] * D, (size_t)D * sizeof(float));
    memset(t->dhs, 0, (size_t)(M * D) * sizeof(float));
  }
  t->t_model += dist_wtime() - t0;
  if (!sampled) {
    LR_CALL(table_ce(&t->table, loss_local, loss_global, t->dhs, t->hs, t->ltgt, M, M_total));
  } else if (M > 0) {
    double t1 = dist_wtime();
    lr_sampled_kind kind = c->train_objective == LR_OBJ_BCE ? LR_SAMPLED_BCE : LR_SAMPLED_SOFTMAX;
    double mean = sampled_forward_backward(t->dhs, drows, t->hs, t->cand, t->cand_ids, rows, M,
                                           C, D, kind, (float)((double)M / (double)M_total),
                                           t->s_scratch);
    *loss_local += mean * (double)M / (double)M_total;
    t->t_loss_local += dist_wtime() - t1;
  }
  if (nb > 0) {
    double t2 = dist_wtime();
    // Scatter the loss-row gradients into the output gradient and backprop.
    memset(t->dout, 0, (size_t)(nb * N * D) * sizeof(float));
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < D; j++) t->dout[t->lrow[m] * D + j] += t->dhs[m * D + j];
    model_backward(&t->model, drows, t->dout, t->idx, t->row_ids, dp);
    t->t_model += dist_wtime() - t2;
  }
  return table_push(&t->table);
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
  model_zero_grad(&t->model);
  table_zero_grad(&t->table, t->dense_table);
  double loss_local = 0, loss_global = 0;
  for (int64_t k = 0; k < n_micro; k++) {
    int64_t off = k * t->Bm, nb = n_local - off;
    nb = nb < 0 ? 0 : nb > t->Bm ? t->Bm : nb;
    if (k == n_micro - 1) gradsync_arm(t->gsync); // the last micro-batch starts the buckets
    LR_CALL(micro_step(t, t->local_ex + off, nb, M_total, epoch, &loss_local, &loss_global));
  }
  LR_CALL(gradsync_finish(t->gsync));
  LR_CALL(table_sync(&t->table));
  LR_CALL(dist_allreduce_sum_d(&loss_local, 1));
  *loss_out = loss_local + loss_global;
  if (c->train_clip_norm > 0) {
    double tab_sq = table_grad_sumsq(&t->table);
    if (t->table.mode == LR_TABLE_SHARDED) LR_CALL(dist_allreduce_sum_d(&tab_sq, 1));
    double nrm = sqrt(grad_sumsq(t->model.grads_mem, (int64_t)t->model.n_params) + tab_sq);
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

// Everything before the first collective: data, examples, user ranges, model.
static int trainer_init_local(trainer *t, const lr_config *c) {
  const int P = dist_size();
  lr_data_opts dopt = config_data_opts(c);
  double t0 = dist_wtime();
  LR_CALL(data_load(&t->ds, &dopt));
  dist_log0("data: %lld users, %lld items, %lld interactions (%s, %.1f s)\n",
            (long long)t->ds.n_users, (long long)t->ds.n_items, (long long)t->ds.n_inter,
            data_format_name((lr_data_format)c->data_format), dist_wtime() - t0);
  LR_CHECK(t->ds.n_items >= 1 && t->ds.n_users >= 1, LR_ERR_DATA,
           "%s: no interactions left after preprocessing", c->data_path[0] ? c->data_path : "data");
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
  // Micro-batch: bounded by the global batch and by what one rank can get.
  t->Bm = c->train_micro_batch ? c->train_micro_batch
                               : (c->train_batch_size < 256 ? c->train_batch_size : 256);
  lr_model_cfg mc = {t->ds.n_items, c->model_max_len, c->model_d, c->model_heads,
                     c->model_layers, c->model_inner, (float)c->model_dropout,
                     (float)c->model_ln_eps, (lr_attn_kind)c->model_attention};
  int64_t max_B = t->Bm > c->eval_batch_size ? t->Bm : c->eval_batch_size;
  LR_CALL(model_init(&t->model, &mc, max_B, (uint64_t)c->train_seed));
  LR_CALL(gradsync_init(&t->gsync, &t->model));
  return LR_OK;
}

static int trainer_init(trainer *t, const lr_config *c, const char *out_dir) {
  memset(t, 0, sizeof *t);
  t->c = c;
  const int P = dist_size();
  // Data and config errors are alike on every rank: agree, report once.
  LR_CALL(dist_agree(trainer_init_local(t, c)));
  int64_t loss_rows = t->Bm * (t->ex.all ? t->N : 1);
  int64_t eval_ids = c->eval_batch_size * (t->N + 101);
  int64_t max_ids = t->Bm * t->N + loss_rows * t->C;
  if (max_ids < eval_ids) max_ids = eval_ids;
  int64_t ce_rows = c->train_objective == LR_OBJ_CE ? loss_rows : 0;
  if (ce_rows < c->eval_batch_size) ce_rows = c->eval_batch_size;
  lr_table_mode mode = choose_table(t, c->train_batch_size * (t->ex.all ? t->N : 1));
  LR_CALL(table_init(&t->table, mode, t->ds.n_items + 1, t->D, max_ids, ce_rows,
                     c->train_loss_tile, (uint64_t)c->train_seed));
  if (mode == LR_TABLE_SHARDED && P > 1) {
    // Every rank's row range, printed by rank 0 (recorded in checkpoints too).
    for (int q = 0; q < P; q++) {
      lr_shard s = shard_range(t->ds.n_items + 1, q, P);
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
            "parameters (%s table); activations %.1f MiB for micro-batch %lld\n",
            attn_kind_name(t->model.cfg.attn), (long long)t->model.cfg.d,
            (long long)t->model.cfg.heads, (long long)t->model.cfg.layers,
            (long long)t->model.cfg.inner, (long long)t->model.cfg.max_len, t->model.n_params,
            (long long)((t->ds.n_items + 1) * t->D),
            mode == LR_TABLE_SHARDED ? "sharded" : "replicated",
            (double)t->model.acts_elems * 4.0 / (1 << 20), (long long)t->Bm);
  if (dist_rank() == 0) {
    char path[LR_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    t->metrics = fopen(path, "w");
    LR_CHECK(t->metrics, LR_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
  }
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

// out_dir/model.lrm, written by rank 0. With a sharded table rank 0 gathers
// the rows for this one file (the sharded checkpoints never do).
// Collective.
static int save_model(trainer *t, const char *out_dir) {
  const int P = dist_size(), me = dist_rank();
  const lr_itemtab *tb = &t->table.tab;
  const int64_t n_rows = t->ds.n_items + 1, D = t->D;
  float *all = NULL;
  int64_t *cnt = NULL, *dsp = NULL;
  int rc = LR_OK;
  const float *items = tb->w;
  if (t->table.mode == LR_TABLE_SHARDED && P > 1) {
    cnt = lr_calloc((size_t)P, sizeof *cnt, "gather counts");
    dsp = lr_calloc((size_t)P, sizeof *dsp, "gather displacements");
    if (me == 0) all = lr_calloc((size_t)(n_rows * D), sizeof *all, "model file item table");
    int ok = cnt && dsp && (me != 0 || all);
    int64_t ok_all = ok;
    // every rank must know whether rank 0 can receive before the gather
    if ((rc = dist_allreduce_max_i64(&ok_all, 1)) == LR_OK) {
      int64_t bad = !ok;
      if ((rc = dist_allreduce_sum_i64(&bad, 1)) == LR_OK && bad)
        rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "saving the model: out of memory");
    }
    if (rc == LR_OK) {
      for (int q = 0; q < P; q++) {
        lr_shard s = shard_range(n_rows, q, P);
        cnt[q] = s.count * D, dsp[q] = s.offset * D;
      }
      rc = dist_gatherv0_f(all, cnt, dsp, tb->w, itemtab_rows(tb) * D);
    }
    items = all;
  }
  if (rc == LR_OK && me == 0) {
    char path[LR_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/model.lrm", out_dir);
    char *json = config_to_json(t->c);
    if (!json) rc = LR_ERR_NOMEM;
    else rc = modelfile_write(path, json, t->model.params_mem, t->model.n_params, items, n_rows, D);
    free(json);
  }
  lr_free(all);
  lr_free(cnt);
  lr_free(dsp);
  return rc;
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

// ---- the run -------------------------------------------------------------------------

static int run(trainer *t, const lr_config *c, const char *out_dir, lr_train_result *res) {
  const int P = dist_size();
  LR_CALL(make_dir(out_dir));
  LR_CALL(trainer_init(t, c, out_dir));
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
  double best = -1, t_start = dist_wtime();
  int since_best = 0;
  int64_t step = 0;
  snapshot_best(t);
  for (int epoch = 1; epoch <= c->train_epochs && step < total_steps; epoch++) {
    examples_shuffle(&t->ex, (uint64_t)c->train_seed, (uint32_t)epoch);
    dist_stats comm0[N_COMM], comm1[N_COMM];
    comm_take(t, comm0);
    double ep_loss = 0, ep_t0 = dist_wtime();
    int64_t ep_steps = 0, ep_seqs = 0;
    for (int64_t s = 0; s < steps_per_epoch && step < total_steps; s++) {
      int64_t start = s * G, g = t->ex.n_examples - start < G ? t->ex.n_examples - start : G;
      double loss;
      LR_CALL(train_step(t, start, g, (uint32_t)epoch, step + 1, &loss));
      step++, ep_steps++, ep_seqs += g;
      ep_loss += loss;
      if (c->log_every_steps && step % c->log_every_steps == 0 && t->metrics) {
        fprintf(t->metrics, "{\"event\":\"step\",\"step\":%lld,\"epoch\":%d,\"loss\":%.7g}\n",
                (long long)step, epoch, loss);
        fflush(t->metrics);
      }
      double el = dist_wtime() - ep_t0;
      progress_show(&pg, epoch, c->train_epochs, step, total_steps, ep_loss / (double)ep_steps,
                    (double)ep_seqs / el, total_steps - step, el / (double)ep_steps, 0);
    }
    double ep_s = dist_wtime() - ep_t0, seq_s = (double)ep_seqs / ep_s;
    progress_show(&pg, epoch, c->train_epochs, step, total_steps, ep_loss / (double)ep_steps,
                  seq_s, total_steps - step, ep_s / (double)ep_steps, 1);
    comm_take(t, comm1);
    char cjson[1024], cline[512];
    comm_report(comm0, comm1, ep_steps, cjson, sizeof cjson, cline, sizeof cline);
    if (P > 1) dist_log0("%s\n", cline);
    if (t->metrics) {
      fprintf(t->metrics,
              "{\"event\":\"epoch\",\"epoch\":%d,\"step\":%lld,\"loss\":%.7g,\"seq_per_s\":%.1f,"
              "\"seconds\":%.3f,%s}\n",
              epoch, (long long)step, ep_loss / (double)ep_steps, seq_s, ep_s, cjson);
      fflush(t->metrics);
    }
    lr_metrics vm;
    LR_CALL(eval_split(&vm, &sc, &t->ds, LR_SPLIT_VALID, c));
    metrics_event_eval(t->metrics, "valid", epoch, &vm);
    double score = stop_metric(&vm);
    dist_log0("epoch %d: loss %.4f, valid ndcg@%d %.4f recall@%d %.4f%s\n", epoch,
              ep_loss / (double)ep_steps, vm.k[0], vm.ndcg[0], vm.k[0], vm.recall[0],
              score > best ? " (best)" : "");
    if (score > best) {
      best = score, since_best = 0;
      res->valid = vm;
      res->best_epoch = epoch;
      snapshot_best(t);
    } else if (c->train_patience && ++since_best >= c->train_patience) {
      dist_log0("early stop: no better validation NDCG for %d evaluations\n", since_best);
      break;
    }
  }
  restore_best(t);
  if (res->best_epoch == 0) LR_CALL(eval_split(&res->valid, &sc, &t->ds, LR_SPLIT_VALID, c));
  LR_CALL(eval_split(&res->test, &sc, &t->ds, LR_SPLIT_TEST, c));
  metrics_event_eval(t->metrics, "test", res->best_epoch, &res->test);
  res->steps = step;
  res->seconds = dist_wtime() - t_start;
  if (t->metrics) {
    fprintf(t->metrics,
            "{\"event\":\"done\",\"steps\":%lld,\"best_epoch\":%d,\"seconds\":%.3f,\"ranks\":%d",
            (long long)step, res->best_epoch, res->seconds, dist_size());
    for (int i = 0; i < res->test.nk; i++)
      fprintf(t->metrics, ",\"test_ndcg@%d\":%.6f,\"test_recall@%d\":%.6f", res->test.k[i],
              res->test.ndcg[i], res->test.k[i], res->test.recall[i]);
    fprintf(t->metrics, "}\n");
    fflush(t->metrics);
  }
  LR_CALL(save_model(t, out_dir));
  return LR_OK;
}

int train_run(const lr_config *c, const char *out_dir, lr_train_result *res) {
  memset(res, 0, sizeof *res);
  trainer t;
  memset(&t, 0, sizeof t);
  int rc = run(&t, c, out_dir, res);
  trainer_free(&t);
  return rc;
}
