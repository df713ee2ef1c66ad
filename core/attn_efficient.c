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
    efficient_bwd_f64, attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

static void FN(efficient_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                              int64_t N, int64_t D, int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_softmax_maps_forward)(cache + l.qf, cache + l.kf, xb, NULL, n, N, D, H, scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
}

static void FN(efficient_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                              const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                              int64_t H, real *scratch) {
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_qkv_linear_backward)(scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb,
                               cache + l.qf, cache + l.kf, cache + l.kv, xb, n, N, D, H);
  FN(attn_softmax_maps_backward)(dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf, n, N, D, H,
                    scratch + l.vec);
}

#endif
