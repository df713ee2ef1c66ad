// attn_linrec_causal.c: the `linrec_causal` attention kind, causal LinRec,
// per head: for query row i, each key column is normalised over the prefix
// 0..i only, c_ij = 1 / (sqrt(i+1) ||phi(K)_{0..i, j}||), so
//   A_i = sum_j rho1(phi(Q))_ij c_ij sum_{m<=i} phi(K)_mj V_m
//       = causal_linear(Q~, phi(K), V),  Q~ = rho1(phi(Q)) ⊙ c
// an elementwise rescaling of Q followed by plain (denominator-free) causal
// linear attention, chunked (attn_kernels.h): O(N C d + N d^2). Condition (3)
// of the paper holds for every prefix by Cauchy-Schwarz. Causal.
#ifndef ATTN_BODY
#include <math.h> // sqrtf, sqrt

#include "attn_kernels.h"

// cache: qf = rho1(phi(Q)), kf = phi(K), cf = the prefix column scales c
// (H,N,d each), rq (H,N) the rows' 1/||phi(q)||.
typedef struct {
  size_t qf, kf, cf, rq, total;
} cache_layout;

static cache_layout layout(int64_t N, int64_t D, int64_t H) {
  cache_layout l = {0};
  const size_t nd = (size_t)(N * D);
  l.qf = attn_region(&l.total, nd);
  l.kf = attn_region(&l.total, nd);
  l.cf = attn_region(&l.total, nd);
  l.rq = attn_region(&l.total, (size_t)(H * N));
  return l;
}

static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return layout(N, D, H).total; }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_causal_layout_of(N, D, H).total;
}

static size_t step_elems(int64_t D, int64_t H) {
  return (size_t)D + (size_t)H * attn_causal_step_elems(D / H, D / H);
}
static size_t step_ws_elems(int64_t N, int64_t D, int64_t H) {
  (void)N;
  return (size_t)(5 * D + H + LR_ATTN_CHUNK);
}
static void linrec_causal_step(float *out, float *st, float *ws, const float *x, const float *prm,
                               int64_t t, int64_t D, int64_t H);

#define ATTN_SELF "attn_linrec_causal.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_linrec_causal = {
    "linrec_causal",
    "LinRec with column norms over each prefix; chunked (32) with a carried Dh x Dh state",
    1,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    linrec_causal_fwd,
    linrec_causal_bwd,
    linrec_causal_fwd_f64,
    linrec_causal_bwd_f64,
    attn_causal_flops, NULL, NULL, NULL, NULL,
    step_elems, step_ws_elems, NULL, linrec_causal_step};

#else // ---- the kernels, over `real` ------------------------------------------------------

// Row i of the maps: qf = rho1(phi(Q)), rq its scale per head, kf =
// phi(K), cf_ij = 1/(sqrt(i+1) ||phi_{0..i,j}||) with acc (D) the running
// column sums of phi^2 over rows 0..i-1 (updated). Head h's row starts at
// qf, kf, cf + h*hs and rq + h*rs. ph: 2D scratch.
static void FN(maps_row)(real *qf, real *kf, real *cf, real *rq, int64_t hs, int64_t rs,
                         real *acc, const real *x, int64_t i, int64_t D, int64_t H, real *ph) {
  const int64_t d = D / H;
  const real rho1 = (real)1 / R_SQRT((real)d);
  FN(attn_elu_run)(ph, x, 2 * D);
  const real isn = (real)1 / R_SQRT((real)(i + 1));
  for (int64_t h = 0; h < H; h++) {
    real *qy = qf + h * hs, *ky = kf + h * hs, *cy = cf + h * hs, *ac = acc + h * d;
    const real *pk = ph + D + h * d;
    rq[h * rs] = FN(attn_rownorm_forward)(qy, ph + h * d, d, rho1);
    for (int64_t j = 0; j < d; j++) {
      ky[j] = pk[j];
      ac[j] += pk[j] * pk[j];
      cy[j] = isn / R_SQRT(ac[j] + (real)LR_ATTN_EPS);
    }
  }
}

// The maps of rows 0..n-1 into the cache, head-major (H,N,d). vec: 4D scratch.
static void FN(maps_forward)(real *qf, real *kf, real *cf, real *rq, const real *xb, int64_t n,
                             int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H;
  real *ph = vec, *acc = vec + 2 * D; // ph: phi of one row's Q|K; acc: column sums of phi^2
  for (int64_t c = 0; c < D; c++)
    acc[c] = 0;
  for (int64_t i = 0; i < n; i++)
    FN(maps_row)(qf + i * d, kf + i * d, cf + i * d, rq + i, N * d, N, acc, xb + i * 3 * D, i, D,
                 H, ph);
}

// dxb (Q and K columns) += gradients through the maps given dqf, dkf (H,N,d)
// (the prefix-norm term is already in dkf: see head_backward).
static void FN(maps_backward)(real *dxb, const real *dqf, const real *dkf, const real *qf,
                              const real *rq, const real *xb, int64_t n, int64_t N, int64_t D,
                              int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D;
  const real rho1 = (real)1 / R_SQRT((real)d);
  real *g = vec;
  for (int64_t i = 0; i < n; i++) {
    real *dq = dxb + i * ldx, *dk = dxb + i * ldx + D;
    FN(attn_elu_grad_run)(g, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      const int64_t o = h * N * d + i * d;
      FN(attn_rownorm_backward)(dq + h * d, dqf + o, qf + o, g + h * d, rq[h * N + i], rho1, d);
      const real *gk = g + D + h * d, *dky = dkf + o;
      real *dkh = dk + h * d;
      for (int64_t j = 0; j < d; j++)
        dkh[j] += gk[j] * dky[j];
    }
  }
}

