// train_step.c: one optimizer step (train_internal.h).
//
// A step takes the next `train.batch_size` examples of the epoch's global
// permutation; every rank takes the examples of its own users, runs forward
// and backward in micro-batches, and the gradients of every parameter group
// are summed over ranks (state.h), so the trajectory is that of one rank at
// the same global batch. The loss is the mean over the global batch's loss
// rows, so every rank scales by 1 / M_total.
#include <math.h>   // isfinite
#include <stdio.h>  // snprintf, sscanf
#include <stdlib.h> // getenv
#include <string.h> // memset, memcpy

#include "blin.h"
#include "comm.h"
#include "loss.h"
#include "lr.h"
#include "rng.h"
#include "train_internal.h"

// Negatives for loss row (example e, position t), counter-based: they depend
// on (seed, epoch, e, t) only, not on the rank or micro-batch. Draw `a` of
// a row (a > 0: train.negatives_skip_history's redraws) has a << 24 in the
// epoch word.
static int32_t draw_one(const trainer *t, uint64_t e, int64_t pos, int64_t j, uint32_t epoch,
                        uint32_t a) {
  const lr_config *c = t->c;
  int64_t I = t->ds.n_items;
  LR_ASSERT(epoch < (1u << 24) && a < 256);
  lr_rng4 r = lr_philox((uint64_t)c->train_seed, LR_STREAM_NEGATIVES, (uint32_t)e,
                        (uint32_t)(e >> 32), epoch | a << 24, (uint32_t)(pos * (t->C - 1) + j));
  if (c->train_sampler == LR_SAMPLER_POP && t->pop_cdf[I] > 0) {
    double x = lr_u01d(r.v[0], r.v[1]) * t->pop_cdf[I];
    int64_t lo = 1, hi = I;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (t->pop_cdf[mid] > x)
        hi = mid;
      else
        lo = mid + 1;
    }
    return (int32_t)lo;
  }
  return (int32_t)(1 + lr_below(r.v[2], r.v[3], (uint64_t)I));
}

#define SKIP_HISTORY_DRAWS 64

// draw_one, drawn again while the item is in the training history of the
// example's user (train.negatives_skip_history; a linear scan of it), at
// most SKIP_HISTORY_DRAWS times (a history that covers the catalog keeps
// the last draw).
static int32_t draw_negative(const trainer *t, uint64_t e, int64_t pos, int64_t j, uint32_t epoch) {
  int32_t v = draw_one(t, e, pos, j, epoch, 0);
  if (!t->c->train_neg_skip_history) return v;
  const int64_t u = examples_user(&t->ex, (int64_t)e), n = examples_train_len(&t->ds, u);
  const int32_t *h = t->ds.items + t->ds.offsets[u];
  for (uint32_t a = 1; a < SKIP_HISTORY_DRAWS; a++) {
    int64_t i = 0;
    while (i < n && h[i] != v) i++;
    if (i == n) break;
    v = draw_one(t, e, pos, j, epoch, a);
  }
  return v;
}

