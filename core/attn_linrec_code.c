// attn_linrec_code.c: the `linrec_code` attention kind, LinRec as its
// authors' released code computes it, per head:
//   A = Qn (Kn^T V) / sqrt(d),  Qn = rownorm(phi(Q)), Kn = rownorm(phi(K))
// with padded K rows left out (unlike the released code). The 1/sqrt(d) is
// folded into Qn (so Qn = rho1(phi(Q)), as in linrec). O(N d^2); not causal.
#ifndef ATTN_BODY
#include <math.h> // sqrtf, sqrt

#include "attn_kernels.h"

static size_t cache_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 1).total;
}
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 1).stotal;
}

#define ATTN_SELF "attn_linrec_code.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_linrec_code = {
    "linrec_code",
    "the released code: rownorm(elu(Q)) (rownorm(elu(K))^T V) / sqrt(Dh) (padded K rows zeroed, "
    "unlike the released code)",
    0,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    linrec_code_fwd,
    linrec_code_bwd,
    linrec_code_fwd_f64,
    linrec_code_bwd_f64,
    attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// qf = rho1(phi(Q)), kf = rownorm(phi(K)); rq, rk (ld max(N,d)) their row
// scales. vec: 4D scratch.
static void FN(maps_forward)(real *qf, real *kf, real *rq, real *rk, const real *xb, int64_t n,
                             int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D, ldk = N > d ? N : d;
  const real rho1 = (real)1 / R_SQRT((real)d);
  real *ph = vec; // phi of one row's Q|K
  for (int64_t i = 0; i < n; i++) {
    FN(attn_elu_run)(ph, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      real *qy = qf + h * N * d + i * d, *ky = kf + h * N * d + i * d;
      rq[h * N + i] = FN(attn_rownorm_forward)(qy, ph + h * d, d, rho1);
      rk[h * ldk + i] = FN(attn_rownorm_forward)(ky, ph + D + h * d, d, 1);
    }
  }
}

// dxb (Q and K columns) += gradients through both row normalisations.
static void FN(maps_backward)(real *dxb, const real *dqf, const real *dkf, const real *qf,
                              const real *kf, const real *rq, const real *rk, const real *xb,
                              int64_t n, int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D, ldk = N > d ? N : d;
  const real rho1 = (real)1 / R_SQRT((real)d);
  real *g = vec;
  for (int64_t i = 0; i < n; i++) {
    real *dq = dxb + i * ldx, *dk = dxb + i * ldx + D;
    FN(attn_elu_grad_run)(g, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      const int64_t o = h * N * d + i * d;
      FN(attn_rownorm_backward)(dq + h * d, dqf + o, qf + o, g + h * d, rq[h * N + i], rho1, d);
      FN(attn_rownorm_backward)(dk + h * d, dkf + o, kf + o, g + D + h * d, rk[h * ldk + i], 1, d);
    }
  }
}

static void FN(linrec_code_fwd)(real *ob, real *cache, const real *xb, const real *prm,
                                int64_t n, int64_t N, int64_t D, int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 1);
  FN(maps_forward)(cache + l.qf, cache + l.kf, cache + l.rq, cache + l.rk, xb, n, N, D, H,
                   scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
}

static void FN(linrec_code_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                const real *prm, const real *cache, int64_t n, int64_t N,
                                int64_t D, int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 1);
  FN(attn_qkv_linear_backward)(scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb,
                               cache + l.qf, cache + l.kf, cache + l.kv, xb, n, N, D, H);
  FN(maps_backward)(dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf,
                    cache + l.rq, cache + l.rk, xb, n, N, D, H, scratch + l.vec);
}

#endif
