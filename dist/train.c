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

// [lo, lo+count) of n items for rank r of P: the first n % P ranks take one
// more (STYLE 16). Local.
static void shard_range(int64_t n, int64_t r, int64_t P, int64_t *lo, int64_t *count) {
  int64_t base = n / P, extra = n % P;
  *lo = r * base + (r < extra ? r : extra);
  *count = base + (r < extra ? 1 : 0);
}

typedef struct {
  const lr_config *c;
  lr_dataset ds;
  lr_examples ex;
  lr_model model;
  lr_itemtab tab;
  lr_gradsync *gsync; // dense gradient allreduce
  float *pop;     // (I+1) training counts
  double *pop_cdf; // (I+1) for the pop negative sampler
  int64_t Bm;     // micro-batch
  int64_t N, D, C; // C = candidates per loss row (sampled objectives)
  // micro-batch buffers
  int32_t *ids, *lens, *tgt, *idx; // (Bm,N), (Bm), (Bm,N), (Bm,N)
  uint64_t *ex_ids, *row_ids;      // (Bm), (Bm*N)
  float *hs, *dhs, *dout;          // (Bm*N,D) x2, (Bm,N,D)
  int32_t *ltgt;                   // (Bm*N) targets of loss rows
  int64_t *lrow;                   // (Bm*N) (b*N+t) of each loss row
  float *rmax, *rsum, *tlogit;     // (Bm*N)
  float *ce_scratch;
  int32_t *cand, *cand_ids;        // (Bm*N, C)
  float *s_scratch;                // (Bm*N*C)
  // best model
  float *best_dense, *best_items;
  FILE *metrics;
} trainer;

static void trainer_free(trainer *t) {
  dataset_free(&t->ds);
  examples_free(&t->ex);
  model_free(&t->model);
  itemtab_free(&t->tab);
  gradsync_free(t->gsync);
  void *bufs[] = {t->pop,    t->pop_cdf, t->ids,    t->lens,   t->tgt,        t->idx,
                  t->ex_ids, t->row_ids, t->hs,     t->dhs,    t->dout,       t->ltgt,
                  t->lrow,   t->rmax,    t->rsum,   t->tlogit, t->ce_scratch, t->cand,
                  t->cand_ids, t->s_scratch, t->best_dense, t->best_items};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) lr_free(bufs[i]);
  if (t->metrics) fclose(t->metrics);
  memset(t, 0, sizeof *t);
}

