// test_layers.c: every layer of layers.h against central finite differences in
// double (relative error < 1e-6), its float instantiation against the double
// one (forward) and against the finite differences (backward, looser bound),
// backward-twice = 2x gradient (accumulation), and the dropout mask contract
// (identity at p = 0, reproducible from its keys, independent of row order,
// the same in backward, kept fraction ~ 1-p).
#include <stdlib.h> // free
#include <string.h> // memcpy, memset

#include "layers.h"
#include "lr.h"             // LR_OK
#include "par.h"            // lr_par_set_threads
#include "ref_layers.h" // t_fd_grad, t_alloc, conversions
#include "rng.h"        // lr_philox (dropout keys)
#include "test_util.h"

#define TOL_FD64 1e-6  // double analytic vs double finite differences
#define TOL_FD32 1e-4  // float analytic vs double finite differences
#define TOL_FWD32 1e-5 // float forward vs double forward
#define FD_H 1e-3

// Compare the double and float analytic gradients with the finite-difference
// gradient of f with respect to x (n).
static void check_grad(const char *layer, const char *what, t_scalar_fn f, void *ctx, double *x,
                       int64_t n, const double *g64, const float *g32) {
  double *fd = t_alloc(n, sizeof(double));
  t_fd_grad(fd, f, ctx, x, n, FD_H);
  char name[160];
  snprintf(name, sizeof name, "%s: d%s f64 vs finite differences", layer, what);
  t_close_d(g64, fd, n, TOL_FD64, name);
  snprintf(name, sizeof name, "%s: d%s f32 vs finite differences", layer, what);
  t_close_f(g32, fd, n, TOL_FD32, name);
  free(fd);
}

// A second backward into the same buffers must double the gradient (+=).
static void check_twice_d(const char *layer, const char *what, const double *g1, const double *g2,
                          int64_t n) {
  double *ref = t_alloc(n, sizeof(double));
  for (int64_t i = 0; i < n; i++)
    ref[i] = 2.0 * g1[i];
  char name[160];
  snprintf(name, sizeof name, "%s: d%s backward twice = 2x (f64)", layer, what);
  t_close_d(g2, ref, n, 1e-14, name);
  free(ref);
}

static void check_twice_f(const char *layer, const char *what, const float *g1, const float *g2,
                          int64_t n) {
  double *ref = t_alloc(n, sizeof(double));
  for (int64_t i = 0; i < n; i++)
    ref[i] = 2.0 * (double)g1[i];
  char name[160];
  snprintf(name, sizeof name, "%s: d%s backward twice = 2x (f32)", layer, what);
  t_close_f(g2, ref, n, 1e-6, name);
  free(ref);
}

// ---- embedding --------------------------------------------------------------------

typedef struct {
  int64_t B, N, D, U;
  const int32_t *idx;
  double *rows, *pos, *dout, *out;
} emb_ctx;

static double emb_f(void *p) {
  emb_ctx *c = p;
  embedding_forward_f64(c->out, c->idx, c->rows, c->pos, c->B, c->N, c->D);
  return t_dot_d(c->dout, c->out, c->B * c->N * c->D);
}

static void test_embedding(void) {
  const int64_t B = 2, N = 4, D = 5, U = 3;
  // padding (-1) at the tail of sequence 0 and the head of sequence 1;
  // row 1 used twice so its gradient sums two positions.
  const int32_t idx[8] = {0, 1, -1, -1, -1, 2, 1, 0};
  const int64_t nout = B * N * D, nr = U * D, np = N * D;
  double *rows = t_alloc(nr, 8), *pos = t_alloc(np, 8), *dout = t_alloc(nout, 8);
  double *out = t_alloc(nout, 8), *dr = t_alloc(nr, 8), *dp = t_alloc(np, 8);
  double *dr2 = t_alloc(nr, 8), *dp2 = t_alloc(np, 8);
  t_fill_d(rows, nr, 11, 1.0);
  t_fill_d(pos, np, 12, 1.0);
  t_fill_d(dout, nout, 13, 1.0);
  emb_ctx c = {B, N, D, U, idx, rows, pos, dout, out};
  emb_f(&c);

  // forward by hand: padding rows carry the position row only
  int ok = 1;
  for (int64_t r = 0; r < B * N; r++)
    for (int64_t i = 0; i < D; i++) {
      double e = (idx[r] >= 0 ? rows[idx[r] * D + i] : 0.0) + pos[(r % N) * D + i];
      ok &= out[r * D + i] == e;
    }
  t_check(ok, "embedding: forward = rows[idx] + pos, padding = pos only");

  embedding_backward_f64(dr, dp, dout, idx, B, N, D);
  memcpy(dr2, dr, nr * 8);
  memcpy(dp2, dp, np * 8);
  embedding_backward_f64(dr2, dp2, dout, idx, B, N, D);

  float *rows_f = t_alloc(nr, 4), *pos_f = t_alloc(np, 4), *dout_f = t_alloc(nout, 4);
  float *out_f = t_alloc(nout, 4), *dr_f = t_alloc(nr, 4), *dp_f = t_alloc(np, 4);
  float *dr2_f = t_alloc(nr, 4), *dp2_f = t_alloc(np, 4);
  t_to_f(rows_f, rows, nr);
  t_to_f(pos_f, pos, np);
  t_to_f(dout_f, dout, nout);
  embedding_forward(out_f, idx, rows_f, pos_f, B, N, D);
  t_close_f(out_f, out, nout, TOL_FWD32, "embedding: forward f32 vs f64");
  embedding_backward(dr_f, dp_f, dout_f, idx, B, N, D);
  memcpy(dr2_f, dr_f, nr * 4);
  memcpy(dp2_f, dp_f, np * 4);
  embedding_backward(dr2_f, dp2_f, dout_f, idx, B, N, D);

  check_grad("embedding", "rows", emb_f, &c, rows, nr, dr, dr_f);
  check_grad("embedding", "pos", emb_f, &c, pos, np, dp, dp_f);
  check_twice_d("embedding", "rows", dr, dr2, nr);
  check_twice_d("embedding", "pos", dp, dp2, np);
  check_twice_f("embedding", "rows", dr_f, dr2_f, nr);
  check_twice_f("embedding", "pos", dp_f, dp2_f, np);

  // pos == NULL: item rows only; dpos == NULL skipped
  embedding_forward_f64(out, idx, rows, NULL, B, N, D);
  ok = 1;
  for (int64_t r = 0; r < B * N; r++)
    for (int64_t i = 0; i < D; i++)
      ok &= out[r * D + i] == (idx[r] >= 0 ? rows[idx[r] * D + i] : 0);
  memset(dr2, 0, nr * 8);
  embedding_backward_f64(dr2, NULL, dout, idx, B, N, D);
  for (int64_t i = 0; i < nr; i++)
    ok &= dr2[i] == dr[i];
  t_check(ok, "embedding: pos = NULL / dpos = NULL");

  free(rows), free(pos), free(dout), free(out), free(dr), free(dp), free(dr2), free(dp2);
  free(rows_f), free(pos_f), free(dout_f), free(out_f), free(dr_f), free(dp_f), free(dr2_f);
  free(dp2_f);
}

