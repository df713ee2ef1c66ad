// test_blin.c: Blin's pieces (core/blin.h, core/attn_blin.c).
//   1. the depthwise convolution alone (k = 3, 5; centred and left-aligned;
//      with and without a key mask): against a naive zero-padded
//      correlation, double finite differences of its input and parameters,
//      float against double
//   2. the `blin` and `blin_left` kinds, `efficient` (Blin without the
//      convolution) and `softmax` (causal, Blin-D), with interior delimiters
//      and a view that starts with one (key mask): a naive double
//      reference, double finite differences (inputs and the kind's
//      parameters), float against double, masked rows' K and V never read
//      (bitwise), an all-ones mask = no mask (bitwise)
//   3. RandomPad: alpha in range and uniform, the layout and truncation,
//      alpha = 0 when |S| >= N, a pure function of (seed, epoch, example,
//      view) (so the same at any rank count, micro-batch and resume), two
//      views differ
//   4. the two-view loss (mean CE + lambda * bidirectional KL), full catalog
//      tiled and sampled (shared negatives): against a naive double
//      computation, double finite differences of both views' hidden states
//      and the item rows; the catalog in one slice against 2..4 slices
//      merged (max, exact sums): bitwise the same statistics and gradients
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "blin.h"
#include "layers.h"
#include "loss.h"
#include "test_util.h"
#include "xsum.h"

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

// ---- 1. the convolution alone ---------------------------------------------------------

// Naive: pad v' (masked rows 0) with zeros, correlate.
static void ref_dwc(double *out, const double *v, const uint8_t *km, const double *w, int64_t n,
                    int64_t D, int64_t k, int left) {
  const int64_t off = left ? k - 1 : (k - 1) / 2, L = n + 2 * k;
  double *pad = xcalloc((size_t)(L * D), sizeof(double));
  for (int64_t s = 0; s < n; s++)
    for (int64_t c = 0; c < D; c++)
      pad[(s + k) * D + c] = (!km || km[s]) ? v[s * D + c] : 0;
  for (int64_t t = 0; t < n; t++)
    for (int64_t c = 0; c < D; c++) {
      double a = w[D * k + c];
      for (int64_t j = 0; j < k; j++)
        a += w[c * k + j] * pad[(t - off + j + k) * D + c];
      out[t * D + c] = a;
    }
  free(pad);
}

static double dwc_loss(const double *v, const uint8_t *km, const double *w, const double *R,
                       int64_t n, int64_t D, int64_t k, int left, double *tmp) {
  memset(tmp, 0, (size_t)(n * D) * sizeof(double));
  blin_dwc_forward_f64(tmp, D, v, D, km, w, n, D, k, left);
  double l = 0;
  for (int64_t i = 0; i < n * D; i++)
    l += tmp[i] * R[i];
  return l;
}

static void test_dwc(int64_t k, int left, int masked, uint64_t seed) {
  const int64_t n = 11, D = 6, nw = D * k + D;
  uint8_t km[11] = {1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1};
  const uint8_t *kmp = masked ? km : NULL;
  double *v = xcalloc(n * D, 8), *w = xcalloc(nw, 8), *R = xcalloc(n * D, 8);
  double *out = xcalloc(n * D, 8), *ref = xcalloc(n * D, 8), *dv = xcalloc(n * D, 8);
  double *dw = xcalloc(nw, 8), *an = xcalloc(n * D + nw, 8), *fd = xcalloc(n * D + nw, 8);
  t_fill_d(v, n * D, seed, 1.0);
  t_fill_d(w, nw, seed + 1, 0.5);
  t_fill_d(R, n * D, seed + 2, 1.0);
  blin_dwc_forward_f64(out, D, v, D, kmp, w, n, D, k, left);
  ref_dwc(ref, v, kmp, w, n, D, k, left);
  char name[160];
  snprintf(name, sizeof name, "dwc k=%lld %s%s: against the naive correlation", (long long)k,
           left ? "left" : "centred", masked ? " masked" : "");
  t_close_d(out, ref, n * D, 1e-14, name);
  blin_dwc_backward_f64(dv, D, dw, R, D, v, D, kmp, w, n, D, k, left);
  for (int64_t i = 0; i < n * D + nw; i++) {
    double *x = i < n * D ? v + i : w + (i - n * D);
    const double x0 = *x, h = 1e-6;
    *x = x0 + h;
    const double lp = dwc_loss(v, kmp, w, R, n, D, k, left, out);
    *x = x0 - h;
    const double lm = dwc_loss(v, kmp, w, R, n, D, k, left, out);
    *x = x0;
    fd[i] = (lp - lm) / (2 * h);
    an[i] = i < n * D ? dv[i] : dw[i - n * D];
  }
  snprintf(name, sizeof name, "dwc k=%lld %s%s: fd f64 of v, w and b", (long long)k,
           left ? "left" : "centred", masked ? " masked" : "");
  t_close_d(an, fd, n * D + nw, 1e-7, name);
  int masked_zero = 1; // masked rows get no gradient
  for (int64_t s = 0; masked && s < n; s++)
    for (int64_t c = 0; c < D; c++)
      masked_zero &= km[s] || dv[s * D + c] == 0;
  t_check(masked_zero, "dwc k=%lld %s%s: masked rows get no gradient", (long long)k,
          left ? "left" : "centred", masked ? " masked" : "");
  // float against double
  float *vf = xcalloc(n * D, 4), *wf = xcalloc(nw, 4), *of = xcalloc(n * D, 4);
  for (int64_t i = 0; i < n * D; i++)
    vf[i] = (float)v[i];
  for (int64_t i = 0; i < nw; i++)
    wf[i] = (float)w[i];
  blin_dwc_forward(of, D, vf, D, kmp, wf, n, D, k, left);
  snprintf(name, sizeof name, "dwc k=%lld %s%s: float against double", (long long)k,
           left ? "left" : "centred", masked ? " masked" : "");
  t_close_f(of, ref, n * D, 1e-6, name);
  free(vf), free(wf), free(of);
  free(v), free(w), free(R), free(out), free(ref), free(dv), free(dw), free(an), free(fd);
}

