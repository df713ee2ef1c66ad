// loss.c: next-item losses over the tied item table (loss.h, DESIGN §1), in
// float for training and in double (_f64) for the gradient tests; the kernels
// are written once in loss_impl.inc over a `real` type.
//
// Full-catalog cross-entropy, per loss row m with hidden state h_m and target t_m:
//   loss_m = log sum_{v >= 1} exp(h_m . E_v) - h_m . E_{t_m}
// computed in two passes over tiles of item rows (logits by GEMM, never M x I
// at once): ce_stats keeps an online max / sum-exp per row, ce_backward
// recomputes each tile's logits and applies G = softmax - onehot through two
// more GEMMs. Item 0 (padding) is skipped, so it is never a candidate and its
// gradient row is never written.
//
// Sampled objectives over C candidates (target first, k = C-1 negatives):
//   softmax  loss_m = log sum_j exp(s_j) - s_0
//   bce      loss_m = -log sigmoid(s_0) - sum_{j>0} log(1 - sigmoid(s_j))
// with s_j = h_m . E_{cand_j}; a negative equal to the target is dropped.
// Every loss is a mean over rows times `scale`; gradients accumulate (+=).
// Nothing here allocates: callers pass the scratch.
#include "loss.h"

#include <math.h>   // exp, log, log1p and float twins, INFINITY
#include <string.h> // memcpy

#include "gemm.h"  // lr_sgemm, lr_dgemm
#include "lr.h"    // LR_ASSERT
#include "par.h"   // lr_par_for
#include "vmath.h" // lr_expv_neg, LR_VL, LR_HOT_CLONES

size_t ce_scratch_elems(int64_t M, int64_t tile) {
  LR_ASSERT(M >= 0 && tile >= 1);
  return (size_t)M * (size_t)tile + 3 * (size_t)M;
}

// ---- float rows of the cross-entropy, LR_VL lanes at a time ------------------------
// The float path's exponentials are vmath.h's (relative error < 3e-7; every
// argument here is <= 0), its sums of them are kept in double lanes.

typedef double vd8_ __attribute__((vector_size(64)));

// max over s (n >= 1). Exact (a max has no rounding).
LR_HOT_CLONES static float row_max_f32(const float *s, int64_t n) {
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
LR_HOT_CLONES static double row_sumexp_f32(const float *s, int64_t n, float mx) {
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
LR_HOT_CLONES static void row_softmax_scaled_f32(float *s, int64_t n, float l, float coef) {
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

// The include order below is the instantiation order: keep it unsorted.
// clang-format off
#define LR_F64 0
#include "real_begin.inc"
#include "loss_impl.inc"
#include "real_end.inc"
#undef LR_F64

#define LR_F64 1
#include "real_begin.inc"
#include "loss_impl.inc"
#include "real_end.inc"
#undef LR_F64
// clang-format on