// ---- LayerNorm ----------------------------------------------------------------------

typedef struct {
  int64_t R, D;
  double eps;
  double *in, *w, *b, *dout, *out, *mean, *rstd;
} ln_ctx;

static double ln_f(void *p) {
  ln_ctx *c = p;
  layernorm_forward_f64(c->out, c->mean, c->rstd, c->in, c->w, c->b, c->R, c->D, c->eps);
  return t_dot_d(c->dout, c->out, c->R * c->D);
}

static void test_layernorm_case(int64_t R, int64_t D, double eps, double offset) {
  const int64_t n = R * D;
  double *in = t_alloc(n, 8), *w = t_alloc(D, 8), *b = t_alloc(D, 8), *dout = t_alloc(n, 8);
  double *out = t_alloc(n, 8), *mean = t_alloc(R, 8), *rstd = t_alloc(R, 8);
  double *din = t_alloc(n, 8), *dw = t_alloc(D, 8), *db = t_alloc(D, 8);
  double *din2 = t_alloc(n, 8), *dw2 = t_alloc(D, 8), *db2 = t_alloc(D, 8);
  t_fill_d(in, n, 21, 1.0);
  for (int64_t i = 0; i < n; i++)
    in[i] += offset;
  t_fill_d(w, D, 22, 1.0);
  for (int64_t i = 0; i < D; i++)
    w[i] += 1.0;
  t_fill_d(b, D, 23, 0.5);
  t_fill_d(dout, n, 24, 1.0);
  ln_ctx c = {R, D, eps, in, w, b, dout, out, mean, rstd};
  ln_f(&c);

  // forward by hand in double
  double *ref = t_alloc(n, 8);
  for (int64_t r = 0; r < R; r++) {
    double m = 0, v = 0;
    for (int64_t i = 0; i < D; i++)
      m += in[r * D + i] / (double)D;
    for (int64_t i = 0; i < D; i++)
      v += (in[r * D + i] - m) * (in[r * D + i] - m) / (double)D;
    for (int64_t i = 0; i < D; i++)
      ref[r * D + i] = (in[r * D + i] - m) / sqrt(v + eps) * w[i] + b[i];
  }
  char name[120];
  snprintf(name, sizeof name, "layernorm R=%lld D=%lld offset=%g: forward vs formula", (long long)R,
           (long long)D, offset);
  t_close_d(out, ref, n, 1e-12, name);

  layernorm_backward_f64(din, dw, db, dout, in, w, mean, rstd, R, D);
  memcpy(din2, din, n * 8), memcpy(dw2, dw, D * 8), memcpy(db2, db, D * 8);
  layernorm_backward_f64(din2, dw2, db2, dout, in, w, mean, rstd, R, D);

  float *in_f = t_alloc(n, 4), *w_f = t_alloc(D, 4), *b_f = t_alloc(D, 4), *dout_f = t_alloc(n, 4);
  float *out_f = t_alloc(n, 4), *mean_f = t_alloc(R, 4), *rstd_f = t_alloc(R, 4);
  float *din_f = t_alloc(n, 4), *dw_f = t_alloc(D, 4), *db_f = t_alloc(D, 4);
  float *din2_f = t_alloc(n, 4), *dw2_f = t_alloc(D, 4), *db2_f = t_alloc(D, 4);
  t_to_f(in_f, in, n), t_to_f(w_f, w, D), t_to_f(b_f, b, D), t_to_f(dout_f, dout, n);
  layernorm_forward(out_f, mean_f, rstd_f, in_f, w_f, b_f, R, D, (float)eps);
  snprintf(name, sizeof name, "layernorm R=%lld D=%lld offset=%g: forward f32 vs f64", (long long)R,
           (long long)D, offset);
  t_close_f(out_f, out, n, offset > 10 ? 1e-4 : TOL_FWD32, name);
  layernorm_backward(din_f, dw_f, db_f, dout_f, in_f, w_f, mean_f, rstd_f, R, D);
  memcpy(din2_f, din_f, n * 4), memcpy(dw2_f, dw_f, D * 4), memcpy(db2_f, db_f, D * 4);
  layernorm_backward(din2_f, dw2_f, db2_f, dout_f, in_f, w_f, mean_f, rstd_f, R, D);

  snprintf(name, sizeof name, "layernorm R=%lld D=%lld offset=%g", (long long)R, (long long)D,
           offset);
  if (offset == 0.0) { // FD at a large offset loses digits to cancellation in f itself
    check_grad(name, "in", ln_f, &c, in, n, din, din_f);
    check_grad(name, "w", ln_f, &c, w, D, dw, dw_f);
    check_grad(name, "b", ln_f, &c, b, D, db, db_f);
  }
  check_twice_d(name, "in", din, din2, n);
  check_twice_d(name, "w", dw, dw2, D);
  check_twice_d(name, "b", db, db2, D);
  check_twice_f(name, "in", din_f, din2_f, n);
  check_twice_f(name, "w", dw_f, dw2_f, D);
  check_twice_f(name, "b", db_f, db2_f, D);

  free(in), free(w), free(b), free(dout), free(out), free(mean), free(rstd), free(din), free(dw);
  free(db), free(din2), free(dw2), free(db2), free(ref);
  free(in_f), free(w_f), free(b_f), free(dout_f), free(out_f), free(mean_f), free(rstd_f);
  free(din_f), free(dw_f), free(db_f), free(din2_f), free(dw2_f), free(db2_f);
}

