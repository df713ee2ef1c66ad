// test_recgrela.c: the RecGRELA pieces (core/grela.h, the rela kinds, the
// recgrela architecture) beyond what test_attention and test_model check for
// every kind and architecture:
//   1. RoPE: the recurrence table against libm angles; the rotation keeps
//      norms and makes qr_i . kr_m depend on i - m only; double finite
//      differences of <R, rope(x)>
//   2. the rela kinds: double finite differences with 1 and 4 heads, n = 1
//      and n = N, N past a chunk (the per-head frequency bands); the replay
//      kind rela_released equals rela over all N rows, and its gradient
//      passes finite differences with padded rows in the sums
//   3. the local shortcut (causal depthwise conv + SiLU): double finite
//      differences w.r.t. V (a column slice), the weights and the bias;
//      causal, and no leak between the sequences of a batch
//   4. the SiLU gate Y = (A + C) * SiLU(z + b): double finite differences
//   5. DropPath: the scale's rate and keys; double finite differences of the
//      scaled residual with a fixed mask; in the model (drop_path 0.5):
//      lanes and chunks bitwise, float finite differences, off in evaluation
//   6. the parameter count of the released ML-1M model: 436,672, and of the
//      ablations (model.arch recgrela_nogate, _noconv, _norope)
//   2b. the kinds without RoPE of recgrela_norope: double finite differences
//      as 2., and the naive formula without rotation
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "grela.h"
#include "itemtab.h" // lr_itemtab
#include "loss.h"    // ce_forward_backward, ce_fb_scratch_elems
#include "lr.h"
#include "model.h"
#include "par.h"        // lr_par_set_threads
#include "ref_layers.h" // t_fd_grad, t_alloc, t_dot_d
#include "rng.h"
#include "test_util.h"

// core/attn_rela.c, core/attn_rela_causal.c, not in the registry: the
// replay kind and the attention of the ablation recgrela_norope
extern const lr_attn_ops lr_attn_rela_released, lr_attn_rela_norope, lr_attn_rela_causal_norope;

#define FD_H 1e-5
#define FD_TOL 1e-7

// ---- a scalar <R, f(x)> for t_fd_grad ----------------------------------------------------

typedef struct {
  void (*f)(void *ctx, double *out); // out (n_out) = f of the buffers behind ctx
  void *ctx;
  const double *R;
  int64_t n_out;
  double *out;
} dot_fn;

static double dot_eval(void *v) {
  dot_fn *d = v;
  d->f(d->ctx, d->out);
  return t_dot_d(d->out, d->R, d->n_out);
}

// FD of <R, f> w.r.t. x (n) against the analytic gradient an (n).
static void fd_check(dot_fn *d, double *x, int64_t n, const double *an, const char *name) {
  double *fd = t_alloc(n, sizeof(double));
  t_fd_grad(fd, dot_eval, d, x, n, FD_H);
  t_close_d(an, fd, n, FD_TOL, name);
  free(fd);
}

// ---- 1. RoPE -----------------------------------------------------------------------------

typedef struct {
  double *x, *cs;
  int64_t n, D;
} rope_ctx;

static void rope_f(void *v, double *out) {
  rope_ctx *c = v;
  grela_rope_forward_f64(out, c->D, c->x, c->D, c->cs, c->n, c->D);
}

