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

#include <math.h> // exp, log, log1p and float twins, INFINITY

#include "gemm.h" // lr_sgemm, lr_dgemm
#include "lr.h"   // LR_ASSERT

size_t ce_scratch_elems(int64_t M, int64_t tile) {
  LR_ASSERT(M >= 0 && tile >= 1);
  return (size_t)M * (size_t)tile + 3 * (size_t)M;
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