static void test_layernorm(void) {
  test_layernorm_case(5, 7, 1e-12, 0.0);   // the model's eps (RecBole)
  test_layernorm_case(3, 64, 1e-5, 0.0);   // PyTorch's default eps, one full column block
  test_layernorm_case(4, 70, 1e-12, 0.0);  // D spanning two column blocks
  test_layernorm_case(4, 16, 1e-12, 50.0); // large mean: two-pass variance in float

  // a constant row has variance 0: with eps inside the sqrt the output is b.
  const int64_t D = 6;
  float in[6] = {3, 3, 3, 3, 3, 3}, w[6] = {1, 2, 3, 4, 5, 6},
        b[6] = {.1f, .2f, .3f, .4f, .5f, .6f};
  float out[6], mean, rstd;
  layernorm_forward(out, &mean, &rstd, in, w, b, 1, D, 1e-12f);
  int ok = isfinite(rstd);
  for (int i = 0; i < D; i++)
    ok &= out[i] == b[i];
  t_check(ok, "layernorm: constant row -> b, finite rstd (eps 1e-12)");
}

// ---- linear -------------------------------------------------------------------------

typedef struct {
  int64_t R, C, OC;
  double *in, *w, *b, *dout, *out;
} lin_ctx;

static double lin_f(void *p) {
  lin_ctx *c = p;
  linear_forward_f64(c->out, c->in, c->w, c->b, c->R, c->C, c->OC);
  return t_dot_d(c->dout, c->out, c->R * c->OC);
}

static void test_linear_case(int64_t R, int64_t C, int64_t OC) {
  const int64_t ni = R * C, nw = OC * C, no = R * OC;
  double *in = t_alloc(ni, 8), *w = t_alloc(nw, 8), *b = t_alloc(OC, 8), *dout = t_alloc(no, 8);
  double *out = t_alloc(no, 8), *din = t_alloc(ni, 8), *dw = t_alloc(nw, 8), *db = t_alloc(OC, 8);
  double *din2 = t_alloc(ni, 8), *dw2 = t_alloc(nw, 8), *db2 = t_alloc(OC, 8);
  t_fill_d(in, ni, 31, 1.0), t_fill_d(w, nw, 32, 1.0), t_fill_d(b, OC, 33, 1.0);
  t_fill_d(dout, no, 34, 1.0);
  lin_ctx c = {R, C, OC, in, w, b, dout, out};
  lin_f(&c);
  double *ref = t_alloc(no, 8);
  for (int64_t r = 0; r < R; r++)
    for (int64_t o = 0; o < OC; o++) {
      double s = b[o];
      for (int64_t i = 0; i < C; i++)
        s += in[r * C + i] * w[o * C + i];
      ref[r * OC + o] = s;
    }
  char name[100];
  snprintf(name, sizeof name, "linear R=%lld C=%lld OC=%lld", (long long)R, (long long)C,
           (long long)OC);
  char nm[160];
  snprintf(nm, sizeof nm, "%s: forward vs naive loops", name);
  t_close_d(out, ref, no, 1e-14, nm);

  linear_backward_f64(din, dw, db, dout, in, w, R, C, OC);
  memcpy(din2, din, ni * 8), memcpy(dw2, dw, nw * 8), memcpy(db2, db, OC * 8);
  linear_backward_f64(din2, dw2, db2, dout, in, w, R, C, OC);

  float *in_f = t_alloc(ni, 4), *w_f = t_alloc(nw, 4), *b_f = t_alloc(OC, 4);
  float *dout_f = t_alloc(no, 4), *out_f = t_alloc(no, 4), *din_f = t_alloc(ni, 4);
  float *dw_f = t_alloc(nw, 4), *db_f = t_alloc(OC, 4), *din2_f = t_alloc(ni, 4);
  float *dw2_f = t_alloc(nw, 4), *db2_f = t_alloc(OC, 4);
  t_to_f(in_f, in, ni), t_to_f(w_f, w, nw), t_to_f(b_f, b, OC), t_to_f(dout_f, dout, no);
  linear_forward(out_f, in_f, w_f, b_f, R, C, OC);
  snprintf(nm, sizeof nm, "%s: forward f32 vs f64", name);
  t_close_f(out_f, out, no, TOL_FWD32, nm);
  linear_backward(din_f, dw_f, db_f, dout_f, in_f, w_f, R, C, OC);
  memcpy(din2_f, din_f, ni * 4), memcpy(dw2_f, dw_f, nw * 4), memcpy(db2_f, db_f, OC * 4);
  linear_backward(din2_f, dw2_f, db2_f, dout_f, in_f, w_f, R, C, OC);

  check_grad(name, "in", lin_f, &c, in, ni, din, din_f);
  check_grad(name, "w", lin_f, &c, w, nw, dw, dw_f);
  check_grad(name, "b", lin_f, &c, b, OC, db, db_f);
  check_twice_d(name, "in", din, din2, ni);
  check_twice_d(name, "w", dw, dw2, nw);
  check_twice_d(name, "b", db, db2, OC);
  check_twice_f(name, "in", din_f, din2_f, ni);
  check_twice_f(name, "w", dw_f, dw2_f, nw);
  check_twice_f(name, "b", db_f, db2_f, OC);

  // b == NULL: out = in W^T exactly as with a zero bias; NULL gradients skipped.
  linear_forward_f64(out, in, w, NULL, R, C, OC);
  for (int64_t r = 0; r < R; r++)
    for (int64_t o = 0; o < OC; o++)
      ref[r * OC + o] -= b[o];
  snprintf(nm, sizeof nm, "%s: b = NULL forward", name);
  t_close_d(out, ref, no, 1e-14, nm);
  memset(dw2, 0, nw * 8);
  linear_backward_f64(NULL, dw2, NULL, dout, in, w, R, C, OC);
  snprintf(nm, sizeof nm, "%s: din = db = NULL backward", name);
  t_close_d(dw2, dw, nw, 0.0, nm);
  // linear_backward_to writes din over whatever it held (NaN here)
  for (int64_t i = 0; i < ni; i++)
    din2[i] = NAN;
  memset(dw2, 0, nw * 8);
  linear_backward_to_f64(din2, dw2, NULL, dout, in, w, R, C, OC);
  snprintf(nm, sizeof nm, "%s: linear_backward_to overwrites din", name);
  t_close_d(din2, din, ni, 0.0, nm);
  for (int64_t i = 0; i < ni; i++)
    din2_f[i] = NAN;
  linear_backward_to(din2_f, NULL, NULL, dout_f, in_f, w_f, R, C, OC);
  snprintf(nm, sizeof nm, "%s: linear_backward_to f32 overwrites din", name);
  t_close_f(din2_f, din, ni, TOL_FD32, nm);

  free(in), free(w), free(b), free(dout), free(out), free(din), free(dw), free(db), free(din2);
  free(dw2), free(db2), free(ref);
  free(in_f), free(w_f), free(b_f), free(dout_f), free(out_f), free(din_f), free(dw_f);
  free(db_f), free(din2_f), free(dw2_f), free(db2_f);
}

