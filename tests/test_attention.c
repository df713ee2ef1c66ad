// test_attention.c: the attention kinds of core/attention.h, the built-in
// ones and the test-only toy_gate (tests/ref_toy_attn.c), whose parameters
// of its own get the same gradient checks as its inputs.
//   1. double path: analytic gradient of sum(out ⊙ R) w.r.t. qkv against
//      central finite differences (rel < 1e-6), one sequence padded, also at
//      N > LR_ATTN_CHUNK so the chunked scans are checked
//   2. float path against the double path (forward and backward), and a float
//      finite-difference check with a looser bound
//   3. fast paths against the naive (N,N) references of tests/ref_attention.c
//   4. paper Condition (3) for linrec (and every prefix of linrec_causal):
//      row sums of B' bounded by 1; non-negative dominance where it holds
//   5. padding invariance: padded rows never reach valid outputs or gradients
//   6. backward accumulates: two calls give twice the gradient
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "lr.h"  // LR_OK
#include "par.h" // lr_par_set_threads
#include "ref_attention.h"
#include "ref_toy_attn.h"
#include "rng.h"
#include "test_util.h"

typedef struct {
  int64_t B, N, D, H;
  int32_t lens[4];
} shape;

static int64_t n_qkv(shape s) { return s.B * s.N * 3 * s.D; }
static int64_t n_out(shape s) { return s.B * s.N * s.D; }

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

// Buffers of one forward/backward in both precisions. A kind with
// parameters of its own (np of them) runs with prm drawn around its init
// values and accumulates their gradient into dprm (NULL: none).
typedef struct {
  shape s;
  const lr_attn_ops *kind;
  size_t np;
  double *cache, *scratch, *out, *prm, *dprm;
  float *cache_f, *scratch_f, *out_f, *prm_f, *dprm_f;
} runner;

static runner runner_new(const lr_attn_ops *kind, shape s) {
  runner r = {.s = s, .kind = kind, .np = attn_param_elems(kind, s.D, s.H)};
  size_t nc = attn_cache_elems(kind, s.B, s.N, s.D, s.H);
  size_t ns = attn_scratch_elems(kind, s.N, s.D, s.H);
  r.cache = xcalloc(nc, sizeof(double));
  r.scratch = xcalloc(ns, sizeof(double));
  r.out = xcalloc((size_t)n_out(s), sizeof(double));
  r.cache_f = xcalloc(nc, sizeof(float));
  r.scratch_f = xcalloc(ns, sizeof(float));
  r.out_f = xcalloc((size_t)n_out(s), sizeof(float));
  if (r.np) {
    r.prm_f = xcalloc(r.np, sizeof(float)), r.dprm_f = xcalloc(r.np, sizeof(float));
    r.prm = xcalloc(r.np, sizeof(double)), r.dprm = xcalloc(r.np, sizeof(double));
    float *jitter = xcalloc(r.np, sizeof(float));
    if (kind->param_init) kind->param_init(r.prm_f, s.D, s.H, 0, 1);
    t_fill_f(jitter, (int64_t)r.np, 4242, 0.3f);
    for (size_t i = 0; i < r.np; i++) r.prm_f[i] += jitter[i], r.prm[i] = r.prm_f[i];
    free(jitter);
  }
  return r;
}

static void runner_free(runner *r) {
  free(r->cache), free(r->scratch), free(r->out), free(r->prm), free(r->dprm);
  free(r->cache_f), free(r->scratch_f), free(r->out_f), free(r->prm_f), free(r->dprm_f);
}

static void fwd_d(runner *r, const double *qkv) {
  attn_forward_f64(r->out, r->cache, qkv, r->s.lens, r->kind, r->prm, r->s.B, r->s.N, r->s.D,
                   r->s.H, r->scratch);
}
static void bwd_d(runner *r, double *dqkv, const double *dout, const double *qkv) {
  attn_backward_f64(dqkv, r->dprm, dout, qkv, r->prm, r->cache, r->s.lens, r->kind, r->s.B,
                    r->s.N, r->s.D, r->s.H, r->scratch);
}
static void fwd_f(runner *r, const float *qkv) {
  attn_forward(r->out_f, r->cache_f, qkv, r->s.lens, r->kind, r->prm_f, r->s.B, r->s.N, r->s.D,
               r->s.H, r->scratch_f, 1);
}
static void bwd_f(runner *r, float *dqkv, const float *dout, const float *qkv) {
  attn_backward(dqkv, r->dprm_f, dout, qkv, r->prm_f, r->cache_f, r->s.lens, r->kind, r->s.B,
                r->s.N, r->s.D, r->s.H, r->scratch_f, 1);
}

