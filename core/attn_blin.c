// attn_blin.c: the `blin` attention kinds (Blin, Eqs. 10-11), per head:
//   A = softmax_row(Q) (softmax_col(K)^T V) + DWC(V)
// the `efficient` kind plus a depthwise convolution of V over the sequence
// axis (blin.h), whose weight (D,k) and bias (D) are the kind's own
// parameters (k = LR_BLIN_K = 5). `blin`: the convolution centred (rows
// t-2..t+2); `blin_left`: left-aligned (rows t-4..t, causal in the
// convolution; the attention stays non-causal). Both take a key mask
// (attention.h): masked rows (RandomPad's delimiters) give no key to the
// column softmax, no value to K^T V and no input to the convolution. O(N d^2
// + N D k); not causal.
#ifndef ATTN_BODY
#include <math.h> // sqrtf, sqrt

#include "attn_kernels.h"
#include "blin.h"
#include "lr.h" // LR_ASSERT
#include "rng.h"

static size_t cache_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 0).total;
}
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 0).stotal;
}
static size_t param_elems(int64_t D, int64_t H) {
  (void)H;
  return (size_t)(D * LR_BLIN_K + D);
}
// PyTorch's Conv1d default (groups = D, fan_in = k): weight and bias
// U(-1/sqrt(k), 1/sqrt(k)), keyed by (seed, element, layer).
static void param_init(float *prm, int64_t D, int64_t H, int64_t layer, uint64_t seed) {
  const float a = 1.0f / sqrtf((float)LR_BLIN_K);
  const size_t n = param_elems(D, H);
  for (size_t e = 0; e < n; e++) {
    const lr_rng4 r = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)layer, 0xB11u, 0);
    prm[e] = a * (2.0f * lr_u01(r.v[0]) - 1.0f);
  }
}
static double flops(int64_t N, int64_t D, int64_t H) {
  return attn_linear_flops(N, D, H) + (double)N * (double)D * LR_BLIN_K;
}

#define ATTN_SELF "attn_blin.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_blin = {
    "blin",
    "Blin Eq. 11: softmax_row(Q) (softmax_col(K)^T V) + DWC(V), DWC depthwise k=5 centred "
    "(learned); takes RandomPad's key mask",
    0,
    cache_elems,
    scratch_elems,
    param_elems,
    param_init,
    blin_c_fwd,
    blin_c_bwd,
    blin_c_fwd_f64,
    blin_c_bwd_f64,
    flops,
    blin_c_fwd_km,
    blin_c_bwd_km,
    blin_c_fwd_km_f64,
    blin_c_bwd_km_f64,
    NULL, NULL, NULL, NULL};

