// vocab_ce.c: the vocab-parallel cross-entropy of vocab_ce.h, over the
// per-slice kernels of core/loss.h (ce_stats, ce_backward).
#include "vocab_ce.h"

#include <math.h>   // expf, logf
#include <string.h> // memcpy, memset

#include "loss.h"  // ce_stats, ce_backward
#include "lr.h"    // LR_CALL, LR_CHECK, lr_calloc
#include "shard.h" // shard_range

// ---- set-up ---------------------------------------------------------------------------

void vocab_ce_free(vocab_ce_plan *p) {
  void *bufs[] = {p->info,    p->cnt,  p->dsp, p->cnt_f, p->dsp_f,    p->hs_all, p->dhs_all,
                  p->tgt_all, p->rmax, p->lse, p->sums,  p->dhs_mine, p->scratch};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(p, 0, sizeof *p);
}

int vocab_ce_init(vocab_ce_plan *p, int64_t n_rows, int64_t D, int64_t max_rows, int64_t tile,
                  int64_t tile_rows) {
  memset(p, 0, sizeof *p);
  LR_CHECK(n_rows >= 2 && D >= 1 && max_rows >= 0 && tile >= 1 && tile_rows >= 0, LR_ERR_ARG,
           "vocab_ce_init: bad sizes: %lld rows, D %lld, max_rows %lld, tile %lld x %lld",
           (long long)n_rows, (long long)D, (long long)max_rows, (long long)tile,
           (long long)tile_rows);
  const int64_t same[5] = {n_rows, D, max_rows, tile, tile_rows};
  LR_CALL(dist_check_same_i64(same, 5, "vocab_ce_init (n_rows, D, max_rows, tile, tile_rows)"));
  p->P = dist_size(), p->rank = dist_rank();
  p->n_rows = n_rows, p->D = D, p->max_rows = max_rows;
  const lr_shard s = shard_range(n_rows, p->rank, p->P);
  p->lo = s.offset, p->hi = s.offset + s.count;
  const size_t P = (size_t)p->P, Ma = P * (size_t)max_rows, Dz = (size_t)D;
  p->tile = tile < n_rows ? tile : n_rows;
  p->tile_rows = tile_rows == 0 || tile_rows > (int64_t)Ma ? (int64_t)Ma : tile_rows;
#define ALLOC(ptr, n, what)                                                                        \
  if (!((ptr) = lr_calloc((n), sizeof *(ptr), what))) goto nomem;
  ALLOC(p->info, 3 * P, "vocab_ce row counts");
  ALLOC(p->cnt, P, "vocab_ce row counts");
  ALLOC(p->dsp, P, "vocab_ce row counts");
  ALLOC(p->cnt_f, P, "vocab_ce row counts");
  ALLOC(p->dsp_f, P, "vocab_ce row counts");
  ALLOC(p->hs_all, Ma * Dz, "vocab_ce gathered hidden states");
  ALLOC(p->dhs_all, Ma * Dz, "vocab_ce gathered hidden gradients");
  ALLOC(p->tgt_all, Ma, "vocab_ce gathered targets");
  ALLOC(p->rmax, Ma, "vocab_ce row max");
  ALLOC(p->lse, Ma, "vocab_ce log-sum-exp");
  ALLOC(p->sums, 2 * Ma, "vocab_ce row sums");
  ALLOC(p->dhs_mine, (size_t)max_rows * Dz, "vocab_ce hidden gradients");
  ALLOC(p->scratch, ce_scratch_elems(p->tile_rows, p->tile), "vocab_ce logits tile");
#undef ALLOC
  return LR_OK;
nomem:
  vocab_ce_free(p);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

// ---- one call -------------------------------------------------------------------------

// Step 1: exchange (M, M_total, wants-gradient); fills cnt/dsp and *M_all.
// A rank whose own arguments are bad sends M = -1 after recording why.
static int exchange_counts(vocab_ce_plan *p, int64_t *M_all, const int32_t *tgt, int64_t M,
                           int64_t M_total, int want_grad) {
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
  const int64_t mine[3] = {bad == LR_OK ? M : -1, M_total, want_grad};
  LR_CALL(dist_allgather(p->info, mine, 3, LR_DTYPE_I64));
  int64_t all = 0;
  for (int q = 0; q < P; q++) {
    const int64_t *in = p->info + 3 * q;
    if (in[0] < 0) {
      if (bad != LR_OK) return bad; // our own message is recorded
      return lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                      "[rank %d/%d] vocab_ce: rank %d passed bad loss rows", me, P, q);
    }
    LR_CHECK(in[1] == M_total && in[2] == want_grad, LR_ERR_ARG,
             "[rank %d/%d] vocab_ce: rank %d passed M_total %lld / dhs %s, this rank %lld / %s", me,
             P, q, (long long)in[1], in[2] ? "set" : "NULL", (long long)M_total,
             want_grad ? "set" : "NULL");
    p->cnt[q] = in[0], p->dsp[q] = all, all += in[0];
    p->cnt_f[q] = p->cnt[q] * p->D, p->dsp_f[q] = p->dsp[q] * p->D;
  }
  LR_CHECK(M_total >= all, LR_ERR_ARG,
           "[rank %d/%d] vocab_ce: M_total %lld below the %lld loss rows of this call", me, P,
           (long long)M_total, (long long)all);
  *M_all = all;
  return LR_OK;
}

