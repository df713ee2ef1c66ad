// loss.c: next-item losses over the tied item table (loss.h), in
// float for training and in double (_f64) for the gradient tests; the kernels
// are written once in loss_impl.inc over a `real` type and an accumulator
// type `racc`.
//
// Full-catalog cross-entropy, per loss row m with hidden state h_m and target t_m:
//   loss_m = log sum_{v >= 1} exp(h_m . E_v) - h_m . E_{t_m}
// in three passes over tiles of item rows (logits by GEMM, never M x I at
// once): the row max (which dist/ reduces over slices first, so every slice
// sums relative to the same reference), the sum of exponentials per fixed
// block of items, and the gradients G = softmax - onehot through two more
// products (per block for the hidden states, per example for the item rows).
// Item 0 (padding) is skipped, so it is never a candidate and its gradient
// row is never written.
//
// Sampled objectives over C candidates (target first, k = C-1 negatives):
//   softmax  loss_m = log sum_j exp(s_j) - s_0
//   bce      loss_m = -log sigmoid(s_0) - sum_{j>0} log(1 - sigmoid(s_j))
// with s_j = h_m . E_{cand_j}; a negative equal to the target is dropped.
// Nothing here allocates: callers pass the scratch.
#include "loss.h"

#include <math.h>      // exp, log, log1p and float twins, INFINITY
#include <stdatomic.h> // atomic_fetch_or: flags of a parallel loop
#include <string.h>    // memcpy, memset

#include "gemm.h"  // lr_sgemm, lr_dgemm
#include "lr.h"    // LR_ASSERT
#include "par.h"   // lr_par_for
#include "vmath.h" // lr_expv_neg, LR_VL, LR_HOT_CLONES

int64_t ce_block_items(int64_t n_rows) {
  int64_t b = 64;
  while (b < 1024 && 2 * b * 16 <= n_rows) b *= 2;
  return b;
}

int64_t ce_tile_items(int64_t tile, int64_t n_rows) {
  const int64_t B = ce_block_items(n_rows);
  return tile < B ? B : (tile + B - 1) / B * B;
}

int64_t ce_chunk_end(const int32_t *grp, int64_t m0, int64_t M, int64_t rchunk) {
  LR_ASSERT(m0 < M && rchunk >= 1);
  if (!grp) return M - m0 < rchunk ? M : m0 + rchunk;
  int64_t end = m0; // rows m0..end-1 are whole examples
  for (int64_t m = m0 + 1; m <= M; m++) {
    if (m < M && grp[m] == grp[m - 1]) continue; // row m continues the example
    if (m - m0 > rchunk) break;
    end = m;
  }
  LR_ASSERT(end > m0); // an example longer than rchunk
  return end;
}

static size_t round16(size_t n) { return (n + 15) / 16 * 16; }

size_t ce_scratch_elems(int64_t rchunk, int64_t tile, int64_t D) {
  LR_ASSERT(rchunk >= 1 && tile >= 1 && D >= 1);
  const size_t st = (size_t)(rchunk > tile ? rchunk : tile) * (size_t)D;
  return round16((size_t)rchunk * (size_t)tile + st);
}

size_t bkl_scratch_elems(int64_t rchunk, int64_t tile, int64_t D) {
  return ce_scratch_elems(2 * rchunk, tile, D);
}

size_t ce_fb_scratch_elems(int64_t M, int64_t tile, int64_t D, int64_t n_rows) {
  // the passes' scratch, 3 per-row statistics, and M + (M + n_rows) D
  // accumulators of sizeof(lr_xs) / sizeof(float) elements each (more than
  // the one double each the _f64 twin needs)
  tile = ce_tile_items(tile, n_rows);
  const size_t acc = (size_t)M + ((size_t)M + (size_t)n_rows) * (size_t)D;
  return ce_scratch_elems(M > 0 ? M : 1, tile, D) + round16(3 * (size_t)M) +
         acc * (sizeof(lr_xs) / sizeof(float));
}

// ---- float rows of the cross-entropy, LR_VL lanes at a time ------------------------
// The float path's exponentials are vmath.h's (relative error < 3e-7; every
// argument here is <= 0), its sums of them are kept in double lanes.

typedef double vd8_ __attribute__((vector_size(64)));

// max over s (n >= 1). Exact (a max has no rounding).
LR_HOT_CLONES static float row_max(const float *s, int64_t n) {
  float mx = s[0];
  int64_t j = 0;
  if (n >= LR_VL) {
    lr_vf m;
    memcpy(&m, s, sizeof m);
    for (j = LR_VL; j + LR_VL <= n; j += LR_VL) {
      lr_vf x;
      memcpy(&x, s + j, sizeof x);
      lr_vi gt = lr_vlt(m, x); // lanes: -1 where x > m
      m = (lr_vf)(((lr_vi)x & gt) | ((lr_vi)m & ~gt));
    }
    for (int k = 0; k < LR_VL; k++) mx = m[k] > mx ? m[k] : mx;
  }
  for (; j < n; j++) mx = s[j] > mx ? s[j] : mx;
  return mx;
}

