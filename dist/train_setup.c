// train_setup.c: the trainer's data, state and buffers (train_internal.h).
#include <stdlib.h> // free
#include <string.h> // memset

#include "comm.h"
#include "eval.h" // eval_popularity
#include "jobcheck.h"
#include "lr.h"
#include "par.h" // lr_par_threads
#include "shard.h"
#include "train_internal.h"

// Activation memory the default evaluation passes aim at (train.micro_batch = 0).
#define ACTS_BUDGET_BYTES ((size_t)256 << 20)
// The smallest default micro-batch with a sharded table on several ranks
// (ML-20M shape, P=2: 16 and 256 sequences alike, 2 +17% per step).
#define SHARDED_MIN_MICRO 16
// The smallest default micro-batch when the full-catalog cross-entropy gets
// one row per sequence (positions=last): its products run over the whole
// item table for the micro-batch's rows, and with a chunk's 2-5 rows the
// table's packing for them was most of the loss (paper config, 1 x 1: loss
// 0.11 -> 0.04 s a step, the bf16 step 1.28x faster; Blin on Beauty 1.15x).
#define LOSS_MIN_MICRO 16

void trainer_free(trainer *t) {
  ckpt_writer_free(t->ckw); // first: joins a writer thread still reading the state's arrays
  ckpt_manifest_free(&t->resume_from);
  free(t->traj_json);
  dataset_free(&t->ds);
  examples_free(&t->ex);
  state_free(&t->st);
  void *bufs[] = {t->pop,  t->pop_cdf, t->local_ex, t->rank_cnt, t->ids,      t->lens,     t->tgt,
                  t->idx,  t->ex_ids,  t->row_ids,  t->users,    t->hs,       t->dhs,      t->dout,
                  t->ltgt, t->lgrp,    t->lrow,     t->cand,     t->cand_ids, t->s_scratch,
                  t->src_ids, t->src_lens, t->kmask};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  report_close(&t->rep);
  memset(t, 0, sizeof *t);
}