// <out, R> after a forward.
static double loss_d(runner *r, const double *qkv, const double *R) {
  fwd_d(r, qkv);
  double l = 0;
  for (int64_t i = 0; i < n_out(r->s); i++)
    l += r->out[i] * R[i];
  return l;
}
static double loss_f(runner *r, const float *qkv, const float *R) {
  fwd_f(r, qkv);
  double l = 0;
  for (int64_t i = 0; i < n_out(r->s); i++)
    l += (double)r->out_f[i] * R[i];
  return l;
}

// Entry k of the sample: all entries if nsample >= n, else pseudo-random ones.
static int64_t sample_index(int64_t k, int64_t nsample, int64_t n, uint64_t seed) {
  if (nsample >= n) return k;
  lr_rng4 w = lr_philox(seed, 77, (uint32_t)k, 0, 0, 0);
  return (int64_t)lr_below(w.v[0], w.v[1], (uint64_t)n);
}

static void shape_name(char *buf, size_t n, shape s) {
  int o = snprintf(buf, n, "B=%lld N=%lld D=%lld H=%lld lens={", (long long)s.B, (long long)s.N,
                   (long long)s.D, (long long)s.H);
  for (int64_t b = 0; b < s.B && o > 0 && (size_t)o < n; b++)
    o += snprintf(buf + o, n - (size_t)o, b ? ",%d" : "%d", s.lens[b]);
  if (o > 0 && (size_t)o < n) snprintf(buf + o, n - (size_t)o, "}");
}

// ---- 1. double finite differences ------------------------------------------------------

static void test_fd_f64(const lr_attn_ops *kind, shape s, int64_t nsample, uint64_t seed) {
  int64_t nq = n_qkv(s), no = n_out(s), cnt = nsample < nq ? nsample : nq;
  double *qkv = xcalloc((size_t)nq, sizeof(double)), *dqkv = xcalloc((size_t)nq, sizeof(double));
  double *R = xcalloc((size_t)no, sizeof(double));
  double *an = xcalloc((size_t)cnt, sizeof(double)), *fd = xcalloc((size_t)cnt, sizeof(double));
  t_fill_d(qkv, nq, seed, 1.5);
  t_fill_d(R, no, seed + 1, 1.0);
  runner r = runner_new(kind, s);
  fwd_d(&r, qkv);
  bwd_d(&r, dqkv, R, qkv);
  for (int64_t k = 0; k < cnt; k++) {
    int64_t i = sample_index(k, nsample, nq, seed);
    double x0 = qkv[i], h = 1e-6 * (fabs(x0) > 1 ? fabs(x0) : 1);
    qkv[i] = x0 + h;
    double lp = loss_d(&r, qkv, R);
    qkv[i] = x0 - h;
    double lm = loss_d(&r, qkv, R);
    qkv[i] = x0;
    fd[k] = (lp - lm) / (2 * h);
    an[k] = dqkv[i];
  }
  char sh[128], name[256];
  shape_name(sh, sizeof sh, s);
  snprintf(name, sizeof name, "fd f64 %-13s %s, %lld entries", kind->name, sh,
           (long long)cnt);
  t_close_d(an, fd, cnt, 1e-6, name);
  if (r.np) { // the kind's own parameters, every one
    double *anp = xcalloc(r.np, sizeof(double)), *fdp = xcalloc(r.np, sizeof(double));
    for (size_t i = 0; i < r.np; i++) {
      double x0 = r.prm[i], h = 1e-6 * (fabs(x0) > 1 ? fabs(x0) : 1);
      r.prm[i] = x0 + h;
      double lp = loss_d(&r, qkv, R);
      r.prm[i] = x0 - h;
      double lm = loss_d(&r, qkv, R);
      r.prm[i] = x0;
      fdp[i] = (lp - lm) / (2 * h);
      anp[i] = r.dprm[i];
    }
    snprintf(name, sizeof name, "fd f64 %-13s %s, its %zu parameters", kind->name, sh, r.np);
    t_close_d(anp, fdp, (int64_t)r.np, 1e-6, name);
    free(anp), free(fdp);
  }
  runner_free(&r);
  free(qkv), free(dqkv), free(R), free(an), free(fd);
}