// Steps 3-4: lse (M_all) of every gathered row over the whole catalog and the
// sum of (lse - target logit).
static int global_lse(vocab_ce_plan *p, double *loss_sum, const float *rows, int64_t Ma) {
  const int64_t D = p->D, tr = p->tile_rows;
  float *rsum = p->sums, *tlogit = p->sums + Ma;
  memset(tlogit, 0, (size_t)Ma * sizeof(float)); // only the target's owner writes its logit
  for (int64_t b = 0; b < Ma; b += tr) {
    const int64_t mb = Ma - b < tr ? Ma - b : tr;
    ce_stats(p->rmax + b, rsum + b, tlogit + b, p->hs_all + (size_t)b * (size_t)D, p->tgt_all + b,
             rows, p->lo, p->hi, mb, D, p->tile, p->scratch);
  }
  memcpy(p->lse, p->rmax, (size_t)Ma * sizeof(float));
  LR_CALL(dist_allreduce_max_f(p->lse, Ma)); // lse holds the global max for now
  for (int64_t m = 0; m < Ma; m++)           // an empty slice (rsum 0, rmax -inf) adds 0
    rsum[m] = rsum[m] > 0 ? rsum[m] * expf(p->rmax[m] - p->lse[m]) : 0.0f;
  LR_CALL(dist_allreduce_sum_f(p->sums, 2 * Ma));
  double acc = 0;
  for (int64_t m = 0; m < Ma; m++) {
    p->lse[m] += logf(rsum[m]);
    acc += (double)p->lse[m] - (double)tlogit[m];
  }
  *loss_sum = acc;
  return LR_OK;
}

int vocab_ce_forward_backward(vocab_ce_plan *p, double *loss, float *dhs, float *drows,
                              const float *hs, const int32_t *tgt, const float *rows, int64_t M,
                              int64_t M_total, float scale) {
  const double t0 = dist_wtime();
  const int P = p->P, want_grad = dhs != NULL;
  const int64_t D = p->D;
  *loss = 0;
  int64_t Ma = 0;
  LR_CALL(exchange_counts(p, &Ma, tgt, M, M_total, want_grad));
  dist_stats *st = &p->stats;
  st->calls++;
  st->bytes_sent += 24 * (int64_t)(P - 1);
  st->bytes_recv += 24 * (int64_t)(P - 1);
  if (Ma == 0) {
    st->seconds += dist_wtime() - t0;
    return LR_OK;
  }
  // 2. gather the loss rows
  LR_CALL(dist_allgatherv(p->hs_all, p->cnt_f, p->dsp_f, hs, M * D, LR_DTYPE_F32));
  LR_CALL(dist_allgatherv(p->tgt_all, p->cnt, p->dsp, tgt, M, LR_DTYPE_I32));
  // 3-4. statistics over own rows, combined across ranks
  double loss_sum = 0;
  LR_CALL(global_lse(p, &loss_sum, rows, Ma));
  // 5. gradients of own rows, and the partial dhs of every gathered row
  if (want_grad) {
    const int64_t tr = p->tile_rows;
    memset(p->dhs_all, 0, (size_t)Ma * (size_t)D * sizeof(float));
    for (int64_t b = 0; b < Ma; b += tr) {
      const int64_t mb = Ma - b < tr ? Ma - b : tr;
      ce_backward(p->dhs_all + (size_t)b * (size_t)D, drows, p->hs_all + (size_t)b * (size_t)D,
                  p->tgt_all + b, rows, p->lse + b, p->lo, p->hi, mb, M_total, D, p->tile, scale,
                  p->scratch, Ma <= tr); // one block: scratch holds its logits from global_lse
    }
    LR_CALL(dist_reduce_scatter_sum_f(p->dhs_mine, p->dhs_all, p->cnt_f));
    for (int64_t i = 0; i < M * D; i++)
      dhs[i] += p->dhs_mine[i];
  }
  *loss = loss_sum / (double)M_total;
  // accounting (own block excluded; allreduce as 2n(P-1)/P each way)
  const int64_t row_b = 4 * D + 4, others = Ma - M;
  const int64_t ar = P > 1 ? 2 * (P - 1) * (4 * Ma + 8 * Ma) / P : 0;
  st->bytes_sent += (int64_t)(P - 1) * M * row_b + ar;
  st->bytes_recv += others * row_b + ar;
  if (want_grad) {
    st->bytes_sent += 4 * D * others;
    st->bytes_recv += 4 * D * M * (int64_t)(P - 1);
  }
  st->seconds += dist_wtime() - t0;
  return LR_OK;
}
