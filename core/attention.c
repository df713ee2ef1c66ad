// attention.c: the six attention kinds of attention.h (DESIGN §1), forward and
// backward, heads treated as a batch.
//
// The kernels live in attention_impl.inc, written once for a scalar type
// `real` and included twice: float (the production path, attn_forward /
// attn_backward) and double (attn_forward_f64 / attn_backward_f64, which the
// finite-difference tests check). This file holds what does not depend on
// the type: kind names, and the cache/scratch layouts that both
// instantiations and attn_cache_elems/attn_scratch_elems share.
//
// Work is done over the n = lens[b] valid rows of each sequence only; outputs
// at padded rows are set to 0 and padded rows of qkv are never read. No
// function here allocates; shape errors are bugs (LR_ASSERT).
//
// Not here: dropout on attention weights (the encoder applies dropout to the
// attention output instead), the projections W_Q/W_K/W_V/W_O (core/layers).
#include "attention.h"

#include <math.h>   // sqrtf, logf, exp, expm1, sqrt, log
#include <stdint.h> // SIZE_MAX, int32_t
#include <string.h> // memcpy, memset, strcmp

#include "gemm.h" // lr_sgemm, lr_sgemm_batched, lr_dgemm
#include "lr.h"   // LR_ASSERT
#include "par.h"  // lr_par_for, lr_par_part
#include "vmath.h" // LR_VL, LR_HOT_CLONES

// ---- kind names ----------------------------------------------------------------

static const char *const g_kind_names[LR_ATTN_COUNT] = {
    "softmax", "linrec", "linrec_code", "linrec_causal", "elu1", "efficient",
};

const char *attn_kind_name(lr_attn_kind kind) {
  return (kind >= 0 && kind < LR_ATTN_COUNT) ? g_kind_names[kind] : "unknown";
}

int attn_kind_parse(const char *name) {
  if (!name) return -1;
  for (int k = 0; k < LR_ATTN_COUNT; k++)
    if (strcmp(name, g_kind_names[k]) == 0) return k;
  return -1;
}

int attn_kind_is_causal(lr_attn_kind kind) {
  return kind == LR_ATTN_SOFTMAX || kind == LR_ATTN_LINREC_CAUSAL || kind == LR_ATTN_ELU1;
}

// ---- cache and scratch layouts -------------------------------------------------
// Offsets in elements (floats or doubles). Each region starts on a 16-element
// boundary. d = D/H; per-head arrays are head-major, (B,H,N,d), so one head's
// rows are a contiguous (N,d) matrix with leading dimension d.
//
// cache (written by forward, read by backward):
//   softmax        lse (B,H,N): log-sum-exp of each score row; backward
//                  recomputes the scores (one n x n GEMM) instead of keeping
//                  B*H*N*N probabilities.
//   linrec         qf (B,H,N,d) = rho1(elu(Q)), kf (B,H,N,d) = rho2(elu(K)),
//                  kv (B,H,d,d) = kf^T V, rq (B,H,N) row scales 1/||elu(q)||,
//                  rk (B,H,max(N,d)) column scales 1/(sqrt(n)||elu(K)_j||)
//   linrec_code    as linrec; kf = rownorm(elu(K)), rk its row scales
//   efficient      qf = softmax_row(Q), kf = softmax_col(K), kv = kf^T V
//   linrec_causal  qf = rho1(elu(Q)), kf = elu(K), cf (B,H,N,d) prefix column
//                  scales c_ij, rq (B,H,N)
//   elu1           qf = elu(Q)+1, kf = elu(K)+1, nd (B,H,N,d+1): numerator
//                  (d columns) and denominator sum (last column, without the
//                  1e-6) of every output row
// scratch (overwritten by both; sized for one sequence at a time):
//   softmax        sc, dsc (N,N): probabilities and their gradient, one head
//   linrec/linrec_code/efficient
//                  dqf, dkf (H,N,d): gradients w.r.t. qf, kf; dkv (H,d,d); vec (4D)
//   linrec_causal/elu1
//                  dqf, dkf (H,N,d); per head in turn: x1, x2 (N,d+1): Q~
//                  (linrec_causal) or [V 1] and its output gradient (elu1);
//                  p, m (C,C) chunk matrices (C = min(N, LR_ATTN_CHUNK));
//                  st (nchunks,d,d+1) chunk-start states; r (d,d+1) carried
//                  state; vec (4D)
// vec holds one row's elu(Q|K) or elu'(Q|K) (2D) and column accumulators (2D).
// A region a kind does not use has offset ATTN_NO_REGION.
#define ATTN_NO_REGION SIZE_MAX

typedef struct {
  size_t qf, kf, kv, rq, rk, cf, nd, lse, total;
} attn_cache_layout;

typedef struct {
  size_t sc, dsc, dqf, dkf, dkv, x1, x2, p, m, st, r, vec, total;
} attn_scratch_layout;