static void test_rope(void) {
  const int64_t N = 200, D = 64;
  double *cs = t_alloc(N * D, sizeof(double)), md = 0;
  float *csf = t_alloc(N * D, sizeof(float));
  grela_rope_table_f64(cs, N, D);
  grela_rope_table(csf, N, D);
  double mdf = 0;
  for (int64_t t = 0; t < N; t++)
    for (int64_t p = 0; p < D / 2; p++) {
      const double a = (double)t * pow(10000.0, -(double)p / (double)(D / 2));
      md = fmax(md, fmax(fabs(cs[t * D + 2 * p] - cos(a)), fabs(cs[t * D + 2 * p + 1] - sin(a))));
      mdf =
          fmax(mdf, fmax(fabs(csf[t * D + 2 * p] - cos(a)), fabs(csf[t * D + 2 * p + 1] - sin(a))));
    }
  t_check(md < 1e-12 && mdf < 1e-6,
          "rope: recurrence table vs libm angles, N=200 D=64 (max err %.3g double, %.3g float)", md,
          mdf);
  // norm kept; qr_i . kr_m depends on i - m only (the same q and k at shifted positions)
  double q[64], k[64], qr[64 * 3], kr[64 * 3];
  t_fill_d(q, D, 11, 1.0);
  t_fill_d(k, D, 12, 1.0);
  const int64_t pos[3][2] = {{5, 2}, {105, 102}, {197, 194}};
  double dots[3], nq = 0, nr = 0;
  for (int s = 0; s < 3; s++) {
    double tq[64 * 200], tk[64 * 200]; // rows at every position up to 199
    for (int64_t t = 0; t < N; t++)
      memcpy(tq + t * D, q, sizeof q), memcpy(tk + t * D, k, sizeof k);
    grela_rope_forward_f64(tq, D, tq, D, cs, N, D);
    grela_rope_forward_f64(tk, D, tk, D, cs, N, D);
    memcpy(qr + s * D, tq + pos[s][0] * D, sizeof q);
    memcpy(kr + s * D, tk + pos[s][1] * D, sizeof k);
    dots[s] = t_dot_d(qr + s * D, kr + s * D, D);
  }
  for (int64_t j = 0; j < D; j++)
    nq += q[j] * q[j], nr += qr[2 * D + j] * qr[2 * D + j];
  t_check(fabs(dots[1] - dots[0]) < 1e-12 * fabs(dots[0]) + 1e-13 &&
              fabs(dots[2] - dots[0]) < 1e-12 * fabs(dots[0]) + 1e-13 && fabs(nq - nr) < 1e-12,
          "rope: qr_i . kr_m depends on i - m only (%.15g %.15g %.15g), norms kept", dots[0],
          dots[1], dots[2]);
  // FD of <R, rope(x)>: the analytic gradient is rope_backward(R)
  for (int64_t Dx = 8; Dx <= 9; Dx++) { // even, and odd (last feature unrotated)
    const int64_t n = 7;
    double *x = t_alloc(n * Dx, sizeof(double)), *R = t_alloc(n * Dx, sizeof(double));
    double *an = t_alloc(n * Dx, sizeof(double)), *out = t_alloc(n * Dx, sizeof(double));
    double *c2 = t_alloc(n * Dx, sizeof(double));
    grela_rope_table_f64(c2, n, Dx);
    t_fill_d(x, n * Dx, 21, 1.0);
    t_fill_d(R, n * Dx, 22, 1.0);
    grela_rope_backward_f64(an, Dx, R, Dx, c2, n, Dx);
    rope_ctx c = {x, c2, n, Dx};
    dot_fn d = {rope_f, &c, R, n * Dx, out};
    char name[64];
    snprintf(name, sizeof name, "rope: fd f64 D=%lld", (long long)Dx);
    fd_check(&d, x, n * Dx, an, name);
    free(x), free(R), free(an), free(out), free(c2);
  }
  free(cs), free(csf);
}

// ---- 2. the rela kinds ---------------------------------------------------------------------

typedef struct {
  const lr_attn_ops *k;
  double *qkv, *cache, *scratch;
  int32_t *lens;
  int64_t B, N, D, H;
} kind_ctx;

static void kind_f(void *v, double *out) {
  kind_ctx *c = v;
  attn_forward_f64(out, c->cache, c->qkv, c->lens, c->k, NULL, c->B, c->N, c->D, c->H, c->scratch);
}

static void kind_fd(const lr_attn_ops *k, int64_t N, int64_t D, int64_t H, int32_t n0) {
  const int64_t B = 2, nq = B * N * 3 * D, no = B * N * D;
  int32_t lens[2] = {n0, (int32_t)N};
  kind_ctx c = {k,
                t_alloc(nq, sizeof(double)),
                t_alloc((int64_t)attn_cache_elems(k, B, N, D, H), sizeof(double)),
                t_alloc((int64_t)attn_scratch_elems(k, N, D, H), sizeof(double)),
                lens,
                B,
                N,
                D,
                H};
  double *R = t_alloc(no, sizeof(double)), *out = t_alloc(no, sizeof(double));
  double *an = t_alloc(nq, sizeof(double));
  t_fill_d(c.qkv, nq, 31 + (uint64_t)N, 1.5);
  t_fill_d(R, no, 32, 1.0);
  kind_f(&c, out);
  attn_backward_f64(an, NULL, R, c.qkv, NULL, c.cache, lens, k, B, N, D, H, c.scratch);
  dot_fn d = {kind_f, &c, R, no, out};
  char name[128];
  snprintf(name, sizeof name, "%s: fd f64 N=%lld D=%lld H=%lld lens={%d,%lld}", k->name,
           (long long)N, (long long)D, (long long)H, n0, (long long)N);
  fd_check(&d, c.qkv, nq, an, name);
  free(c.qkv), free(c.cache), free(c.scratch), free(R), free(out), free(an);
}