// ---- 2. the kinds with a key mask -------------------------------------------------------

// Naive Blin attention of one sequence: per head, qf = row softmax, kf =
// column softmax over the key set (valid and unmasked rows), out_i = qf_i
// (sum_{m in keys} kf_m^T V_m) + DWC(V)_i (conv 0: without the DWC).
static void ref_blin(double *out, const double *x, const uint8_t *km, const double *prm, int64_t n,
                     int64_t D, int64_t H, int conv, int left) {
  const int64_t d = D / H;
  memset(out, 0, (size_t)(n * D) * sizeof(double));
  for (int64_t h = 0; h < H; h++) {
    for (int64_t j = 0; j < d; j++) {
      const int64_t c = h * d + j;
      double mx = -INFINITY, z = 0;
      for (int64_t m = 0; m < n; m++)
        if (km[m] && x[m * 3 * D + D + c] > mx) mx = x[m * 3 * D + D + c];
      for (int64_t m = 0; m < n; m++)
        if (km[m]) z += exp(x[m * 3 * D + D + c] - mx);
      for (int64_t i = 0; i < n; i++) {
        double qmx = -INFINITY, qz = 0;
        for (int64_t jj = 0; jj < d; jj++)
          qmx = fmax(qmx, x[i * 3 * D + h * d + jj]);
        for (int64_t jj = 0; jj < d; jj++)
          qz += exp(x[i * 3 * D + h * d + jj] - qmx);
        const double q = exp(x[i * 3 * D + c] - qmx) / qz;
        for (int64_t e = 0; e < d; e++) {
          double s = 0;
          for (int64_t m = 0; m < n; m++)
            if (km[m]) s += exp(x[m * 3 * D + D + c] - mx) / z * x[m * 3 * D + 2 * D + h * d + e];
          out[i * D + h * d + e] += q * s;
        }
      }
    }
  }
  if (!conv) return;
  double *v = xcalloc(n * D, 8), *cv = xcalloc(n * D, 8);
  for (int64_t m = 0; m < n; m++)
    for (int64_t c = 0; c < D; c++)
      v[m * D + c] = x[m * 3 * D + 2 * D + c];
  ref_dwc(cv, v, km, prm, n, D, LR_BLIN_K, left);
  for (int64_t i = 0; i < n * D; i++)
    out[i] += cv[i];
  free(v), free(cv);
}

// Naive causal softmax attention of one sequence with a key mask (Blin-D):
// row i attends to the unmasked keys m <= i; no such key: the row is 0.
static void ref_softmax_masked(double *out, const double *x, const uint8_t *km, int64_t n,
                               int64_t D, int64_t H) {
  const int64_t d = D / H;
  memset(out, 0, (size_t)(n * D) * sizeof(double));
  for (int64_t h = 0; h < H; h++)
    for (int64_t i = 0; i < n; i++) {
      double s[64], mx = -INFINITY, z = 0;
      for (int64_t m = 0; m <= i; m++) {
        s[m] = 0;
        for (int64_t j = 0; j < d; j++)
          s[m] += x[i * 3 * D + h * d + j] * x[m * 3 * D + D + h * d + j];
        s[m] /= sqrt((double)d);
        if (km[m] && s[m] > mx) mx = s[m];
      }
      for (int64_t m = 0; m <= i; m++)
        z += km[m] ? exp(s[m] - mx) : 0;
      for (int64_t m = 0; m <= i && z > 0; m++)
        for (int64_t e = 0; e < d && km[m]; e++)
          out[i * D + h * d + e] += exp(s[m] - mx) / z * x[m * 3 * D + 2 * D + h * d + e];
    }
}

