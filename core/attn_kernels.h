// attn_kernels.h: the building blocks the attention kinds (core/attn_*.c)
// share, in float and in double (_f64, the gradient tests' path). Internal to
// core/: a kind's file composes these; nothing outside the kinds calls them.
//
// Notation, per sequence and head: n valid rows, d = D/H features per head;
// phi = elu (LinRec Eq. 8); ||x|| = sqrt(sum x^2 + LR_ATTN_EPS). Matrices are
// row-major with an explicit leading dimension (ld). Every _backward
// ACCUMULATES (+=) into its input gradients unless it says it writes.
// All functions are Local and cannot fail (shape errors are bugs).
#ifndef LR_ATTN_KERNELS_H
#define LR_ATTN_KERNELS_H

#include <stdint.h>

#include "attention.h"

// ---- exponentials over contiguous runs ------------------------------------------------
// y = elu(x), y = elu'(x) (1 for x > 0, e^x otherwise), y = e^x for x <= 0
// (every exp the kinds take is of a non-positive number). y may equal x.
// Float: vmath.h's kernel, LR_VL lanes at a time (< 9e-8 relative over
// [-80, 1]); double: libm. A NaN stays NaN.
void attn_elu_run(float *y, const float *x, int64_t n);
void attn_elu_grad_run(float *y, const float *x, int64_t n);
void attn_exp_run(float *y, const float *x, int64_t n);
void attn_elu_run_f64(double *y, const double *x, int64_t n);
void attn_elu_grad_run_f64(double *y, const double *x, int64_t n);
void attn_exp_run_f64(double *y, const double *x, int64_t n);

// ---- row L2 normalisation of a mapped row ----------------------------------------------
// y (d) = s p / ||p||, for p = phi(x) already evaluated. Returns r = 1/||p||.
// rho1 of LinRec Eq. 6 is s = 1/sqrt(d); a plain row normalisation is s = 1.
float attn_rownorm_forward(float *y, const float *p, int64_t d, float s);
double attn_rownorm_forward_f64(double *y, const double *p, int64_t d, double s);
// dx (d) += gradient of <dy, y> through y = s r p, p = phi(x); g = phi'(x).
void attn_rownorm_backward(float *dx, const float *dy, const float *y, const float *g, float r,
                           float s, int64_t d);
void attn_rownorm_backward_f64(double *dx, const double *dy, const double *y, const double *g,
                               double r, double s, int64_t d);

// ---- the softmax maps of efficient attention (efficient, blin) ----------------------------
// qf (H,N,d) = softmax over each head's d features of each of the n rows' Q;
// kf (H,N,d) = softmax over the key rows of each K column (km: the key mask,
// NULL = every row 0..n-1 a key; masked rows get 0, and with no key at all kf
// is 0). xb: the q|k|v rows (ld 3D); vec: 4D scratch. Backward adds into dxb's
// Q and K columns the gradients through both softmaxes, dx = y (dy - sum(y dy))
// along each map's axis (masked rows, y = 0, get nothing).
void attn_softmax_maps_forward(float *qf, float *kf, const float *xb, const uint8_t *km,
                               int64_t n, int64_t N, int64_t D, int64_t H, float *vec);
void attn_softmax_maps_forward_f64(double *qf, double *kf, const double *xb, const uint8_t *km,
                                   int64_t n, int64_t N, int64_t D, int64_t H, double *vec);
void attn_softmax_maps_backward(float *dxb, const float *dqf, const float *dkf, const float *qf,
                                const float *kf, int64_t n, int64_t N, int64_t D, int64_t H,
                                float *vec);
void attn_softmax_maps_backward_f64(double *dxb, const double *dqf, const double *dkf,
                                    const double *qf, const double *kf, int64_t n, int64_t N,
                                    int64_t D, int64_t H, double *vec);