// Reserve n elements at the end of a layout, return their offset.
static size_t region(size_t *total, size_t n) {
  size_t off = *total;
  *total += (n + 15) & ~(size_t)15;
  return off;
}

static void attn_layout(lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H,
                        attn_cache_layout *c, attn_scratch_layout *s) {
  LR_ASSERT(kind >= 0 && kind < LR_ATTN_COUNT);
  LR_ASSERT(B >= 0 && N >= 1 && H >= 1 && D >= H && D % H == 0);
  attn_cache_layout c0 = {ATTN_NO_REGION, ATTN_NO_REGION, ATTN_NO_REGION,
                          ATTN_NO_REGION, ATTN_NO_REGION, ATTN_NO_REGION,
                          ATTN_NO_REGION, ATTN_NO_REGION, 0};
  attn_scratch_layout s0 = {ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            ATTN_NO_REGION,
                            0};
  *c = c0;
  *s = s0;
  size_t b = (size_t)B, n = (size_t)N, dm = (size_t)D, h = (size_t)H, d = dm / h;
  size_t bnd = b * n * dm, bhn = b * h * n;
  size_t ce = n < LR_ATTN_CHUNK ? n : LR_ATTN_CHUNK, nch = (n + ce - 1) / ce;
  switch (kind) {
  case LR_ATTN_SOFTMAX:
    c->lse = region(&c->total, bhn);
    s->sc = region(&s->total, n * n);
    s->dsc = region(&s->total, n * n);
    break;
  case LR_ATTN_LINREC:
  case LR_ATTN_LINREC_CODE:
  case LR_ATTN_EFFICIENT:
    c->qf = region(&c->total, bnd);
    c->kf = region(&c->total, bnd);
    c->kv = region(&c->total, b * h * d * d);
    if (kind != LR_ATTN_EFFICIENT) {
      c->rq = region(&c->total, bhn);
      c->rk = region(&c->total, b * h * (n > d ? n : d));
    }
    s->dqf = region(&s->total, n * dm);
    s->dkf = region(&s->total, n * dm);
    s->dkv = region(&s->total, dm * d);
    s->vec = region(&s->total, 4 * dm);
    break;
  case LR_ATTN_LINREC_CAUSAL:
  case LR_ATTN_ELU1:
    c->qf = region(&c->total, bnd);
    c->kf = region(&c->total, bnd);
    if (kind == LR_ATTN_LINREC_CAUSAL) {
      c->cf = region(&c->total, bnd);
      c->rq = region(&c->total, bhn);
    } else {
      c->nd = region(&c->total, bhn * (d + 1));
    }
    s->dqf = region(&s->total, n * dm);
    s->dkf = region(&s->total, n * dm);
    s->x1 = region(&s->total, n * (d + 1));
    s->x2 = region(&s->total, n * (d + 1));
    s->p = region(&s->total, ce * ce);
    s->m = region(&s->total, ce * ce);
    s->st = region(&s->total, nch * d * (d + 1));
    s->r = region(&s->total, d * (d + 1));
    s->vec = region(&s->total, 4 * dm);
    break;
  default: break; // unreachable: kind checked above
  }
}

size_t attn_cache_elems(lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H) {
  attn_cache_layout c;
  attn_scratch_layout s;
  attn_layout(kind, B, N, D, H, &c, &s);
  return c.total;
}

size_t attn_scratch_elems(lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H) {
  attn_cache_layout c;
  attn_scratch_layout s;
  attn_layout(kind, B, N, D, H, &c, &s);
  return s.total;
}

// ---- the two instantiations ------------------------------------------------------