// sum_j exp(s_j - mx) for s_j <= mx, in double.
LR_HOT_CLONES static double row_sumexp(const float *s, int64_t n, float mx) {
  vd8_ a = {0}, b = {0};
  int64_t j = 0;
  for (; j + LR_VL <= n; j += LR_VL) {
    lr_vf x;
    memcpy(&x, s + j, sizeof x);
    lr_vf e = lr_expv_neg(x - mx);
    a += __builtin_convertvector(__builtin_shufflevector(e, e, 0, 1, 2, 3, 4, 5, 6, 7), vd8_);
    b += __builtin_convertvector(__builtin_shufflevector(e, e, 8, 9, 10, 11, 12, 13, 14, 15), vd8_);
  }
  double acc = 0;
  for (int k = 0; k < 8; k++) acc += a[k] + b[k];
  if (j < n) {
    lr_vf x = {0};
    memcpy(&x, s + j, (size_t)(n - j) * sizeof(float));
    lr_vf e = lr_expv_neg(x - mx);
    for (int64_t k = 0; k < n - j; k++) acc += (double)e[k];
  }
  return acc;
}

// s_j = coef * exp(s_j - l) in place, for s_j <= l.
LR_HOT_CLONES static void row_softmax_scaled(float *s, int64_t n, float l, float coef) {
  int64_t j = 0;
  for (; j + LR_VL <= n; j += LR_VL) {
    lr_vf x;
    memcpy(&x, s + j, sizeof x);
    x = coef * lr_expv_neg(x - l);
    memcpy(s + j, &x, sizeof x);
  }
  if (j < n) {
    lr_vf x = {0};
    memcpy(&x, s + j, (size_t)(n - j) * sizeof(float));
    x = coef * lr_expv_neg(x - l);
    memcpy(s + j, &x, (size_t)(n - j) * sizeof(float));
  }
}

// ---- double rows (the _f64 twins) ------------------------------------------------------

static double row_max_f64(const double *s, int64_t n) {
  double mx = s[0];
  for (int64_t j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
  return mx;
}

static double row_sumexp_f64(const double *s, int64_t n, double mx) {
  double acc = 0;
  for (int64_t j = 0; j < n; j++) acc += exp(s[j] - mx);
  return acc;
}

static void row_softmax_scaled_f64(double *s, int64_t n, double l, double coef) {
  for (int64_t j = 0; j < n; j++) s[j] = coef * exp(s[j] - l);
}

// ---- accumulators -----------------------------------------------------------------------
// float: exact (xsum.h); double: plain sums, flags always 0.

static uint32_t acc_add_f64(double *acc, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) acc[i] += x[i];
  return 0;
}

static uint32_t acc_add_scaled_f64(double *acc, const double *x, double s, int64_t n) {
  for (int64_t i = 0; i < n; i++) acc[i] += s * x[i];
  return 0;
}

static uint32_t acc_add_outer_rows_f64(double *acc, const double *G, int64_t ldg,
                                       const double *H, int64_t ldh, int64_t R, int64_t n,
                                       int64_t D) {
  for (int64_t v = 0; v < n; v++)
    for (int64_t d = 0; d < D; d++)
      for (int64_t r = 0; r < R; r++) acc[v * D + d] += G[r * ldg + v] * H[r * ldh + d];
  return 0;
}

static uint32_t acc_add_d_f64(double *acc, double x) {
  *acc += x;
  return 0;
}

// One-row examples whose item-gradient terms go through the exact limbs
// together (ce_drows_blocks; any count gives the same sums).
#define CE_OUTER_ROWS 32

// The include order below is the instantiation order: keep it unsorted.
// clang-format off
#define LR_F64 0
#define racc lr_xs
#define ACC_ADD xsum_add
#define ACC_ADD_SCALED xsum_add_scaled
#define ACC_ADD_OUTER_ROWS xsum_add_outer_rows
#define ACC_ADD_D xsum_add_d
#define ACC_VALUE xsum_value
#include "real_begin.inc"
#include "loss_impl.inc"
#include "real_end.inc"
#undef LR_F64
#undef racc
#undef ACC_ADD
#undef ACC_ADD_SCALED
#undef ACC_ADD_OUTER_ROWS
#undef ACC_ADD_D
#undef ACC_VALUE

#define LR_F64 1
#define racc double
#define ACC_ADD acc_add_f64
#define ACC_ADD_SCALED acc_add_scaled_f64
#define ACC_ADD_OUTER_ROWS acc_add_outer_rows_f64
#define ACC_ADD_D acc_add_d_f64
#define ACC_VALUE(a) (a)
#include "real_begin.inc"
#include "loss_impl.inc"
#include "real_end.inc"
#undef LR_F64
#undef racc
#undef ACC_ADD
#undef ACC_ADD_SCALED
#undef ACC_ADD_OUTER_ROWS
#undef ACC_ADD_D
#undef ACC_VALUE
// clang-format on