// ---- 2. float against double, float finite differences -----------------------------------

static void test_f32(const lr_attn_ops *kind, shape s, int fd_check, uint64_t seed) {
  int64_t nq = n_qkv(s), no = n_out(s);
  float *qf = xcalloc((size_t)nq, sizeof(float)), *dqf = xcalloc((size_t)nq, sizeof(float));
  float *Rf = xcalloc((size_t)no, sizeof(float));
  double *qd = xcalloc((size_t)nq, sizeof(double)), *dqd = xcalloc((size_t)nq, sizeof(double));
  double *Rd = xcalloc((size_t)no, sizeof(double));
  t_fill_f(qf, nq, seed, 1.5f);
  t_fill_f(Rf, no, seed + 1, 1.0f);
  for (int64_t i = 0; i < nq; i++)
    qd[i] = qf[i];
  for (int64_t i = 0; i < no; i++)
    Rd[i] = Rf[i];
  runner r = runner_new(kind, s);
  fwd_f(&r, qf);
  bwd_f(&r, dqf, Rf, qf);
  fwd_d(&r, qd);
  bwd_d(&r, dqd, Rd, qd);
  char sh[128], name[256];
  shape_name(sh, sizeof sh, s);
  snprintf(name, sizeof name, "f32 vs f64 forward  %-13s %s", kind->name, sh);
  t_close_f(r.out_f, r.out, no, 1e-4, name);
  snprintf(name, sizeof name, "f32 vs f64 backward %-13s %s", kind->name, sh);
  t_close_f(dqf, dqd, nq, 1e-4, name);
  if (r.np) {
    snprintf(name, sizeof name, "f32 vs f64 backward %-13s %s, its parameters", kind->name, sh);
    t_close_f(r.dprm_f, r.dprm, (int64_t)r.np, 1e-4, name);
  }
  if (fd_check) { // float FD: h large enough to beat float rounding in the loss
    double *an = xcalloc((size_t)nq, sizeof(double)), *fd = xcalloc((size_t)nq, sizeof(double));
    for (int64_t i = 0; i < nq; i++) {
      float x0 = qf[i], h = 4e-3f;
      qf[i] = x0 + h;
      double lp = loss_f(&r, qf, Rf);
      qf[i] = x0 - h;
      double lm = loss_f(&r, qf, Rf);
      qf[i] = x0;
      fd[i] = (lp - lm) / (double)((x0 + h) - (x0 - h));
      an[i] = dqf[i];
    }
    snprintf(name, sizeof name, "fd f32 %-13s %s", kind->name, sh);
    t_close_d(an, fd, nq, 1e-2, name);
    free(an), free(fd);
  }
  runner_free(&r);
  free(qf), free(dqf), free(Rf), free(qd), free(dqd), free(Rd);
}

// ---- 3. fast paths against the naive references ---------------------------------------------

static void test_ref(const lr_attn_ops *kind, shape s, uint64_t seed) {
  if (!ref_attn_known(kind->name)) return; // a test-only kind is its own reference
  int64_t nq = n_qkv(s), no = n_out(s);
  double *qd = xcalloc((size_t)nq, sizeof(double)), *ref = xcalloc((size_t)no, sizeof(double));
  float *qf = xcalloc((size_t)nq, sizeof(float));
  t_fill_f(qf, nq, seed, 1.5f);
  for (int64_t i = 0; i < nq; i++)
    qd[i] = qf[i];
  runner r = runner_new(kind, s);
  ref_attn_forward(ref, qd, s.lens, kind->name, s.B, s.N, s.D, s.H);
  fwd_d(&r, qd);
  fwd_f(&r, qf);
  char sh[128], name[256];
  shape_name(sh, sizeof sh, s);
  snprintf(name, sizeof name, "fast f64 vs naive %-13s %s", kind->name, sh);
  t_close_d(r.out, ref, no, 1e-10, name);
  snprintf(name, sizeof name, "fast f32 vs naive %-13s %s", kind->name, sh);
  t_close_f(r.out_f, ref, no, 1e-5, name);
  runner_free(&r);
  free(qd), free(ref), free(qf);
}