static int trainer_alloc(trainer *t) {
  const lr_config *c = t->c;
  size_t BN = (size_t)(t->Bm * t->N), D = (size_t)t->D, C = (size_t)t->C;
  int64_t rows = t->ds.n_items + 1;
  int64_t tile = c->train_loss_tile < rows ? c->train_loss_tile : rows;
#define ALLOC(p, n, what)                                                                    \
  if (!((p) = lr_calloc((n), sizeof *(p), what))) goto nomem;
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
  ALLOC(t->rmax, BN, "CE row max");
  ALLOC(t->rsum, BN, "CE row sum");
  ALLOC(t->tlogit, BN, "CE target logits");
  ALLOC(t->ce_scratch, ce_scratch_elems((int64_t)BN, tile), "CE logits tile");
  ALLOC(t->cand, BN * C, "sampled candidates");
  ALLOC(t->cand_ids, BN * C, "sampled candidate ids");
  ALLOC(t->s_scratch, BN * C, "sampled scores");
  ALLOC(t->best_dense, t->model.n_params, "best model parameters");
  ALLOC(t->best_items, (size_t)rows * D, "best model item table");
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

// Forward, loss and backward of one micro-batch of nb examples starting at
// permutation index `start`. Returns the micro-batch's share of the loss sum.
static double micro_step(trainer *t, int64_t start, int64_t nb, int64_t M_total, uint32_t epoch) {
  const lr_config *c = t->c;
  const int64_t N = t->N, D = t->D;
  examples_batch(&t->ex, start, nb, t->ids, t->lens, t->tgt, t->ex_ids);
  for (int64_t b = 0; b < nb; b++)
    for (int64_t p = 0; p < N; p++) t->row_ids[b * N + p] = t->ex_ids[b] * (uint64_t)N + (uint64_t)p;
  const float *rows = emb_lookup_local(t->idx, t->ids, nb * N, &t->tab);
  lr_dropout dp = {(uint64_t)c->train_seed, epoch, 0, (float)c->model_dropout};
  const float *h = model_forward(&t->model, t->idx, rows, t->lens, t->row_ids, nb, dp);
  // Gather the loss rows.
  int64_t M = 0;
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
  for (int64_t m = 0; m < M; m++)
    memcpy(t->hs + m * D, h + t->lrow[m] * D, (size_t)D * sizeof(float));
  memset(t->dhs, 0, (size_t)(M * D) * sizeof(float));
  double loss_sum;
  int64_t rows_all = t->ds.n_items + 1;
  int64_t tile = c->train_loss_tile < rows_all ? c->train_loss_tile : rows_all;
  if (c->train_objective == LR_OBJ_CE) {
    ce_stats(t->rmax, t->rsum, t->tlogit, t->hs, t->ltgt, t->tab.w, 0, rows_all, M, D, tile,
             t->ce_scratch);
    loss_sum = 0;
    for (int64_t m = 0; m < M; m++) {
      t->rmax[m] += logf(t->rsum[m]); // rmax now holds the log-sum-exp
      loss_sum += (double)t->rmax[m] - (double)t->tlogit[m];
    }
    ce_backward(t->dhs, t->tab.g, t->hs, t->ltgt, t->tab.w, t->rmax, 0, rows_all, M, M_total, D,
                tile, 1.0f, t->ce_scratch);
  } else {
    const int64_t C = t->C;
    for (int64_t m = 0; m < M; m++) {
      int64_t b = t->lrow[m] / N, p = t->lrow[m] % N;
      t->cand_ids[m * C] = t->ltgt[m];
      for (int64_t j = 1; j < C; j++) t->cand_ids[m * C + j] = draw_negative(t, t->ex_ids[b], p, j - 1, epoch);
    }
    memcpy(t->cand, t->cand_ids, (size_t)(M * C) * sizeof(int32_t)); // local table: row = id
    lr_sampled_kind kind = c->train_objective == LR_OBJ_BCE ? LR_SAMPLED_BCE : LR_SAMPLED_SOFTMAX;
    double mean = sampled_forward_backward(t->dhs, t->tab.g, t->hs, t->cand, t->cand_ids, t->tab.w,
                                           M, C, D, kind, (float)((double)M / (double)M_total),
                                           t->s_scratch);
    loss_sum = mean * (double)M;
  }
  // Scatter the loss-row gradients into the output gradient and backprop.
  memset(t->dout, 0, (size_t)(nb * N * D) * sizeof(float));
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < D; j++) t->dout[t->lrow[m] * D + j] += t->dhs[m * D + j];
  model_backward(&t->model, t->tab.g, t->dout, t->idx, t->row_ids, dp);
  return loss_sum;
}

// One optimizer step over global batch [start, start+G). Collective.
static int train_step(trainer *t, int64_t start, int64_t G, uint32_t epoch, int64_t step_no,
                      double *loss_out) {
  const lr_config *c = t->c;
  int64_t lo, cnt;
  shard_range(G, dist_rank(), dist_size(), &lo, &cnt);
  int64_t M_total = examples_loss_rows(&t->ex, start, G);
  model_zero_grad(&t->model);
  size_t tab_elems = (size_t)itemtab_rows(&t->tab) * (size_t)t->D;
  memset(t->tab.g, 0, tab_elems * sizeof(float));
  double loss_sum = 0;
  for (int64_t off = 0; off < cnt; off += t->Bm) {
    int64_t nb = cnt - off < t->Bm ? cnt - off : t->Bm;
    if (off + nb == cnt) gradsync_arm(t->gsync); // the last micro-batch starts the buckets
    loss_sum += micro_step(t, start + lo + off, nb, M_total, epoch);
  }
  LR_CALL(gradsync_finish(t->gsync));
  LR_CALL(dist_allreduce_sum_f(t->tab.g, (int64_t)tab_elems));
  LR_CALL(dist_allreduce_sum_d(&loss_sum, 1));
  *loss_out = loss_sum / (double)M_total;
  if (c->train_clip_norm > 0) {
    double nrm = sqrt(grad_sumsq(t->model.grads_mem, (int64_t)t->model.n_params) +
                      grad_sumsq(t->tab.g, (int64_t)tab_elems));
    if (nrm > c->train_clip_norm) {
      float s = (float)(c->train_clip_norm / nrm);
      grad_scale(t->model.grads_mem, (int64_t)t->model.n_params, s);
      grad_scale(t->tab.g, (int64_t)tab_elems, s);
    }
  }
  lr_adam_cfg ac = {(float)c->train_lr, (float)c->train_beta1, (float)c->train_beta2,
                    (float)c->train_adam_eps, (float)c->train_weight_decay};
  adam_update(t->model.params_mem, t->model.m_mem, t->model.v_mem, t->model.grads_mem,
              (int64_t)t->model.n_params, ac, step_no);
  // Weight decay never applies to the padding row: it is zero and stays zero.
  adam_update(t->tab.w + t->D, t->tab.m + t->D, t->tab.v + t->D, t->tab.g + t->D,
              (int64_t)tab_elems - t->D, ac, step_no);
  return LR_OK;
}

