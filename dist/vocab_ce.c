// vocab_ce.c: the vocab-parallel cross-entropy of vocab_ce.h, over the
// per-slice passes of core/loss.h (ce_rowmax, ce_sumexp, ce_backward).
#include "vocab_ce.h"

#include <string.h> // memcpy, memset

#include "loss.h"  // ce_rowmax, ce_sumexp, ce_lse, ce_backward
#include "lr.h"    // LR_CALL, LR_CHECK, lr_calloc
#include "shard.h" // shard_items

// ---- set-up ---------------------------------------------------------------------------

void vocab_ce_free(vocab_ce_plan *p) {
  void *bufs[] = {p->info,    p->cnt,     p->dsp, p->cnt_f,  p->dsp_f, p->cnt_x,
                  p->hs_all,  p->dhs_all, p->tgt_all, p->grp_all, p->gid, p->gmax,
                  p->lse,     p->tlogit,  p->sx,  p->dhs_mine, p->red, p->scratch,
                  p->sx4,     p->st4,     p->tl2, p->bkl_scratch, p->red4};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(p, 0, sizeof *p);
}

int vocab_ce_init(vocab_ce_plan *p, int64_t n_rows, int64_t D, int64_t max_rows, int64_t tile,
                  int64_t rchunk) {
  memset(p, 0, sizeof *p);
  LR_CHECK(n_rows >= 2 && D >= 1 && max_rows >= 0 && tile >= 1 && rchunk >= 1, LR_ERR_ARG,
           "vocab_ce_init: bad sizes: %lld rows, D %lld, max_rows %lld, tile %lld x %lld",
           (long long)n_rows, (long long)D, (long long)max_rows, (long long)tile,
           (long long)rchunk);
  const int64_t same[5] = {n_rows, D, max_rows, tile, rchunk};
  LR_CALL(dist_check_same_i64(same, 5, "vocab_ce_init (n_rows, D, max_rows, tile, rchunk)"));
  p->P = dist_size(), p->rank = dist_rank();
  p->n_rows = n_rows, p->D = D, p->max_rows = max_rows;
  const lr_shard s = shard_items(n_rows, p->rank, p->P);
  p->lo = s.offset, p->hi = s.offset + s.count;
  const size_t P = (size_t)p->P, Ma = P * (size_t)max_rows, Dz = (size_t)D;
  p->tile = ce_tile_items(tile < n_rows ? tile : n_rows, n_rows);
  p->rchunk = rchunk;
#define ALLOC(ptr, n, what)                                                                        \
  if (!((ptr) = lr_calloc((n), sizeof *(ptr), what))) goto nomem;
  ALLOC(p->info, 3 * P, "vocab_ce row counts");
  ALLOC(p->cnt, P, "vocab_ce row counts");
  ALLOC(p->dsp, P, "vocab_ce row counts");
  ALLOC(p->cnt_f, P, "vocab_ce row counts");
  ALLOC(p->dsp_f, P, "vocab_ce row counts");
  ALLOC(p->cnt_x, P, "vocab_ce row counts");
  ALLOC(p->hs_all, Ma * Dz, "vocab_ce gathered hidden states");
  ALLOC(p->dhs_all, Ma * Dz, "vocab_ce gathered hidden gradients");
  ALLOC(p->tgt_all, Ma, "vocab_ce gathered targets");
  ALLOC(p->grp_all, Ma, "vocab_ce gathered examples");
  ALLOC(p->gid, Ma, "vocab_ce example ids");
  ALLOC(p->gmax, Ma, "vocab_ce row max");
  ALLOC(p->lse, Ma, "vocab_ce log-sum-exp");
  ALLOC(p->tlogit, Ma, "vocab_ce target logits");
  ALLOC(p->sx, Ma, "vocab_ce sums of exponentials");
  ALLOC(p->dhs_mine, (size_t)max_rows * Dz, "vocab_ce hidden gradients");
  ALLOC(p->red, (LR_XS_LIMBS + 1) * (size_t)rchunk, "vocab_ce row statistics");
  ALLOC(p->scratch, ce_scratch_elems(rchunk, p->tile, D), "vocab_ce logits tile");
#undef ALLOC
  return LR_OK;
nomem:
  vocab_ce_free(p);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

// ---- one call -------------------------------------------------------------------------

static int64_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (int64_t)u;
}