const lr_attn_ops lr_attn_blin_left = {
    "blin_left",
    "blin with the DWC left-aligned (rows t-4..t; causal convolution, non-causal attention)",
    0,
    cache_elems,
    scratch_elems,
    param_elems,
    param_init,
    blin_l_fwd,
    blin_l_bwd,
    blin_l_fwd_f64,
    blin_l_bwd_f64,
    flops,
    blin_l_fwd_km,
    blin_l_bwd_km,
    blin_l_fwd_km_f64,
    blin_l_bwd_km_f64,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// Whether row i (< n) is a key.
#define IS_KEY(km, i) (!(km) || (km)[i])

// The convolution runs over blocks of DWC_CH channels with the taps laid
// out tap-major on the stack, so the channel loops vectorise; each
// element's sum still runs over the taps (or rows) in the same order as one
// channel at a time, so the bits are those of the plain loops.
#define DWC_CH 64
#define DWC_KMAX 16

// wt[j][c] = w[(c0 + c) k + j]: the taps of channels c0 .. c0+nc-1.
static void FN(dwc_taps)(real wt[DWC_KMAX][DWC_CH], const real *w, int64_t c0, int64_t nc,
                         int64_t k) {
  for (int64_t c = 0; c < nc; c++)
    for (int64_t j = 0; j < k; j++) wt[j][c] = w[(c0 + c) * k + j];
}

void FN(blin_dwc_forward)(real *out, int64_t ldo, const real *v, int64_t ldv, const uint8_t *km,
                          const real *w, int64_t n, int64_t D, int64_t k, int left) {
  LR_ASSERT(k >= 1 && k <= DWC_KMAX);
  const int64_t off = left ? k - 1 : (k - 1) / 2;
  const real *b = w + D * k;
  real wt[DWC_KMAX][DWC_CH], acc[DWC_CH];
  for (int64_t c0 = 0; c0 < D; c0 += DWC_CH) {
    const int64_t nc = D - c0 < DWC_CH ? D - c0 : DWC_CH;
    FN(dwc_taps)(wt, w, c0, nc, k);
    for (int64_t t = 0; t < n; t++) {
      for (int64_t c = 0; c < nc; c++) acc[c] = b[c0 + c];
      for (int64_t j = 0; j < k; j++) {
        const int64_t s = t + j - off;
        if (s < 0 || s >= n || !IS_KEY(km, s)) continue;
        const real *vs = v + s * ldv + c0;
        for (int64_t c = 0; c < nc; c++) acc[c] += wt[j][c] * vs[c];
      }
      real *o = out + t * ldo + c0;
      for (int64_t c = 0; c < nc; c++) o[c] += acc[c];
    }
  }
}

void FN(blin_dwc_backward)(real *dv, int64_t lddv, real *dw, const real *g, int64_t ldg,
                           const real *v, int64_t ldv, const uint8_t *km, const real *w, int64_t n,
                           int64_t D, int64_t k, int left) {
  LR_ASSERT(k >= 1 && k <= DWC_KMAX);
  const int64_t off = left ? k - 1 : (k - 1) / 2;
  real *db = dw ? dw + D * k : NULL;
  real wt[DWC_KMAX][DWC_CH], sw[DWC_KMAX][DWC_CH], acc[DWC_CH];
  for (int64_t c0 = 0; c0 < D; c0 += DWC_CH) {
    const int64_t nc = D - c0 < DWC_CH ? D - c0 : DWC_CH;
    if (dw) { // db_c = sum_t g_tc, dw_cj = sum_t g_tc v_(t+j-off)c, t in order
      for (int64_t c = 0; c < nc; c++) acc[c] = 0;
      for (int64_t j = 0; j < k; j++)
        for (int64_t c = 0; c < nc; c++) sw[j][c] = 0;
      for (int64_t t = 0; t < n; t++) {
        const real *gt = g + t * ldg + c0;
        for (int64_t c = 0; c < nc; c++) acc[c] += gt[c];
        for (int64_t j = 0; j < k; j++) {
          const int64_t s = t + j - off;
          if (s < 0 || s >= n || !IS_KEY(km, s)) continue;
          const real *vs = v + s * ldv + c0;
          for (int64_t c = 0; c < nc; c++) sw[j][c] += gt[c] * vs[c];
        }
      }
      for (int64_t c = 0; c < nc; c++) {
        db[c0 + c] += acc[c];
        for (int64_t j = 0; j < k; j++) dw[(c0 + c) * k + j] += sw[j][c];
      }
    }
    // dv_s = sum_j w_j g_(s-j+off), per key row s
    FN(dwc_taps)(wt, w, c0, nc, k);
    for (int64_t s = 0; s < n; s++) {
      if (!IS_KEY(km, s)) continue;
      for (int64_t c = 0; c < nc; c++) acc[c] = 0;
      for (int64_t j = 0; j < k; j++) {
        const int64_t t = s - j + off;
        if (t < 0 || t >= n) continue;
        const real *gt = g + t * ldg + c0;
        for (int64_t c = 0; c < nc; c++) acc[c] += wt[j][c] * gt[c];
      }
      real *d = dv + s * lddv + c0;
      for (int64_t c = 0; c < nc; c++) d[c] += acc[c];
    }
  }
}

static void FN(blin_fwd_any)(real *ob, real *cache, const real *xb, const real *prm,
                             const uint8_t *km, int64_t n, int64_t N, int64_t D, int64_t H,
                             real *scratch, int left) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_softmax_maps_forward)(cache + l.qf, cache + l.kf, xb, km, n, N, D, H, scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
  FN(blin_dwc_forward)(ob, D, xb + 2 * D, 3 * D, km, prm, n, D, LR_BLIN_K, left);
}

static void FN(blin_bwd_any)(real *dxb, real *dprm, const real *gb, const real *xb, const real *prm,
                             const uint8_t *km, const real *cache, int64_t n, int64_t N, int64_t D,
                             int64_t H, real *scratch, int left) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_qkv_linear_backward)
  (scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb, cache + l.qf, cache + l.kf,
   cache + l.kv, xb, n, N, D, H);
  FN(attn_softmax_maps_backward)
  (dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf, n, N, D, H, scratch + l.vec);
  FN(blin_dwc_backward)
  (dxb + 2 * D, 3 * D, dprm, gb, D, xb + 2 * D, 3 * D, km, prm, n, D, LR_BLIN_K, left);
}

// The four entry points of each kind: centred (c) and left-aligned (l),
// without and with a key mask.
#define BLIN_ENTRIES(tag, left)                                                                    \
  static void FN(blin_##tag##_fwd_km)(real * ob, real * cache, const real *xb, const real *prm,    \
                                      const uint8_t *km, int64_t n, int64_t N, int64_t D,          \
                                      int64_t H, real *scratch) {                                  \
    FN(blin_fwd_any)(ob, cache, xb, prm, km, n, N, D, H, scratch, left);                           \
  }                                                                                                \
  static void FN(blin_##tag##_bwd_km)(real * dxb, real * dprm, const real *gb, const real *xb,     \
                                      const real *prm, const uint8_t *km, const real *cache,       \
                                      int64_t n, int64_t N, int64_t D, int64_t H, real *scratch) { \
    FN(blin_bwd_any)(dxb, dprm, gb, xb, prm, km, cache, n, N, D, H, scratch, left);                \
  }                                                                                                \
  static void FN(blin_##tag##_fwd)(real * ob, real * cache, const real *xb, const real *prm,       \
                                   int64_t n, int64_t N, int64_t D, int64_t H, real *scratch) {    \
    FN(blin_fwd_any)(ob, cache, xb, prm, NULL, n, N, D, H, scratch, left);                         \
  }                                                                                                \
  static void FN(blin_##tag##_bwd)(real * dxb, real * dprm, const real *gb, const real *xb,        \
                                   const real *prm, const real *cache, int64_t n, int64_t N,       \
                                   int64_t D, int64_t H, real *scratch) {                          \
    FN(blin_bwd_any)(dxb, dprm, gb, xb, prm, NULL, cache, n, N, D, H, scratch, left);              \
  }
BLIN_ENTRIES(c, 0)
BLIN_ENTRIES(l, 1)
#undef BLIN_ENTRIES
#undef IS_KEY

#endif