static void test_linear(void) {
  test_linear_case(4, 5, 3);
  test_linear_case(3, 7, 70); // bias gradient over two column blocks
  test_linear_case(1, 1, 1);
}

// ---- GELU ---------------------------------------------------------------------------

typedef struct {
  int64_t n;
  double *in, *dout, *out;
} gelu_ctx;

static double gelu_f(void *p) {
  gelu_ctx *c = p;
  gelu_forward_f64(c->out, c->in, c->n);
  return t_dot_d(c->dout, c->out, c->n);
}

static void test_gelu(void) {
  const int64_t n = 41;
  double *in = t_alloc(n, 8), *dout = t_alloc(n, 8), *out = t_alloc(n, 8);
  double *din = t_alloc(n, 8), *din2 = t_alloc(n, 8);
  t_fill_d(in, n, 41, 4.0); // covers both tails and the bend at 0
  in[0] = 0.0;
  t_fill_d(dout, n, 42, 1.0);
  gelu_ctx c = {n, in, dout, out};
  gelu_f(&c);
  // known values of x Phi(x) (PyTorch F.gelu, approximate='none')
  const double xs[4] = {-1.0, 0.5, 1.0, 3.0};
  const double ys[4] = {-0.15865525393145707, 0.34573123063700656, 0.8413447460685429,
                        2.99595030590511};
  double got[4], gin[4];
  for (int i = 0; i < 4; i++)
    gin[i] = xs[i];
  gelu_forward_f64(got, gin, 4);
  t_close_d(got, ys, 4, 1e-15, "gelu: known values of x*Phi(x)");

  gelu_backward_f64(din, dout, in, n);
  memcpy(din2, din, n * 8);
  gelu_backward_f64(din2, dout, in, n);
  float *in_f = t_alloc(n, 4), *dout_f = t_alloc(n, 4), *out_f = t_alloc(n, 4);
  float *din_f = t_alloc(n, 4), *din2_f = t_alloc(n, 4);
  t_to_f(in_f, in, n), t_to_f(dout_f, dout, n);
  gelu_forward(out_f, in_f, n);
  t_close_f(out_f, out, n, TOL_FWD32, "gelu: forward f32 vs f64");
  gelu_backward(din_f, dout_f, in_f, n);
  memcpy(din2_f, din_f, n * 4);
  gelu_backward(din2_f, dout_f, in_f, n);
  check_grad("gelu", "in", gelu_f, &c, in, n, din, din_f);
  check_twice_d("gelu", "in", din, din2, n);
  check_twice_f("gelu", "in", din_f, din2_f, n);
  // in place (out recomputed: the finite differences left it perturbed)
  gelu_f(&c);
  memcpy(out_f, in_f, n * 4);
  gelu_forward(out_f, out_f, n);
  t_close_f(out_f, out, n, TOL_FWD32, "gelu: in place");
  // the training pair: the forward's stored derivative, backward from it
  {
    double *g = t_alloc(n, 8), *x = t_alloc(n, 8), *dref = t_alloc(n, 8), *d = t_alloc(n, 8);
    float *gf = t_alloc(n, 4), *of = t_alloc(n, 4), *df = t_alloc(n, 4);
    memcpy(x, in, n * 8);
    gelu_forward_train_f64(g, x, NULL, 1, n); // g = gelu(in), x = gelu'(in)
    t_close_d(g, out, n, 1e-15, "gelu train f64: forward as gelu_forward");
    memset(dref, 0, n * 8);
    gelu_backward_f64(dref, dout, in, n);
    memcpy(d, dout, n * 8);
    gelu_backward_stored_f64(d, x, n);
    t_close_d(d, dref, n, 1e-14, "gelu train f64: stored backward as gelu_backward");
    memcpy(gf, in_f, n * 4);
    gelu_forward_train(of, gf, NULL, 1, n);
    t_close_f(of, out, n, TOL_FWD32, "gelu train f32: forward vs f64");
    memcpy(df, dout_f, n * 4);
    gelu_backward_stored(df, gf, n);
    t_close_f(df, dref, n, TOL_FWD32, "gelu train f32: stored backward vs f64");
    free(g), free(x), free(dref), free(d), free(gf), free(of), free(df);
  }
  free(in), free(dout), free(out), free(din), free(din2);
  free(in_f), free(dout_f), free(out_f), free(din_f), free(din2_f);
}

// ---- residual -----------------------------------------------------------------------

typedef struct {
  int64_t n;
  double *a, *b, *dout, *out;
} res_ctx;

static double res_f(void *p) {
  res_ctx *c = p;
  residual_forward_f64(c->out, c->a, c->b, c->n);
  return t_dot_d(c->dout, c->out, c->n);
}

