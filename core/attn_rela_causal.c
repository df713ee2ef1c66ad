// attn_rela_causal.c: the `rela_causal` attention kind, the causal form of
// RecGRELA's rotary-enhanced linear attention (attn_rela.c): each row
// attends to the rows up to itself, with the released mean replaced by the
// mean over that prefix, per head:
//   A_i = (qr_i . sum_{m<=i} kr_m V_m^T) / (qf_i . sum_{m<=i} kf_m + (i+1) 1e-6)
// The numerator is the chunked causal linear pass of attn_kernels.h (a
// masked (C,C) product inside a chunk, the carried state sum kr^T V
// across chunks), the denominator a running prefix sum of kf: O(n C d +
// n d^2) per head, no (n,n) matrix. Causal, so positions=all trains every
// prefix of a window at once.
#ifndef ATTN_BODY
#include "attn_kernels.h" // attn_region, attn_causal_*, attn_causal_flops
#include "grela.h"        // grela_rope_*, grela_maps_*, GRELA_EPS

// cache: qf, kf (N,D), den (N,H) the denominators (eps included), o (N,D).
typedef struct {
  size_t qf, kf, den, o, total;
} cache_layout;

static cache_layout layout(int64_t N, int64_t D, int64_t H) {
  cache_layout l = {0};
  const size_t nd = (size_t)(N * D);
  l.qf = attn_region(&l.total, nd);
  l.kf = attn_region(&l.total, nd);
  l.den = attn_region(&l.total, (size_t)(N * H));
  l.o = attn_region(&l.total, nd);
  return l;
}

// scratch: cs (N,D) the RoPE table, qr, kr, dqr, dkr, dnum (N,D), dden
// (N,H), run (D) a running sum, vec (2D); p, m (C,C), st (nchunks,d,d), r
// (d,d) the chunked pass's.
typedef struct {
  size_t cs, qr, kr, dqr, dkr, dnum, dden, run, vec, p, m, st, r, total;
} scratch_layout;

static scratch_layout slayout(int64_t N, int64_t D, int64_t H) {
  scratch_layout l = {0};
  const size_t nd = (size_t)(N * D), d = (size_t)(D / H), n = (size_t)N;
  const size_t ce = n < LR_ATTN_CHUNK ? n : LR_ATTN_CHUNK, nch = (n + ce - 1) / ce;
  l.cs = attn_region(&l.total, nd);
  l.qr = attn_region(&l.total, nd);
  l.kr = attn_region(&l.total, nd);
  l.dqr = attn_region(&l.total, nd);
  l.dkr = attn_region(&l.total, nd);
  l.dnum = attn_region(&l.total, nd);
  l.dden = attn_region(&l.total, (size_t)(N * H));
  l.run = attn_region(&l.total, (size_t)D);
  l.vec = attn_region(&l.total, 2 * (size_t)D);
  l.p = attn_region(&l.total, ce * ce);
  l.m = attn_region(&l.total, ce * ce);
  l.st = attn_region(&l.total, nch * d * d);
  l.r = attn_region(&l.total, d * d);
  return l;
}

static size_t cache_elems(int64_t N, int64_t D, int64_t H) { return layout(N, D, H).total; }
static size_t scratch_elems(int64_t N, int64_t D, int64_t H) { return slayout(N, D, H).total; }

// Streaming (attention.h, step): the state, and the workspace: the step's
// scratch (qf, kf, qr, kr (D each), vec (2D), den (H), p (C)), then the
// RoPE table of N rows built once by step_ws_init (the identity for the
// ablation without RoPE).
static size_t step_elems(int64_t D, int64_t H) {
  return (size_t)D + (size_t)H * attn_causal_step_elems(D / H, D / H);
}
static size_t step_ws_scratch(int64_t D, int64_t H) { return (size_t)(6 * D + H + LR_ATTN_CHUNK); }
static size_t step_ws_elems(int64_t N, int64_t D, int64_t H) {
  return step_ws_scratch(D, H) + (size_t)(N * D);
}
static void step_ws_rope(float *ws, int64_t N, int64_t D, int64_t H) {
  grela_rope_cs(ws + step_ws_scratch(D, H), N, D, 1);
}
static void step_ws_norope(float *ws, int64_t N, int64_t D, int64_t H) {
  grela_rope_cs(ws + step_ws_scratch(D, H), N, D, 0);
}
static void step_run(float *out, float *st, float *ws, const float *x, int64_t t, int64_t D,
                     int64_t H);