// ---- 4. Condition (3) ------------------------------------------------------------------------
// B' = rho1(phi(Q)) rho2(phi(K))^T (paper Eq. 3, 6, 9). Condition (3) makes every
// row sum <= 1; with elu's negative values Cauchy-Schwarz gives even
//   |sum_m B'_im| = |sum_j Qr_ij sum_m Kc_mj| <= sum_j |Qr_ij| * 1 <= sqrt(d) ||Qr_i|| <= 1,
// since |sum_m Kc_mj| <= sqrt(n) ||Kc_:j|| <= 1. For linrec_causal the same
// holds for every prefix (the key norms run over 0..i, n_i = i+1).
//
// Non-negative dominance of a row (sum of positive entries >= |sum of
// negative entries|, i.e. row sum >= 0) is NOT implied: elu only bounds the
// negative values by -1. Counterexample: n = d = 1, q = -1, k = 1 gives
// Qr = phi(q)/|phi(q)| = -1, Kc = 1, B' = -1. So dominance is asserted where
// it follows (non-negative Q and K: every entry of B' is >= 0) and only
// measured, not asserted, on symmetric random inputs.
typedef struct {
  double min_sum, max_sum, min_entry;
  int64_t rows, dominant;
} rowstats;

static rowstats condition3_stats(const lr_attn_ops *kind, uint64_t seed, double lo, double hi) {
  shape s = {3, 40, 32, 4, {40, 17, 1}};
  int64_t nq = n_qkv(s);
  double *qkv = xcalloc((size_t)nq, sizeof(double));
  double *W = xcalloc((size_t)(s.N * s.N), sizeof(double));
  t_fill_d(qkv, nq, seed, 1.0);
  for (int64_t i = 0; i < nq; i++)
    qkv[i] = lo + (hi - lo) * (qkv[i] + 1) / 2;
  rowstats st = {INFINITY, -INFINITY, INFINITY, 0, 0};
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t h = 0; h < s.H; h++) {
      ref_attn_matrix(W, qkv, s.lens[b], kind->name, b, h, s.N, s.D, s.H);
      for (int64_t i = 0; i < s.lens[b]; i++) {
        double pos = 0, neg = 0;
        for (int64_t m = 0; m < s.N; m++) {
          double w = W[i * s.N + m];
          if (w > 0)
            pos += w;
          else
            neg -= w;
          st.min_entry = fmin(st.min_entry, w);
        }
        st.min_sum = fmin(st.min_sum, pos - neg);
        st.max_sum = fmax(st.max_sum, pos - neg);
        st.rows++;
        st.dominant += pos >= neg;
      }
    }
  free(qkv), free(W);
  return st;
}

static void test_condition3(const lr_attn_ops *kind) {
  const double ranges[][2] = {{-0.1, 0.1}, {-1, 1}, {-5, 5}, {-3, 0.5}, {0, 2}};
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++)
    for (uint64_t seed = 1; seed <= 3; seed++) {
      double lo = ranges[r][0], hi = ranges[r][1];
      rowstats st = condition3_stats(kind, 5000 + seed, lo, hi);
      t_check(st.max_sum <= 1 + 1e-6 && st.min_sum >= -1 - 1e-6,
              "condition (3) %-13s inputs U[%g,%g] seed %d: row sums in [%.4f, %.4f]",
              kind->name, lo, hi, (int)seed, st.min_sum, st.max_sum);
      if (lo >= 0)
        t_check(st.min_entry >= 0 && st.dominant == st.rows,
                "non-negative dominance %-13s inputs U[%g,%g] seed %d: min entry %.3g, "
                "%lld/%lld rows",
                kind->name, lo, hi, (int)seed, st.min_entry, (long long)st.dominant,
                (long long)st.rows);
      else if (seed == 1)
        printf("info: non-negative dominance %-13s inputs U[%g,%g]: %lld/%lld rows "
               "(not a theorem, see above)\n",
               kind->name, lo, hi, (long long)st.dominant, (long long)st.rows);
    }
}