typedef struct {
  const lr_attn_ops *k;
  int64_t B, N, D, H;
  int32_t lens[2];
  const uint8_t *km; // (B,N)
  double *cache, *scratch, *out, *prm, *dprm;
} drun;

static double drun_loss(drun *r, const double *qkv, const double *R) {
  attn_forward_km_f64(r->out, r->cache, qkv, r->lens, r->km, r->k, r->prm, r->B, r->N, r->D, r->H,
                      r->scratch);
  double l = 0;
  for (int64_t i = 0; i < r->B * r->N * r->D; i++)
    l += r->out[i] * R[i];
  return l;
}

static void test_kind_masked(const char *kname, uint64_t seed) {
  const lr_attn_ops *k = attn_find(kname);
  t_check(k && k->fwd_km && k->bwd_km && k->fwd_km_f64 && k->bwd_km_f64,
          "%s: registered with a key mask", kname);
  if (!k) return;
  const int64_t B = 2, N = 13, D = 8, H = 2, nq = B * N * 3 * D, no = B * N * D;
  // sequence 0: 13 rows, delimiters at 3, 7, 11 (RandomPad-like); sequence 1:
  // 9 rows, a delimiter at 0 (a truncated view) and at 4
  uint8_t km[26];
  for (int i = 0; i < 26; i++)
    km[i] = 1;
  km[3] = km[7] = km[11] = 0, km[N + 0] = km[N + 4] = 0;
  drun r = {k, B, N, D, H, {13, 9}, km, NULL, NULL, NULL, NULL, NULL};
  const size_t np = attn_param_elems(k, D, H), nc = attn_cache_elems(k, B, N, D, H),
               ns = attn_scratch_elems(k, N, D, H);
  r.cache = xcalloc(nc, 8), r.scratch = xcalloc(ns, 8), r.out = xcalloc(no, 8);
  r.prm = xcalloc(np, 8), r.dprm = xcalloc(np, 8);
  float *prmf = xcalloc(np, 4);
  if (k->param_init) k->param_init(prmf, D, H, 0, 7);
  for (size_t i = 0; i < np; i++)
    r.prm[i] = prmf[i];
  double *qkv = xcalloc(nq, 8), *dqkv = xcalloc(nq, 8), *R = xcalloc(no, 8);
  double *ref = xcalloc(no, 8);
  t_fill_d(qkv, nq, seed, 1.5);
  t_fill_d(R, no, seed + 1, 1.0);
  for (int64_t i = 0; i < no; i++) // padded output rows carry no loss
    if (i / D % N >= r.lens[i / (N * D)]) R[i] = 0;
  drun_loss(&r, qkv, R);
  for (int64_t b = 0; b < B; b++)
    if (!strcmp(kname, "softmax"))
      ref_softmax_masked(ref + b * N * D, qkv + b * N * 3 * D, km + b * N, r.lens[b], D, H);
    else
      ref_blin(ref + b * N * D, qkv + b * N * 3 * D, km + b * N, r.prm, r.lens[b], D, H,
               np > 0, !strcmp(kname, "blin_left"));
  char name[160];
  snprintf(name, sizeof name, "%s masked: against the naive reference", kname);
  t_close_d(r.out, ref, no, 1e-12, name);
  attn_backward_km_f64(dqkv, r.dprm, R, qkv, r.prm, r.cache, r.lens, km, k, B, N, D, H, r.scratch);
  const int64_t nall = nq + (int64_t)np;
  double *an = xcalloc(nall, 8), *fd = xcalloc(nall, 8);
  for (int64_t i = 0; i < nall; i++) {
    double *x = i < nq ? qkv + i : r.prm + (i - nq);
    const double x0 = *x, h = 1e-6 * (fabs(x0) > 1 ? fabs(x0) : 1);
    *x = x0 + h;
    const double lp = drun_loss(&r, qkv, R);
    *x = x0 - h;
    const double lm = drun_loss(&r, qkv, R);
    *x = x0;
    fd[i] = (lp - lm) / (2 * h);
    an[i] = i < nq ? dqkv[i] : r.dprm[i - nq];
  }
  snprintf(name, sizeof name, "%s masked: fd f64 of qkv and its %zu parameters", kname, np);
  t_close_d(an, fd, nall, 1e-6, name);
  int kv_zero = 1; // masked rows' K and V get no gradient
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++)
      for (int64_t c = D; c < 3 * D && !km[b * N + t]; c++)
        kv_zero &= dqkv[(b * N + t) * 3 * D + c] == 0;
  t_check(kv_zero, "%s masked: masked rows' K and V get no gradient", kname);

  // float: against double; masked rows' K, V never read; all-ones = no mask
  float *qf = xcalloc(nq, 4), *q2 = xcalloc(nq, 4), *o1 = xcalloc(no, 4), *o2 = xcalloc(no, 4);
  float *cf = xcalloc(nc, 4), *sf = xcalloc(ns, 4), *gf = xcalloc(nq, 4), *g2 = xcalloc(nq, 4);
  float *Rf = xcalloc(no, 4), *dp1 = xcalloc(np, 4), *dp2 = xcalloc(np, 4);
  for (int64_t i = 0; i < nq; i++)
    qf[i] = (float)qkv[i];
  for (int64_t i = 0; i < no; i++)
    Rf[i] = (float)R[i];
  attn_forward_range_km(o1, cf, qf, r.lens, km, k, prmf, B, 0, B, N, D, H, sf);
  attn_backward_range_km(gf, dp1, Rf, qf, prmf, cf, r.lens, km, k, B, 0, B, N, D, H, sf);
  double *o1d = xcalloc(no, 8);
  drun_loss(&r, qkv, R); // r.prm was restored, so r.out is the double output
  snprintf(name, sizeof name, "%s masked: float against double", kname);
  t_close_f(o1, r.out, no, 1e-5, name);
  memcpy(q2, qf, (size_t)nq * 4);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++)
      for (int64_t c = D; c < 3 * D && !km[b * N + t]; c++)
        q2[(b * N + t) * 3 * D + c] = 1e3f;
  memset(cf, 0, nc * 4);
  attn_forward_range_km(o2, cf, q2, r.lens, km, k, prmf, B, 0, B, N, D, H, sf);
  attn_backward_range_km(g2, dp2, Rf, q2, prmf, cf, r.lens, km, k, B, 0, B, N, D, H, sf);
  int same = !memcmp(o1, o2, (size_t)no * 4) && !memcmp(dp1, dp2, np * 4);
  for (int64_t i = 0; i < nq; i++)
    same &= gf[i] == g2[i];
  t_check(same, "%s masked: masked rows' K and V never read (bitwise)", kname);
  uint8_t ones[26];
  memset(ones, 1, sizeof ones);
  memset(cf, 0, nc * 4), memset(gf, 0, (size_t)nq * 4), memset(g2, 0, (size_t)nq * 4);
  memset(dp1, 0, np * 4), memset(dp2, 0, np * 4);
  attn_forward_range_km(o1, cf, qf, r.lens, ones, k, prmf, B, 0, B, N, D, H, sf);
  attn_backward_range_km(gf, dp1, Rf, qf, prmf, cf, r.lens, ones, k, B, 0, B, N, D, H, sf);
  attn_forward_range(o2, cf, qf, r.lens, k, prmf, B, 0, B, N, D, H, sf);
  attn_backward_range(g2, dp2, Rf, qf, prmf, cf, r.lens, k, B, 0, B, N, D, H, sf);
  t_check(!memcmp(o1, o2, (size_t)no * 4) && !memcmp(gf, g2, (size_t)nq * 4) &&
              !memcmp(dp1, dp2, np * 4),
          "%s: an all-ones key mask is bitwise no mask", kname);
  free(qf), free(q2), free(o1), free(o2), free(cf), free(sf), free(gf), free(g2), free(Rf);
  free(dp1), free(dp2), free(o1d), free(prmf);
  free(an), free(fd), free(qkv), free(dqkv), free(R), free(ref);
  free(r.cache), free(r.scratch), free(r.out), free(r.prm), free(r.dprm);
}