// Step 1: exchange (M, wants-gradient, coef); fills cnt/dsp and *M_all. A
// rank whose own arguments are bad sends M = -1 after recording why.
static int exchange_counts(vocab_ce_plan *p, int64_t *M_all, const int32_t *tgt, int64_t M,
                           int want_grad, float coef) {
  const int P = p->P, me = p->rank;
  int bad = LR_OK;
  if (M < 0 || M > p->max_rows)
    bad = lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                   "[rank %d/%d] vocab_ce: %lld loss rows outside the plan's [0, %lld]", me, P,
                   (long long)M, (long long)p->max_rows);
  for (int64_t m = 0; bad == LR_OK && m < M; m++)
    if (tgt[m] < 1 || tgt[m] >= p->n_rows)
      bad = lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                     "[rank %d/%d] vocab_ce: target[%lld] = %d outside [1, %lld)", me, P,
                     (long long)m, tgt[m], (long long)p->n_rows);
  const int64_t mine[3] = {bad == LR_OK ? M : -1, want_grad, float_bits(coef)};
  LR_CALL(dist_allgather(p->info, mine, 3, LR_DTYPE_I64));
  int64_t all = 0;
  for (int q = 0; q < P; q++) {
    const int64_t *in = p->info + 3 * q;
    if (in[0] < 0) {
      if (bad != LR_OK) return bad; // our own message is recorded
      return lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                      "[rank %d/%d] vocab_ce: rank %d passed bad loss rows", me, P, q);
    }
    LR_CHECK(in[1] == want_grad && in[2] == mine[2], LR_ERR_ARG,
             "[rank %d/%d] vocab_ce: rank %d passed dhs %s / coef bits %llx, this rank %s / %llx",
             me, P, q, in[1] ? "set" : "NULL", (unsigned long long)in[2],
             want_grad ? "set" : "NULL", (unsigned long long)mine[2]);
    p->cnt[q] = in[0], p->dsp[q] = all, all += in[0];
    p->cnt_f[q] = p->cnt[q] * p->D, p->dsp_f[q] = p->dsp[q] * p->D;
    p->cnt_x[q] = p->cnt[q] * LR_XS_LIMBS * p->D;
  }
  *M_all = all;
  return LR_OK;
}

// Example ids over the gathered rows: a new id at the first row of every
// rank's block and wherever grp changes.
static void example_ids(vocab_ce_plan *p) {
  int32_t id = 0;
  for (int q = 0, r = 0; q < p->P; q++)
    for (int64_t k = 0; k < p->cnt[q]; k++, r++) {
      if (r > 0 && (k == 0 || p->grp_all[r] != p->grp_all[r - 1])) id++;
      p->gid[r] = id;
    }
}