// One head: o = causal_linear(Q~, phi(K), V), Q~ = qf ⊙ cf. qt: (n,d) scratch.
static void FN(head_forward)(real *o, int64_t ldo, const real *qf, const real *kf, const real *cf,
                             const real *v, int64_t ldx, int64_t n, int64_t d, real *qt, real *p,
                             real *s) {
  for (int64_t i = 0; i < n * d; i++)
    qt[i] = qf[i] * cf[i];
  FN(attn_causal_linear_forward)(o, ldo, qt, d, kf, d, v, ldx, n, d, d, p, s);
}

// dqf, dkf (n,d) = gradients w.r.t. qf = rho1(phi(Q)) and kf = phi(K)
// (overwritten); dv (ld ldx) += gradient w.r.t. V. vec: d scratch.
// forward: Q~_ij = qf_ij c_ij, c_ij = (i+1)^(-1/2) (cs_ij + eps)^(-1/2),
//          cs_ij = sum_{m<=i} p_mj^2 (p = phi(K) = kf), O = causal_linear(Q~, p, V).
// causal_linear_backward gives dQ~, dp (through the keys) and dV. Then
//   dqf_ij = dQ~_ij c_ij
//   dc_ij  = dQ~_ij qf_ij;  dc_ij/dcs_ij = -c_ij / (2 (cs_ij + eps)) = -c_ij^3 (i+1) / 2
//   dp_mj += sum_{i>=m} dc_ij (dc_ij/dcs_ij) 2 p_mj
//          = -p_mj sum_{i>=m} dQ~_ij Q~_ij c_ij^2 (i+1)      (a reverse prefix sum)
static void FN(head_backward)(real *dqf, real *dkf, real *dv, int64_t ldx, const real *g,
                              int64_t ldg, const real *v, const real *qf, const real *kf,
                              const real *cf, int64_t n, int64_t d, real *qt, real *p, real *m,
                              real *st, real *r, real *vec) {
  for (int64_t i = 0; i < n * d; i++)
    qt[i] = qf[i] * cf[i], dqf[i] = 0, dkf[i] = 0;
  FN(attn_causal_linear_backward)
  (dqf, d, dkf, d, dv, ldx, d, g, ldg, qt, d, kf, d, v, ldx, n, d, d, p, m, st, r);
  real *acc = vec; // acc_j = sum_{i>=m} dQ~_ij Q~_ij c_ij^2 (i+1)
  for (int64_t j = 0; j < d; j++)
    acc[j] = 0;
  for (int64_t i = n - 1; i >= 0; i--)
    for (int64_t j = 0; j < d; j++) {
      const int64_t ij = i * d + j;
      acc[j] += dqf[ij] * qt[ij] * cf[ij] * cf[ij] * (real)(i + 1);
      dkf[ij] -= kf[ij] * acc[j];
      dqf[ij] *= cf[ij]; // dQ~ -> dqf
    }
}

static void FN(linrec_causal_fwd)(real *ob, real *cache, const real *xb, const real *prm,
                                  int64_t n, int64_t N, int64_t D, int64_t H, real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const attn_causal_layout s = attn_causal_layout_of(N, D, H);
  FN(maps_forward)(cache + c.qf, cache + c.kf, cache + c.cf, cache + c.rq, xb, n, N, D, H,
                   scratch + s.vec);
  for (int64_t h = 0; h < H; h++)
    FN(head_forward)(ob + h * d, D, cache + c.qf + h * N * d, cache + c.kf + h * N * d,
                     cache + c.cf + h * N * d, xb + 2 * D + h * d, ldx, n, d, scratch + s.x1,
                     scratch + s.p, scratch + s.r);
}

static void FN(linrec_causal_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                  const real *prm, const real *cache, int64_t n, int64_t N,
                                  int64_t D, int64_t H, real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const attn_causal_layout s = attn_causal_layout_of(N, D, H);
  real *dqf = scratch + s.dqf, *dkf = scratch + s.dkf; // (H,N,d)
  for (int64_t h = 0; h < H; h++)
    FN(head_backward)(dqf + h * N * d, dkf + h * N * d, dxb + 2 * D + h * d, ldx, gb + h * d, D,
                      xb + 2 * D + h * d, cache + c.qf + h * N * d, cache + c.kf + h * N * d,
                      cache + c.cf + h * N * d, n, d, scratch + s.x1, scratch + s.p,
                      scratch + s.m, scratch + s.st, scratch + s.r, scratch + s.vec);
  FN(maps_backward)(dxb, dqf, dkf, cache + c.qf, cache + c.rq, xb, n, N, D, H, scratch + s.vec);
}


#if !LR_F64
// One row (recommend --stream). st: acc (D), then per head the causal
// linear state; ws: ph (2D), qf, kf, cf (D each), rq (H), p (C).
static void linrec_causal_step(float *out, float *st, float *ws, const float *x, const float *prm,
                               int64_t t, int64_t D, int64_t H) {
  (void)prm;
  const int64_t d = D / H;
  const size_t hst = attn_causal_step_elems(d, d);
  float *acc = st, *ph = ws, *qf = ws + 2 * D, *kf = qf + D, *cf = kf + D, *rq = cf + D;
  float *p = rq + H;
  maps_row(qf, kf, cf, rq, d, 1, acc, x, t, D, H, ph);
  for (int64_t i = 0; i < D; i++)
    qf[i] *= cf[i]; // Q~ = qf . cf, as head_forward
  for (int64_t h = 0; h < H; h++)
    attn_causal_linear_step(out + h * d, qf + h * d, kf + h * d, x + 2 * D + h * d,
                            st + D + (size_t)h * hst, t, d, d, p);
}
#endif
#endif