// ---- 3. RandomPad -----------------------------------------------------------------------

static void test_randompad(void) {
  // alpha in 1..floor(N/len), uniform: 60000 draws for len = 7, N = 50 (7
  // values); each count within 5 sigma of 60000/7
  {
    const int64_t len = 7, N = 50, draws = 60000, amax = N / len;
    int64_t cnt[16] = {0};
    int in_range = 1;
    for (int64_t e = 0; e < draws; e++) {
      const int32_t a = blin_randompad_alpha(len, N, 11, 3, (uint64_t)e, (uint32_t)(e & 1));
      in_range &= a >= 1 && a <= amax;
      if (a >= 1 && a <= amax) cnt[a]++;
    }
    const double p = 1.0 / (double)amax, mean = (double)draws * p,
                 sd = sqrt((double)draws * p * (1 - p));
    int uniform = 1;
    for (int64_t a = 1; a <= amax; a++)
      uniform &= fabs((double)cnt[a] - mean) < 5 * sd;
    t_check(in_range, "randompad: alpha in 1..floor(N/|S|) over %lld draws", (long long)draws);
    t_check(uniform, "randompad: alpha uniform (each of %lld values within 5 sd)", (long long)amax);
  }
  // layout and truncation against an explicit construction, every alpha
  {
    const int32_t s[5] = {11, 12, 13, 14, 15};
    int ok = 1, seen[8] = {0};
    for (uint64_t e = 0; e < 400; e++) {
      for (int64_t len = 1; len <= 5; len++) {
        const int64_t N = 12;
        int32_t out[12], a, full[64];
        uint8_t km[12];
        const int64_t n = blin_randompad(out, km, &a, s, len, N, 5, 0, e, 0);
        int64_t f = 0;
        for (int32_t c = 0; c <= a; c++) {
          if (c) full[f++] = 0;
          for (int64_t i = 0; i < len; i++)
            full[f++] = s[i];
        }
        const int64_t want = f < N ? f : N;
        ok &= n == want && a >= 1 && a <= N / len;
        for (int64_t p = 0; p < n && n == want; p++)
          ok &= out[p] == full[f - n + p] && km[p] == (full[f - n + p] != 0);
        if (len == 5 && a < 8) seen[a] = 1;
      }
    }
    t_check(ok, "randompad: layout [S|0|S|...|S], truncated to the last N, mask 0 at delimiters");
    t_check(seen[1] && seen[2], "randompad: |S| = 5, N = 12 draws alpha 1 and 2 (truncated)");
  }
  // alpha = 0 when |S| >= N: the last N items, no delimiter
  {
    int32_t s[20], out[20], a = -1;
    uint8_t km[20];
    for (int i = 0; i < 20; i++)
      s[i] = 100 + i;
    int ok = 1;
    for (int64_t len = 10; len <= 20; len++) {
      const int64_t n = blin_randompad(out, km, &a, s, len, 10, 5, 1, 9, 1);
      ok &= a == 0 && n == 10;
      for (int64_t p = 0; p < n; p++)
        ok &= out[p] == s[len - 10 + p] && km[p] == 1;
    }
    t_check(ok, "randompad: alpha = 0 and the last N items when |S| >= N");
  }
  // a pure function of (seed, epoch, example, view): the same draws in any
  // order (any rank count, micro-batch, resume point); views, epochs and
  // seeds change them
  {
    int same = 1;
    int64_t dv = 0, de = 0, ds = 0;
    int32_t fw[1000];
    for (int e = 0; e < 1000; e++)
      fw[e] = blin_randompad_alpha(3, 100, 42, 2, (uint64_t)e, 0);
    for (int e = 999; e >= 0; e--)
      same &= fw[e] == blin_randompad_alpha(3, 100, 42, 2, e, 0);
    for (int e = 0; e < 1000; e++) {
      dv += fw[e] != blin_randompad_alpha(3, 100, 42, 2, (uint64_t)e, 1);
      de += fw[e] != blin_randompad_alpha(3, 100, 42, 3, (uint64_t)e, 0);
      ds += fw[e] != blin_randompad_alpha(3, 100, 43, 2, (uint64_t)e, 0);
    }
    t_check(same, "randompad: the same draw in any order of examples");
    // 33 values: two independent draws agree with probability 1/33
    t_check(dv > 900 && de > 900 && ds > 900,
            "randompad: views (%lld/1000 differ), epochs (%lld), seeds (%lld) draw independently",
            (long long)dv, (long long)de, (long long)ds);
  }
}