// ---- out = qf (kf^T V) per head ------------------------------------------------------
// The non-causal linear kinds. qf, kf (H,N,d) head-major (head h at h N d);
// xb the sequence's q|k|v rows (ld 3D, V at column 2D); ob (ld D). kv (H,d,d)
// is kept for backward. Forward writes ob's n rows; backward writes dqf, dkf
// (H,N,d; rows 0..n-1) and adds dV into dxb; dkv (H,d,d) is scratch.
//   forward:  S_h = kf_h^T V_h,  O_h = qf_h S_h
//   backward: dqf = G S^T;  dS = qf^T G;  dkf = V dS^T;  dV += kf dS
void attn_qkv_linear_forward(float *ob, float *kv, const float *qf, const float *kf,
                             const float *xb, int64_t n, int64_t N, int64_t D, int64_t H);
void attn_qkv_linear_forward_f64(double *ob, double *kv, const double *qf, const double *kf,
                                 const double *xb, int64_t n, int64_t N, int64_t D, int64_t H);
void attn_qkv_linear_backward(float *dqf, float *dkf, float *dxb, float *dkv, const float *gb,
                              const float *qf, const float *kf, const float *kv, const float *xb,
                              int64_t n, int64_t N, int64_t D, int64_t H);
void attn_qkv_linear_backward_f64(double *dqf, double *dkf, double *dxb, double *dkv,
                                  const double *gb, const double *qf, const double *kf,
                                  const double *kv, const double *xb, int64_t n, int64_t N,
                                  int64_t D, int64_t H);

// ---- causal linear attention without denominator, chunked -------------------------------
// O_i = sum_{m<=i} (a_i . b_m) v_m for i < n; a, b (n,dk), v (n,dv). Chunks of
// C = LR_ATTN_CHUNK rows: a masked (C,C) product inside a chunk, a carried
// state S = sum_{m < chunk start} b_m^T v_m (dk,dv) across chunks; no (n,n)
// matrix. Forward writes o; p (C,C), s (dk,dv) scratch.
void attn_causal_linear_forward(float *o, int64_t ldo, const float *a, int64_t lda, const float *b,
                                int64_t ldb, const float *v, int64_t ldv, int64_t n, int64_t dk,
                                int64_t dv, float *p, float *s);
void attn_causal_linear_forward_f64(double *o, int64_t ldo, const double *a, int64_t lda,
                                    const double *b, int64_t ldb, const double *v, int64_t ldv,
                                    int64_t n, int64_t dk, int64_t dv, double *p, double *s);
// Row t of the forward above for a sequence that grows a row at a time
// (recommend --stream): o (dv) from a, b (dk), v (dv) of row t and st, the
// carried state of rows 0..t-1 (attn_causal_step_elems floats, zeroed =
// empty), which it updates. Bitwise the forward's row t. p: C scratch.
void attn_causal_linear_step(float *o, const float *a, const float *b, const float *v, float *st,
                             int64_t t, int64_t dk, int64_t dv, float *p);
void attn_causal_linear_step_f64(double *o, const double *a, const double *b, const double *v,
                                 double *st, int64_t t, int64_t dk, int64_t dv, double *p);
static inline size_t attn_causal_step_elems(int64_t dk, int64_t dv) {
  return (size_t)(dk * dv + LR_ATTN_CHUNK * (dk + dv));
}
// da (n,dk) +=, db (n,dk) +=, dvo[:, 0:nvg] (n,nvg) += the gradients of <dO, O>
// (dO (n,dv)); only the first nvg columns of v get one. p, m (C,C), st
// (nchunks,dk,dv), r (dk,dv) scratch.
void attn_causal_linear_backward(float *da, int64_t ldda, float *db, int64_t lddb, float *dvo,
                                 int64_t lddv, int64_t nvg, const float *dO, int64_t lddo,
                                 const float *a, int64_t lda, const float *b, int64_t ldb,
                                 const float *v, int64_t ldv, int64_t n, int64_t dk, int64_t dv,
                                 float *p, float *m, float *st, float *r);
void attn_causal_linear_backward_f64(double *da, int64_t ldda, double *db, int64_t lddb,
                                     double *dvo, int64_t lddv, int64_t nvg, const double *dO,
                                     int64_t lddo, const double *a, int64_t lda, const double *b,
                                     int64_t ldb, const double *v, int64_t ldv, int64_t n,
                                     int64_t dk, int64_t dv, double *p, double *m, double *st,
                                     double *r);