// ---- set-up --------------------------------------------------------------------------

static int trainer_init(trainer *t, const lr_config *c, const char *out_dir) {
  memset(t, 0, sizeof *t);
  t->c = c;
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
  LR_CALL(examples_init(&t->ex, &t->ds, t->N, c->train_positions == LR_POS_ALL));
  LR_CHECK(t->ex.n_examples > 0, LR_ERR_DATA,
           "no training examples: every user needs at least 2 training interactions");
  int64_t per_rank = (c->train_batch_size + dist_size() - 1) / dist_size();
  t->Bm = c->train_micro_batch ? c->train_micro_batch : (per_rank < 256 ? per_rank : 256);
  if (t->Bm > per_rank) t->Bm = per_rank;
  if (t->Bm < 1) t->Bm = 1;
  lr_model_cfg mc = {t->ds.n_items, c->model_max_len, c->model_d, c->model_heads,
                     c->model_layers, c->model_inner, (float)c->model_dropout,
                     (float)c->model_ln_eps, (lr_attn_kind)c->model_attention};
  int64_t max_B = t->Bm > c->eval_batch_size ? t->Bm : c->eval_batch_size;
  LR_CALL(model_init(&t->model, &mc, max_B, (uint64_t)c->train_seed));
  LR_CALL(itemtab_init(&t->tab, 0, t->ds.n_items + 1, t->D, (uint64_t)c->train_seed));
  LR_CALL(gradsync_init(&t->gsync, &t->model));
  t->pop = eval_popularity(&t->ds);
  t->pop_cdf = lr_calloc((size_t)t->ds.n_items + 1, sizeof(double), "popularity cdf");
  if (!t->pop || !t->pop_cdf) return LR_ERR_NOMEM;
  for (int64_t v = 1; v <= t->ds.n_items; v++) t->pop_cdf[v] = t->pop_cdf[v - 1] + t->pop[v];
  LR_CALL(trainer_alloc(t));
  dist_log0("model: %s, d=%lld heads=%lld layers=%lld inner=%lld N=%lld; %zu dense + %lld item "
            "parameters; activations %.1f MiB for micro-batch %lld\n",
            attn_kind_name(mc.attn), (long long)mc.d, (long long)mc.heads, (long long)mc.layers,
            (long long)mc.inner, (long long)mc.max_len, t->model.n_params,
            (long long)((t->ds.n_items + 1) * t->D),
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
  memcpy(t->best_dense, t->model.params_mem, t->model.n_params * sizeof(float));
  memcpy(t->best_items, t->tab.w, (size_t)itemtab_rows(&t->tab) * (size_t)t->D * sizeof(float));
}

static void restore_best(trainer *t) {
  memcpy(t->model.params_mem, t->best_dense, t->model.n_params * sizeof(float));
  memcpy(t->tab.w, t->best_items, (size_t)itemtab_rows(&t->tab) * (size_t)t->D * sizeof(float));
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

static int save_model(trainer *t, const char *out_dir) {
  if (dist_rank() != 0) return LR_OK;
  char path[LR_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/model.lrm", out_dir);
  char *json = config_to_json(t->c);
  if (!json) return LR_ERR_NOMEM;
  int rc = modelfile_write(path, json, t->model.params_mem, t->model.n_params, t->tab.w,
                           itemtab_rows(&t->tab), t->D);
  free(json);
  return rc;
}

// ---- the run -------------------------------------------------------------------------

static int run(trainer *t, const lr_config *c, const char *out_dir, lr_train_result *res) {
  LR_CALL(make_dir(out_dir));
  LR_CALL(trainer_init(t, c, out_dir));
  lr_scorer sc = {&t->model, &t->tab, t->pop};
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
    if (t->metrics) {
      fprintf(t->metrics,
              "{\"event\":\"epoch\",\"epoch\":%d,\"step\":%lld,\"loss\":%.7g,\"seq_per_s\":%.1f,"
              "\"seconds\":%.3f}\n",
              epoch, (long long)step, ep_loss / (double)ep_steps, seq_s, ep_s);
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