// rela_released over n real rows of N = rela over all N rows (lens = N).
static void test_released(void) {
  const int64_t B = 2, N = 9, D = 16, H = 4, nq = B * N * 3 * D, no = B * N * D;
  const lr_attn_ops *rela = attn_find("rela"), *rel = &lr_attn_rela_released;
  int32_t lens[2] = {4, 1}, full[2] = {(int32_t)N, (int32_t)N};
  double *qkv = t_alloc(nq, sizeof(double)), *a = t_alloc(no, sizeof(double));
  double *b = t_alloc(no, sizeof(double)), *g = t_alloc(no, sizeof(double));
  double *da = t_alloc(nq, sizeof(double)), *db = t_alloc(nq, sizeof(double));
  double *cache = t_alloc((int64_t)attn_cache_elems(rela, B, N, D, H), sizeof(double));
  double *scratch = t_alloc((int64_t)attn_scratch_elems(rela, N, D, H), sizeof(double));
  t_fill_d(qkv, nq, 41, 1.5);
  t_fill_d(g, no, 42, 1.0);
  attn_forward_f64(a, cache, qkv, lens, rel, NULL, B, N, D, H, scratch);
  attn_backward_f64(da, NULL, g, qkv, NULL, cache, lens, rel, B, N, D, H, scratch);
  attn_forward_f64(b, cache, qkv, full, rela, NULL, B, N, D, H, scratch);
  attn_backward_f64(db, NULL, g, qkv, NULL, cache, full, rela, B, N, D, H, scratch);
  t_close_d(a, b, no, 0, "rela_released with lens {4,1} = rela with lens = N (forward)");
  t_close_d(da, db, nq, 0, "rela_released with lens {4,1} = rela with lens = N (backward)");
  free(qkv), free(a), free(b), free(g), free(da), free(db), free(cache), free(scratch);
}

// The kinds without RoPE (the ablation recgrela_norope) against the naive
// formula: per head, A_i = sum_m (qf_i . kf_m) V_m / (qf_i . sum_m kf_m +
// n_i 1e-6) over m < n (rela_norope, n_i = n) or m <= i (rela_causal_norope,
// n_i = i + 1); for n > 1 they differ from rela and rela_causal.
static void test_norope(void) {
  const int64_t B = 2, N = LR_ATTN_CHUNK + 5, D = 16, H = 4, d = D / H, nq = B * N * 3 * D,
                no = B * N * D;
  const lr_attn_ops *twin[2] = {&lr_attn_rela_norope, &lr_attn_rela_causal_norope};
  const lr_attn_ops *base[2] = {attn_find("rela"), attn_find("rela_causal")};
  int32_t lens[2] = {(int32_t)N, 11};
  double *qkv = t_alloc(nq, sizeof(double)), *a = t_alloc(no, sizeof(double));
  double *want = t_alloc(no, sizeof(double)), *rot = t_alloc(no, sizeof(double));
  double *cache = t_alloc((int64_t)attn_cache_elems(base[0], B, N, D, H), sizeof(double));
  double *scratch = t_alloc((int64_t)attn_scratch_elems(base[1], N, D, H) +
                                (int64_t)attn_scratch_elems(base[0], N, D, H),
                            sizeof(double));
  t_fill_d(qkv, nq, 51, 1.5);
  for (int c = 0; c < 2; c++) {
    attn_forward_f64(a, cache, qkv, lens, twin[c], NULL, B, N, D, H, scratch);
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < N; i++)
        for (int64_t h = 0; h < H; h++) {
          const double *x = qkv + b * N * 3 * D;
          double den = 0, num[16] = {0};
          const int64_t hi = i >= lens[b] ? -1 : c ? i : lens[b] - 1;
          for (int64_t m = 0; m <= hi; m++) {
            double w = 0;
            for (int64_t j = h * d; j < (h + 1) * d; j++) {
              const double q = x[i * 3 * D + j], k = x[m * 3 * D + D + j];
              w += (q > 0 ? q + 1 : exp(q)) * (k > 0 ? k + 1 : exp(k));
            }
            den += w;
            for (int64_t j = 0; j < d; j++)
              num[j] += w * x[m * 3 * D + 2 * D + h * d + j];
          }
          den += (double)(hi + 1) * GRELA_EPS;
          for (int64_t j = 0; j < d; j++)
            want[(b * N + i) * D + h * d + j] = hi < 0 ? 0 : num[j] / den;
        }
    char name[96];
    snprintf(name, sizeof name, "%s = the naive formula without RoPE (lens {N, 11})",
             twin[c]->name);
    t_close_d(a, want, no, 1e-12, name);
    attn_forward_f64(rot, cache, qkv, lens, base[c], NULL, B, N, D, H, scratch);
    double diff = 0;
    for (int64_t i = 0; i < no; i++)
      diff = fmax(diff, fabs(rot[i] - a[i]));
    t_check(diff > 1e-3, "%s differs from %s (max |diff| %.3g)", twin[c]->name, base[c]->name,
            diff);
  }
  free(qkv), free(a), free(want), free(rot), free(cache), free(scratch);
}