static void test_residual(void) {
  const int64_t n = 13;
  double *a = t_alloc(n, 8), *b = t_alloc(n, 8), *dout = t_alloc(n, 8), *out = t_alloc(n, 8);
  double *da = t_alloc(n, 8), *db = t_alloc(n, 8), *da2 = t_alloc(n, 8), *db2 = t_alloc(n, 8);
  t_fill_d(a, n, 51, 1.0), t_fill_d(b, n, 52, 1.0), t_fill_d(dout, n, 53, 1.0);
  res_ctx c = {n, a, b, dout, out};
  res_f(&c);
  residual_backward_f64(da, db, dout, n);
  memcpy(da2, da, n * 8), memcpy(db2, db, n * 8);
  residual_backward_f64(da2, db2, dout, n);
  float *a_f = t_alloc(n, 4), *b_f = t_alloc(n, 4), *dout_f = t_alloc(n, 4), *out_f = t_alloc(n, 4);
  float *da_f = t_alloc(n, 4), *db_f = t_alloc(n, 4), *da2_f = t_alloc(n, 4),
        *db2_f = t_alloc(n, 4);
  t_to_f(a_f, a, n), t_to_f(b_f, b, n), t_to_f(dout_f, dout, n);
  residual_forward(out_f, a_f, b_f, n);
  t_close_f(out_f, out, n, TOL_FWD32, "residual: forward f32 vs f64");
  residual_backward(da_f, db_f, dout_f, n);
  memcpy(da2_f, da_f, n * 4), memcpy(db2_f, db_f, n * 4);
  residual_backward(da2_f, db2_f, dout_f, n);
  check_grad("residual", "a", res_f, &c, a, n, da, da_f);
  check_grad("residual", "b", res_f, &c, b, n, db, db_f);
  check_twice_d("residual", "a", da, da2, n);
  check_twice_d("residual", "b", db, db2, n);
  check_twice_f("residual", "a", da_f, da2_f, n);
  check_twice_f("residual", "b", db_f, db2_f, n);
  // out aliasing b, as the model calls it
  res_f(&c);
  memcpy(out_f, b_f, n * 4);
  residual_forward(out_f, a_f, out_f, n);
  t_close_f(out_f, out, n, TOL_FWD32, "residual: out == b (in place)");
  free(a), free(b), free(dout), free(out), free(da), free(db), free(da2), free(db2);
  free(a_f), free(b_f), free(dout_f), free(out_f), free(da_f), free(db_f), free(da2_f);
  free(db2_f);
}

// ---- dropout ------------------------------------------------------------------------

typedef struct {
  int64_t R, D;
  const uint64_t *ids;
  lr_dropout dp;
  double *in, *dout, *out;
} drop_ctx;

static double drop_f(void *p) {
  drop_ctx *c = p;
  dropout_forward_f64(c->out, c->in, c->ids, c->R, c->D, c->dp);
  return t_dot_d(c->dout, c->out, c->R * c->D);
}

// The keep bit of element j of a row, recomputed from the key layout that
// layers.h documents (independently of layers.c).
static int keep_ref(lr_dropout dp, uint64_t row_id, int64_t j) {
  lr_rng4 q = lr_philox(dp.seed, LR_STREAM_DROPOUT, (uint32_t)row_id, (uint32_t)(row_id >> 32),
                        (dp.epoch << 8) | dp.site, (uint32_t)(j / 8));
  const uint32_t half = (q.v[(j % 8) / 2] >> (16 * (j % 2))) & 0xffffu;
  return half >= (uint32_t)lrint(dp.p * 65536.0);
}

static void test_dropout_grad(void) {
  const int64_t R = 4, D = 7, n = R * D;
  const uint64_t ids[4] = {5, 6, (1ull << 32) + 5, 123456789012ull};
  lr_dropout dp = {.seed = 77, .epoch = 3, .site = 9, .p = 0.3f};
  double *in = t_alloc(n, 8), *dout = t_alloc(n, 8), *out = t_alloc(n, 8);
  double *din = t_alloc(n, 8), *din2 = t_alloc(n, 8);
  t_fill_d(in, n, 61, 1.0), t_fill_d(dout, n, 62, 1.0);
  drop_ctx c = {R, D, ids, dp, in, dout, out};
  drop_f(&c);
  dropout_backward_f64(din, dout, ids, R, D, dp);
  memcpy(din2, din, n * 8);
  dropout_backward_f64(din2, dout, ids, R, D, dp);
  float *in_f = t_alloc(n, 4), *dout_f = t_alloc(n, 4), *out_f = t_alloc(n, 4);
  float *din_f = t_alloc(n, 4), *din2_f = t_alloc(n, 4);
  t_to_f(in_f, in, n), t_to_f(dout_f, dout, n);
  dropout_forward(out_f, in_f, ids, R, D, dp);
  t_close_f(out_f, out, n, TOL_FWD32, "dropout: forward f32 vs f64");
  dropout_backward(din_f, dout_f, ids, R, D, dp);
  memcpy(din2_f, din_f, n * 4);
  dropout_backward(din2_f, dout_f, ids, R, D, dp);
  check_grad("dropout", "in", drop_f, &c, in, n, din, din_f);
  check_twice_d("dropout", "in", din, din2, n);
  check_twice_f("dropout", "in", din_f, din2_f, n);
  // rows 0 and 2 differ only in the high word of the id: their masks must differ
  int differ = 0;
  for (int64_t j = 0; j < D; j++)
    differ |= (out[j] == 0) != (out[2 * D + j] == 0);
  t_check(differ, "dropout: row_id high word enters the key");
  free(in), free(dout), free(out), free(din), free(din2);
  free(in_f), free(dout_f), free(out_f), free(din_f), free(din2_f);
}

