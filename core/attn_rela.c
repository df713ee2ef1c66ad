// attn_rela.c: the `rela` attention kind, RecGRELA's rotary-enhanced linear
// attention as released (non-causal). With qf = elu(Q) + 1, kf = elu(K) + 1
// and qr, kr their RoPE rotations over the full width D (grela.h), per head
// over the n real rows:
//   A_i = (qr_i . sum_m kr_m V_m^T) / (qf_i . sum_m kf_m + n 1e-6)
// i.e. the released mean form  (qr_i kv / n) / (qf_i . mean_m kf_m + 1e-6):
// its L^-1/2 L^-1/2 scale of K^T V and its mean of K cancel but for the eps
// term, which keeps the released weight (1e-6 against the mean). O(n d^2)
// per head; numerator with rotated features, denominator with unrotated
// ones.
//
// Also `rela_released`, NOT in the registry: the released padding
// semantics, for the recorded PyTorch replay only (tests/test_torch_ref.c
// registers it; tests/test_recgrela.c checks it against rela). The released
// code runs every one of the N rows of a right-padded window through the
// sums (padded rows included, n = N in the formula above) and writes an
// output for each; a padded batch then changes a sequence's outputs, which
// is why it is not a training kind.
//
// And `rela_norope`, NOT in the registry either: rela with the identity in
// place of RoPE, the attention of the ablation model.arch=recgrela_norope
// (core/arch_recgrela.c picks it in place of rela).
#ifndef ATTN_BODY
#include "attn_kernels.h" // attn_region, attn_linear_flops
#include "gemm.h"         // lr_sgemm, lr_dgemm
#include "grela.h"        // grela_rope_*, grela_maps_*, GRELA_EPS

// cache: qf, kf (N,D), kv (H,d,d) = kr_h^T V_h, ksum (D) = sum kf, den (N,H)
// the denominators (eps included), o (N,D) the outputs.
typedef struct {
  size_t qf, kf, kv, ksum, den, o, total;
} cache_layout;

static cache_layout layout(int64_t N, int64_t D, int64_t H) {
  cache_layout l = {0};
  const size_t nd = (size_t)(N * D), d = (size_t)(D / H);
  l.qf = attn_region(&l.total, nd);
  l.kf = attn_region(&l.total, nd);
  l.kv = attn_region(&l.total, (size_t)H * d * d);
  l.ksum = attn_region(&l.total, (size_t)D);
  l.den = attn_region(&l.total, (size_t)(N * H));
  l.o = attn_region(&l.total, nd);
  return l;
}

// scratch: cs (N,D) the RoPE table, qr, kr (N,D), dqr, dkr, dnum (N,D), dkv
// (H,d,d), dden (N,H), u (D), vec (2D).
typedef struct {
  size_t cs, qr, kr, dqr, dkr, dnum, dkv, dden, u, vec, total;
} scratch_layout;

static scratch_layout slayout(int64_t N, int64_t D, int64_t H) {
  scratch_layout l = {0};
  const size_t nd = (size_t)(N * D), d = (size_t)(D / H);
  l.cs = attn_region(&l.total, nd);
  l.qr = attn_region(&l.total, nd);
  l.kr = attn_region(&l.total, nd);
  l.dqr = attn_region(&l.total, nd);
  l.dkr = attn_region(&l.total, nd);
  l.dnum = attn_region(&l.total, nd);
  l.dkv = attn_region(&l.total, (size_t)H * d * d);
  l.dden = attn_region(&l.total, (size_t)(N * H));
  l.u = attn_region(&l.total, (size_t)D);
  l.vec = attn_region(&l.total, 2 * (size_t)D);
  return l;
}

static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return layout(N, D, H).total; }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) { return slayout(N, D, H).total; }

#define ATTN_SELF "attn_rela.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_rela = {
    "rela",
    "RecGRELA as released: elu+1 maps, RoPE over D, qr (kr^T V) / (q . sum k + n 1e-6)",
    0,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    rela_fwd,
    rela_bwd,
    rela_fwd_f64,
    rela_bwd_f64,
    attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

