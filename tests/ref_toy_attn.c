// ref_toy_attn.c: the `toy_gate` attention kind of ref_toy_attn.h, written as
// a kind's file in core/ is (attention.h): a type-independent part, then the
// kernels over `real`, compiled for float and double by attn_instantiate.h.
#ifndef ATTN_BODY
#include "ref_toy_attn.h"

#include <math.h> // tanh, tanhf, sqrt

#include "lr.h"

// cache: t = tanh(u) (H,N), then S (N,D). scratch: one running sum (D).
static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return (size_t)(H * N + N * D); }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  (void)N, (void)H;
  return (size_t)D;
}
static size_t param_elems(int64_t D, int64_t H) {
  (void)D;
  return (size_t)H;
}
// g_h = 1 + h/10 + layer/20: distinct per head and layer, no randomness.
static void param_init(float *prm, int64_t D, int64_t H, int64_t layer, uint64_t seed) {
  (void)D, (void)seed;
  for (int64_t h = 0; h < H; h++)
    prm[h] = 1.0f + 0.1f * (float)h + 0.05f * (float)layer;
}
static double flops(int64_t N, int64_t D, int64_t H) {
  (void)H;
  return 3.0 * (double)N * (double)D;
}

#define ATTN_SELF "ref_toy_attn.c"
#include "attn_instantiate.h"

const lr_attn_ops ref_toy_attn = {
    "toy_gate",
    "test only: g_h tanh(q_i.k_i/sqrt(d)) mean_{m<=i} v_m, g_h learned",
    1,
    cache_elems,
    scratch_elems,
    param_elems,
    param_init,
    toy_fwd,
    toy_bwd,
    toy_fwd_f64,
    toy_bwd_f64,
    flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

int ref_toy_attn_register(void) {
  const int id = attn_id(&ref_toy_attn);
  return id >= 0 ? id : attn_register(&ref_toy_attn);
}

#else // ---- the kernels, over `real` ---------------------------------------------------------

static void FN(toy_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                        int64_t N, int64_t D, int64_t H, real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const real scale = (real)1 / R_SQRT((real)d);
  real *t = cache, *S = cache + H * N, *run = scratch;
  for (int64_t c = 0; c < D; c++)
    run[c] = 0;
  for (int64_t i = 0; i < n; i++) {
    const real *x = xb + i * ldx;
    for (int64_t c = 0; c < D; c++) {
      run[c] += x[2 * D + c];
      S[i * D + c] = run[c] / (real)(i + 1);
    }
    for (int64_t h = 0; h < H; h++) {
      real u = 0;
      for (int64_t j = 0; j < d; j++)
        u += x[h * d + j] * x[D + h * d + j];
      t[h * N + i] = (real)tanh((double)(u * scale));
      for (int64_t j = 0; j < d; j++)
        ob[i * D + h * d + j] = prm[h] * t[h * N + i] * S[i * D + h * d + j];
    }
  }
}

// dg_h += sum_i t_i (G_i . S_i);  du_i = g (G_i . S_i)(1 - t_i^2)
// dq_i += du_i k_i / sqrt(d);  dk_i += du_i q_i / sqrt(d)
// dv_m += sum_{i>=m} g t_i G_i / (i+1)   (a suffix sum, run backwards)
static void FN(toy_bwd)(real *dxb, real *dprm, const real *gb, const real *xb, const real *prm,
                        const real *cache, int64_t n, int64_t N, int64_t D, int64_t H,
                        real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const real scale = (real)1 / R_SQRT((real)d);
  const real *t = cache, *S = cache + H * N;
  real *suf = scratch;
  for (int64_t c = 0; c < D; c++)
    suf[c] = 0;
  for (int64_t i = n - 1; i >= 0; i--) {
    const real *x = xb + i * ldx, *g = gb + i * D;
    real *dx = dxb + i * ldx;
    for (int64_t h = 0; h < H; h++) {
      const real th = t[h * N + i];
      real gs = 0;
      for (int64_t j = 0; j < d; j++)
        gs += g[h * d + j] * S[i * D + h * d + j];
      if (dprm) dprm[h] += th * gs;
      const real du = prm[h] * gs * (1 - th * th) * scale;
      for (int64_t j = 0; j < d; j++) {
        dx[h * d + j] += du * x[D + h * d + j];
        dx[D + h * d + j] += du * x[h * d + j];
        suf[h * d + j] += prm[h] * th * g[h * d + j] / (real)(i + 1);
      }
    }
    for (int64_t c = 0; c < D; c++)
      dx[2 * D + c] += suf[c];
  }
}

#endif