static void test_kinds(void) {
  const lr_attn_ops *kinds[5] = {attn_find("rela"), attn_find("rela_causal"),
                                 &lr_attn_rela_released, &lr_attn_rela_norope,
                                 &lr_attn_rela_causal_norope};
  for (int k = 0; k < 5; k++)
    for (int64_t H = 1; H <= 4; H += 3) {
      kind_fd(kinds[k], 12, 16, H, 1);                 // n = 1 and n = N
      kind_fd(kinds[k], LR_ATTN_CHUNK + 9, 16, H, 23); // past a chunk
    }
  test_released();
  test_norope();
}

// ---- 3. the local shortcut -----------------------------------------------------------------

typedef struct {
  double *v, *w, *b, *z;
  int64_t B, N, D;
} conv_ctx;

static void conv_f(void *v, double *out) {
  conv_ctx *c = v;
  grela_conv_forward_f64(out, c->z, c->v + 2 * c->D, 3 * c->D, c->w, c->b, c->B, c->N, c->D);
}

static void test_conv(void) {
  const int64_t K = GRELA_CONV_K;
  for (int64_t N = 1; N <= 6; N += 5) {
    const int64_t B = 2, D = 5, nv = B * N * 3 * D, no = B * N * D;
    conv_ctx c = {t_alloc(nv, sizeof(double)),
                  t_alloc(D * K, sizeof(double)),
                  t_alloc(D, sizeof(double)),
                  t_alloc(no, sizeof(double)),
                  B,
                  N,
                  D};
    double *R = t_alloc(no, sizeof(double)), *out = t_alloc(no, sizeof(double));
    double *dc = t_alloc(no, sizeof(double)), *dv = t_alloc(nv, sizeof(double));
    double *dw = t_alloc(D * K, sizeof(double)), *db = t_alloc(D, sizeof(double));
    t_fill_d(c.v, nv, 51, 1.5);
    t_fill_d(c.w, D * K, 52, 0.5);
    t_fill_d(c.b, D, 53, 0.5);
    t_fill_d(R, no, 54, 1.0);
    conv_f(&c, out);
    memcpy(dc, R, (size_t)no * sizeof(double));
    grela_conv_backward_f64(dv + 2 * D, 3 * D, dw, db, dc, c.z, c.v + 2 * D, 3 * D, c.w, B, N, D);
    dot_fn d = {conv_f, &c, R, no, out};
    char name[96];
    snprintf(name, sizeof name, "conv: fd f64 w.r.t. V (a column slice), N=%lld", (long long)N);
    fd_check(&d, c.v, nv, dv, name);
    snprintf(name, sizeof name, "conv: fd f64 w.r.t. the weights (D,%lld), N=%lld", (long long)K,
             (long long)N);
    fd_check(&d, c.w, D * K, dw, name);
    snprintf(name, sizeof name, "conv: fd f64 w.r.t. the bias, N=%lld", (long long)N);
    fd_check(&d, c.b, D, db, name);
    if (N > 1) { // rows >= 3 of sequence 0 and all of sequence 1 changed: rows 0..2 of 0 keep
      conv_f(&c, out);
      double *o2 = t_alloc(no, sizeof(double));
      for (int64_t i = 3 * 3 * D; i < nv; i++)
        c.v[i] += 7.0;
      conv_f(&c, o2);
      int same = !memcmp(o2, out, (size_t)(3 * D) * sizeof(double)), differ = 0;
      for (int64_t i = 3 * D; i < N * D; i++)
        differ |= o2[i] != out[i];
      t_check(same && differ, "conv: causal (later rows never reach earlier ones)");
      // sequence 1 alone gives its rows in the batch: no leak from sequence 0
      conv_ctx one = c;
      one.v = c.v + N * 3 * D, one.B = 1;
      conv_f(&one, out);
      t_check(!memcmp(out, o2 + N * D, (size_t)(N * D) * sizeof(double)),
              "conv: no leak between the sequences of a batch");
      free(o2);
    }
    free(c.v), free(c.w), free(c.b), free(c.z), free(R), free(out), free(dc), free(dv), free(dw),
        free(db);
  }
}