// The rank owning user u (user_lo is sorted). Local.
static int user_rank(const trainer *t, int64_t u) {
  const int64_t *user_lo = t->st.user_lo;
  int lo = 0, hi = dist_size(); // user_lo[lo] <= u < user_lo[hi]
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (user_lo[mid] <= u)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// The item rows of B sequences (t->ids) and of ncand candidates (t->cand_ids),
// then the forward: *h the final hidden states (NULL when B = 0). Collective
// in sharded mode.
static int lookup_forward(trainer *t, int64_t B, int64_t ncand, lr_dropout dp, const float **rows,
                          lr_xs **drows, const float **h) {
  lr_state *s = &t->st;
  double t0 = dist_wtime();
  LR_CALL(table_lookup(&s->table, rows, drows, t->idx, t->ids, B * t->N, t->cand, t->cand_ids,
                       ncand));
  t->ph_comm += dist_wtime() - t0;
  *h = B > 0 ? model_forward(&s->model, t->idx, *rows, t->lens, t->row_ids, B, dp,
                             state_seq_rows(s, t->users, B))
             : NULL;
  return LR_OK;
}

// The n loss rows' gradients (t->dhs, row q at sequence row t->lrow[q]) into
// the output gradient, the backward of the B sequences and the table's
// gradient push; t1: when the loss began. Collective in sharded mode.
static int backward_push(trainer *t, int64_t B, int64_t n, lr_dropout dp, lr_xs *drows,
                         double t1) {
  lr_state *s = &t->st;
  const int64_t N = t->N, D = t->D;
  if (B > 0) {
    memset(t->dout, 0, (size_t)(B * N * D) * sizeof(float));
    for (int64_t q = 0; q < n; q++)
      for (int64_t j = 0; j < D; j++)
        t->dout[t->lrow[q] * D + j] += t->dhs[q * D + j];
    t->ph_loss += dist_wtime() - t1;
    model_backward(&s->model, drows, t->dout, t->idx, t->row_ids, dp, state_seq_grads(s));
    state_seq_push(s, t->users, B);
  } else {
    t->ph_loss += dist_wtime() - t1;
  }
  double t2 = dist_wtime();
  int rc = table_push(&s->table);
  t->ph_comm += dist_wtime() - t2;
  return rc;
}

// Forward, loss and backward of one micro-batch: this rank's nb examples
// exs (nb may be 0: the rank still takes part in the table's collectives).
// coef = 1/M_total weighs each loss row's gradient; the rows' losses go to
// t->loss_x (exact). Collective in sharded mode.
static int micro_step(trainer *t, const int64_t *exs, int64_t nb, float coef, uint32_t epoch) {
  const lr_config *c = t->c;
  lr_state *s = &t->st;
  const int64_t N = t->N, D = t->D, C = t->C;
  int64_t M = 0;
  if (nb > 0) {
    examples_fill(&t->ex, exs, nb, t->ids, t->lens, t->tgt, t->ex_ids);
    for (int64_t b = 0; b < nb; b++) {
      t->users[b] = examples_user(&t->ex, exs[b]);
      for (int64_t p = 0; p < N; p++)
        t->row_ids[b * N + p] = t->ex_ids[b] * (uint64_t)N + (uint64_t)p;
    }
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
  const float *rows, *h;
  lr_xs *drows;
  const lr_dropout dp = {(uint64_t)c->train_seed, epoch, 0, (float)c->model_dropout, NULL};
  LR_CALL(lookup_forward(t, nb, sampled ? M * C : 0, dp, &rows, &drows, &h));
  double t1 = dist_wtime();
  if (nb > 0) {
    for (int64_t m = 0; m < M; m++)
      memcpy(t->hs + m * D, h + t->lrow[m] * D, (size_t)D * sizeof(float));
    memset(t->dhs, 0, (size_t)(M * D) * sizeof(float));
  }
  if (!sampled) {
    LR_CALL(table_ce(&s->table, &t->loss_x, t->dhs, t->hs, t->ltgt, t->lgrp, M, coef));
  } else if (M > 0) {
    lr_sampled_kind kind = c->train_objective == LR_OBJ_BCE ? LR_SAMPLED_BCE : LR_SAMPLED_SOFTMAX;
    t->bad |= sampled_forward_backward(&t->loss_x, t->dhs, drows, t->hs, t->cand, t->cand_ids, rows,
                                       M, C, D, kind, coef, t->s_scratch);
  }
  return backward_push(t, nb, M, dp, drows, t1);
}

// Blin (train.views 2): micro_step with two views per example. View v of
// example b is sequence v*nb + b: the example's input, through RandomPad
// when train.augment is randompad (keyed by (seed, epoch, example id, v)),
// with its own dropout keys (row id (v * n_examples + example id) * N +
// position: view 0 keeps the one-view keys). One loss row pair per example:
// the last position of each view, the example's target; the loss is the
// mean of the two views' CEs + train.bkl_weight * the bidirectional KL
// (core/loss.h bkl_*; sampled: both views share the negatives, drawn as for
// one view). Both views run through one forward and one backward.
// Collective in sharded mode.
static int micro_step_views(trainer *t, const int64_t *exs, int64_t nb, float coef,
                            uint32_t epoch) {
  const lr_config *c = t->c;
  lr_state *s = &t->st;
  const int64_t N = t->N, D = t->D, C = t->C, B2 = 2 * nb;
  const int aug = c->train_augment == LR_AUG_RANDOMPAD;
  const uint64_t n_ex = (uint64_t)t->ex.n_examples;
  int64_t M = 0;
  if (nb > 0) {
    examples_fill(&t->ex, exs, nb, t->src_ids, t->src_lens, t->tgt, t->ex_ids);
    for (int v = 0; v < 2; v++)
      for (int64_t b = 0; b < nb; b++) {
        const int64_t q = v * nb + b;
        int32_t *ids = t->ids + q * N;
        uint8_t *km = t->kmask + q * N;
        const int32_t *src = t->src_ids + b * N;
        int64_t n = t->src_lens[b];
        if (aug) {
          n = blin_randompad(ids, km, NULL, src, n, N, (uint64_t)c->train_seed, epoch,
                             t->ex_ids[b], (uint32_t)v);
        } else {
          memcpy(ids, src, (size_t)n * sizeof *ids);
          memset(km, 1, (size_t)n);
        }
        memset(ids + n, 0, (size_t)(N - n) * sizeof *ids);
        memset(km + n, 0, (size_t)(N - n));
        t->lens[q] = (int32_t)n;
        t->users[q] = examples_user(&t->ex, exs[b]);
        for (int64_t p = 0; p < N; p++)
          t->row_ids[q * N + p] = ((uint64_t)v * n_ex + t->ex_ids[b]) * (uint64_t)N + (uint64_t)p;
        t->lrow[q] = q * N + n - 1;
      }
    for (int64_t b = 0; b < nb; b++) t->lgrp[b] = (int32_t)b, t->ltgt[b] = t->tgt[b];
    M = nb;
  }
  const int sampled = c->train_objective != LR_OBJ_CE;
  if (sampled)
    for (int64_t m = 0; m < M; m++) {
      t->cand_ids[m * C] = t->ltgt[m];
      for (int64_t j = 1; j < C; j++)
        t->cand_ids[m * C + j] = draw_negative(t, t->ex_ids[m], t->src_lens[m] - 1, j - 1, epoch);
    }
  const float *rows, *h;
  lr_xs *drows;
  const lr_dropout dp = {(uint64_t)c->train_seed, epoch, 0, (float)c->model_dropout, NULL};
  model_set_keymask(&s->model, aug ? t->kmask : NULL);
  int rc = lookup_forward(t, B2, sampled ? M * C : 0, dp, &rows, &drows, &h);
  if (rc != LR_OK) {
    model_set_keymask(&s->model, NULL);
    return rc;
  }
  double t1 = dist_wtime();
  float *hs_a = t->hs, *hs_b = t->hs + M * D, *dh_a = t->dhs, *dh_b = t->dhs + M * D;
  if (nb > 0) {
    for (int64_t m = 0; m < M; m++) {
      memcpy(hs_a + m * D, h + t->lrow[m] * D, (size_t)D * sizeof(float));
      memcpy(hs_b + m * D, h + t->lrow[nb + m] * D, (size_t)D * sizeof(float));
    }
    memset(t->dhs, 0, (size_t)(2 * M * D) * sizeof(float));
  }
  if (!sampled)
    rc = table_bkl(&s->table, &t->loss_x, dh_a, dh_b, hs_a, hs_b, t->ltgt, t->lgrp, M,
                   c->train_bkl_weight, coef);
  else if (M > 0)
    t->bad |= bkl_sampled_forward_backward(&t->loss_x, dh_a, dh_b, drows, hs_a, hs_b, t->cand,
                                           t->cand_ids, rows, M, C, D, c->train_bkl_weight, coef,
                                           t->s_scratch);
  if (rc != LR_OK) {
    model_set_keymask(&s->model, NULL);
    return rc;
  }
  // view a's rows then view b's: t->lrow[q] and t->dhs row q for q < 2M
  rc = backward_push(t, B2, 2 * M, dp, drows, t1);
  model_set_keymask(&s->model, NULL); // evaluation sees plain histories
  return rc;
}

// Injected failures for the fault tests: LINREC_INJECT_FAULT=RANK:STEP makes
// that rank fail at that step as a real error would;
// LINREC_INJECT_DIVERGE=STEP makes rank 0 see a gradient term out of range
// at that step, as a diverging run does.
static int injected_fault(int64_t step) {
  const char *f = getenv("LINREC_INJECT_FAULT");
  long r, s;
  if (f && sscanf(f, "%ld:%ld", &r, &s) == 2 && r == dist_rank() && s == step)
    return lr_error(LR_ERR_STATE, __FILE__, __LINE__,
                    "injected fault at step %lld (LINREC_INJECT_FAULT)", (long long)step);
  return LR_OK;
}

static uint32_t injected_divergence(int64_t step) {
  const char *f = getenv("LINREC_INJECT_DIVERGE");
  long s;
  return f && sscanf(f, "%ld", &s) == 1 && s == step && dist_rank() == 0;
}

// Every rank takes the examples of its own users, all ranks run the same
// number of micro-batches (the largest share decides).
int train_step(trainer *t, int64_t start, int64_t G, uint32_t epoch, int64_t step_no,
               double *loss_out) {
  const lr_config *c = t->c;
  lr_state *s = &t->st;
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
  for (int q = 0; q < P; q++)
    most = t->rank_cnt[q] > most ? t->rank_cnt[q] : most;
  int64_t n_micro = (most + t->Bm - 1) / t->Bm;
  int64_t M_total = examples_loss_rows(&t->ex, start, G);
  const float coef = (float)(1.0 / (double)M_total);
  state_zero_grad(s, t->full);
  t->loss_x = (lr_xs){0, 0, 0};
  t->bad = 0;
  for (int64_t k = 0; k < n_micro; k++) {
    int64_t off = k * t->Bm, nb = n_local - off;
    nb = nb < 0 ? 0 : nb > t->Bm ? t->Bm : nb;
    if (k == n_micro - 1) gradsync_arm(s->gsync); // the last micro-batch starts the buckets
    if (t->V > 1)
      LR_CALL(micro_step_views(t, t->local_ex + off, nb, coef, epoch));
    else
      LR_CALL(micro_step(t, t->local_ex + off, nb, coef, epoch));
  }
  double t0 = dist_wtime();
  uint32_t bad;
  LR_CALL(state_sync(s, t->full, &bad));
  // the loss and the out-of-range flags of every rank (exact sums)
  lr_xs red[2] = {t->loss_x, {bad | t->bad | injected_divergence(step_no), 0, 0}};
  LR_CALL(dist_allreduce_xs(red, 2));
  *loss_out = xsum_value(red[0]) / (double)M_total;
  double t1 = dist_wtime();
  t->ph_comm += t1 - t0;
  // Every rank sees the same flags and loss: all return the same status
  // (the run commits a pending checkpoint, then reports once).
  if (!xsum_is_zero(red[1]) || !isfinite(*loss_out))
    return lr_error(LR_ERR_DIVERGED, __FILE__, __LINE__,
                    "step %lld: the loss (%g) or a gradient is not finite or beyond 2^40 in one "
                    "example: the run diverges",
                    (long long)step_no, *loss_out);
  LR_CALL(state_clip(s, c->train_clip_norm));
  lr_adam_cfg ac = {(float)c->train_lr, (float)c->train_beta1, (float)c->train_beta2,
                    (float)c->train_adam_eps, (float)c->train_weight_decay};
  state_adam(s, ac, step_no, t->full);
  t->ph_opt += dist_wtime() - t1;
  return LR_OK;
}