// ---- 5. padding invariance ---------------------------------------------------------------------
// Sequence 0 (n valid rows, garbage in rows n..N-1) inside a padded batch must
// give the outputs and gradients of the same sequence run alone with N = n;
// padded rows get output 0 and gradient 0.
static void test_padding(const lr_attn_ops *kind, uint64_t seed) {
  const int32_t n = 5;
  shape big = {2, 12, 8, 2, {n, 12}}, small = {1, n, 8, 2, {n}};
  int64_t D3 = 3 * big.D, D = big.D;
  double *qb = xcalloc((size_t)n_qkv(big), sizeof(double));
  double *gb = xcalloc((size_t)n_out(big), sizeof(double));
  double *dqb = xcalloc((size_t)n_qkv(big), sizeof(double));
  double *qs = xcalloc((size_t)n_qkv(small), sizeof(double));
  double *gs = xcalloc((size_t)n_out(small), sizeof(double));
  double *dqs = xcalloc((size_t)n_qkv(small), sizeof(double));
  t_fill_d(qb, n_qkv(big), seed, 1.5);
  t_fill_d(gb, n_out(big), seed + 1, 1.0);
  for (int64_t t = n; t < big.N; t++) // garbage in the padding of sequence 0
    for (int64_t c = 0; c < D3; c++)
      qb[t * D3 + c] = 40.0 * (((t + c) % 3) - 1.0);
  memcpy(qs, qb, (size_t)(n * D3) * sizeof(double));
  memcpy(gs, gb, (size_t)(n * D) * sizeof(double));
  runner rb = runner_new(kind, big), rs = runner_new(kind, small);
  fwd_d(&rb, qb);
  bwd_d(&rb, dqb, gb, qb);
  fwd_d(&rs, qs);
  bwd_d(&rs, dqs, gs, qs);
  double md = 0, mr = 0, pad = 0;
  for (int64_t i = 0; i < n * D; i++) {
    md = fmax(md, fabs(rb.out[i] - rs.out[i]));
    mr = fmax(mr, fabs(rs.out[i]));
  }
  for (int64_t i = 0; i < n * D3; i++) {
    md = fmax(md, fabs(dqb[i] - dqs[i]));
    mr = fmax(mr, fabs(dqs[i]));
  }
  for (int64_t i = n * D; i < big.N * D; i++)
    pad = fmax(pad, fabs(rb.out[i]));
  for (int64_t i = n * D3; i < big.N * D3; i++)
    pad = fmax(pad, fabs(dqb[i]));
  int finite = 1;
  for (int64_t i = 0; i < n_out(big); i++)
    finite &= isfinite(rb.out[i]);
  for (int64_t i = 0; i < n_qkv(big); i++)
    finite &= isfinite(dqb[i]);
  t_check(md <= 1e-12 * mr && pad == 0 && finite,
          "padding invariance f64 %-13s (max diff %.3g, max padded |out|,|grad| %.3g)",
          kind->name, md, pad);

  // The same in float.
  float *qbf = xcalloc((size_t)n_qkv(big), sizeof(float));
  float *gbf = xcalloc((size_t)n_out(big), sizeof(float));
  float *dqbf = xcalloc((size_t)n_qkv(big), sizeof(float));
  float *qsf = xcalloc((size_t)n_qkv(small), sizeof(float));
  float *gsf = xcalloc((size_t)n_out(small), sizeof(float));
  float *dqsf = xcalloc((size_t)n_qkv(small), sizeof(float));
  for (int64_t i = 0; i < n_qkv(big); i++)
    qbf[i] = (float)qb[i];
  for (int64_t i = 0; i < n_out(big); i++)
    gbf[i] = (float)gb[i];
  for (int64_t i = 0; i < n_qkv(small); i++)
    qsf[i] = (float)qs[i];
  for (int64_t i = 0; i < n_out(small); i++)
    gsf[i] = (float)gs[i];
  fwd_f(&rb, qbf);
  bwd_f(&rb, dqbf, gbf, qbf);
  fwd_f(&rs, qsf);
  bwd_f(&rs, dqsf, gsf, qsf);
  md = mr = pad = 0;
  for (int64_t i = 0; i < n * D; i++) {
    md = fmax(md, fabs((double)rb.out_f[i] - rs.out_f[i]));
    mr = fmax(mr, fabs((double)rs.out_f[i]));
  }
  for (int64_t i = 0; i < n * D3; i++) {
    md = fmax(md, fabs((double)dqbf[i] - dqsf[i]));
    mr = fmax(mr, fabs((double)dqsf[i]));
  }
  for (int64_t i = n * D; i < big.N * D; i++)
    pad = fmax(pad, fabs((double)rb.out_f[i]));
  for (int64_t i = n * D3; i < big.N * D3; i++)
    pad = fmax(pad, fabs((double)dqbf[i]));
  t_check(md <= 1e-6 * mr && pad == 0,
          "padding invariance f32 %-13s (max diff %.3g, max padded |out|,|grad| %.3g)",
          kind->name, md, pad);
  runner_free(&rb), runner_free(&rs);
  free(qb), free(gb), free(dqb), free(qs), free(gs), free(dqs);
  free(qbf), free(gbf), free(dqbf), free(qsf), free(gsf), free(dqsf);
}

