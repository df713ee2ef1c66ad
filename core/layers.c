// layers.c: embedding, LayerNorm, linear, GELU, dropout and residual layers
// of layers.h (DESIGN §1), in float for training and in double (_f64) for the
// gradient tests. The kernels are written once in layers_impl.inc over a
// `real` type and instantiated twice below.
//
//   embedding  out[b,t] = rows[idx[b,t]] (0 at padding) + pos[t]
//   LayerNorm  y = (x - mean) / sqrt(var + eps) * w + b, biased variance
//   linear     y = x W^T + b through lr_sgemm / lr_dgemm
//   GELU       y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))  (erf form, not tanh; float
//              uses vmath.h's erf, within 1.5e-7 of exact)
//   dropout    y = x * keep / (1 - p), keep regenerated from Philox keys
//   residual   y = a + b
//
// Every _backward accumulates (+=). No function allocates.
#include "layers.h"

#include <math.h>   // erf, exp, sqrt and float twins, M_SQRT1_2, M_2_SQRTPI
#include <string.h> // memcpy, memmove

#include "gemm.h" // lr_sgemm, lr_dgemm
#include "lr.h"   // LR_ASSERT
#include "rng.h"  // lr_philox, LR_STREAM_DROPOUT
#include "vmath.h" // lr_erff_fast, lr_expf_fast (float GELU)

// Features per block of the double-precision column reductions (bias and
// LayerNorm parameter gradients): 64 doubles per accumulator on the stack.
#define COLSUM_BLOCK 64

// ---- dropout keys (shared by both precisions) -------------------------------------
// One Philox call gives the keep bits of 8 elements of a row: its counter is
//   c0 = row_id low 32 bits, c1 = row_id high 32 bits,
//   c2 = epoch << 8 | site   (site < 256, epoch < 2^24: distinct pairs never collide),
//   c3 = k                   (elements 8k..8k+7; D < 2^35)
// keyed by (seed, LR_STREAM_DROPOUT). Element 8k+i reads the 16-bit half
// (i odd: high, even: low) of word i/2 and is kept iff it is >= thr =
// round(p * 2^16), so P(keep) = 1 - p within 2^-17. Half words give twice the
// elements per Philox call of full words at a precision dropout cannot see.
#define DROPOUT_CHUNK 64 // elements whose keep bits are generated at once

static uint32_t dropout_counter_c2(lr_dropout dp) {
  LR_ASSERT(dp.site < 256u);
  LR_ASSERT(dp.epoch < (1u << 24));
  return (dp.epoch << 8) | dp.site;
}

static uint32_t dropout_threshold(float p) {
  const long thr = lrintf(p * 65536.0f);
  return thr > 65535 ? 65535u : (uint32_t)thr;
}

// keep[i] = keep bit of element j0 + i of the row, i < n <= DROPOUT_CHUNK;
// j0 is a multiple of 8.
static void dropout_keep(uint8_t *keep, lr_dropout dp, uint32_t c2, uint32_t thr, uint64_t row_id,
                         int64_t j0, int64_t n) {
  LR_ASSERT(j0 / 8 <= (int64_t)UINT32_MAX);
  for (int64_t i0 = 0; i0 < n; i0 += 8) {
    const lr_rng4 q = lr_philox(dp.seed, LR_STREAM_DROPOUT, (uint32_t)row_id,
                                (uint32_t)(row_id >> 32), c2, (uint32_t)((j0 + i0) / 8));
    const int64_t m = n - i0 < 8 ? n - i0 : 8;
    for (int64_t i = 0; i < m; i++)
      keep[i0 + i] = ((q.v[i >> 1] >> (16 * (i & 1))) & 0xffffu) >= thr;
  }
}

// ---- the two instantiations ---------------------------------------------------------

// The include order below is the instantiation order: keep it unsorted.
// clang-format off
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
// clang-format on
