// attn_linrec.c: the `linrec` attention kind, LinRec Eq. 9, per head:
//   A = rho1(phi(Q)) (rho2(phi(K))^T V),  phi = elu,
//   rho1 = row L2 norm scaled 1/sqrt(d),
//   rho2 = column L2 norm over the n valid rows scaled 1/sqrt(n)
// O(N d^2); not causal. Padded rows never enter the column norms.
#ifndef ATTN_BODY
#include <math.h> // sqrtf, sqrt

#include "attn_kernels.h"

static size_t cache_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 1).total;
}
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 1).stotal;
}

#define ATTN_SELF "attn_linrec.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_linrec = {
    "linrec",
    "paper Eq. 9: rho1(elu(Q)) (rho2(elu(K))^T V); rho1 = row L2 norm * 1/sqrt(Dh), rho2 = "
    "column L2 norm over the valid rows * 1/sqrt(n)",
    0,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    linrec_fwd,
    linrec_bwd,
    linrec_fwd_f64,
    linrec_bwd_f64,
    attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// qf = rho1(phi(Q)), rq its row scales 1/||phi(q)||; kf = rho2(phi(K)):
// kf_mj = phi_mj ck_j, ck_j = 1/(sqrt(n) ||phi_{0..n-1,j}||), ck in rk
// (d per head, ld max(N,d)). vec: 4D scratch.
static void FN(maps_forward)(real *qf, real *kf, real *rq, real *rk, const real *xb, int64_t n,
                             int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D, ldk = N > d ? N : d;
  const real rho1 = (real)1 / R_SQRT((real)d);
  real *ph = vec, *acc = vec + 2 * D; // ph: phi of one row's Q|K; acc: column sums of phi^2
  for (int64_t c = 0; c < D; c++)
    acc[c] = 0;
  for (int64_t i = 0; i < n; i++) {
    FN(attn_elu_run)(ph, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      real *qy = qf + h * N * d + i * d, *ky = kf + h * N * d + i * d;
      const real *pq = ph + h * d, *pk = ph + D + h * d;
      real *ac = acc + h * d;
      rq[h * N + i] = FN(attn_rownorm_forward)(qy, pq, d, rho1);
      for (int64_t j = 0; j < d; j++)
        ky[j] = pk[j], ac[j] += pk[j] * pk[j];
    }
  }
  const real isn = (real)1 / R_SQRT((real)n);
  for (int64_t h = 0; h < H; h++) {
    real *ck = rk + h * ldk;
    for (int64_t j = 0; j < d; j++)
      ck[j] = isn / R_SQRT(acc[h * d + j] + (real)LR_ATTN_EPS);
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++)
        kf[h * N * d + i * d + j] *= ck[j];
  }
}

// dxb (Q and K columns) += gradients through the maps, given dqf, dkf (H,N,d).
//   rho1: rownorm_backward
//   rho2: y_mj = c_j p_mj, c_j = n^(-1/2) (sum_m p_mj^2 + eps)^(-1/2),
//     dc_j/dp_mj = -n c_j^3 p_mj
//     => dp_mj = c_j dy_mj - n c_j^3 p_mj sum_m' p_m'j dy_m'j
//              = c_j (dy_mj - n y_mj (y_:j . dy_:j))
// and dx = phi'(x) dp.
static void FN(maps_backward)(real *dxb, const real *dqf, const real *dkf, const real *qf,
                              const real *kf, const real *rq, const real *rk, const real *xb,
                              int64_t n, int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D, ldk = N > d ? N : d;
  const real rho1 = (real)1 / R_SQRT((real)d);
  real *g = vec, *dot = vec + 2 * D;
  for (int64_t c = 0; c < D; c++) // column dots y_:j . dy_:j
    dot[c] = 0;
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++)
        dot[h * d + j] += kf[h * N * d + i * d + j] * dkf[h * N * d + i * d + j];
  for (int64_t i = 0; i < n; i++) {
    real *dq = dxb + i * ldx, *dk = dxb + i * ldx + D;
    FN(attn_elu_grad_run)(g, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      const real *qy = qf + h * N * d + i * d, *dqy = dqf + h * N * d + i * d;
      const real *ky = kf + h * N * d + i * d, *dky = dkf + h * N * d + i * d;
      const real *gq = g + h * d, *gk = g + D + h * d;
      real *dqh = dq + h * d, *dkh = dk + h * d;
      FN(attn_rownorm_backward)(dqh, dqy, qy, gq, rq[h * N + i], rho1, d);
      const real *ck = rk + h * ldk;
      for (int64_t j = 0; j < d; j++)
        dkh[j] += gk[j] * ck[j] * (dky[j] - (real)n * ky[j] * dot[h * d + j]);
    }
  }
}

static void FN(linrec_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                           int64_t N, int64_t D, int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 1);
  FN(maps_forward)(cache + l.qf, cache + l.kf, cache + l.rq, cache + l.rk, xb, n, N, D, H,
                   scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
}

static void FN(linrec_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                           const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                           int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 1);
  FN(attn_qkv_linear_backward)(scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb,
                               cache + l.qf, cache + l.kf, cache + l.kv, xb, n, N, D, H);
  FN(maps_backward)(dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf,
                    cache + l.rq, cache + l.rk, xb, n, N, D, H, scratch + l.vec);
}

#endif