// ---- 4. the two-view loss ------------------------------------------------------------------

// Naive: per row, full log-softmaxes over items 1..n_rows-1 (or the
// candidates), (CE_a + CE_b)/2 + lambda (KL(a||b) + KL(b||a))/2; the mean.
static double naive_bkl(const double *ha, const double *hb, const int32_t *tgt, const double *rows,
                        int64_t n_rows, int64_t M, int64_t D, double lambda, const int32_t *cand,
                        const int32_t *cand_ids, int64_t C) {
  double tot = 0;
  double *za = xcalloc(n_rows + C, 8), *zb = xcalloc(n_rows + C, 8);
  for (int64_t m = 0; m < M; m++) {
    int64_t nc = 0, ti = -1;
    for (int64_t j = 0; j < (cand ? C : n_rows); j++) {
      int64_t v;
      if (cand) {
        const int32_t *id = cand_ids + m * C;
        if (j > 0 && id[j] == id[0]) continue;
        v = cand[m * C + j];
        if (j == 0) ti = nc;
      } else {
        if (j == 0) continue;
        v = j;
        if (j == tgt[m]) ti = nc;
      }
      double a = 0, b = 0;
      for (int64_t d = 0; d < D; d++)
        a += ha[m * D + d] * rows[v * D + d], b += hb[m * D + d] * rows[v * D + d];
      za[nc] = a, zb[nc] = b, nc++;
    }
    double ma = -INFINITY, mb = -INFINITY, sa = 0, sb = 0;
    for (int64_t j = 0; j < nc; j++)
      ma = fmax(ma, za[j]), mb = fmax(mb, zb[j]);
    for (int64_t j = 0; j < nc; j++)
      sa += exp(za[j] - ma), sb += exp(zb[j] - mb);
    const double la = ma + log(sa), lb = mb + log(sb);
    double kab = 0, kba = 0;
    for (int64_t j = 0; j < nc; j++) {
      const double lpa = za[j] - la, lpb = zb[j] - lb;
      kab += exp(lpa) * (lpa - lpb), kba += exp(lpb) * (lpb - lpa);
    }
    tot += 0.5 * ((la - za[ti]) + (lb - zb[ti])) + lambda * 0.5 * (kab + kba);
  }
  free(za), free(zb);
  return tot / (double)M;
}

