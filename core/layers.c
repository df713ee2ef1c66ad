// layers.c: embedding, LayerNorm, linear, GELU, dropout and residual layers
// of layers.h, in float for training and in double (_f64) for the
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
#include "par.h"  // lr_par_for
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
#define DROPOUT_CHUNK 256 // elements whose keep bits are generated at once
#define DROPOUT_LANES (DROPOUT_CHUNK / 8)

static uint32_t dropout_counter_c2(lr_dropout dp) {
  LR_ASSERT(dp.site < 256u);
  LR_ASSERT(dp.epoch < (1u << 24));
  return (dp.epoch << 8) | dp.site;
}

static uint32_t dropout_threshold(float p) {
  const long thr = lrintf(p * 65536.0f);
  return thr > 65535 ? 65535u : (uint32_t)thr;
}

// keep[i] = keep bit (1.0f or 0.0f) of element j0 + i of the row, i < n <= DROPOUT_CHUNK;
// j0 is a multiple of 8. The Philox calls of the chunk's 8-element groups
// run side by side (lane k: counter c3 = j0/8 + k): the same rounds as
// lr_philox, written over arrays so the compiler vectorises them.
LR_HOT_CLONES static void dropout_keep(float *keep, lr_dropout dp, uint32_t c2, uint32_t thr,
                                       uint64_t row_id, int64_t j0, int64_t n) {
  LR_ASSERT(j0 / 8 + DROPOUT_LANES <= (int64_t)UINT32_MAX);
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  const uint32_t stream = LR_STREAM_DROPOUT;
  const int64_t lanes = (n + 7) / 8;
  uint32_t x0[DROPOUT_LANES], x1[DROPOUT_LANES], x2[DROPOUT_LANES], x3[DROPOUT_LANES];
  for (int64_t k = 0; k < lanes; k++) {
    x0[k] = (uint32_t)row_id, x1[k] = (uint32_t)(row_id >> 32), x2[k] = c2;
    x3[k] = (uint32_t)(j0 / 8 + k);
  }
  uint32_t k0 = (uint32_t)dp.seed ^ (stream * 0x85EBCA6Bu);
  uint32_t k1 = (uint32_t)(dp.seed >> 32) ^ (stream * 0xC2B2AE35u);
  for (int round = 0; round < 10; round++) {
    for (int64_t k = 0; k < lanes; k++) {
      uint64_t p0 = (uint64_t)M0 * x0[k], p1 = (uint64_t)M1 * x2[k];
      uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[k] ^ k0;
      uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[k] ^ k1;
      x1[k] = (uint32_t)p1, x3[k] = (uint32_t)p0;
      x0[k] = y0, x2[k] = y2;
    }
    k0 += W0, k1 += W1;
  }
  // element 8k+i <- half i%2 of word i/2 of lane k (full groups, vectorised)
  float full[DROPOUT_CHUNK];
  for (int64_t k = 0; k < lanes; k++) {
    float *o = full + 8 * k;
    o[0] = (x0[k] & 0xffffu) >= thr ? 1.0f : 0.0f, o[1] = (x0[k] >> 16) >= thr ? 1.0f : 0.0f;
    o[2] = (x1[k] & 0xffffu) >= thr ? 1.0f : 0.0f, o[3] = (x1[k] >> 16) >= thr ? 1.0f : 0.0f;
    o[4] = (x2[k] & 0xffffu) >= thr ? 1.0f : 0.0f, o[5] = (x2[k] >> 16) >= thr ? 1.0f : 0.0f;
    o[6] = (x3[k] & 0xffffu) >= thr ? 1.0f : 0.0f, o[7] = (x3[k] >> 16) >= thr ? 1.0f : 0.0f;
  }
  memcpy(keep, full, (size_t)n * sizeof(float));
}

// Row r's keep bits in dp.bits: word w of the row holds elements 32w..32w+31
// (bit b = element 32w+b), lr_dropout_words(D) words per row.
static uint32_t *keep_bits_at(lr_dropout dp, int64_t r, int64_t D, int64_t j0) {
  return dp.bits + (size_t)r * (size_t)lr_dropout_words(D) + (size_t)(j0 / 32);
}

// A forward's keep[0..n) of elements j0.. of call row r (key row_ids[r]),
// written to dp.bits as well when it is set (j0 is a multiple of 32).
LR_HOT_CLONES static void keep_forward(float *keep, lr_dropout dp, uint32_t c2, uint32_t thr,
                                       const uint64_t *row_ids, int64_t r, int64_t D, int64_t j0,
                                       int64_t n) {
  dropout_keep(keep, dp, c2, thr, row_ids[r], j0, n);
  if (!dp.bits) return;
  uint32_t *w = keep_bits_at(dp, r, D, j0);
  for (int64_t k = 0; k < n; k += 32) {
    uint32_t word = 0;
    if (n - k >= 32) // a full word: a fixed-trip loop the compiler vectorises
      for (int b = 0; b < 32; b++)
        word |= (uint32_t)(keep[k + b] != 0.0f) << b;
    else
      for (int64_t b = 0; k + b < n; b++)
        word |= (uint32_t)(keep[k + b] != 0.0f) << b;
    w[k / 32] = word;
  }
}