// ---- 6. backward accumulates
// ---------------------------------------------------------------------

static void test_accumulate(const lr_attn_ops *kind, uint64_t seed) {
  shape s = {2, 70, 8, 2, {70, 9}};
  int64_t nq = n_qkv(s), no = n_out(s);
  float *q = xcalloc((size_t)nq, sizeof(float)), *g = xcalloc((size_t)no, sizeof(float));
  float *d1 = xcalloc((size_t)nq, sizeof(float)), *d2 = xcalloc((size_t)nq, sizeof(float));
  double *twice = xcalloc((size_t)nq, sizeof(double));
  t_fill_f(q, nq, seed, 1.5f);
  t_fill_f(g, no, seed + 1, 1.0f);
  runner r = runner_new(kind, s);
  fwd_f(&r, q);
  bwd_f(&r, d1, g, q);
  bwd_f(&r, d2, g, q);
  bwd_f(&r, d2, g, q);
  for (int64_t i = 0; i < nq; i++)
    twice[i] = 2.0 * d1[i];
  char name[128];
  snprintf(name, sizeof name, "backward accumulates %-13s", kind->name);
  t_close_f(d2, twice, nq, 1e-6, name);
  runner_free(&r);
  free(q), free(g), free(d1), free(d2), free(twice);
}

// ---- main
// ------------------------------------------------------------------------------------------