typedef struct {
  int64_t n_rows, M, D, tile, rchunk;
  double lambda;
  const int32_t *tgt, *grp;
} bkl_shape;

// The tiled double path over one slice: the mean loss; gradients (coef 1/M)
// added into dha, dhb, drows when not NULL.
static double tiled_bkl_f64(const bkl_shape *p, const double *ha, const double *hb,
                            const double *rows, double *dha, double *dhb, double *drows) {
  const int64_t M = p->M, D = p->D;
  double *scr = xcalloc(bkl_scratch_elems(p->rchunk, p->tile, D), 8);
  double *gm = xcalloc(2 * M, 8), *g1 = xcalloc(M, 8), *sx = xcalloc(4 * M, 8);
  double *tl = xcalloc(2 * M, 8), *st = xcalloc(4 * M, 8);
  ce_rowmax_f64(g1, ha, rows, 0, p->n_rows, p->n_rows, M, D, p->tile, p->rchunk, scr);
  for (int64_t m = 0; m < M; m++)
    gm[2 * m] = g1[m];
  ce_rowmax_f64(g1, hb, rows, 0, p->n_rows, p->n_rows, M, D, p->tile, p->rchunk, scr);
  for (int64_t m = 0; m < M; m++)
    gm[2 * m + 1] = g1[m];
  bkl_sumexp_f64(sx, tl, ha, hb, p->tgt, rows, gm, 0, p->n_rows, p->n_rows, M, D, p->tile,
                 p->rchunk, scr);
  bkl_stats_f64(st, gm, sx, M);
  double loss = 0;
  for (int64_t m = 0; m < M; m++)
    loss += bkl_row_loss_f64(st + 4 * m, tl + 2 * m, p->lambda, NULL, NULL);
  if (dha || dhb || drows)
    bkl_backward_f64(dha, dhb, drows, ha, hb, p->tgt, p->grp, rows, st, p->lambda, 0, p->n_rows,
                     p->n_rows, M, D, p->tile, p->rchunk, 1.0 / (double)M, scr);
  free(scr), free(gm), free(g1), free(sx), free(tl), free(st);
  return loss / (double)M;
}

static double sampled_bkl_f64(const bkl_shape *p, const double *ha, const double *hb,
                              const double *rows, const int32_t *cand, int64_t C, double *dha,
                              double *dhb, double *drows) {
  double loss = 0, *scr = xcalloc(4 * p->M * C, 8);
  bkl_sampled_forward_backward_f64(&loss, dha, dhb, drows, ha, hb, cand, cand, rows, p->M, C, p->D,
                                   p->lambda, 1.0 / (double)p->M, scr);
  free(scr);
  return loss / (double)p->M;
}