static void rela_causal_step(float *out, float *st, float *ws, const float *x, const float *prm,
                             int64_t t, int64_t D, int64_t H) {
  (void)prm;
  step_run(out, st, ws, x, t, D, H);
}

#define ATTN_SELF "attn_rela_causal.c"
#include "attn_instantiate.h"

const lr_attn_ops lr_attn_rela_causal = {
    "rela_causal",
    "causal RecGRELA: prefix sums of kr V^T and k, (i+1) 1e-6 (chunked)",
    1,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    rela_causal_fwd,
    rela_causal_bwd,
    rela_causal_fwd_f64,
    rela_causal_bwd_f64,
    attn_causal_flops, NULL, NULL, NULL, NULL,
    step_elems, step_ws_elems, step_ws_rope, rela_causal_step};

// Not in the registry: rela_causal without RoPE, the attention of the
// ablation model.arch=recgrela_norope (core/arch_recgrela.c).
const lr_attn_ops lr_attn_rela_causal_norope = {
    "rela_causal_norope",
    "rela_causal without RoPE (qr = qf, kr = kf): the ablation model.arch=recgrela_norope",
    1,
    cache_elems,
    scratch_elems,
    NULL,
    NULL,
    rela_causal_norope_fwd,
    rela_causal_norope_bwd,
    rela_causal_norope_fwd_f64,
    rela_causal_norope_bwd_f64,
    attn_causal_flops, NULL, NULL, NULL, NULL,
    step_elems, step_ws_elems, step_ws_norope, rela_causal_step};

#else // ---- the kernels, over `real` ------------------------------------------------------

// Row i's division by its denominator: run (D) += kf (the prefix sum of
// rows 0..i), then grela_divide_row with eps (i+1) 1e-6.
static void FN(divide_row)(real *ob, real *o, real *den, real *run, const real *qf, const real *kf,
                           int64_t i, int64_t D, int64_t H) {
  for (int64_t j = 0; j < D; j++)
    run[j] += kf[j];
  FN(grela_divide_row)(ob, o, den, qf, run, (real)((double)(i + 1) * GRELA_EPS), D, H);
}

static void FN(run_fwd)(real *ob, real *cache, const real *xb, int64_t n, int64_t N, int64_t D,
                        int64_t H, real *scratch, int rope) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const scratch_layout s = slayout(N, D, H);
  real *qf = cache + c.qf, *kf = cache + c.kf, *den = cache + c.den, *o = cache + c.o;
  real *cs = scratch + s.cs, *qr = scratch + s.qr, *kr = scratch + s.kr, *run = scratch + s.run;
  FN(grela_maps_forward)(qf, kf, xb, n, D, scratch + s.vec);
  FN(grela_rope_qk)(cs, qr, kr, qf, kf, n, D, rope);
  for (int64_t h = 0; h < H; h++)
    FN(attn_causal_linear_forward)
    (ob + h * d, D, qr + h * d, D, kr + h * d, D, xb + 2 * D + h * d, ldx, n, d, d, scratch + s.p,
     scratch + s.r);
  for (int64_t j = 0; j < D; j++)
    run[j] = 0;
  for (int64_t i = 0; i < n; i++)
    FN(divide_row)(ob + i * D, o + i * D, den + i * H, run, qf + i * D, kf + i * D, i, D, H);
}

