// test_optim.c: Adam against a hand-written double reference (one step, bias
// correction, decoupled weight decay, a short trajectory), lazy row Adam
// touching only the listed rows, and the clipping helpers.
#include <stdlib.h> // free
#include <string.h> // memcpy, memcmp

#include "optim.h"
#include "ref_layers.h" // t_alloc, conversions
#include "test_util.h"

// One Adam(W) step in double, the formula of optim.h written out.
static void ref_adam(double *p, double *m, double *v, const double *g, int64_t n, lr_adam_cfg c,
                     int64_t t) {
  const double b1 = c.beta1, b2 = c.beta2, lr = c.lr, eps = c.eps, wd = c.weight_decay;
  for (int64_t i = 0; i < n; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const double mh = m[i] / (1 - pow(b1, (double)t)), vh = v[i] / (1 - pow(b2, (double)t));
    p[i] -= lr * mh / (sqrt(vh) + eps) + lr * wd * p[i];
  }
}

// Parameter changes p - p0 (float run) vs the reference change.
static void check_delta(const float *p, const float *p0, const double *rp, const double *rp0,
                        int64_t n, double tol, const char *name) {
  double *d = t_alloc(n, 8), *rd = t_alloc(n, 8);
  for (int64_t i = 0; i < n; i++)
    d[i] = (double)p[i] - (double)p0[i], rd[i] = rp[i] - rp0[i];
  t_close_d(d, rd, n, tol, name);
  free(d), free(rd);
}

typedef struct {
  int64_t n;
  float *p, *m, *v, *g, *p0;
  double *rp, *rm, *rv, *rg, *rp0;
} adam_fix;

static void fix_init(adam_fix *f, int64_t n, uint64_t seed, int zero_moments) {
  f->n = n;
  f->p = t_alloc(n, 4), f->m = t_alloc(n, 4), f->v = t_alloc(n, 4), f->g = t_alloc(n, 4);
  f->p0 = t_alloc(n, 4);
  f->rp = t_alloc(n, 8), f->rm = t_alloc(n, 8), f->rv = t_alloc(n, 8), f->rg = t_alloc(n, 8);
  f->rp0 = t_alloc(n, 8);
  t_fill_f(f->p, n, seed, 1.0f);
  t_fill_f(f->g, n, seed + 1, 0.5f);
  if (!zero_moments) {
    t_fill_f(f->m, n, seed + 2, 0.1f);
    t_fill_f(f->v, n, seed + 3, 0.1f);
    for (int64_t i = 0; i < n; i++)
      f->v[i] = f->v[i] * f->v[i]; // v >= 0
  }
  memcpy(f->p0, f->p, n * 4);
  t_to_d(f->rp, f->p, n), t_to_d(f->rm, f->m, n), t_to_d(f->rv, f->v, n);
  t_to_d(f->rg, f->g, n), t_to_d(f->rp0, f->p, n);
}

static void fix_free(adam_fix *f) {
  free(f->p), free(f->m), free(f->v), free(f->g), free(f->p0);
  free(f->rp), free(f->rm), free(f->rv), free(f->rg), free(f->rp0);
}