int vocab_ce_forward_backward(vocab_ce_plan *p, lr_xs *loss, uint32_t *bad, float *dhs,
                              lr_xs *drows, const float *hs, const int32_t *tgt,
                              const int32_t *grp, const float *rows, int64_t M, float coef) {
  const double t0 = dist_wtime();
  const int P = p->P, me = p->rank, want_grad = dhs != NULL;
  const int64_t D = p->D, n_rows = p->n_rows;
  int64_t Ma = 0;
  LR_CALL(exchange_counts(p, &Ma, tgt, M, want_grad, coef));
  dist_stats *st = &p->stats;
  st->calls++;
  st->bytes_sent += 24 * (int64_t)(P - 1);
  st->bytes_recv += 24 * (int64_t)(P - 1);
  if (Ma == 0) {
    st->seconds += dist_wtime() - t0;
    return LR_OK;
  }
  // 2. gather the loss rows (grp NULL: every row its own example)
  LR_CALL(dist_allgatherv(p->hs_all, p->cnt_f, p->dsp_f, hs, M * D, LR_DTYPE_F32));
  LR_CALL(dist_allgatherv(p->tgt_all, p->cnt, p->dsp, tgt, M, LR_DTYPE_I32));
  for (int64_t m = 0; m < M; m++) p->gid[m] = grp ? grp[m] : (int32_t)m; // gid: a send buffer here
  LR_CALL(dist_allgatherv(p->grp_all, p->cnt, p->dsp, p->gid, M, LR_DTYPE_I32));
  example_ids(p);
  // 3-5 chunk by chunk (whole examples, at most rchunk rows), so a chunk's
  // logits serve all three passes when the slice is one tile
  if (want_grad) memset(p->dhs_all, 0, (size_t)Ma * (size_t)D * sizeof *p->dhs_all);
  for (int64_t m0 = 0, m1; m0 < Ma; m0 = m1) {
    m1 = ce_chunk_end(p->gid, m0, Ma, p->rchunk);
    const int64_t mc = m1 - m0;
    const float *hc = p->hs_all + (size_t)m0 * (size_t)D;
    // 3. the row max over the whole catalog
    ce_rowmax(p->gmax + m0, hc, rows, p->lo, p->hi, n_rows, mc, D, p->tile, p->rchunk,
              p->scratch);
    LR_CALL(dist_allreduce_max_f(p->gmax + m0, mc));
    // 4. sums of exponentials and target logits (only the target's owner
    // writes one), summed over ranks exactly: the target logit's bits ride
    // as an int64 next to the sums' limbs (one nonzero term: exact)
    memset(p->sx + m0, 0, (size_t)mc * sizeof *p->sx);
    memset(p->tlogit + m0, 0, (size_t)mc * sizeof *p->tlogit);
    *bad |= ce_sumexp(p->sx + m0, p->tlogit + m0, hc, p->tgt_all + m0, rows, p->gmax + m0, p->lo,
                      p->hi, n_rows, mc, D, p->tile, p->rchunk, p->scratch, 1);
    int64_t *red = p->red, *bits = red + LR_XS_LIMBS * mc;
    memcpy(red, p->sx + m0, (size_t)mc * sizeof *p->sx);
    for (int64_t i = 0; i < mc; i++) bits[i] = float_bits(p->tlogit[m0 + i]);
    LR_CALL(dist_allreduce_sum_i64(red, (LR_XS_LIMBS + 1) * mc));
    memcpy(p->sx + m0, red, (size_t)mc * sizeof *p->sx);
    for (int64_t i = 0; i < mc; i++) {
      const uint32_t u = (uint32_t)bits[i];
      memcpy(&p->tlogit[m0 + i], &u, sizeof u);
    }
    ce_lse(p->lse + m0, p->gmax + m0, p->sx + m0, mc);
    // 5. gradients of own item rows and the partial dhs of the chunk's rows
    if (want_grad)
      *bad |= ce_backward(p->dhs_all + (size_t)m0 * (size_t)D, drows, hc, p->tgt_all + m0,
                          p->gid + m0, rows, p->lse + m0, p->lo, p->hi, n_rows, mc, D, p->tile,
                          p->rchunk, coef, p->scratch, 1);
  }
  for (int64_t m = p->dsp[me]; m < p->dsp[me] + M; m++)
    *bad |= xsum_add_d(loss, ((double)p->lse[m] - (double)p->tlogit[m]));
  if (want_grad) {
    LR_CALL(dist_reduce_scatter_sum_i64((int64_t *)(void *)p->dhs_mine,
                                        (const int64_t *)(const void *)p->dhs_all, p->cnt_x));
    for (int64_t i = 0; i < M * D; i++) dhs[i] += (float)xsum_value(p->dhs_mine[i]);
  }
  // accounting (own block excluded; allreduce as 2n(P-1)/P each way)
  const int64_t row_b = 4 * D + 8, others = Ma - M;
  const int64_t ar = P > 1 ? 2 * (P - 1) * (4 * Ma + (8 * LR_XS_LIMBS + 8) * Ma) / P : 0;
  st->bytes_sent += (int64_t)(P - 1) * M * row_b + ar;
  st->bytes_recv += others * row_b + ar;
  if (want_grad) {
    st->bytes_sent += (int64_t)sizeof(lr_xs) * D * others;
    st->bytes_recv += (int64_t)sizeof(lr_xs) * D * M * (int64_t)(P - 1);
  }
  st->seconds += dist_wtime() - t0;
  return LR_OK;
}

// ---- Blin's two-view loss -----------------------------------------------------------

int vocab_ce_enable_bkl(vocab_ce_plan *p) {
  if (p->sx4) return LR_OK;
  const size_t pairs = (size_t)p->P * (size_t)p->max_rows / 2 + 1;
  LR_CHECK((p->sx4 = lr_calloc(4 * pairs, sizeof *p->sx4, "vocab_bkl sums")) &&
               (p->st4 = lr_calloc(4 * pairs, sizeof *p->st4, "vocab_bkl statistics")) &&
               (p->tl2 = lr_calloc(2 * pairs, sizeof *p->tl2, "vocab_bkl target logits")) &&
               (p->red4 = lr_calloc((4 * LR_XS_LIMBS + 2) * (size_t)p->rchunk, sizeof *p->red4,
                                    "vocab_bkl reduction")) &&
               (p->bkl_scratch = lr_calloc(bkl_scratch_elems(p->rchunk, p->tile, p->D),
                                           sizeof(float), "vocab_bkl logits tiles")),
           LR_ERR_NOMEM, "vocab_bkl: out of memory");
  return LR_OK;
}