// ---- 4. the SiLU gate ------------------------------------------------------------------------

typedef struct {
  double *a, *c, *z, *bias, *zb, *g, *ac;
  int64_t R, C;
} gate_ctx;

static void gate_f(void *v, double *out) {
  gate_ctx *c = v;
  const int64_t n = c->R * c->C;
  memcpy(c->zb, c->z, (size_t)n * sizeof(double));
  grela_silu_forward_f64(c->g, c->zb, c->bias, c->R, c->C);
  memcpy(c->ac, c->a, (size_t)n * sizeof(double));
  grela_gate_forward_f64(out, c->ac, c->c, c->g, n);
}

static void test_gate(void) {
  const int64_t R = 6, C = 7, n = R * C;
  gate_ctx c = {t_alloc(n, 8),
                t_alloc(n, 8),
                t_alloc(n, 8),
                t_alloc(C, 8),
                t_alloc(n, 8),
                t_alloc(n, 8),
                t_alloc(n, 8),
                R,
                C};
  double *Rm = t_alloc(n, 8), *out = t_alloc(n, 8), *dac = t_alloc(n, 8), *dg = t_alloc(n, 8);
  double *dbias = t_alloc(C, 8);
  t_fill_d(c.a, n, 61, 1.0);
  t_fill_d(c.c, n, 62, 1.0);
  t_fill_d(c.z, n, 63, 4.0); // both signs of the logistic's branches, into its tails
  t_fill_d(c.bias, C, 64, 0.5);
  t_fill_d(Rm, n, 65, 1.0);
  gate_f(&c, out);
  grela_gate_backward_f64(dac, dg, Rm, c.ac, c.g, n);
  grela_silu_backward_f64(dg, dg, c.zb, n);
  grela_colsum_f64(dbias, dg, C, R, C);
  dot_fn d = {gate_f, &c, Rm, n, out};
  fd_check(&d, c.a, n, dac, "gate: fd f64 w.r.t. A");
  fd_check(&d, c.c, n, dac, "gate: fd f64 w.r.t. C");
  fd_check(&d, c.z, n, dg, "gate: fd f64 w.r.t. the SiLU's input");
  fd_check(&d, c.bias, C, dbias, "gate: fd f64 w.r.t. the SiLU's bias");
  // float SiLU against double
  float *zf = t_alloc(n, 4), *gf = t_alloc(n, 4), *dzf = t_alloc(n, 4), *onef = t_alloc(n, 4);
  double *ref = t_alloc(n, 8), *dref = t_alloc(n, 8), *ones = t_alloc(n, 8);
  for (int64_t i = 0; i < n; i++)
    zf[i] = (float)(c.z[i] * 5), ref[i] = zf[i], onef[i] = 1, ones[i] = 1;
  grela_silu_forward(gf, zf, NULL, R, C);
  grela_silu_backward(dzf, onef, zf, n);
  double *gd = t_alloc(n, 8);
  grela_silu_forward_f64(gd, ref, NULL, R, C);
  grela_silu_backward_f64(dref, ones, ref, n);
  t_close_f(gf, gd, n, 1e-6, "silu: float vs double, z in [-20, 20]");
  t_close_f(dzf, dref, n, 1e-6, "silu': float vs double, z in [-20, 20]");
  free(c.a), free(c.c), free(c.z), free(c.bias), free(c.zb), free(c.g), free(c.ac), free(Rm),
      free(out), free(dac), free(dg), free(dbias), free(zf), free(gf), free(dzf), free(onef),
      free(ref), free(dref), free(ones), free(gd);
}

// ---- 5. DropPath ---------------------------------------------------------------------------

