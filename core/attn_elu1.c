// attn_elu1.c: the `elu1` attention kind, the causal linear transformer of
// Katharopoulos et al. ("LT"), per head with a = phi(Q) + 1, b = phi(K) + 1:
//   A_i = sum_{m<=i} (a_i . b_m) V_m / (sum_{m<=i} a_i . b_m + 1e-6)
// numerator and denominator through one chunked causal linear pass over
// [V 1] (attn_kernels.h): O(N C d + N d^2). Causal.
#ifndef ATTN_BODY
#include "attn_kernels.h"

// cache: qf = phi(Q) + 1, kf = phi(K) + 1 (H,N,d), nd (H,N,d+1) the
// numerator (d columns) and denominator sum (last column, without the 1e-6)
// of every output row.
typedef struct {
  size_t qf, kf, nd, total;
} cache_layout;

static cache_layout layout(int64_t N, int64_t D, int64_t H) {
  cache_layout l = {0};
  const size_t nd = (size_t)(N * D), d = (size_t)(D / H);
  l.qf = attn_region(&l.total, nd);
  l.kf = attn_region(&l.total, nd);
  l.nd = attn_region(&l.total, (size_t)(H * N) * (d + 1));
  return l;
}

static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return layout(N, D, H).total; }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_causal_layout_of(N, D, H).total;
}

#define ATTN_SELF "attn_elu1.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_elu1 = {
    "elu1",       "causal linear transformer, phi = elu+1, with its denominator (+1e-6)", 1,
    cache_elems,  scratch_elems, NULL, NULL, elu1_fwd, elu1_bwd, elu1_fwd_f64, elu1_bwd_f64,
    attn_causal_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// qf = phi(Q) + 1, kf = phi(K) + 1. vec: 2D scratch.
static void FN(maps_forward)(real *qf, real *kf, const real *xb, int64_t n, int64_t N, int64_t D,
                             int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D;
  real *ph = vec; // phi of one row's Q|K
  for (int64_t i = 0; i < n; i++) {
    FN(attn_elu_run)(ph, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      real *qy = qf + h * N * d + i * d, *ky = kf + h * N * d + i * d;
      const real *pq = ph + h * d, *pk = ph + D + h * d;
      for (int64_t j = 0; j < d; j++)
        qy[j] = pq[j] + 1, ky[j] = pk[j] + 1;
    }
  }
}

// dxb (Q and K columns) += phi'(x) times dqf, dkf (H,N,d).
static void FN(maps_backward)(real *dxb, const real *dqf, const real *dkf, const real *xb,
                              int64_t n, int64_t N, int64_t D, int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D;
  real *g = vec;
  for (int64_t i = 0; i < n; i++) {
    real *dq = dxb + i * ldx, *dk = dxb + i * ldx + D;
    FN(attn_elu_grad_run)(g, xb + i * ldx, 2 * D);
    for (int64_t h = 0; h < H; h++) {
      const real *dqy = dqf + h * N * d + i * d, *dky = dkf + h * N * d + i * d;
      const real *gq = g + h * d, *gk = g + D + h * d;
      real *dqh = dq + h * d, *dkh = dk + h * d;
      for (int64_t j = 0; j < d; j++)
        dqh[j] += gq[j] * dqy[j];
      for (int64_t j = 0; j < d; j++)
        dkh[j] += gk[j] * dky[j];
    }
  }
}

// One head: [num | den - 1e-6] = causal_linear(qf, kf, [V 1]) into nd
// (n,d+1); o = num / den. vp: (n,d+1) scratch.
static void FN(head_forward)(real *o, int64_t ldo, real *nd, const real *qf, const real *kf,
                             const real *v, int64_t ldx, int64_t n, int64_t d, real *vp, real *p,
                             real *s) {
  const int64_t d1 = d + 1;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < d; j++)
      vp[i * d1 + j] = v[i * ldx + j];
    vp[i * d1 + d] = 1;
  }
  FN(attn_causal_linear_forward)(nd, d1, qf, d, kf, d, vp, d1, n, d, d1, p, s);
  for (int64_t i = 0; i < n; i++) {
    const real inv = (real)1 / (nd[i * d1 + d] + (real)LR_ATTN_ELU1_EPS);
    for (int64_t j = 0; j < d; j++)
      o[i * ldo + j] = nd[i * d1 + j] * inv;
  }
}

// dqf, dkf (n,d) = gradients w.r.t. qf = phi(Q)+1 and kf = phi(K)+1
// (overwritten); dv (ld ldx) += gradient w.r.t. V. vp, dop: (n,d+1) scratch.
// forward: o_i = num_i / den_i, [num_i, den_i - 1e-6] = causal_linear(qf, kf, [V 1])_i
//   dnum_i = g_i / den_i;  dden_i = -(g_i . num_i) / den_i^2
// then causal_linear_backward with dO = [dnum dden].
static void FN(head_backward)(real *dqf, real *dkf, real *dv, int64_t ldx, const real *g,
                              int64_t ldg, const real *v, const real *qf, const real *kf,
                              const real *nd, int64_t n, int64_t d, real *vp, real *dop, real *p,
                              real *m, real *st, real *r) {
  const int64_t d1 = d + 1;
  for (int64_t i = 0; i < n; i++) {
    const real inv = (real)1 / (nd[i * d1 + d] + (real)LR_ATTN_ELU1_EPS);
    real gn = 0;
    for (int64_t j = 0; j < d; j++) {
      vp[i * d1 + j] = v[i * ldx + j];
      dop[i * d1 + j] = g[i * ldg + j] * inv;
      gn += g[i * ldg + j] * nd[i * d1 + j];
      dqf[i * d + j] = 0;
      dkf[i * d + j] = 0;
    }
    vp[i * d1 + d] = 1;
    dop[i * d1 + d] = -gn * inv * inv;
  }
  FN(attn_causal_linear_backward)
  (dqf, d, dkf, d, dv, ldx, d, dop, d1, qf, d, kf, d, vp, d1, n, d, d1, p, m, st, r);
}

static void FN(elu1_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                         int64_t N, int64_t D, int64_t H, real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const attn_causal_layout s = attn_causal_layout_of(N, D, H);
  FN(maps_forward)(cache + c.qf, cache + c.kf, xb, n, N, D, H, scratch + s.vec);
  for (int64_t h = 0; h < H; h++)
    FN(head_forward)(ob + h * d, D, cache + c.nd + h * N * (d + 1), cache + c.qf + h * N * d,
                     cache + c.kf + h * N * d, xb + 2 * D + h * d, ldx, n, d, scratch + s.x1,
                     scratch + s.p, scratch + s.r);
}

static void FN(elu1_bwd)(real *dxb, real *dprm, const real *gb, const real *xb, const real *prm,
                         const real *cache, int64_t n, int64_t N, int64_t D, int64_t H,
                         real *scratch) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const attn_causal_layout s = attn_causal_layout_of(N, D, H);
  real *dqf = scratch + s.dqf, *dkf = scratch + s.dkf; // (H,N,d)
  for (int64_t h = 0; h < H; h++)
    FN(head_backward)(dqf + h * N * d, dkf + h * N * d, dxb + 2 * D + h * d, ldx, gb + h * d, D,
                      xb + 2 * D + h * d, cache + c.qf + h * N * d, cache + c.kf + h * N * d,
                      cache + c.nd + h * N * (d + 1), n, d, scratch + s.x1, scratch + s.x2,
                      scratch + s.p, scratch + s.m, scratch + s.st, scratch + s.r);
  FN(maps_backward)(dxb, dqf, dkf, xb, n, N, D, H, scratch + s.vec);
}

#endif