static void test_dropout_mask(int64_t D) {
  const int64_t R = 64, n = R * D;
  printf("-- dropout mask tests, D = %lld\n", (long long)D);
  uint64_t *ids = t_alloc(R, 8);
  for (int64_t r = 0; r < R; r++)
    ids[r] = 1000 + 7 * (uint64_t)r;
  float *in = t_alloc(n, 4), *out = t_alloc(n, 4), *din = t_alloc(n, 4), *tmp = t_alloc(n, 4);
  t_fill_f(in, n, 71, 1.0f);
  for (int64_t i = 0; i < n; i++)
    if (in[i] == 0.0f) in[i] = 0.5f; // so that out == 0 means dropped
  lr_dropout dp = {.seed = 2024, .epoch = 5, .site = 17, .p = 0.25f};
  const float scale = 1.0f / (1.0f - dp.p);

  // p = 0: identity, and backward adds dout unchanged; row_ids not needed.
  lr_dropout d0 = dp;
  d0.p = 0.0f;
  dropout_forward(out, in, NULL, R, D, d0);
  int ok = memcmp(out, in, n * 4) == 0;
  memset(din, 0, n * 4);
  dropout_backward(din, in, NULL, R, D, d0);
  ok &= memcmp(din, in, n * 4) == 0;
  t_check(ok, "dropout: p = 0 is the identity (forward and backward)");

  // The mask is the documented function of the keys.
  dropout_forward(out, in, ids, R, D, dp);
  ok = 1;
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < D; j++) {
      float e = keep_ref(dp, ids[r], j) ? in[r * D + j] * scale : 0.0f;
      ok &= out[r * D + j] == e;
    }
  t_check(ok, "dropout: mask reproducible from (seed, epoch, site, row_id, j)");

  // Same row id, same mask, whatever order (or batch) the rows come in.
  uint64_t *ids_p = t_alloc(R, 8);
  float *in_p = t_alloc(n, 4), *out_p = t_alloc(n, 4);
  for (int64_t r = 0; r < R; r++) {
    int64_t s = (r * 29 + 3) % R; // a permutation (29 coprime to 64)
    ids_p[r] = ids[s];
    memcpy(in_p + r * D, in + s * D, D * 4);
  }
  dropout_forward(out_p, in_p, ids_p, R, D, dp);
  ok = 1;
  for (int64_t r = 0; r < R; r++) {
    int64_t s = (r * 29 + 3) % R;
    ok &= memcmp(out_p + r * D, out + s * D, D * 4) == 0;
  }
  dropout_forward(out_p, in + 10 * D, ids + 10, 3, D, dp); // a sub-batch of rows 10..12
  ok &= memcmp(out_p, out + 10 * D, 3 * D * 4) == 0;
  t_check(ok, "dropout: mask independent of row order and batch composition");

  // Backward applies the forward mask and scale.
  memset(din, 0, n * 4);
  float *dout = t_alloc(n, 4);
  t_fill_f(dout, n, 72, 1.0f);
  dropout_backward(din, dout, ids, R, D, dp);
  ok = 1;
  for (int64_t i = 0; i < n; i++)
    ok &= din[i] == (out[i] != 0.0f ? dout[i] * scale : 0.0f);
  t_check(ok, "dropout: backward uses the forward mask");

  // In place, and float/double masks agree.
  memcpy(tmp, in, n * 4);
  dropout_forward(tmp, tmp, ids, R, D, dp);
  ok = memcmp(tmp, out, n * 4) == 0;
  double *in_d = t_alloc(n, 8), *out_d = t_alloc(n, 8);
  t_to_d(in_d, in, n);
  dropout_forward_f64(out_d, in_d, ids, R, D, dp);
  for (int64_t i = 0; i < n; i++)
    ok &= (out_d[i] == 0.0) == (out[i] == 0.0f);
  t_check(ok, "dropout: in place; f32 and f64 masks identical");

  // Other seed / epoch / site give other masks.
  int differ[3] = {0, 0, 0};
  for (int k = 0; k < 3; k++) {
    lr_dropout d2 = dp;
    if (k == 0) d2.seed++;
    if (k == 1) d2.epoch++;
    if (k == 2) d2.site++;
    dropout_forward(tmp, in, ids, R, D, d2);
    for (int64_t i = 0; i < n; i++)
      differ[k] += (tmp[i] == 0.0f) != (out[i] == 0.0f);
  }
  t_check(differ[0] > n / 5 && differ[1] > n / 5 && differ[2] > n / 5,
          "dropout: seed, epoch and site each change the mask (%d %d %d of %lld differ)", differ[0],
          differ[1], differ[2], (long long)n);

  // Stored masks (dp.bits): the forwards write the mask they apply, the
  // backwards read it, bitwise as regenerating it. The backward's keys are
  // spoilt on purpose: only the stored bits can give the forward's mask.
  const int64_t W = lr_dropout_words(D);
  uint32_t *bits = t_alloc(R * W, 4), *bits2 = t_alloc(R * W, 4);
  memset(bits, 0xa5, (size_t)(R * W) * 4); // every bit written, none left over
  lr_dropout db = dp, bad = dp;
  db.bits = bits, bad.bits = bits, bad.seed++;
  dropout_forward(tmp, in, ids, R, D, db);
  ok = memcmp(tmp, out, n * 4) == 0;
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < D; j++)
      ok &= (int)((bits[r * W + j / 32] >> (j % 32)) & 1u) == keep_ref(dp, ids[r], j);
  for (int64_t r = 0; r < R && D % 32; r++) // bits past D in the last word are 0
    ok &= bits[r * W + W - 1] >> (D % 32) == 0;
  memset(tmp, 0, n * 4);
  dropout_backward(tmp, dout, ids, R, D, bad);
  ok &= memcmp(tmp, din, n * 4) == 0;
  // the post-LN pair: dropout_residual_forward then ln_dropout_backward
  float *bias = t_alloc(D, 4), *res = t_alloc(n, 4), *res2 = t_alloc(n, 4), *w = t_alloc(D, 4);
  float *lb = t_alloc(D, 4), *y = t_alloc(n, 4), *mean = t_alloc(R, 4), *rstd = t_alloc(R, 4);
  t_fill_f(bias, D, 73, 0.5f), t_fill_f(w, D, 74, 1.0f), t_fill_f(lb, D, 75, 0.5f);
  dropout_residual_forward(res, in, bias, dout, ids, R, D, dp);
  memset(bits2, 0, (size_t)(R * W) * 4);
  db.bits = bits2;
  dropout_residual_forward(res2, in, bias, dout, ids, R, D, db);
  ok &= memcmp(res, res2, n * 4) == 0 && memcmp(bits, bits2, (size_t)(R * W) * 4) == 0;
  layernorm_forward(y, mean, rstd, res, w, lb, R, D, 1e-5f);
  float *g[2][5]; // per run: dres, dx, dw, db, dbias
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < 5; i++) g[k][i] = t_alloc(i < 2 ? n : D, 4);
    for (int i = 2; i < 5; i++) memset(g[k][i], 0, (size_t)D * 4);
    bad.bits = k ? bits2 : NULL;
    ln_dropout_backward(g[k][0], g[k][1], g[k][2], g[k][3], g[k][4], dout, res, w, mean, rstd,
                        ids, R, D, k ? bad : dp);
  }
  for (int i = 0; i < 5; i++)
    ok &= memcmp(g[0][i], g[1][i], (size_t)(i < 2 ? n : D) * 4) == 0;
  t_check(ok, "dropout: stored mask bits: written as applied, backward from them bitwise");
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 5; i++) free(g[k][i]);
  free(bits), free(bits2), free(bias), free(res), free(res2), free(w), free(lb), free(y);
  free(mean), free(rstd);

  free(ids), free(in), free(out), free(din), free(tmp), free(ids_p), free(in_p), free(out_p);
  free(dout), free(in_d), free(out_d);
}