static void test_adam_step(void) {
  const lr_adam_cfg c = {
      .lr = 0.05f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
  adam_fix f;
  fix_init(&f, 37, 11, 0);
  adam_update(f.p, f.m, f.v, f.g, f.n, c, 7);
  ref_adam(f.rp, f.rm, f.rv, f.rg, f.n, c, 7);
  check_delta(f.p, f.p0, f.rp, f.rp0, f.n, 1e-5, "adam t=7: step vs double reference");
  t_close_f(f.m, f.rm, f.n, 1e-6, "adam t=7: m vs double reference");
  t_close_f(f.v, f.rv, f.n, 1e-6, "adam t=7: v vs double reference");
  fix_free(&f);

  // A trajectory of 6 steps with fresh gradients, weight decay on.
  lr_adam_cfg cw = c;
  cw.weight_decay = 0.1f;
  fix_init(&f, 50, 21, 1);
  for (int64_t t = 1; t <= 6; t++) {
    t_fill_f(f.g, f.n, 100 + (uint64_t)t, 0.5f);
    t_to_d(f.rg, f.g, f.n);
    adam_update(f.p, f.m, f.v, f.g, f.n, cw, t);
    ref_adam(f.rp, f.rm, f.rv, f.rg, f.n, cw, t);
  }
  check_delta(f.p, f.p0, f.rp, f.rp0, f.n, 1e-5, "adamw 6 steps: p - p0 vs double reference");
  fix_free(&f);
}

static void test_adam_bias_correction(void) {
  // t = 1 from zero moments: m_hat = g, v_hat = g^2, so every parameter moves
  // by lr * g / (|g| + eps) ~ lr * sign(g), whatever the scale of g.
  const lr_adam_cfg c = {
      .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
  const int64_t n = 8;
  float p[8] = {0}, m[8] = {0}, v[8] = {0};
  const float g[8] = {1e-3f, -2e-3f, 0.5f, -7.0f, 100.0f, -1e-2f, 3e-3f, 1.0f};
  adam_update(p, m, v, g, n, c, 1);
  double md = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = -0.01 * (g[i] > 0 ? 1.0 : -1.0);
    md = fmax(md, fabs(p[i] - e) / 0.01);
  }
  t_check(md < 1e-4, "adam t=1: bias-corrected first step = lr * sign(g) (rel err %.2g)", md);

  // Without bias correction the first step would be (1-b1)/sqrt(1-b2) ~ 3.16x
  // larger; at t = 1000 the corrections are ~1, and the step is the raw ratio.
  adam_fix f;
  fix_init(&f, 16, 31, 1);
  adam_update(f.p, f.m, f.v, f.g, f.n, c, 1000);
  ref_adam(f.rp, f.rm, f.rv, f.rg, f.n, c, 1000);
  check_delta(f.p, f.p0, f.rp, f.rp0, f.n, 1e-5, "adam t=1000 from zero moments vs reference");
  fix_free(&f);
}

static void test_adam_weight_decay(void) {
  const lr_adam_cfg c = {
      .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.5f};
  // zero gradient, zero moments: only the decoupled decay acts, p *= 1 - lr*wd
  const int64_t n = 5;
  float p[5] = {1, -2, 3, 0.25f, 0}, m[5] = {0}, v[5] = {0}, g[5] = {0};
  adam_update(p, m, v, g, n, c, 3);
  const double ref[5] = {0.995, -1.99, 2.985, 0.24875, 0};
  t_close_f(p, ref, n, 1e-7, "adamw: zero gradient -> p *= 1 - lr*wd");

  // decay is decoupled: the moments never see it
  adam_fix a, b;
  fix_init(&a, 20, 41, 0);
  fix_init(&b, 20, 41, 0);
  lr_adam_cfg c0 = c;
  c0.weight_decay = 0.0f;
  adam_update(a.p, a.m, a.v, a.g, a.n, c, 4);
  adam_update(b.p, b.m, b.v, b.g, b.n, c0, 4);
  int same = memcmp(a.m, b.m, 20 * 4) == 0 && memcmp(a.v, b.v, 20 * 4) == 0;
  double *dd = t_alloc(20, 8), *rd = t_alloc(20, 8);
  for (int i = 0; i < 20; i++) {
    dd[i] = (double)a.p[i] - (double)b.p[i];
    rd[i] = -(double)c.lr * (double)c.weight_decay * (double)a.p0[i];
  }
  t_check(same, "adamw: moments identical with and without weight decay");
  t_close_d(dd, rd, 20, 1e-4, "adamw: p difference = -lr*wd*p0");
  ref_adam(a.rp, a.rm, a.rv, a.rg, a.n, c, 4);
  check_delta(a.p, a.p0, a.rp, a.rp0, a.n, 1e-5, "adamw t=4: step vs double reference");
  free(dd), free(rd);
  fix_free(&a), fix_free(&b);
}

static void test_adam_rows(void) {
  const lr_adam_cfg c = {
      .lr = 0.02f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.01f};
  const int64_t R = 7, D = 3, n = 3;
  const int64_t rows[3] = {5, 1, 2};
  float *p = t_alloc(R * D, 4), *m = t_alloc(R * D, 4), *v = t_alloc(R * D, 4);
  float *p0 = t_alloc(R * D, 4), *m0 = t_alloc(R * D, 4), *v0 = t_alloc(R * D, 4);
  float *grow = t_alloc(n * D, 4);
  t_fill_f(p, R * D, 51, 1.0f), t_fill_f(m, R * D, 52, 0.1f), t_fill_f(v, R * D, 53, 0.1f);
  for (int64_t i = 0; i < R * D; i++)
    v[i] *= v[i];
  t_fill_f(grow, n * D, 54, 1.0f);
  memcpy(p0, p, R * D * 4), memcpy(m0, m, R * D * 4), memcpy(v0, v, R * D * 4);
  adam_update_rows(p, m, v, grow, rows, n, D, c, 9);
  int untouched = 1, changed = 1;
  for (int64_t r = 0; r < R; r++) {
    int listed = r == 1 || r == 2 || r == 5;
    int same = memcmp(p + r * D, p0 + r * D, D * 4) == 0 &&
               memcmp(m + r * D, m0 + r * D, D * 4) == 0 &&
               memcmp(v + r * D, v0 + r * D, D * 4) == 0;
    if (listed)
      changed &= !same;
    else
      untouched &= same;
  }
  t_check(untouched, "lazy adam: rows not listed keep p, m, v bit for bit");
  t_check(changed, "lazy adam: listed rows move");
  // a listed row takes exactly the dense step
  int equal = 1;
  for (int64_t i = 0; i < n; i++) {
    float pp[3], mm[3], vv[3];
    memcpy(pp, p0 + rows[i] * D, D * 4), memcpy(mm, m0 + rows[i] * D, D * 4);
    memcpy(vv, v0 + rows[i] * D, D * 4);
    adam_update(pp, mm, vv, grow + i * D, D, c, 9);
    equal &= memcmp(pp, p + rows[i] * D, D * 4) == 0 && memcmp(mm, m + rows[i] * D, D * 4) == 0 &&
             memcmp(vv, v + rows[i] * D, D * 4) == 0;
  }
  t_check(equal, "lazy adam: listed rows equal the dense update of the same slice");
  free(p), free(m), free(v), free(p0), free(m0), free(v0), free(grow);
}

static void test_clip(void) {
  const int64_t n = 1003; // not a multiple of the 4 partial sums
  float *g = t_alloc(n, 4);
  t_fill_f(g, n, 61, 2.0f);
  double ref = 0;
  for (int64_t i = 0; i < n; i++)
    ref += (double)g[i] * (double)g[i];
  double s = grad_sumsq(g, n);
  t_close_d(&s, &ref, 1, 1e-12, "grad_sumsq vs double loop (other summation order)");
  t_check(grad_sumsq(g, 0) == 0.0 && grad_sumsq(g, 3) > 0.0, "grad_sumsq: n = 0 and n < 4");

  // clip to norm 1.5: coefficient, scale, resulting norm
  const float coef = grad_clip_coef(s, 1.5);
  grad_scale(g, n, coef);
  double after = sqrt(grad_sumsq(g, n));
  t_check(fabs(after - 1.5) < 1e-5, "grad_clip_coef + grad_scale: norm %.7f -> %.7f (max 1.5)",
          sqrt(s), after);
  t_check(grad_clip_coef(4.0, 3.0) == 1.0f && grad_clip_coef(4.0, 2.0) == 1.0f &&
              grad_clip_coef(100.0, 0.0) == 1.0f && grad_clip_coef(NAN, 1.0) == 1.0f,
          "grad_clip_coef: 1 when norm <= max, clipping off, or NaN");
  t_check(fabs(grad_clip_coef(16.0, 2.0) - 0.5) < 1e-6, "grad_clip_coef(16, 2) = 0.5");
  float h[3] = {1, -2, 4};
  grad_scale(h, 3, -0.5f);
  t_check(h[0] == -0.5f && h[1] == 1.0f && h[2] == -2.0f, "grad_scale");
  free(g);
}

int main(void) {
  test_adam_step();
  test_adam_bias_correction();
  test_adam_weight_decay();
  test_adam_rows();
  test_clip();
  return t_done();
}