static void test_bkl_f64(int sampled, double lambda) {
  const int64_t n_rows = 300, M = 5, D = 6, C = 7;
  const int32_t tgt[5] = {3, 299, 64, 128, 17}, grp[5] = {0, 0, 1, 2, 2};
  const int32_t cand[35] = {
      3,   5,     9,  3,  100, 5,  250, // a negative = the target, a duplicate
      299, 1,     2,  4,  6,   8,  10,  64, 65, 66, 67, 68, 69, 70,
      128, 0 + 7, 11, 13, 15,  17, 19,  17, 17, 18, 19, 20, 21, 22};
  const bkl_shape p = {n_rows, M, D, 64, 3, lambda, tgt, grp};
  double *ha = xcalloc(M * D, 8), *hb = xcalloc(M * D, 8), *rows = xcalloc(n_rows * D, 8);
  double *dha = xcalloc(M * D, 8), *dhb = xcalloc(M * D, 8), *dr = xcalloc(n_rows * D, 8);
  t_fill_d(ha, M * D, 71, 1.0);
  t_fill_d(hb, M * D, 72, 1.0);
  t_fill_d(rows, n_rows * D, 73, 1.0);
  for (int64_t d = 0; d < D; d++)
    rows[d] = 0;
  const double l = sampled ? sampled_bkl_f64(&p, ha, hb, rows, cand, C, dha, dhb, dr)
                           : tiled_bkl_f64(&p, ha, hb, rows, dha, dhb, dr);
  const double ln =
      naive_bkl(ha, hb, tgt, rows, n_rows, M, D, lambda, sampled ? cand : NULL, cand, C);
  char name[160];
  snprintf(name, sizeof name, "bkl %s lambda=%g: loss against the naive double formula",
           sampled ? "sampled" : "full tiled", lambda);
  t_close_d(&l, &ln, 1, 1e-12, name);
  // finite differences: every entry of ha, hb, and 60 entries of the rows
  // (every row the sampled candidates touch, and spread over the tiles)
  const int64_t nfd = 2 * M * D + 60;
  double *an = xcalloc(nfd, 8), *fd = xcalloc(nfd, 8);
  for (int64_t i = 0; i < nfd; i++) {
    double *x, *g;
    if (i < M * D)
      x = ha + i, g = dha + i;
    else if (i < 2 * M * D)
      x = hb + (i - M * D), g = dhb + (i - M * D);
    else {
      const int64_t k = i - 2 * M * D;
      const int64_t r = sampled ? cand[k % 35] : 1 + (k * 37) % (n_rows - 1);
      x = rows + r * D + k % D, g = dr + r * D + k % D;
    }
    const double x0 = *x, h = 1e-6;
    *x = x0 + h;
    const double lp = sampled ? sampled_bkl_f64(&p, ha, hb, rows, cand, C, NULL, NULL, NULL)
                              : tiled_bkl_f64(&p, ha, hb, rows, NULL, NULL, NULL);
    *x = x0 - h;
    const double lm = sampled ? sampled_bkl_f64(&p, ha, hb, rows, cand, C, NULL, NULL, NULL)
                              : tiled_bkl_f64(&p, ha, hb, rows, NULL, NULL, NULL);
    *x = x0;
    fd[i] = (lp - lm) / (2 * h);
    an[i] = *g;
  }
  snprintf(name, sizeof name, "bkl %s lambda=%g: fd f64 of both views and the item rows",
           sampled ? "sampled" : "full tiled", lambda);
  t_close_d(an, fd, nfd, 1e-6, name);
  free(ha), free(hb), free(rows), free(dha), free(dhb), free(dr), free(an), free(fd);
}

// The float path over the catalog cut at the given block boundaries
// (cuts[0] = 0 < ... < cuts[ns] = n_rows): every slice's pass 1 merged by
// max, pass 2 merged by exact adds; pass 3 per slice. st (M,4), dha, dhb
// (M,D) and drows (n_rows,D) accumulators out.
static void sliced_bkl(float *st, lr_xs *dha, lr_xs *dhb, lr_xs *dr, const float *ha,
                       const float *hb, const int32_t *tgt, const int32_t *grp, const float *rows,
                       const int64_t *cuts, int ns, int64_t n_rows, int64_t M, int64_t D,
                       int64_t tile, int64_t rchunk, double lambda) {
  float *scr = xcalloc(bkl_scratch_elems(rchunk, tile, D), 4), *g1 = xcalloc(M, 4);
  float *gm = xcalloc(2 * M, 4), *tl = xcalloc(2 * M, 4);
  lr_xs *sx = xcalloc(4 * M, sizeof(lr_xs)), *sxs = xcalloc(4 * M, sizeof(lr_xs));
  for (int64_t m = 0; m < 2 * M; m++)
    gm[m] = -INFINITY;
  for (int s = 0; s < ns; s++)
    for (int v = 0; v < 2; v++) {
      ce_rowmax(g1, v ? hb : ha, rows + cuts[s] * D, cuts[s], cuts[s + 1], n_rows, M, D, tile,
                rchunk, scr);
      for (int64_t m = 0; m < M; m++)
        gm[2 * m + v] = fmaxf(gm[2 * m + v], g1[m]);
    }
  for (int s = 0; s < ns; s++) {
    memset(sxs, 0, 4 * (size_t)M * sizeof(lr_xs));
    bkl_sumexp(sxs, tl, ha, hb, tgt, rows + cuts[s] * D, gm, cuts[s], cuts[s + 1], n_rows, M, D,
               tile, rchunk, scr);
    xsum_merge(sx, sxs, 4 * M);
  }
  bkl_stats(st, gm, sx, M);
  for (int s = 0; s < ns; s++)
    bkl_backward(dha, dhb, dr + cuts[s] * D, ha, hb, tgt, grp, rows + cuts[s] * D, st, lambda,
                 cuts[s], cuts[s + 1], n_rows, M, D, tile, rchunk, 1.0f / (float)M, scr);
  free(scr), free(g1), free(gm), free(tl), free(sx), free(sxs);
}

