// layers.c: embedding, LayerNorm, linear, GELU, dropout and residual layers
// of layers.h (DESIGN §1), in float for training and in double (_f64) for the
// gradient tests. The kernels are written once in layers_impl.inc over a
// `real` type and instantiated twice below.
//
//   embedding  out[b,t] = rows[idx[b,t]] (0 at padding) + pos[t]
//   LayerNorm  y = (x - mean) / sqrt(var + eps) * w + b, biased variance
//   linear     y = x W^T + b through lr_sgemm / lr_dgemm
//   GELU       y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))  (exact, not tanh)
//   dropout    y = x * keep / (1 - p), keep regenerated from Philox keys
//   residual   y = a + b
//
// Every _backward accumulates (+=). No function allocates.
#include "layers.h"

#include <math.h>   // erf, exp, sqrt and float twins, M_SQRT1_2, M_2_SQRTPI
#include <string.h> // memcpy, memmove

#include "gemm.h" // lr_sgemm, lr_dgemm
#include "lr.h"   // LR_ASSERT
#include "rng.h"  // lr_philox, lr_u01, LR_STREAM_DROPOUT

// Features per block of the double-precision column reductions (bias and
// LayerNorm parameter gradients): 64 doubles per accumulator on the stack.
#define COLSUM_BLOCK 64

// ---- dropout keys (shared by both precisions) -------------------------------------
// Counter words of the Philox call that gives elements 4k..4k+3 of a row:
//   c0 = row_id low 32 bits, c1 = row_id high 32 bits,
//   c2 = epoch << 8 | site   (site < 256, epoch < 2^24: distinct pairs never collide),
//   c3 = k                   (element block; D < 2^34)
// keyed by (seed, LR_STREAM_DROPOUT). Element 4k+i is kept iff
// lr_u01(word i) >= p.
static uint32_t dropout_counter_c2(lr_dropout dp) {
  LR_ASSERT(dp.site < 256u);
  LR_ASSERT(dp.epoch < (1u << 24));
  return (dp.epoch << 8) | dp.site;
}

static lr_rng4 dropout_bits(lr_dropout dp, uint32_t c2, uint64_t row_id, int64_t j0) {
  LR_ASSERT(j0 / 4 <= (int64_t)UINT32_MAX);
  return lr_philox(dp.seed, LR_STREAM_DROPOUT, (uint32_t)row_id, (uint32_t)(row_id >> 32), c2,
                   (uint32_t)(j0 / 4));
}

// ---- the two instantiations ---------------------------------------------------------

#define LR_F64 0
#include "real_begin.inc"
#include "layers_impl.inc"
#include "real_end.inc"
#undef LR_F64

#define LR_F64 1
#include "real_begin.inc"
#include "layers_impl.inc"
#include "real_end.inc"
#undef LR_F64
