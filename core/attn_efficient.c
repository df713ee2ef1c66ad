// attn_efficient.c: the `efficient` attention kind (Shen et al., Efficient
// Attention), per head:
//   A = softmax_row(Q) (softmax_col(K)^T V)
// the row softmax over each head's d features of a Q row, the column softmax
// over the n valid positions of each K column. O(N d^2); not causal.
#ifndef ATTN_BODY
#include <math.h> // sqrtf, sqrt

#include "attn_kernels.h"

static size_t cache_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 0).total;
}
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) {
  return attn_linear_layout_of(N, D, H, 0).stotal;
}

#define ATTN_SELF "attn_efficient.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_efficient = {
    "efficient",  "softmax_row(Q) (softmax_col(K)^T V) (Shen et al.)", 0, cache_elems,
    scratch_elems, NULL, NULL, efficient_fwd, efficient_bwd, efficient_fwd_f64,
    efficient_bwd_f64, attn_linear_flops, NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// qf = softmax over each head's d features of a Q row, kf = softmax over the
// n valid positions of each K column. vec: 4D scratch.
static void FN(maps_forward)(real *qf, real *kf, const real *xb, int64_t n, int64_t N, int64_t D,
                             int64_t H, real *vec) {
  const int64_t d = D / H, ldx = 3 * D;
  real *t = vec, *mx = vec + 2 * D, *sum = vec + 3 * D;
  for (int64_t i = 0; i < n; i++) {
    const real *x = xb + i * ldx;
    for (int64_t h = 0; h < H; h++) {
      real m = x[h * d];
      for (int64_t j = 1; j < d; j++)
        m = x[h * d + j] > m ? x[h * d + j] : m;
      for (int64_t j = 0; j < d; j++)
        t[h * d + j] = x[h * d + j] - m;
    }
    FN(attn_exp_run)(t, t, D);
    for (int64_t h = 0; h < H; h++) {
      real z = 0, *y = qf + h * N * d + i * d;
      for (int64_t j = 0; j < d; j++)
        z += t[h * d + j];
      for (int64_t j = 0; j < d; j++)
        y[j] = t[h * d + j] / z;
    }
  }
  for (int64_t c = 0; c < D; c++)
    mx[c] = xb[D + c], sum[c] = 0;
  for (int64_t i = 1; i < n; i++)
    for (int64_t c = 0; c < D; c++)
      mx[c] = xb[i * ldx + D + c] > mx[c] ? xb[i * ldx + D + c] : mx[c];
  for (int64_t i = 0; i < n; i++) {
    for (int64_t c = 0; c < D; c++)
      t[c] = xb[i * ldx + D + c] - mx[c];
    FN(attn_exp_run)(t, t, D);
    for (int64_t h = 0; h < H; h++)
      for (int64_t j = 0; j < d; j++)
        kf[h * N * d + i * d + j] = t[h * d + j];
    for (int64_t c = 0; c < D; c++)
      sum[c] += t[c];
  }
  for (int64_t c = 0; c < D; c++)
    sum[c] = (real)1 / sum[c];
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++)
        kf[h * N * d + i * d + j] *= sum[h * d + j];
}

// dxb (Q and K columns) += gradients through both softmaxes: y = softmax(x)
// along the map's axis gives dx = y (dy - sum(y dy)).
static void FN(maps_backward)(real *dxb, const real *dqf, const real *dkf, const real *qf,
                              const real *kf, int64_t n, int64_t N, int64_t D, int64_t H,
                              real *vec) {
  const int64_t d = D / H, ldx = 3 * D;
  real *dot = vec + 2 * D;
  for (int64_t c = 0; c < D; c++) // column dots y_:j . dy_:j
    dot[c] = 0;
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++)
        dot[h * d + j] += kf[h * N * d + i * d + j] * dkf[h * N * d + i * d + j];
  for (int64_t i = 0; i < n; i++) {
    real *dq = dxb + i * ldx, *dk = dxb + i * ldx + D;
    for (int64_t h = 0; h < H; h++) {
      const real *y = qf + h * N * d + i * d, *dy = dqf + h * N * d + i * d;
      real ydy = 0;
      for (int64_t j = 0; j < d; j++)
        ydy += y[j] * dy[j];
      for (int64_t j = 0; j < d; j++)
        dq[h * d + j] += y[j] * (dy[j] - ydy);
      const real *ky = kf + h * N * d + i * d, *dky = dkf + h * N * d + i * d;
      for (int64_t j = 0; j < d; j++)
        dk[h * d + j] += ky[j] * (dky[j] - dot[h * d + j]);
    }
  }
}

static void FN(efficient_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                              int64_t N, int64_t D, int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(maps_forward)(cache + l.qf, cache + l.kf, xb, n, N, D, H, scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
}

static void FN(efficient_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                              const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                              int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_qkv_linear_backward)(scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb,
                               cache + l.qf, cache + l.kf, cache + l.kv, xb, n, N, D, H);
  FN(maps_backward)(dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf, n, N, D, H,
                    scratch + l.vec);
}

#endif
