// attn_softmax.c: the `softmax` attention kind (SASRec), per head:
//   A = softmax(Q K^T / sqrt(d) + causal mask) V
// O(N^2 d). Causal. The cache keeps the log-sum-exp of each score row; the
// backward recomputes the scores (one n x n product) instead of keeping
// n x n probabilities. With a key mask (RandomPad's delimiters: Blin-D) a
// masked key's probability is 0 in every row; a row with no key at or
// before it (a view that starts with a delimiter) outputs 0.
#ifndef ATTN_BODY
#include <math.h>   // sqrtf, sqrt, logf, log
#include <string.h> // memset

#include "attn_kernels.h"
#include "gemm.h" // lr_sgemm, lr_dgemm

// cache: lse (H,N); scratch: the probabilities and their gradient (N,N).
static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return (size_t)(H * N); }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  size_t t = 0;
  attn_region(&t, (size_t)(N * N));
  attn_region(&t, (size_t)(N * N));
  return t;
}
static size_t dsc_offset(int64_t N) {
  size_t t = 0;
  attn_region(&t, (size_t)(N * N));
  return t;
}

static double flops(int64_t N, int64_t D, int64_t H) { // Q K^T and P V over (N,N)
  return 2.0 * (double)N * (double)N * (double)D;
}

#define ATTN_SELF "attn_softmax.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_softmax = {
    "softmax", "softmax(QK^T/sqrt(Dh) + causal/pad mask) V (SASRec); takes RandomPad's key mask",
    1, cache_elems, scratch_elems, NULL, NULL, softmax_fwd, softmax_bwd, softmax_fwd_f64, softmax_bwd_f64, flops,
    softmax_fwd_km, softmax_bwd_km, softmax_fwd_km_f64, softmax_bwd_km_f64, NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// Row i's probabilities from its scores row[0..i] less its shift (the
// maximum, or the log-sum-exp in the backward), masked keys (km[m] = 0)
// zero; zero past i. Returns the row's sum (0 when every key is masked).
static real FN(prob_row)(real *row, real shift, const uint8_t *km, int64_t i, int64_t n) {
  for (int64_t m = 0; m <= i; m++)
    row[m] -= shift;
  FN(attn_exp_run)(row, row, i + 1);
  real sum = 0;
  for (int64_t m = 0; m <= i; m++) {
    if (km && !km[m]) row[m] = 0;
    sum += row[m];
  }
  for (int64_t m = i + 1; m < n; m++)
    row[m] = 0;
  return sum;
}

// o (n,d; ld ldo) = softmax(Q K^T / sqrt(d) + causal mask) V; lse (n) the
// log-sum-exp of each score row. sc: (n,n) scratch. q, k, v: ld ldx. km:
// the key mask (NULL: every row a key).
static void FN(head_forward)(real *o, int64_t ldo, real *lse, real *sc, const real *q,
                             const real *k, const real *v, int64_t ldx, const uint8_t *km,
                             int64_t n, int64_t d) {
  GEMM(0, 1, n, n, d, (real)1 / R_SQRT((real)d), q, ldx, k, ldx, 0, sc, n);
  for (int64_t i = 0; i < n; i++) {
    real *row = sc + i * n, mx = 0;
    int any = 0;
    for (int64_t m = 0; m <= i; m++)
      if (!km || km[m]) mx = !any++ || row[m] > mx ? row[m] : mx;
    if (!any) { // no key: the output row is 0, and so is its gradient
      memset(row, 0, (size_t)n * sizeof *row);
      lse[i] = 0;
      continue;
    }
    const real sum = FN(prob_row)(row, mx, km, i, n), inv = (real)1 / sum;
    for (int64_t m = 0; m <= i; m++)
      row[m] *= inv;
    lse[i] = mx + R_LOG(sum);
  }
  GEMM(0, 0, n, d, n, 1, sc, n, v, ldx, 0, o, ldo);
}