// A backward's keep: from dp.bits when set (the forward's), else regenerated.
LR_HOT_CLONES static void keep_backward(float *keep, lr_dropout dp, uint32_t c2, uint32_t thr,
                                        const uint64_t *row_ids, int64_t r, int64_t D, int64_t j0,
                                        int64_t n) {
  if (!dp.bits) {
    dropout_keep(keep, dp, c2, thr, row_ids[r], j0, n);
    return;
  }
  const uint32_t *w = keep_bits_at(dp, r, D, j0);
  for (int64_t k = 0; k < n; k += 32) {
    const uint32_t word = w[k / 32];
    if (n - k >= 32)
      for (int b = 0; b < 32; b++)
        keep[k + b] = (float)((word >> b) & 1u);
    else
      for (int64_t b = 0; k + b < n; b++)
        keep[k + b] = (float)((word >> b) & 1u);
  }
}

// ---- float GELU, LR_VL lanes at a time (vmath.h) ---------------------------------------

LR_HOT_CLONES static void gelu_forward_f32v(float *out, const float *in, int64_t n) {
  int64_t i = 0;
  for (; i + LR_VL <= n; i += LR_VL) {
    lr_vf x;
    memcpy(&x, in + i, sizeof x);
    x = lr_gelu_v(x);
    memcpy(out + i, &x, sizeof x);
  }
  if (i < n) {
    lr_vf x = {0};
    memcpy(&x, in + i, (size_t)(n - i) * sizeof(float));
    x = lr_gelu_v(x);
    memcpy(out + i, &x, (size_t)(n - i) * sizeof(float));
  }
}

// din (n) += dout * gelu'(in).
LR_HOT_CLONES static void gelu_backward_f32v(float *din, const float *dout, const float *in,
                                             int64_t n) {
  int64_t i = 0;
  for (; i + LR_VL <= n; i += LR_VL) {
    lr_vf x, g, d;
    memcpy(&x, in + i, sizeof x);
    memcpy(&g, dout + i, sizeof g);
    memcpy(&d, din + i, sizeof d);
    d += g * lr_gelu_grad_v(x);
    memcpy(din + i, &d, sizeof d);
  }
  if (i < n) {
    lr_vf x = {0}, g = {0}, d = {0};
    size_t m = (size_t)(n - i) * sizeof(float);
    memcpy(&x, in + i, m);
    memcpy(&g, dout + i, m);
    memcpy(&d, din + i, m);
    d += g * lr_gelu_grad_v(x);
    memcpy(din + i, &d, m);
  }
}

// out (n) = gelu(x), x_grad (n) := gelu'(x), x = x_grad + bias (bias may be NULL).
LR_HOT_CLONES static void gelu_train_f32v(float *out, float *x_grad, const float *bias,
                                          int64_t n) {
  int64_t i = 0;
  for (; i + LR_VL <= n; i += LR_VL) {
    lr_vf x, b = {0}, g;
    memcpy(&x, x_grad + i, sizeof x);
    if (bias) memcpy(&b, bias + i, sizeof b);
    x = lr_gelu_pair_v(x + b, &g);
    memcpy(out + i, &x, sizeof x);
    memcpy(x_grad + i, &g, sizeof g);
  }
  if (i < n) {
    lr_vf x = {0}, b = {0}, g;
    size_t m = (size_t)(n - i) * sizeof(float);
    memcpy(&x, x_grad + i, m);
    if (bias) memcpy(&b, bias + i, m);
    x = lr_gelu_pair_v(x + b, &g);
    memcpy(out + i, &x, m);
    memcpy(x_grad + i, &g, m);
  }
}

// d (n) *= g.
LR_HOT_CLONES static void mul_inplace_f32v(float *d, const float *g, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    d[i] *= g[i];
}

// The element ranges of the threaded float GELU.
typedef struct {
  float *out, *din;
  const float *in, *dout;
} gelu_par;

static void gelu_forward_part(void *vc, int64_t lo, int64_t hi) {
  const gelu_par *c = vc;
  gelu_forward_f32v(c->out + lo, c->in + lo, hi - lo);
}

// The row ranges of the threaded float training GELU: rows of C.
typedef struct {
  float *out, *x_grad;
  const float *bias;
  int64_t C;
} gelu_rows_par;

static void gelu_train_rows(void *vc, int64_t r0, int64_t r1) {
  const gelu_rows_par *c = vc;
  for (int64_t r = r0; r < r1; r++)
    gelu_train_f32v(c->out + r * c->C, c->x_grad + r * c->C, c->bias, c->C);
}

static void gelu_stored_part(void *vc, int64_t lo, int64_t hi) {
  const gelu_par *c = vc;
  mul_inplace_f32v(c->out + lo, c->in + lo, hi - lo);
}

static void gelu_backward_part(void *vc, int64_t lo, int64_t hi) {
  const gelu_par *c = vc;
  gelu_backward_f32v(c->din + lo, c->dout + lo, c->in + lo, hi - lo);
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