typedef struct {
  double *x, *bias, *resid, s;
  int64_t R, D;
} path_ctx;

static void path_f(void *v, double *out) {
  path_ctx *c = v;
  grela_path_forward_f64(out, c->x, c->bias, c->resid, c->s, c->R, c->D);
}

static void test_droppath_unit(void) {
  const float p = 0.1f;
  int64_t dropped = 0, bad = 0;
  const int64_t n = 20000;
  for (int64_t ex = 0; ex < n; ex++) {
    const float s = grela_droppath_scale(42, 3, 10, (uint64_t)ex, p);
    dropped += s == 0.0f;
    bad += !(s == 0.0f || s == 1.0f / (1.0f - p));
    bad += s != grela_droppath_scale(42, 3, 10, (uint64_t)ex, p);
  }
  const double rate = (double)dropped / (double)n; // sd sqrt(p(1-p)/n) = 0.0021
  t_check(bad == 0 && fabs(rate - p) < 0.01,
          "droppath: scale 0 or 1/(1-p), deterministic, dropped rate %.4f for p = 0.1", rate);
  int64_t diff_epoch = 0, diff_site = 0;
  for (int64_t ex = 0; ex < 1000; ex++) {
    const float s = grela_droppath_scale(42, 3, 10, (uint64_t)ex, 0.5f);
    diff_epoch += s != grela_droppath_scale(42, 4, 10, (uint64_t)ex, 0.5f);
    diff_site += s != grela_droppath_scale(42, 3, 18, (uint64_t)ex, 0.5f);
  }
  t_check(diff_epoch > 400 && diff_site > 400 && grela_droppath_scale(1, 0, 10, 5, 0.0f) == 1.0f,
          "droppath: another epoch / layer draws another mask (%lld, %lld of 1000 differ); "
          "p = 0 keeps",
          (long long)diff_epoch, (long long)diff_site);
  for (int k = 0; k < 2; k++) { // a kept (scaled) and a dropped branch
    const int64_t R = 5, D = 6, nn = R * D;
    path_ctx c = {t_alloc(nn, 8), t_alloc(D, 8), t_alloc(nn, 8), k ? 0.0 : 1.0 / 0.9, R, D};
    double *Rm = t_alloc(nn, 8), *out = t_alloc(nn, 8), *dx = t_alloc(nn, 8);
    double *db = t_alloc(D, 8);
    t_fill_d(c.x, nn, 71, 1.0);
    t_fill_d(c.bias, D, 72, 1.0);
    t_fill_d(c.resid, nn, 73, 1.0);
    t_fill_d(Rm, nn, 74, 1.0);
    grela_path_backward_f64(dx, db, Rm, c.s, R, D);
    dot_fn d = {path_f, &c, Rm, nn, out};
    char name[96];
    snprintf(name, sizeof name, "droppath: fd f64 w.r.t. the branch, fixed mask %g", c.s);
    fd_check(&d, c.x, nn, dx, name);
    snprintf(name, sizeof name, "droppath: fd f64 w.r.t. the branch's bias, fixed mask %g", c.s);
    fd_check(&d, c.bias, D, db, name);
    fd_check(&d, c.resid, nn, Rm, "droppath: fd f64 w.r.t. the residual");
    free(c.x), free(c.bias), free(c.resid), free(Rm), free(out), free(dx), free(db);
  }
}

// A small recgrela model with DropPath 0.5: a batch of 3 sequences, CE at
// every real position.
#define MI 13
#define MN 9
#define MD 8
#define MB 3
typedef struct {
  lr_model m;
  lr_itemtab tab;
  int32_t idx[MB * MN], lens[MB], tgt[MB * MN];
  uint64_t rid[MB * MN];
  int64_t rows[MB * MN], M;
  float hs[MB * MN * MD], dhs[MB * MN * MD], dout[MB * MN * MD], *scratch;
  lr_dropout dp;
} mfix;