// forward: o_i = num_i / den_i, num = causal_linear(qr, kr, V), den_i = qf_i . P_i + eps_i,
// P_i = sum_{m<=i} kf_m
//   dnum = g / den;  dden = -(g . o) / den;  causal_linear_backward(dnum) -> dqr, dkr, dV
//   dqf_i = R^T dqr_i + dden_i P_i;  dkf_m = R^T dkr_m + sum_{i>=m} dden_i qf_i
static void FN(run_bwd)(real *dxb, const real *gb, const real *xb, const real *cache, int64_t n,
                        int64_t N, int64_t D, int64_t H, real *scratch, int rope) {
  const int64_t d = D / H, ldx = 3 * D;
  const cache_layout c = layout(N, D, H);
  const scratch_layout s = slayout(N, D, H);
  const real *qf = cache + c.qf, *kf = cache + c.kf, *den = cache + c.den, *o = cache + c.o;
  real *cs = scratch + s.cs, *qr = scratch + s.qr, *kr = scratch + s.kr, *run = scratch + s.run;
  real *dqr = scratch + s.dqr, *dkr = scratch + s.dkr, *dnum = scratch + s.dnum;
  real *dden = scratch + s.dden;
  FN(grela_rope_qk)(cs, qr, kr, qf, kf, n, D, rope);
  FN(grela_div_backward)(dnum, dden, gb, o, den, n, D, H);
  for (int64_t i = 0; i < n * D; i++)
    dqr[i] = 0, dkr[i] = 0;
  for (int64_t h = 0; h < H; h++)
    FN(attn_causal_linear_backward)
    (dqr + h * d, D, dkr + h * d, D, dxb + 2 * D + h * d, ldx, d, dnum + h * d, D, qr + h * d, D,
     kr + h * d, D, xb + 2 * D + h * d, ldx, n, d, d, scratch + s.p, scratch + s.m, scratch + s.st,
     scratch + s.r);
  FN(grela_rope_backward)(dqr, D, dqr, D, cs, n, D); // now the gradients w.r.t. qf, kf
  FN(grela_rope_backward)(dkr, D, dkr, D, cs, n, D);
  for (int64_t j = 0; j < D; j++) // forward prefix P_i into dqf
    run[j] = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t h = 0; h < H; h++) {
      const real dd = dden[i * H + h];
      for (int64_t j = h * d; j < (h + 1) * d; j++) {
        run[j] += kf[i * D + j];
        dqr[i * D + j] += dd * run[j];
      }
    }
  for (int64_t j = 0; j < D; j++) // reverse suffix of dden qf into dkf
    run[j] = 0;
  for (int64_t i = n - 1; i >= 0; i--)
    for (int64_t h = 0; h < H; h++) {
      const real dd = dden[i * H + h];
      for (int64_t j = h * d; j < (h + 1) * d; j++) {
        run[j] += dd * qf[i * D + j];
        dkr[i * D + j] += run[j];
      }
    }
  FN(grela_maps_backward)(dxb, dqr, dkr, xb, n, D, scratch + s.vec);
}

static void FN(rela_causal_fwd)(real *ob, real *cache, const real *xb, const real *prm, int64_t n,
                                int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(run_fwd)(ob, cache, xb, n, N, D, H, scratch, 1);
}

static void FN(rela_causal_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                const real *prm, const real *cache, int64_t n, int64_t N, int64_t D,
                                int64_t H, real *scratch) {
  FN(run_bwd)(dxb, gb, xb, cache, n, N, D, H, scratch, 1);
}

// The ablation without RoPE: the identity in place of the rotation.
static void FN(rela_causal_norope_fwd)(real *ob, real *cache, const real *xb, const real *prm,
                                       int64_t n, int64_t N, int64_t D, int64_t H, real *scratch) {
  FN(run_fwd)(ob, cache, xb, n, N, D, H, scratch, 0);
}

static void FN(rela_causal_norope_bwd)(real *dxb, real *dprm, const real *gb, const real *xb,
                                       const real *prm, const real *cache, int64_t n, int64_t N,
                                       int64_t D, int64_t H, real *scratch) {
  FN(run_bwd)(dxb, gb, xb, cache, n, N, D, H, scratch, 0);
}


#if !LR_F64
// One row (recommend --stream). st: run (D), then per head the causal
// linear state; ws: see step_ws_elems.
static void step_run(float *out, float *st, float *ws, const float *x, int64_t t, int64_t D,
                     int64_t H) {
  const int64_t d = D / H;
  const size_t hst = attn_causal_step_elems(d, d);
  float *qf = ws, *kf = qf + D, *qr = kf + D, *kr = qr + D, *vec = kr + D;
  float *den = vec + 2 * D, *p = den + H, *cs = ws + step_ws_scratch(D, H) + t * D;
  grela_maps_forward(qf, kf, x, 1, D, vec);
  grela_rope_forward(qr, D, qf, D, cs, 1, D);
  grela_rope_forward(kr, D, kf, D, cs, 1, D);
  for (int64_t h = 0; h < H; h++)
    attn_causal_linear_step(out + h * d, qr + h * d, kr + h * d, x + 2 * D + h * d,
                            st + D + (size_t)h * hst, t, d, d, p);
  divide_row(out, NULL, den, st, qf, kf, t, D, H);
}
#endif
#endif