static void test_bkl_slices(void) {
  const int64_t n_rows = 300, M = 6, D = 16, tile = 128, rchunk = 4; // blocks of 64
  const int32_t tgt[6] = {1, 63, 64, 299, 200, 5}, grp[6] = {0, 0, 1, 2, 2, 3};
  float *ha = xcalloc(M * D, 4), *hb = xcalloc(M * D, 4), *rows = xcalloc(n_rows * D, 4);
  t_fill_f(ha, M * D, 81, 1.0f);
  t_fill_f(hb, M * D, 82, 1.0f);
  t_fill_f(rows, n_rows * D, 83, 1.0f);
  const int64_t cut_sets[4][5] = {
      {0, 300}, {0, 128, 300}, {0, 64, 192, 300}, {0, 64, 128, 256, 300}};
  float *st0 = xcalloc(4 * M, 4), *st = xcalloc(4 * M, 4);
  lr_xs *acc0 = xcalloc((2 * M + n_rows) * D, sizeof(lr_xs)),
        *acc = xcalloc((2 * M + n_rows) * D, sizeof(lr_xs));
  for (int k = 0; k < 4; k++) {
    lr_xs *a = k ? acc : acc0;
    float *s = k ? st : st0;
    memset(a, 0, (size_t)((2 * M + n_rows) * D) * sizeof(lr_xs));
    sliced_bkl(s, a, a + M * D, a + 2 * M * D, ha, hb, tgt, grp, rows, cut_sets[k], k + 1, n_rows,
               M, D, tile, rchunk, 2.0);
    if (!k) continue;
    int same = !memcmp(st0, st, 4 * (size_t)M * 4);
    for (int64_t i = 0; i < (2 * M + n_rows) * D; i++)
      same &= xsum_eq(acc0[i], acc[i]);
    t_check(same,
            "bkl full catalog: %d slices merged = one slice (statistics, both views' and "
            "the rows' gradients, bitwise)",
            k + 1);
  }
  int nz = 0;
  for (int64_t i = 0; i < (2 * M + n_rows) * D; i++)
    nz += !xsum_is_zero(acc0[i]);
  t_check(nz > M * D, "bkl full catalog: the gradients are not all zero (%d nonzero)", nz);
  free(ha), free(hb), free(rows), free(st0), free(st), free(acc0), free(acc);
}

// ---- 5. the ReLU FFN's training pair (model.ffn=relu) --------------------------------

static void test_relu(void) {
  const int64_t R = 5, C = 7, n = R * C;
  double *x = xcalloc(n, 8), *b = xcalloc(C, 8), *out = xcalloc(n, 8), *g = xcalloc(n, 8);
  double *d = xcalloc(n, 8);
  float *xf = xcalloc(n, 4), *bf = xcalloc(C, 4), *of = xcalloc(n, 4), *df = xcalloc(n, 4);
  t_fill_f(xf, n, 61, 1.0f); // the double side takes the float values: both exact
  t_fill_f(bf, C, 62, 0.3f);
  t_fill_f(df, n, 63, 1.0f);
  for (int64_t i = 0; i < n; i++) x[i] = xf[i], d[i] = df[i];
  for (int64_t j = 0; j < C; j++) b[j] = bf[j];
  memcpy(g, x, (size_t)n * 8);
  relu_forward_train_f64(out, g, b, R, C);
  gelu_backward_stored_f64(d, g, n);
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    const double v = x[i] + b[i % C];
    ok &= out[i] == (v > 0 ? v : 0) && g[i] == (v > 0 ? 1 : 0);
  }
  relu_forward_train(of, xf, bf, R, C);
  gelu_backward_stored(df, xf, n);
  for (int64_t i = 0; i < n; i++) ok &= of[i] == (float)out[i] && df[i] == (float)d[i];
  t_check(ok, "relu training pair: max(x + b, 0), its stored derivative and backward (float, "
              "double)");
  free(x), free(b), free(out), free(g), free(d), free(xf), free(bf), free(of), free(df);
}

int main(void) {
  for (int64_t k = 3; k <= 5; k += 2)
    for (int left = 0; left < 2; left++)
      for (int masked = 0; masked < 2; masked++)
        test_dwc(k, left, masked, 100 + (uint64_t)(k * 4 + left * 2 + masked));
  test_kind_masked("blin", 300);
  test_kind_masked("blin_left", 310);
  test_kind_masked("efficient", 320);
  test_kind_masked("softmax", 330);
  test_randompad();
  test_bkl_f64(0, 2.0);
  test_bkl_f64(0, 0.0);
  test_bkl_f64(1, 2.0);
  test_bkl_f64(1, 0.5);
  test_bkl_slices();
  test_relu();
  return t_done();
}