static void test_dropout_rate(void) {
  const int64_t R = 1000, D = 1000, n = R * D;
  uint64_t *ids = t_alloc(R, 8);
  for (int64_t r = 0; r < R; r++)
    ids[r] = (uint64_t)r;
  float *x = t_alloc(n, 4);
  const float ps[3] = {0.1f, 0.2f, 0.5f};
  for (int k = 0; k < 3; k++) {
    for (int64_t i = 0; i < n; i++)
      x[i] = 1.0f;
    lr_dropout dp = {.seed = 1, .epoch = 0, .site = 1, .p = ps[k]};
    dropout_forward(x, x, ids, R, D, dp);
    int64_t kept = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
      kept += x[i] != 0.0f, sum += x[i];
    double frac = (double)kept / (double)n, sd = sqrt(ps[k] * (1 - ps[k]) / (double)n);
    t_check(fabs(frac - (1 - ps[k])) < 5 * sd && fabs(sum / (double)n - 1.0) < 6 * sd / (1 - ps[k]),
            "dropout p=%.1f: kept fraction %.5f (expect %.5f +- %.5f), mean %.5f", ps[k], frac,
            1 - ps[k], 5 * sd, sum / (double)n);
  }
  free(ids), free(x);
}

// The threaded kernels (par.h) give bitwise the serial results: LayerNorm
// forward/backward, dropout, GELU and the bias column sums of linear_backward,
// on shapes that do not divide evenly among 3 threads.
static void run_kernels(float *o[8], const float *x, const float *g, const float *w,
                        const uint64_t *ids, int64_t R, int64_t D) {
  const int64_t n = R * D;
  lr_dropout dp = {.seed = 5, .epoch = 2, .site = 3, .p = 0.2f};
  for (int k = 0; k < 8; k++) memset(o[k], 0, (size_t)n * 4);
  layernorm_forward(o[0], o[1], o[2], x, w, w + D, R, D, 1e-5f);
  layernorm_backward(o[3], o[4], o[4] + D, g, x, w, o[1], o[2], R, D);
  dropout_forward(o[5], x, ids, R, D, dp);
  dropout_backward(o[5] + n / 2, g, ids, R / 2, D, dp);
  gelu_forward(o[6], x, n);
  gelu_backward(o[6], g, x, n);
  linear_backward(NULL, NULL, o[7], g, x, w, R, D, D); // db only: colsum
}

static void test_threads(void) {
  const int64_t R = 1001, D = 200, n = R * D;
  float *x = t_alloc(n, 4), *g = t_alloc(n, 4), *w = t_alloc(2 * D, 4);
  uint64_t *ids = t_alloc(R, 8);
  float *a[8], *b[8];
  for (int k = 0; k < 8; k++) a[k] = t_alloc(n, 4), b[k] = t_alloc(n, 4);
  t_fill_f(x, n, 81, 1.0f), t_fill_f(g, n, 82, 1.0f), t_fill_f(w, 2 * D, 83, 1.0f);
  for (int64_t r = 0; r < R; r++) ids[r] = 77 * (uint64_t)r + 1;
  run_kernels(a, x, g, w, ids, R, D);
  int ok = lr_par_set_threads(3) == LR_OK && lr_par_threads() == 3;
  run_kernels(b, x, g, w, ids, R, D);
  ok &= lr_par_set_threads(1) == LR_OK && lr_par_threads() == 1;
  for (int k = 0; k < 8; k++) ok &= !memcmp(a[k], b[k], (size_t)n * 4);
  t_check(ok, "threads: 3 threads give bitwise the 1-thread LayerNorm, dropout, GELU, bias sums");
  for (int k = 0; k < 8; k++) free(a[k]), free(b[k]);
  free(x), free(g), free(w), free(ids);
}