// lr_dgemm has no batched twin in gemm.h; the double path loops like
// lr_sgemm_batched does.
static void dgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                          double alpha, const double *A, int64_t lda, int64_t sA, const double *B,
                          int64_t ldb, int64_t sB, double beta, double *C, int64_t ldc,
                          int64_t sC) {
  for (int64_t i = 0; i < batch; i++)
    lr_dgemm(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

// Exponentials over contiguous runs: y = elu(x), y = elu'(x) (1 for x > 0,
// e^x otherwise) and y = e^x for x <= 0 (every exp the kernels take is of a
// non-positive number: x - max, or elu's negative branch). y may equal x.
//
// Float: libm's expm1f/expf are scalar and cost ~10 ns each, more than all
// the GEMMs of the linear kinds together, so the float path evaluates them
// LR_VL lanes at a time through vmath.h's lr_exp_parts (the kernels are
// cloned for AVX-512 and AVX2). Measured error over [-80, 1]: < 9e-8
// relative (1.5 ulp) for elu, elu' and exp. Selections are done on the bit
// patterns, and 0*x is added so a NaN input stays NaN.
typedef float vf_ __attribute__((vector_size(4 * LR_VL))); // LR_VL lanes (vmath.h)
typedef int32_t vi_ __attribute__((vector_size(4 * LR_VL)));
enum { EXPV_ELU, EXPV_ELU_GRAD, EXPV_EXP };

__attribute__((always_inline)) static inline vf_ expv_f32(vf_ x, int what) {
  vf_ two_k, q = lr_exp_parts(x, &two_k);
  vf_ nan_keep = 0.0f * x;
  if (what == EXPV_EXP) return two_k * q + two_k + nan_keep;
  vi_ pos = lr_vlt((vf_){0}, x); // x > 0 (a NaN is not: it takes e, which is NaN)
  if (what == EXPV_ELU) {
    vf_ e = two_k * q + (two_k - 1.0f) + nan_keep; // 2^k q + (2^k - 1): exact near 0
    return (vf_)(((vi_)x & pos) | ((vi_)e & ~pos));
  }
  vf_ e = two_k * q + two_k + nan_keep;
  vi_ one = (vi_){0} + 0x3f800000;
  return (vf_)((one & pos) | ((vi_)e & ~pos));
}

// Inlined into each wrapper below so `what` is a constant there.
__attribute__((always_inline)) static inline void expv_run_f32(float *y, const float *x, int64_t n,
                                                               int what) {
  int64_t i = 0;
  for (; i + LR_VL <= n; i += LR_VL) {
    vf_ v;
    memcpy(&v, x + i, sizeof v);
    v = expv_f32(v, what);
    memcpy(y + i, &v, sizeof v);
  }
  if (i < n) { // tail through a zero-padded vector, so every element sees the same code
    vf_ v = {0};
    memcpy(&v, x + i, (size_t)(n - i) * sizeof(float));
    v = expv_f32(v, what);
    memcpy(y + i, &v, (size_t)(n - i) * sizeof(float));
  }
}

LR_HOT_CLONES static void elu_run_f32(float *y, const float *x, int64_t n) {
  expv_run_f32(y, x, n, EXPV_ELU);
}
LR_HOT_CLONES static void elu_grad_run_f32(float *y, const float *x, int64_t n) {
  expv_run_f32(y, x, n, EXPV_ELU_GRAD);
}
LR_HOT_CLONES static void exp_run_f32(float *y, const float *x, int64_t n) {
  expv_run_f32(y, x, n, EXPV_EXP);
}

// Double (the gradient-test path): libm, exact to the last bit that matters.
static void elu_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0 ? x[i] : expm1(x[i]);
}
static void elu_grad_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] > 0 ? 1.0 : exp(x[i]);
}
static void exp_run_f64(double *y, const double *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = exp(x[i]);
}

#define real float
#define SFX(name) name##_f32
#define GEMM lr_sgemm
#define GEMM_BATCHED lr_sgemm_batched
#define R_SQRT sqrtf
#define R_LOG logf
#include "attention_impl.inc"
#undef real
#undef SFX
#undef GEMM
#undef GEMM_BATCHED
#undef R_SQRT
#undef R_LOG

#define real double
#define SFX(name) name##_f64
#define GEMM lr_dgemm
#define GEMM_BATCHED dgemm_batched
#define R_SQRT sqrt
#define R_LOG log
#include "attention_impl.inc"
#undef real
#undef SFX
#undef GEMM
#undef GEMM_BATCHED
#undef R_SQRT
#undef R_LOG

void attn_forward(float *out, float *cache, const float *qkv, const int32_t *lens,
                  lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H, float *scratch,
                  int64_t parts) {
  attn_forward_impl_f32(out, cache, qkv, lens, kind, B, N, D, H, scratch, parts);
}

void attn_backward(float *dqkv, const float *dout, const float *qkv, const float *cache,
                   const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t N, int64_t D,
                   int64_t H, float *scratch, int64_t parts) {
  attn_backward_impl_f32(dqkv, dout, qkv, cache, lens, kind, B, N, D, H, scratch, parts);
}

void attn_forward_range(float *out, float *cache, const float *qkv, const int32_t *lens,
                        lr_attn_kind kind, int64_t B, int64_t b0, int64_t b1, int64_t N, int64_t D,
                        int64_t H, float *scratch) {
  attn_range_impl_f32(out, cache, qkv, NULL, lens, kind, B, b0, b1, N, D, H, scratch, 1);
}

void attn_backward_range(float *dqkv, const float *dout, const float *qkv, const float *cache,
                         const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t b0, int64_t b1,
                         int64_t N, int64_t D, int64_t H, float *scratch) {
  // The cache is read-only here; the job (shared with forward) holds it non-const.
  attn_range_impl_f32(dqkv, (float *)cache, qkv, dout, lens, kind, B, b0, b1, N, D, H, scratch, 0);
}

void attn_forward_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                      lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H,
                      double *scratch, int64_t parts) {
  attn_forward_impl_f64(out, cache, qkv, lens, kind, B, N, D, H, scratch, parts);
}

void attn_backward_f64(double *dqkv, const double *dout, const double *qkv, const double *cache,
                       const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t N, int64_t D,
                       int64_t H, double *scratch, int64_t parts) {
  attn_backward_impl_f64(dqkv, dout, qkv, cache, lens, kind, B, N, D, H, scratch, parts);
}