// dq, dk, dv (n,d; ld ldx) += gradients of <g, o> (g: ld ldg). p, dp: (n,n) scratch.
// forward: S = Q K^T / sqrt(d), P_im = exp(S_im - lse_i) (m <= i), O = P V
//   dV = P^T G;  dP = G V^T;  dS_im = P_im (dP_im - sum_m' P_im' dP_im')
//   dQ = dS K / sqrt(d);  dK = dS^T Q / sqrt(d)
// Masked keys, and every key of a row without keys, have P_im = 0.
static void FN(head_backward)(real *dq, real *dk, real *dv, int64_t ldx, const real *g,
                              int64_t ldg, const real *q, const real *k, const real *v,
                              const real *lse, const uint8_t *km, real *p, real *dp, int64_t n,
                              int64_t d) {
  const real scale = (real)1 / R_SQRT((real)d);
  GEMM(0, 1, n, n, d, scale, q, ldx, k, ldx, 0, p, n);
  for (int64_t i = 0; i < n; i++) {
    int any = !km;
    for (int64_t m = 0; m <= i && !any; m++)
      any = km[m];
    if (any) FN(prob_row)(p + i * n, lse[i], km, i, n);
    else memset(p + i * n, 0, (size_t)n * sizeof *p);
  }
  GEMM(1, 0, n, d, n, 1, p, n, g, ldg, 1, dv, ldx);
  GEMM(0, 1, n, n, d, 1, g, ldg, v, ldx, 0, dp, n);
  for (int64_t i = 0; i < n; i++) {
    real *pr = p + i * n, *dr = dp + i * n, dot = 0;
    for (int64_t m = 0; m <= i; m++)
      dot += pr[m] * dr[m];
    for (int64_t m = 0; m < n; m++)
      dr[m] = pr[m] * (dr[m] - dot); // 0 above the diagonal and at masked keys
  }
  GEMM(0, 0, n, d, n, scale, dp, n, k, ldx, 1, dq, ldx);
  GEMM(1, 0, n, d, n, scale, dp, n, q, ldx, 1, dk, ldx);
}

static void FN(softmax_fwd_km)(real *ob, real *lse, const real *xb, const real *prm,
                               const uint8_t *km, int64_t n, int64_t N, int64_t D, int64_t H,
                               real *scratch) {
  (void)prm;
  const int64_t d = D / H, ldx = 3 * D;
  for (int64_t h = 0; h < H; h++)
    FN(head_forward)(ob + h * d, D, lse + h * N, scratch, xb + h * d, xb + D + h * d,
                     xb + 2 * D + h * d, ldx, km, n, d);
}

static void FN(softmax_fwd)(real *ob, real *lse, const real *xb, const real *prm, int64_t n,
                            int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(softmax_fwd_km)(ob, lse, xb, prm, NULL, n, N, D, H, scratch);
}

static void FN(softmax_bwd_km)(real *dxb, real *dprm, const real *gb, const real *xb,
                               const real *prm, const uint8_t *km, const real *lse, int64_t n,
                               int64_t N, int64_t D, int64_t H, real *scratch) {
  (void)dprm, (void)prm;
  const int64_t d = D / H, ldx = 3 * D;
  for (int64_t h = 0; h < H; h++)
    FN(head_backward)(dxb + h * d, dxb + D + h * d, dxb + 2 * D + h * d, ldx, gb + h * d, D,
                      xb + h * d, xb + D + h * d, xb + 2 * D + h * d, lse + h * N, km, scratch,
                      scratch + dsc_offset(N), n, d);
}

static void FN(softmax_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                            const real *prm, const real *lse, int64_t n, int64_t N, int64_t D,
                            int64_t H, real *scratch) {
  FN(softmax_bwd_km)(dxb, dprm, gb, xb, prm, NULL, lse, n, N, D, H, scratch);
}

#endif