// ---- per-sequence layouts ----------------------------------------------------------------
// Reserve n elements at the end of a layout (rounded to 16), return their
// offset. The kinds lay out their per-sequence cache and scratch with it.
static inline size_t attn_region(size_t *total, size_t n) {
  size_t off = *total;
  *total += (n + 15) & ~(size_t)15;
  return off;
}

// The cache and scratch of the non-causal linear kinds (linrec,
// linrec_code, efficient), per sequence: qf, kf (H,N,d), kv (H,d,d), and
// with row/column scales rq (H,N), rk (H,max(N,d)); scratch dqf, dkf
// (H,N,d), dkv (H,d,d), vec (4D).
typedef struct {
  size_t qf, kf, kv, rq, rk, total;      // cache offsets
  size_t dqf, dkf, dkv, vec, stotal;     // scratch offsets
} attn_linear_layout;

static inline attn_linear_layout attn_linear_layout_of(int64_t N, int64_t D, int64_t H,
                                                       int scales) {
  const size_t n = (size_t)N, dm = (size_t)D, d = dm / (size_t)H, h = (size_t)H;
  attn_linear_layout l = {0};
  l.qf = attn_region(&l.total, n * dm);
  l.kf = attn_region(&l.total, n * dm);
  l.kv = attn_region(&l.total, h * d * d);
  if (scales) {
    l.rq = attn_region(&l.total, h * n);
    l.rk = attn_region(&l.total, h * (n > d ? n : d));
  }
  l.dqf = attn_region(&l.stotal, n * dm);
  l.dkf = attn_region(&l.stotal, n * dm);
  l.dkv = attn_region(&l.stotal, dm * d);
  l.vec = attn_region(&l.stotal, 4 * dm);
  return l;
}

// The scratch of the causal linear kinds (linrec_causal, elu1), per thread:
// dqf, dkf (H,N,d); x1, x2 (N,d+1); p, m (C,C) chunk matrices (C =
// min(N, LR_ATTN_CHUNK)); st (nchunks,d,d+1) chunk-start states; r
// (d,d+1) the carried state; vec (4D).
typedef struct {
  size_t dqf, dkf, x1, x2, p, m, st, r, vec, total;
} attn_causal_layout;

static inline attn_causal_layout attn_causal_layout_of(int64_t N, int64_t D, int64_t H) {
  const size_t n = (size_t)N, dm = (size_t)D, d = dm / (size_t)H;
  const size_t ce = n < LR_ATTN_CHUNK ? n : LR_ATTN_CHUNK, nch = (n + ce - 1) / ce;
  attn_causal_layout l = {0};
  l.dqf = attn_region(&l.total, n * dm);
  l.dkf = attn_region(&l.total, n * dm);
  l.x1 = attn_region(&l.total, n * (d + 1));
  l.x2 = attn_region(&l.total, n * (d + 1));
  l.p = attn_region(&l.total, ce * ce);
  l.m = attn_region(&l.total, ce * ce);
  l.st = attn_region(&l.total, nch * d * (d + 1));
  l.r = attn_region(&l.total, d * (d + 1));
  l.vec = attn_region(&l.total, 4 * dm);
  return l;
}

// Forward multiply-adds of the causal linear kinds, chunked: per chunk a
// masked (C,C) score block and the carried (d,d) state, C^2 d x 2 + 2 C d^2.
static inline double attn_causal_flops(int64_t N, int64_t D, int64_t H) {
  const double n = (double)N, d = (double)D / (double)H;
  const double c = (double)LR_ATTN_CHUNK < n ? (double)LR_ATTN_CHUNK : n;
  return (double)H * (2.0 * n * c * d + 2.0 * n * d * d);
}

// Forward multiply-adds of the non-causal linear kinds: K^T V and Q (K^T V),
// 2 N d^2 per head.
static inline double attn_linear_flops(int64_t N, int64_t D, int64_t H) {
  const double d = (double)D / (double)H;
  return (double)H * 2.0 * (double)N * d * d;
}

#endif