static int mfix_init(mfix *f, int threads, int64_t chunk) {
  memset(f, 0, sizeof *f);
  if (lr_par_set_threads(threads) != LR_OK) return -1;
  lr_model_cfg c = {
      MI, MN, MD, 2, 2, 12, 0.1f, 1e-12f, attn_find("rela"), model_arch_find("recgrela"), 0.0f,
      0, 0.0f, 0, 0, 0};
  if (model_init(&f->m, &c, MB, 5) != LR_OK || itemtab_init(&f->tab, 0, MI + 1, MD, 5) != LR_OK)
    return -1;
  model_set_drop_path(&f->m, 0.5f);
  if (chunk) model_set_chunk(&f->m, chunk);
  // parameters larger than the init, so every gradient is well above the
  // float noise of the finite differences (as test_model)
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(&c, t);
  float *x = f->m.params_mem;
  for (int i = 0; i < nt; x += t[i].elems, i++) {
    const int ln_w = t[i].init == LR_INIT_ONE;
    t_fill_f(x, (int64_t)t[i].elems, 90 + (uint64_t)i, ln_w ? 0.2f : 0.4f);
    for (size_t e = 0; ln_w && e < t[i].elems; e++)
      x[e] += 1.0f;
  }
  t_fill_f(f->tab.w + MD, MI * MD, 81, 0.5f);
  const int32_t lens[MB] = {MN, 5, 1};
  for (int64_t b = 0; b < MB; b++) {
    f->lens[b] = lens[b];
    for (int64_t t = 0; t < MN; t++) {
      const uint64_t i = (uint64_t)(b * MN + t);
      lr_rng4 r = lr_philox(7, 1, (uint32_t)i, 0, 0, 0);
      f->idx[i] = t < lens[b] ? 1 + (int32_t)lr_below(r.v[0], r.v[1], MI) : -1;
      f->rid[i] = (uint64_t)(b + 4) * MN + (uint64_t)t; // example ids 4, 5, 6
      if (t < lens[b]) f->rows[f->M] = (int64_t)i, f->tgt[f->M++] = 1 + (int32_t)(r.v[2] % MI);
    }
  }
  f->dp = (lr_dropout){9, 2, 0, 0.1f, NULL};
  f->scratch = t_alloc((int64_t)ce_fb_scratch_elems(f->M, 4, MD, MI + 1), 4);
  return 0;
}

static void mfix_free(mfix *f) {
  free(f->scratch);
  itemtab_free(&f->tab);
  model_free(&f->m);
  lr_par_set_threads(1);
}

// The mean CE; with grads, the model's float gradient in m.grads_mem.
static double mfix_loss(mfix *f, int grads) {
  const float *h = model_forward(&f->m, f->idx, f->tab.w, f->lens, f->rid, MB, f->dp, NULL);
  for (int64_t i = 0; i < f->M; i++)
    memcpy(f->hs + i * MD, h + f->rows[i] * MD, MD * sizeof(float));
  memset(f->dhs, 0, sizeof f->dhs);
  double loss = ce_forward_backward(grads ? f->dhs : NULL, NULL, f->hs, f->tgt, f->tab.w, MI + 1,
                                    f->M, MD, 4, f->scratch);
  if (grads) {
    memset(f->dout, 0, sizeof f->dout);
    for (int64_t i = 0; i < f->M; i++)
      memcpy(f->dout + f->rows[i] * MD, f->dhs + i * MD, MD * sizeof(float));
    model_zero_grad(&f->m);
    model_backward(&f->m, NULL, f->dout, f->idx, f->rid, f->dp, NULL);
    model_grads_to_float(&f->m);
  }
  return loss;
}