// The fused passes of the training forward against the layers they fuse:
// out = resid + Dropout(x + bias) (dropout on and off, bias or none, in
// place) and the training GELU of x + bias per column (f64 exactly the
// composition up to rounding, f32 against the f64 composition).
static void test_fused(void) {
  const int64_t R = 5, D = 37, n = R * D; // a partial group of 8 in each row
  const uint64_t ids[5] = {3, 4, 5, (1ull << 32) + 9, 77};
  double *x = t_alloc(n, 8), *b = t_alloc(D, 8), *h = t_alloc(n, 8), *xb = t_alloc(n, 8);
  double *ref = t_alloc(n, 8), *got = t_alloc(n, 8), *g = t_alloc(n, 8), *gref = t_alloc(n, 8);
  float *xf = t_alloc(n, 4), *bf = t_alloc(D, 4), *hf = t_alloc(n, 4), *of = t_alloc(n, 4);
  t_fill_d(x, n, 91, 2.0), t_fill_d(b, D, 92, 1.0), t_fill_d(h, n, 93, 1.0);
  t_to_f(xf, x, n), t_to_f(bf, b, D), t_to_f(hf, h, n);
  for (int64_t i = 0; i < n; i++)
    xb[i] = x[i] + b[i % D];
  char name[128];
  for (int k = 0; k < 3; k++) {
    lr_dropout dp = {.seed = 5, .epoch = 2, .site = 3, .p = k == 1 ? 0.0f : 0.3f};
    const int with_bias = k != 2;
    const double *in = with_bias ? xb : x;
    dropout_forward_f64(ref, in, ids, R, D, dp);
    residual_forward_f64(ref, h, ref, n);
    memcpy(got, x, n * 8); // in place: out = x
    dropout_residual_forward_f64(got, got, with_bias ? b : NULL, h, ids, R, D, dp);
    snprintf(name, sizeof name, "dropout+residual f64 (p %.1f, bias %d) = the two layers", dp.p,
             with_bias);
    t_close_d(got, ref, n, 1e-15, name);
    dropout_residual_forward(of, xf, with_bias ? bf : NULL, hf, ids, R, D, dp);
    snprintf(name, sizeof name, "dropout+residual f32 (p %.1f, bias %d) vs f64", dp.p, with_bias);
    t_close_f(of, ref, n, TOL_FWD32, name);
  }
  gelu_forward_f64(ref, xb, n);
  memset(gref, 0, n * 8);
  double *ones = t_alloc(n, 8);
  for (int64_t i = 0; i < n; i++)
    ones[i] = 1.0;
  gelu_backward_f64(gref, ones, xb, n); // gelu'(x + b)
  memcpy(g, x, n * 8);
  gelu_forward_train_f64(got, g, b, R, D);
  t_close_d(got, ref, n, 1e-15, "gelu train f64 with bias: forward");
  t_close_d(g, gref, n, 1e-14, "gelu train f64 with bias: stored derivative");
  gelu_forward_train(of, xf, bf, R, D);
  t_close_f(of, ref, n, TOL_FWD32, "gelu train f32 with bias: forward vs f64");
  t_close_f(xf, gref, n, TOL_FWD32, "gelu train f32 with bias: stored derivative vs f64");
  // ln_dropout_backward against layernorm_backward, dropout_backward and the bias sum
  {
    double *mean = t_alloc(R, 8), *rstd = t_alloc(R, 8), *y = t_alloc(n, 8), *dy = t_alloc(n, 8);
    double *w = t_alloc(D, 8), *lb = t_alloc(D, 8), *dr = t_alloc(n, 8), *dxr = t_alloc(n, 8);
    double *dres = t_alloc(n, 8), *dx = t_alloc(n, 8), *p3 = t_alloc(3 * D, 8), *q3 = t_alloc(3 * D, 8);
    float *mf = t_alloc(R, 4), *sf = t_alloc(R, 4), *dyf = t_alloc(n, 4), *wf = t_alloc(D, 4);
    float *drf = t_alloc(n, 4), *dxf = t_alloc(n, 4), *p3f = t_alloc(3 * D, 4);
    t_fill_d(dy, n, 94, 1.0), t_fill_d(w, D, 95, 1.0), t_fill_d(lb, D, 96, 1.0);
    for (int k = 0; k < 2; k++) {
      lr_dropout dp = {.seed = 8, .epoch = 1, .site = 2, .p = k ? 0.3f : 0.0f};
      layernorm_forward_f64(y, mean, rstd, x, w, lb, R, D, 1e-12);
      memset(dr, 0, n * 8), memset(dxr, 0, n * 8), memset(q3, 0, 3 * D * 8);
      layernorm_backward_f64(dr, q3, q3 + D, dy, x, w, mean, rstd, R, D);
      dropout_backward_f64(dxr, dr, ids, R, D, dp);
      for (int64_t i = 0; i < n; i++)
        q3[2 * D + i % D] += dxr[i];
      memset(p3, 0, 3 * D * 8);
      ln_dropout_backward_f64(dres, dx, p3, p3 + D, p3 + 2 * D, dy, x, w, mean, rstd, ids, R, D,
                              dp);
      snprintf(name, sizeof name, "ln+dropout backward f64 (p %.1f): dres = LN backward", dp.p);
      t_close_d(dres, dr, n, 1e-15, name);
      snprintf(name, sizeof name, "ln+dropout backward f64 (p %.1f): dx = dropout of it", dp.p);
      t_close_d(dx, dxr, n, 1e-15, name);
      snprintf(name, sizeof name, "ln+dropout backward f64 (p %.1f): dw, db, dbias", dp.p);
      t_close_d(p3, q3, 3 * D, 1e-13, name);
      t_to_f(mf, mean, R), t_to_f(sf, rstd, R), t_to_f(dyf, dy, n), t_to_f(wf, w, D);
      t_to_f(xf, x, n); // the training GELU above left gelu' in xf
      memset(p3f, 0, 3 * D * 4);
      ln_dropout_backward(drf, dxf, p3f, p3f + D, p3f + 2 * D, dyf, xf, wf, mf, sf, ids, R, D, dp);
      snprintf(name, sizeof name, "ln+dropout backward f32 (p %.1f) vs f64", dp.p);
      t_close_f(drf, dr, n, TOL_FD32, name);
      t_close_f(dxf, dxr, n, TOL_FD32, name);
      t_close_f(p3f, q3, 3 * D, TOL_FD32, name);
    }
    free(mean), free(rstd), free(y), free(dy), free(w), free(lb), free(dr), free(dxr), free(dres);
    free(dx), free(p3), free(q3), free(mf), free(sf), free(dyf), free(wf), free(drf), free(dxf);
    free(p3f);
  }
  free(x), free(b), free(h), free(xb), free(ref), free(got), free(g), free(gref), free(ones);
  free(xf), free(bf), free(hf), free(of);
}

int main(void) {
  test_threads();
  test_fused();
  test_embedding();
  test_layernorm();
  test_linear();
  test_gelu();
  test_residual();
  test_dropout_grad();
  test_dropout_mask(37);  // a partial group of 8 and a partial chunk
  test_dropout_mask(150); // one partial 256-element chunk
  test_dropout_mask(600); // several chunks, the last partial
  test_dropout_rate();
  return t_done();
}