// Sequences shared out over 3 threads (3 scratch copies) give bitwise the
// one-thread outputs and gradients, for every kind; 4 sequences of unequal
// lengths, so the ranges differ in work.
static void test_threads(const lr_attn_ops *kind) {
  const shape s = {4, 40, 16, 2, {40, 17, 1, 33}};
  const size_t nq = (size_t)n_qkv(s), no = (size_t)n_out(s);
  const size_t nc = attn_cache_elems(kind, s.B, s.N, s.D, s.H);
  const size_t ns = attn_scratch_elems(kind, s.N, s.D, s.H);
  float *qkv = xcalloc(nq, 4), *dout = xcalloc(no, 4), *scratch = xcalloc(3 * ns, 4);
  runner pr = runner_new(kind, s); // the kind's own parameters, if any (prm_f)
  float *out[2], *cache[2], *dqkv[2];
  for (size_t i = 0; i < nq; i++) qkv[i] = (float)sin(0.37 * (double)i);
  for (size_t i = 0; i < no; i++) dout[i] = (float)cos(0.11 * (double)i);
  int ok = 1;
  for (int k = 0; k < 2; k++) {
    ok &= lr_par_set_threads(k ? 3 : 1) == LR_OK;
    out[k] = xcalloc(no, 4), cache[k] = xcalloc(nc, 4), dqkv[k] = xcalloc(nq, 4);
    attn_forward(out[k], cache[k], qkv, s.lens, kind, pr.prm_f, s.B, s.N, s.D, s.H, scratch,
                 k ? 3 : 1);
    attn_backward(dqkv[k], NULL, dout, qkv, pr.prm_f, cache[k], s.lens, kind, s.B, s.N, s.D, s.H,
                  scratch, k ? 3 : 1);
  }
  ok &= lr_par_set_threads(1) == LR_OK;
  ok &= !memcmp(out[0], out[1], no * 4) && !memcmp(dqkv[0], dqkv[1], nq * 4);
  t_check(ok, "%s: 3 threads give bitwise the 1-thread output and gradient", kind->name);
  for (int k = 0; k < 2; k++) free(out[k]), free(cache[k]), free(dqkv[k]);
  free(qkv), free(dout), free(scratch);
  runner_free(&pr);
}

int main(void) {
  // the test-only kind with a parameter of its own joins every check below
  t_check(ref_toy_attn_register() >= 0 && attn_find("toy_gate") == &ref_toy_attn,
          "registry: a kind registered at run time (toy_gate)");
  for (int k = 0; k < attn_count(); k++) test_threads(attn_get(k));
  t_check(attn_find("nope") == NULL && attn_find("elu1")->causal && !attn_find("linrec")->causal &&
              attn_get(attn_count()) == NULL && attn_get(-1) == NULL,
          "registry: lookups");
  for (int k = 0; k < attn_count(); k++)
    t_check(attn_find(attn_get(k)->name) == attn_get(k) && attn_id(attn_get(k)) == k &&
                !strcmp(attn_names()[k], attn_get(k)->name),
            "registry: %s round trip", attn_get(k)->name);
  t_check(attn_register(attn_get(0)) == LR_ERR_ARG, "registry: a name in use is refused");
  lr_error_clear();

  const shape tiny = {2, 7, 8, 2, {7, 4}};
  const shape chunked = {2, 150, 8, 2, {150, 83}};
  const shape short_wide = {2, 3, 16, 2, {3, 2}}; // N < Dh
  const shape odd = {2, 9, 5, 1, {9, 6}};         // 2D not a multiple of the float SIMD width
  const shape ref_shapes[] = {
      {2, 7, 8, 2, {7, 4}},
      {2, 150, 16, 2, {150, 97}},
      {3, LR_ATTN_CHUNK, 16, 4, {LR_ATTN_CHUNK, 1, LR_ATTN_CHUNK / 2 + 1}},
      {1, 2 * LR_ATTN_CHUNK + 2, 8, 1, {2 * LR_ATTN_CHUNK + 1}},
      {1, 70, 64, 2, {70}}, // Dh = 32
      {2, 9, 5, 1, {9, 6}},
  };
  for (int k = 0; k < attn_count(); k++) {
    const lr_attn_ops *kind = attn_get(k);
    uint64_t seed = 1000 + 10 * (uint64_t)k;
    test_fd_f64(kind, tiny, n_qkv(tiny), seed);
    test_fd_f64(kind, chunked, 400, seed + 1);
    test_fd_f64(kind, short_wide, n_qkv(short_wide), seed + 5);
    test_fd_f64(kind, odd, n_qkv(odd), seed + 6);
    test_f32(kind, tiny, 1, seed + 2);
    test_f32(kind, odd, 1, seed + 7);
    test_f32(kind, ref_shapes[1], 0, seed + 3);
    for (size_t i = 0; i < sizeof ref_shapes / sizeof ref_shapes[0]; i++)
      test_ref(kind, ref_shapes[i], seed + 100 + i);
    test_padding(kind, seed + 8);
    test_accumulate(kind, seed + 9);
  }
  test_condition3(attn_find("linrec"));
  test_condition3(attn_find("linrec_causal"));
  return t_done();
}