static void test_droppath_model(void) {
  mfix f;
  if (mfix_init(&f, 1, 0)) {
    t_check(0, "droppath model: init: %s", lr_error_msg());
    return;
  }
  double l_on = mfix_loss(&f, 1);
  const size_t P = f.m.n_params;
  float *g = t_alloc((int64_t)P, 4), *h = t_alloc(MB * MN * MD, 4);
  memcpy(g, f.m.grads_mem, P * 4);
  memcpy(h, model_forward(&f.m, f.idx, f.tab.w, f.lens, f.rid, MB, f.dp, NULL), sizeof f.hs);
  // float FD of every tensor at 3 elements (the masks are functions of their keys)
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(&f.m.cfg, t);
  size_t off = 0;
  double worst = 0;
  for (int i = 0; i < nt; off += t[i].elems, i++) {
    double gm = 0, em = 0;
    for (size_t e = 0; e < t[i].elems; e++)
      gm = fmax(gm, fabs(g[off + e]));
    for (int k = 0; k < 3 && t[i].elems; k++) {
      const size_t j = off + (size_t)(k * 7919) % t[i].elems;
      float *x = f.m.params_mem + j, x0 = *x;
      *x = x0 + 1e-2f;
      double lp = mfix_loss(&f, 0);
      *x = x0 - 1e-2f;
      double lm = mfix_loss(&f, 0);
      *x = x0;
      const double fd = (lp - lm) / ((double)(x0 + 1e-2f) - (double)(x0 - 1e-2f));
      em = fmax(em, fabs(fd - g[j]));
    }
    if (gm > 0) worst = fmax(worst, em / gm);
  }
  // the batch's masks (examples 4..6, layers 0, 1: sites 8 (l + 1) + 2 of
  // arch_recgrela.c) drop some branches and keep others, so the check bites
  int n_drop = 0;
  for (uint64_t ex = 4; ex <= 6; ex++)
    for (uint32_t l = 0; l < 2; l++)
      n_drop += grela_droppath_scale(f.dp.seed, f.dp.epoch, 8 * (l + 1) + 2, ex, 0.5f) == 0.0f;
  t_check(worst < 2e-2 && n_drop > 0 && n_drop < 6,
          "droppath model: float fd of every tensor, drop_path 0.5, %d of 6 branches dropped "
          "(worst rel err %.3g, tol 2e-2)",
          n_drop, worst);
  // evaluation (p = 0) ignores DropPath; training with it differs from without
  lr_dropout ev = {0};
  float *he = t_alloc(MB * MN * MD, 4), *hn = t_alloc(MB * MN * MD, 4);
  memcpy(he, model_forward(&f.m, f.idx, f.tab.w, f.lens, f.rid, MB, ev, NULL), sizeof f.hs);
  model_set_drop_path(&f.m, 0.0f);
  memcpy(hn, model_forward(&f.m, f.idx, f.tab.w, f.lens, f.rid, MB, ev, NULL), sizeof f.hs);
  double l_off = mfix_loss(&f, 0);
  t_check(!memcmp(he, hn, sizeof f.hs) && l_off != l_on,
          "droppath model: off in evaluation (bitwise), on in training (loss %.6f vs %.6f)", l_on,
          l_off);
  mfix_free(&f);
  // lanes and chunks: bitwise the one-thread run
  const int th[3] = {2, 3, 1};
  const int64_t ch[3] = {0, 0, 1};
  for (int r = 0; r < 3; r++) {
    if (mfix_init(&f, th[r], ch[r])) {
      t_check(0, "droppath model: init");
      break;
    }
    mfix_loss(&f, 1);
    const float *h2 = model_forward(&f.m, f.idx, f.tab.w, f.lens, f.rid, MB, f.dp, NULL);
    t_check(!memcmp(h2, h, sizeof f.hs) && !memcmp(f.m.grads_mem, g, P * 4),
            "droppath model: %d threads%s: forward and gradients bitwise", th[r],
            ch[r] ? ", chunks of 1" : "");
    mfix_free(&f);
  }
  free(g), free(h), free(he), free(hn);
}

// ---- 6. the parameter count ---------------------------------------------------------------------

static void test_param_count(void) {
  lr_model_cfg c = {
      3416, 200, 64, 4, 4, 256, 0.1f, 1e-12f, attn_find("rela"), model_arch_find("recgrela"), 0.0f,
      0, 0.0f, 0, 0, 0};
  const size_t n = model_param_elems(&c) + (size_t)(3416 + 1) * 64;
  t_check(n == 436672,
          "recgrela D=64 H=4 L=4 inner 256, 3,416 items: %zu parameters with the item table "
          "(the released log: 436672)",
          n);
  // the ablations: recgrela_nogate has no Wg, bg (L (D^2 + D) fewer),
  // recgrela_noconv no conv weights and bias (L (4 D + D) fewer),
  // recgrela_norope as many as recgrela
  const char *ab[3] = {"recgrela_nogate", "recgrela_noconv", "recgrela_norope"};
  const size_t less[3] = {4 * (64 * 64 + 64), 4 * (4 * 64 + 64), 0};
  for (int a = 0; a < 3; a++) {
    c.arch = model_arch_find(ab[a]);
    const size_t na = c.arch ? model_param_elems(&c) + (size_t)(3416 + 1) * 64 : 0;
    t_check(na + less[a] == n, "%s: %zu parameters (recgrela's %zu - %zu)", ab[a], na, n, less[a]);
  }
}

int main(void) {
  test_rope();
  test_kinds();
  test_conv();
  test_gate();
  test_droppath_unit();
  test_droppath_model();
  test_param_count();
  return t_done();
}