const lr_attn_ops lr_attn_rela_released = {
    "rela_released",
    "rela with the released padding semantics (padded rows in the sums): replay only",
    0,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    rela_released_fwd,
    rela_released_bwd,
    rela_released_fwd_f64,
    rela_released_bwd_f64,
    attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

const lr_attn_ops lr_attn_rela_norope = {
    "rela_norope",
    "rela without RoPE (qr = qf, kr = kf): the ablation model.arch=recgrela_norope",
    0,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    rela_norope_fwd,
    rela_norope_bwd,
    rela_norope_fwd_f64,
    rela_norope_bwd_f64,
    attn_linear_flops, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL};

#else // ---- the kernels, over `real` ------------------------------------------------------

// Rows 0..n-1 of the sequence (n = N for rela_released).
static void FN(run_fwd)(real *ob, real *cache, const real *xb, int64_t n, int64_t N, int64_t D,
                        int64_t H, real *scratch, int rope) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const scratch_layout s = slayout(N, D, H);
  real *qf = cache + c.qf, *kf = cache + c.kf, *kv = cache + c.kv, *ksum = cache + c.ksum;
  real *den = cache + c.den, *o = cache + c.o;
  real *cs = scratch + s.cs, *qr = scratch + s.qr, *kr = scratch + s.kr;
  FN(grela_maps_forward)(qf, kf, xb, n, D, scratch + s.vec);
  FN(grela_rope_qk)(cs, qr, kr, qf, kf, n, D, rope);
  for (int64_t j = 0; j < D; j++)
    ksum[j] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++)
      ksum[j] += kf[i * D + j];
  for (int64_t h = 0; h < H; h++) { // kv_h = kr_h^T V_h, out_h = qr_h kv_h
    GEMM(1, 0, d, d, n, 1, kr + h * d, D, xb + 2 * D + h * d, ldx, 0, kv + h * d * d, d);
    GEMM(0, 0, n, d, d, 1, qr + h * d, D, kv + h * d * d, d, 0, ob + h * d, D);
  }
  const real eps = (real)((double)n * GRELA_EPS);
  for (int64_t i = 0; i < n; i++)
    FN(grela_divide_row)(ob + i * D, o + i * D, den + i * H, qf + i * D, ksum, eps, D, H);
}

// forward: o = num / den, num_h = qr_h kv_h, kv_h = kr_h^T V_h, den = qf . ksum + eps
//   dnum = g / den;  dden = -(g . o) / den
//   dqr = dnum kv^T;  dkv = qr^T dnum;  dkr = V dkv^T;  dV += kr dkv
//   dqf = R^T dqr + dden ksum;  dkf_m = R^T dkr_m + sum_i dden_i qf_i
static void FN(run_bwd)(real *dxb, const real *gb, const real *xb, const real *cache, int64_t n,
                        int64_t N, int64_t D, int64_t H, real *scratch, int rope) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const scratch_layout s = slayout(N, D, H);
  const real *qf = cache + c.qf, *kf = cache + c.kf, *kv = cache + c.kv, *ksum = cache + c.ksum;
  const real *den = cache + c.den, *o = cache + c.o;
  real *cs = scratch + s.cs, *qr = scratch + s.qr, *kr = scratch + s.kr;
  real *dqr = scratch + s.dqr, *dkr = scratch + s.dkr, *dnum = scratch + s.dnum;
  real *dkv = scratch + s.dkv, *dden = scratch + s.dden, *u = scratch + s.u;
  FN(grela_rope_qk)(cs, qr, kr, qf, kf, n, D, rope);
  FN(grela_div_backward)(dnum, dden, gb, o, den, n, D, H);
  for (int64_t h = 0; h < H; h++) {
    const real *kvh = kv + h * d * d;
    real *dkvh = dkv + h * d * d;
    GEMM(0, 1, n, d, d, 1, dnum + h * d, D, kvh, d, 0, dqr + h * d, D);
    GEMM(1, 0, d, d, n, 1, qr + h * d, D, dnum + h * d, D, 0, dkvh, d);
    GEMM(0, 1, n, d, d, 1, xb + 2 * D + h * d, ldx, dkvh, d, 0, dkr + h * d, D);
    GEMM(0, 0, n, d, d, 1, kr + h * d, D, dkvh, d, 1, dxb + 2 * D + h * d, ldx);
  }
  FN(grela_rope_backward)(dqr, D, dqr, D, cs, n, D); // now the gradients w.r.t. qf, kf
  FN(grela_rope_backward)(dkr, D, dkr, D, cs, n, D);
  for (int64_t j = 0; j < D; j++)
    u[j] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t h = 0; h < H; h++) {
      const real dd = dden[i * H + h];
      for (int64_t j = h * d; j < (h + 1) * d; j++) {
        dqr[i * D + j] += dd * ksum[j];
        u[j] += dd * qf[i * D + j];
      }
    }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++)
      dkr[i * D + j] += u[j];
  FN(grela_maps_backward)(dxb, dqr, dkr, xb, n, D, scratch + s.vec);
}

static void FN(rela_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                         int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(run_fwd)(ob, cache, xb, n, N, D, H, scratch, 1);
}

static void FN(rela_bwd)(real *dxb, real *dprm, const real *gb, const real *xb, const real *prm,
                         const real *cache, int64_t n, int64_t N, int64_t D, int64_t H,
                         real *scratch) {
  FN(run_bwd)(dxb, gb, xb, cache, n, N, D, H, scratch, 1);
}

// The released semantics: all N rows, whatever n.
static void FN(rela_released_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                                  int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(run_fwd)(ob, cache, xb, N, N, D, H, scratch, 1);
}

static void FN(rela_released_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                  const real *prm, const real *cache, int64_t n, int64_t N,
                                  int64_t D, int64_t H, real *scratch) {
  FN(run_bwd)(dxb, gb, xb, cache, N, N, D, H, scratch, 1);
}

// The ablation without RoPE: rela with the identity in place of the rotation.
static void FN(rela_norope_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                                int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(run_fwd)(ob, cache, xb, n, N, D, H, scratch, 0);
}

static void FN(rela_norope_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                                int64_t H, real *scratch) {
  FN(run_bwd)(dxb, gb, xb, cache, n, N, D, H, scratch, 0);
}

#endif