int vocab_bkl_forward_backward(vocab_ce_plan *p, lr_xs *loss, uint32_t *bad, float *dhs_a,
                               float *dhs_b, lr_xs *drows, const float *hs_a, const float *hs_b,
                               const int32_t *tgt, const int32_t *grp, const float *rows,
                               int64_t M, double lambda, float coef) {
  const double t0 = dist_wtime();
  const int P = p->P, me = p->rank, want_grad = dhs_a != NULL;
  const int64_t D = p->D, n_rows = p->n_rows, half = P * p->max_rows / 2;
  LR_ASSERT(p->sx4 && (dhs_a != NULL) == (dhs_b != NULL));
  int64_t Ma = 0;
  LR_CALL(exchange_counts(p, &Ma, tgt, 2 * M <= p->max_rows ? M : -1, want_grad, coef));
  dist_stats *st = &p->stats;
  st->calls++;
  if (Ma == 0) {
    st->seconds += dist_wtime() - t0;
    return LR_OK;
  }
  float *ha = p->hs_all, *hb = p->hs_all + (size_t)half * (size_t)D;
  lr_xs *da = p->dhs_all, *db = p->dhs_all + (size_t)half * (size_t)D;
  LR_CALL(dist_allgatherv(ha, p->cnt_f, p->dsp_f, hs_a, M * D, LR_DTYPE_F32));
  LR_CALL(dist_allgatherv(hb, p->cnt_f, p->dsp_f, hs_b, M * D, LR_DTYPE_F32));
  LR_CALL(dist_allgatherv(p->tgt_all, p->cnt, p->dsp, tgt, M, LR_DTYPE_I32));
  for (int64_t m = 0; m < M; m++) p->gid[m] = grp ? grp[m] : (int32_t)m;
  LR_CALL(dist_allgatherv(p->grp_all, p->cnt, p->dsp, p->gid, M, LR_DTYPE_I32));
  example_ids(p);
  if (want_grad) memset(p->dhs_all, 0, (size_t)(2 * half) * (size_t)D * sizeof *p->dhs_all);
  for (int64_t m0 = 0, m1; m0 < Ma; m0 = m1) {
    m1 = ce_chunk_end(p->gid, m0, Ma, p->rchunk);
    const int64_t mc = m1 - m0;
    const float *ca = ha + (size_t)m0 * (size_t)D, *cb = hb + (size_t)m0 * (size_t)D;
    float *gm = p->gmax + 2 * m0, *g1 = p->lse; // lse: a free row of mc floats here
    // 3. the row max of each view over the whole catalog
    for (int v = 0; v < 2; v++) {
      ce_rowmax(g1, v ? cb : ca, rows, p->lo, p->hi, n_rows, mc, D, p->tile, p->rchunk,
                p->bkl_scratch);
      for (int64_t i = 0; i < mc; i++) gm[2 * i + v] = g1[i];
    }
    LR_CALL(dist_allreduce_max_f(gm, 2 * mc));
    // 4. Sa, Sb, Ta, Tb and both target logits, one exact allreduce
    lr_xs *sx = p->sx4 + 4 * m0;
    float *tl = p->tl2 + 2 * m0;
    memset(sx, 0, (size_t)(4 * mc) * sizeof *sx);
    memset(tl, 0, (size_t)(2 * mc) * sizeof *tl);
    *bad |= bkl_sumexp(sx, tl, ca, cb, p->tgt_all + m0, rows, gm, p->lo, p->hi, n_rows, mc, D,
                       p->tile, p->rchunk, p->bkl_scratch);
    int64_t *red = p->red4, *bits = red + 4 * LR_XS_LIMBS * mc;
    memcpy(red, sx, (size_t)(4 * mc) * sizeof *sx);
    for (int64_t i = 0; i < 2 * mc; i++) bits[i] = float_bits(tl[i]);
    LR_CALL(dist_allreduce_sum_i64(red, (4 * LR_XS_LIMBS + 2) * mc));
    memcpy(sx, red, (size_t)(4 * mc) * sizeof *sx);
    for (int64_t i = 0; i < 2 * mc; i++) {
      const uint32_t u = (uint32_t)bits[i];
      memcpy(&tl[i], &u, sizeof u);
    }
    bkl_stats(p->st4 + 4 * m0, gm, sx, mc);
    // 5. gradients of own item rows, partial dhs of both views
    if (want_grad)
      *bad |= bkl_backward(da + (size_t)m0 * (size_t)D, db + (size_t)m0 * (size_t)D, drows, ca, cb,
                           p->tgt_all + m0, p->gid + m0, rows, p->st4 + 4 * m0, lambda, p->lo,
                           p->hi, n_rows, mc, D, p->tile, p->rchunk, coef, p->bkl_scratch);
  }
  for (int64_t m = p->dsp[me]; m < p->dsp[me] + M; m++)
    *bad |= xsum_add_d(loss, bkl_row_loss(p->st4 + 4 * m, p->tl2 + 2 * m, lambda, NULL, NULL));
  if (want_grad)
    for (int v = 0; v < 2; v++) {
      LR_CALL(dist_reduce_scatter_sum_i64((int64_t *)(void *)p->dhs_mine,
                                          (const int64_t *)(const void *)(v ? db : da), p->cnt_x));
      float *dh = v ? dhs_b : dhs_a;
      for (int64_t i = 0; i < M * D; i++) dh[i] += (float)xsum_value(p->dhs_mine[i]);
    }
  st->seconds += dist_wtime() - t0;
  return LR_OK;
}
