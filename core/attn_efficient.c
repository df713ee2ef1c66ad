// attn_efficient.c: the `efficient` attention kind (Shen et al., Efficient
// Attention), per head:
//   A = softmax_row(Q) (softmax_col(K)^T V)
// the row softmax over each head's d features of a Q row, the column softmax
// over the n valid positions of each K column. O(N d^2); not causal. Takes a
// key mask (attention.h): a masked row gives no key to the column softmax
// and so no value to K^T V (Blin's attention without its convolution, under
// RandomPad).
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
    "efficient",     "softmax_row(Q) (softmax_col(K)^T V) (Shen et al.); takes RandomPad's key mask",
    0,               cache_elems,
    scratch_elems,   NULL,
    NULL,            efficient_fwd,
    efficient_bwd,   efficient_fwd_f64,
    efficient_bwd_f64, attn_linear_flops,
    efficient_fwd_km, efficient_bwd_km,
    efficient_fwd_km_f64, efficient_bwd_km_f64,
    NULL,            NULL,
    NULL,            NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// km NULL: every valid row a key. The backward needs no mask: a masked
// key's column-softmax entries are 0 in the cache, so no gradient reaches it.
static void FN(efficient_fwd_km)(real *ob, real *cache, const real *xb, const real *prm,
                                 const uint8_t *km, int64_t n, int64_t N, int64_t D, int64_t H,
                                 real *scratch) {
  (void)prm;
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_softmax_maps_forward)(cache + l.qf, cache + l.kf, xb, km, n, N, D, H, scratch + l.vec);
  FN(attn_qkv_linear_forward)(ob, cache + l.kv, cache + l.qf, cache + l.kf, xb, n, N, D, H);
}

static void FN(efficient_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                              int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(efficient_fwd_km)(ob, cache, xb, prm, NULL, n, N, D, H, scratch);
}

static void FN(efficient_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                              const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                              int64_t H, real *scratch) {
  (void)dprm, (void)prm;
  const attn_linear_layout l = attn_linear_layout_of(N, D, H, 0);
  FN(attn_qkv_linear_backward)(scratch + l.dqf, scratch + l.dkf, dxb, scratch + l.dkv, gb,
                               cache + l.qf, cache + l.kf, cache + l.kv, xb, n, N, D, H);
  FN(attn_softmax_maps_backward)(dxb, scratch + l.dqf, scratch + l.dkf, cache + l.qf, cache + l.kf, n, N, D, H,
                    scratch + l.vec);
}

static void FN(efficient_bwd_km)(real *dxb, real *dprm, const real *gb, const real *xb,
                                 const real *prm, const uint8_t *km, const real *cache, int64_t n,
                                 int64_t N, int64_t D, int64_t H, real *scratch) {
  (void)km;
  FN(efficient_bwd)(dxb, dprm, gb, xb, prm, cache, n, N, D, H, scratch);
}

#endif