static int alloc_buffers(trainer *t) {
  // V sequences per example (Blin's two views); the sampled two-view loss
  // wants 4 scores per candidate
  const size_t V = (size_t)t->V, B1N = (size_t)(t->Bm * t->N);
  size_t BN = V * B1N, D = (size_t)t->D, C = (size_t)t->C;
#define ALLOC(p, n, what)                                                                          \
  if (!((p) = lr_calloc((n), sizeof *(p), what))) goto nomem;
  ALLOC(t->local_ex, (size_t)t->c->train_batch_size, "step examples");
  ALLOC(t->rank_cnt, (size_t)dist_size(), "step examples per rank");
  ALLOC(t->ids, BN, "batch ids");
  ALLOC(t->lens, V * (size_t)t->Bm, "batch lengths");
  ALLOC(t->tgt, BN, "batch targets");
  ALLOC(t->idx, BN, "batch row index");
  ALLOC(t->ex_ids, (size_t)t->Bm, "batch example ids");
  ALLOC(t->row_ids, BN, "batch dropout keys");
  ALLOC(t->users, V * (size_t)t->Bm, "batch users");
  ALLOC(t->hs, BN * D, "loss hidden states");
  ALLOC(t->dhs, BN * D, "loss hidden gradients");
  ALLOC(t->dout, BN * D, "output gradient");
  ALLOC(t->ltgt, BN, "loss targets");
  ALLOC(t->lgrp, BN, "loss row examples");
  ALLOC(t->lrow, BN, "loss rows");
  ALLOC(t->cand, BN * C, "sampled candidates");
  ALLOC(t->cand_ids, BN * C, "sampled candidate ids");
  ALLOC(t->s_scratch, V * BN * C, "sampled scores");
  if (V > 1) {
    ALLOC(t->src_ids, B1N, "batch ids before RandomPad");
    ALLOC(t->src_lens, (size_t)t->Bm, "batch lengths before RandomPad");
    ALLOC(t->kmask, BN, "batch key mask");
  }
#undef ALLOC
  return LR_OK;
nomem:
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

// Everything before the first collective: data, examples, the sizes.
static int init_local(trainer *t, const lr_config *c, lr_state_opts *so) {
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
  t->full = c->train_objective == LR_OBJ_CE;
  t->V = c->train_views;
  LR_CALL(examples_init(&t->ex, &t->ds, t->N,
                        c->train_positions == LR_POS_ALL ? 1 + c->train_windows : 0));
  LR_CHECK(t->ex.n_examples > 0, LR_ERR_DATA,
           "no training examples: every user needs at least 2 training interactions");
  lr_model_cfg mc;
  LR_CALL(state_model_cfg(&mc, c, t->ds.n_items, 1));
  // The item table's layout, then the micro-batch: train.micro_batch, which
  // also bounds the evaluation passes; else one model chunk per lane
  // (core/model.h: forward, loss and backward of a few sequences at a time
  // keep their activations in cache; at least LOSS_MIN_MICRO for the full
  // cross-entropy at the last position), with evaluation passes of up to
  // eval.batch_size users within the activation budget. The activation
  // arena is sized once for the larger of the two. A sharded table over
  // several ranks exchanges rows per micro-batch (a few collectives each):
  // then at least SHARDED_MIN_MICRO sequences.
  const int64_t G = c->train_batch_size;
  so->items = state_items_mode(c, t->ds.n_items, 1, G * (t->ex.all ? t->N : 1), G * t->N * t->C);
  int64_t max_B;
  if (c->train_micro_batch) {
    t->Bm = max_B = c->train_micro_batch;
  } else {
    t->Bm = (int64_t)lr_par_threads() * model_chunk_seqs(&mc);
    if (so->items == LR_TABLE_SHARDED && P > 1 && t->Bm < SHARDED_MIN_MICRO)
      t->Bm = SHARDED_MIN_MICRO;
    if (!t->ex.all && c->train_objective == LR_OBJ_CE && t->Bm < LOSS_MIN_MICRO)
      t->Bm = LOSS_MIN_MICRO;
    if (t->Bm > G) t->Bm = G;
    int64_t fit = (int64_t)(ACTS_BUDGET_BYTES / (model_acts_elems(&mc, 1) * sizeof(float)));
    fit = fit < 1 ? 1 : fit > 256 ? 256 : fit;
    max_B = c->eval_batch_size < fit ? c->eval_batch_size : fit;
    if (max_B < t->Bm) max_B = t->Bm;
  }
  if (max_B < t->V * t->Bm) max_B = t->V * t->Bm; // both views in one forward
  so->training = 1;
  so->max_B = max_B;
  const int64_t loss_rows = t->Bm * (t->ex.all ? t->N : 1);
  // evaluation passes: at most the model's capacity (dist/eval.c)
  const int64_t Be = c->eval_batch_size < max_B ? c->eval_batch_size : max_B;
  so->max_ids = t->V * t->Bm * t->N + loss_rows * t->C;
  if (so->max_ids < Be * (t->N + 101)) so->max_ids = Be * (t->N + 101);
  so->ce_rows = c->train_objective == LR_OBJ_CE ? t->V * loss_rows : 0;
  if (so->ce_rows < Be) so->ce_rows = Be;
  so->rchunk = t->N > 256 ? t->N : 256; // CE chunks of whole examples
  return LR_OK;
}

int trainer_init(trainer *t, const lr_config *c) {
  t->c = c;
  const int P = dist_size();
  lr_state_opts so;
  memset(&so, 0, sizeof so);
  // Data and config errors are alike on every rank: agree, report once.
  LR_CALL(dist_agree(init_local(t, c, &so)));
  data_fingerprint(&t->ds, &t->data_fp);
  LR_CALL(jobcheck_data(&t->data_fp, c));
  LR_CALL(state_init(&t->st, c, &t->ds, &so));
  const lr_state *s = &t->st;
  if (P > 1) {
    dist_log0("users: %d ranks, interaction imbalance %.3f (max/mean)\n", P,
              shard_imbalance(s->user_lo, t->ds.offsets, P));
    if (s->table.mode == LR_TABLE_SHARDED) // every rank's rows (recorded in checkpoints too)
      for (int q = 0; q < P; q++) {
        lr_shard sh = shard_items(t->ds.n_items + 1, q, P);
        dist_log0("  rank %d: users [%lld, %lld), item rows [%lld, %lld)\n", q,
                  (long long)s->user_lo[q], (long long)s->user_lo[q + 1], (long long)sh.offset,
                  (long long)(sh.offset + sh.count));
      }
  }
  t->pop = eval_popularity(&t->ds);
  t->pop_cdf = lr_calloc((size_t)t->ds.n_items + 1, sizeof(double), "popularity cdf");
  int rc = t->pop && t->pop_cdf ? alloc_buffers(t) : LR_ERR_NOMEM;
  if (rc == LR_OK && t->V > 1) rc = table_enable_bkl(&t->st.table);
  LR_CALL(dist_agree(rc));
  for (int64_t v = 1; v <= t->ds.n_items; v++)
    t->pop_cdf[v] = t->pop_cdf[v - 1] + t->pop[v];
  const lr_model *m = &s->model;
  dist_log0("model: %s/%s, d=%lld heads=%lld layers=%lld inner=%lld N=%lld; %zu dense + %lld item "
            "parameters (%s table); activations %.1f MiB for %lld sequences (micro-batch %lld)\n",
            model_arch_name(m->cfg.arch), m->cfg.attn->name, (long long)m->cfg.d,
            (long long)m->cfg.heads, (long long)m->cfg.layers, (long long)m->cfg.inner,
            (long long)m->cfg.max_len, m->n_params, (long long)((t->ds.n_items + 1) * t->D),
            s->table.mode == LR_TABLE_SHARDED ? "sharded" : "replicated",
            (double)m->acts_elems * 4.0 / (1 << 20), (long long)m->max_B, (long long)t->Bm);
  for (int g = 0; g < s->n_rows_groups; g++)
    dist_log0("model: row group %s, %lld x %lld, with each rank's users\n", s->rg[g].spec.name,
              (long long)t->ds.n_users, (long long)s->rg[g].spec.width);
  return LR_OK;
}
