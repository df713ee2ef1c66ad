// test_xsum.c: the exact sums of core/xsum.h.
//   - every term's limbs equal floor(|x| 2^64) (signed) computed independently
//     in 128-bit integers from the float's bits, over magnitudes from below
//     the grid to near the range limit, in the vector lanes and the scalar
//     tail alike;
//   - the same terms added in another order, in another grouping (one call
//     per term, calls of odd lengths) and merged from partial sums give the
//     same limbs; the value is the exact sum rounded once;
//   - out-of-range terms (NaN, inf, |x| >= 2^40) add nothing and are flagged;
//   - the scaled form adds fl(s x); the double form truncates like the float one;
//   - the batched forms (several arrays, sums of outer products; on AVX-512
//     their limbs go through double sums in batches) equal one plain add per
//     term, with out-of-range terms, skipped zeros and more terms per element
//     than one batch holds.
#include <math.h>   // NAN, INFINITY
#include <stdlib.h> // free
#include <string.h> // memcmp, memset

#include "ref_layers.h" // t_alloc
#include "test_util.h"
#include "xsum.h"

// floor(|x| 2^64), signed, from the float's bits (x finite, |x| < 2^40).
static __int128 ref_grid(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const int e = (int)((u >> 23) & 0xff);
  if (e == 0) return 0; // zero or subnormal: below 2^-126, under the grid
  const __int128 m = (__int128)((u & 0x7fffff) | 0x800000); // x = m 2^(e-150)
  const int sh = e - 150 + 64;
  const __int128 X = sh >= 0 ? m << sh : (-sh >= 127 ? 0 : m >> -sh);
  return (u >> 31) ? -X : X;
}

static __int128 limbs(lr_xs a) {
  return (__int128)a.hi * ((__int128)1 << 64) + (__int128)a.mid * ((__int128)1 << 32) +
         (__int128)a.lo;
}

// A term of magnitude class k: 0 tiny (below the grid), 1 ~1e-15, 2 ~1e-6,
// 3 ~1, 4 ~1e6, 5 ~1e11 (near 2^40 / 10).
static float term(uint64_t i, int k) {
  static const float scale[6] = {1e-21f, 1e-15f, 1e-6f, 1.0f, 1e6f, 1e11f};
  float v;
  t_fill_f(&v, 1, 1000 + i * 7 + (uint64_t)k, 1.0f);
  return v * scale[k];
}

static void test_terms(void) {
  enum { N = 1003 }; // vector blocks of 8 and a scalar tail
  float *x = t_alloc(N, 4);
  lr_xs *a = t_alloc(N, sizeof(lr_xs));
  int ok = 1;
  for (int k = 0; k < 6; k++) {
    for (int i = 0; i < N; i++) x[i] = term((uint64_t)i, k);
    memset(a, 0, N * sizeof(lr_xs));
    ok &= xsum_add(a, x, N) == 0;
    for (int i = 0; i < N; i++) ok &= limbs(a[i]) == ref_grid(x[i]);
  }
  t_check(ok, "xsum_add: every term's limbs = floor(|x| 2^64), magnitudes 1e-21 .. 1e11");
  free(x), free(a);
}

static void test_orders(void) {
  enum { N = 37, R = 40 }; // N: 4 vector blocks and a tail; R terms per element
  float *x = t_alloc(N * R, 4);
  for (int r = 0; r < R; r++)
    for (int i = 0; i < N; i++) x[r * N + i] = term((uint64_t)(r * N + i), (r + i) % 6);
  lr_xs *a = t_alloc(N, sizeof(lr_xs)), *b = t_alloc(N, sizeof(lr_xs));
  lr_xs *c = t_alloc(N, sizeof(lr_xs)), *part = t_alloc(N, sizeof(lr_xs));
  for (int r = 0; r < R; r++) xsum_add(a, x + r * N, N);
  for (int r = R - 1; r >= 0; r--) // reversed, one term per call
    for (int i = N - 1; i >= 0; i--) xsum_add(b + i, x + r * N + i, 1);
  for (int r = 0; r < R; r += 2) { // two partial accumulators, odd call lengths, merged
    lr_xs *dst = r % 4 ? part : c;
    xsum_add(dst, x + r * N, 13);
    xsum_add(dst + 13, x + r * N + 13, N - 13);
    xsum_add(dst, x + (r + 1) * N, N);
  }
  xsum_merge(c, part, N);
  t_check(!memcmp(a, b, N * sizeof(lr_xs)) && !memcmp(a, c, N * sizeof(lr_xs)),
          "xsum: another order, one call per term, partial sums merged: the same limbs");
  int ok = 1;
  float *f = t_alloc(N, 4);
  xsum_to_float(f, a, N);
  for (int i = 0; i < N; i++) {
    __int128 s = 0;
    for (int r = 0; r < R; r++) s += ref_grid(x[r * N + i]);
    ok &= limbs(a[i]) == s && xsum_value(a[i]) == (double)s * 0x1p-64 &&
          f[i] == (float)((double)s * 0x1p-64);
  }
  t_check(ok, "xsum: limbs = the exact sum; value and float its roundings");
  free(x), free(a), free(b), free(c), free(part), free(f);
}

static void test_range(void) {
  const float bad[5] = {NAN, INFINITY, -INFINITY, 0x1p40f, -0x1p41f};
  lr_xs a[9];
  memset(a, 0, sizeof a);
  const float x[9] = {1.0f, 2.0f, bad[0], 3.0f, bad[1], bad[2], bad[3], bad[4], 0x1p39f};
  uint32_t flag = xsum_add(a, x, 9); // 8 in the vector path, 1 scalar
  int ok = flag != 0 && xsum_value(a[0]) == 1.0 && xsum_value(a[3]) == 3.0 &&
           xsum_value(a[8]) == 0x1p39;
  const int bad_at[5] = {2, 4, 5, 6, 7};
  for (int i = 0; i < 5; i++) ok &= xsum_is_zero(a[bad_at[i]]);
  t_check(ok, "xsum: NaN, inf and |x| >= 2^40 flagged, add nothing; 2^39 is fine");
  lr_xs s[2] = {{0, 0, 0}, {0, 0, 0}};
  t_check(xsum_add(s, x, 2) == 0 && xsum_value(s[0]) == 1.0 && xsum_value(s[1]) == 2.0,
          "xsum: in-range terms not flagged");
  // the largest sums: 2^23 terms of 2^39.99 stay exact (hi < 2^63)
  lr_xs big = {0, 0, 0};
  const float t = 0x1.fffffep39f;
  for (int i = 0; i < 64; i++) xsum_add(&big, &t, 1);
  lr_xs sc = big;
  for (int i = 0; i < 17; i++) {
    const lr_xs tmp = sc;
    xsum_merge(&sc, &tmp, 1);
  }
  t_check(xsum_value(sc) == (double)t * 64.0 * 131072.0, "xsum: 2^23 terms near 2^40 sum exactly");
}

static void test_forms(void) {
  enum { N = 21 };
  float x[N], sx[N];
  for (int i = 0; i < N; i++) x[i] = term((uint64_t)i, i % 5), sx[i] = 0.37f * x[i];
  lr_xs a[N], b[N];
  memset(a, 0, sizeof a), memset(b, 0, sizeof b);
  xsum_add_scaled(a, x, 0.37f, N);
  xsum_add(b, sx, N);
  t_check(!memcmp(a, b, sizeof a), "xsum_add_scaled adds fl(s x)");
  memset(a, 0, sizeof a), memset(b, 0, sizeof b);
  for (int i = 0; i < N; i++) xsum_add_d(&a[i], (double)x[i]);
  xsum_add(b, x, N);
  t_check(!memcmp(a, b, sizeof a), "xsum_add_d of a float's value = xsum_add");
  lr_xs d = {0, 0, 0};
  xsum_add_d(&d, 0.1);
  xsum_add_d(&d, -1e-30);
  const __int128 want = (__int128)(0.1 * 0x1p64); // 0.1 * 2^64 is exact in double, then truncated
  t_check(limbs(d) == want, "xsum_add_d truncates a double toward zero on the grid");
}

// x[j][i] for j < k: magnitude classes by (i + j), out-of-range terms at
// a few places when bad is set.
static void fill_rows(float **x, int k, int n, int bad) {
  for (int j = 0; j < k; j++)
    for (int i = 0; i < n; i++) x[j][i] = term((uint64_t)(j * n + i), (i + j) % 6);
  if (bad) x[0][3] = NAN, x[k - 1][n - 1] = INFINITY, x[k / 2][8] = 0x1p40f;
}

static void test_batches(void) {
  enum { N = 37, D = 19, V = 5 };
  static const int ks[] = {1, 3, 40};
  int ok = 1;
  for (int c = 0; c < 6; c++) { // xsum_add_many = k xsum_add calls
    const int k = ks[c % 3], bad = c >= 3;
    float **x = t_alloc((size_t)k, sizeof(float *));
    for (int j = 0; j < k; j++) x[j] = t_alloc(N, sizeof(float));
    fill_rows(x, k, N, bad);
    lr_xs a[N], b[N];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    uint32_t fa = 0;
    for (int j = 0; j < k; j++) fa |= xsum_add(a, x[j], N);
    const uint32_t fb = xsum_add_many(b, (const float *const *)x, k, N);
    ok &= !memcmp(a, b, sizeof a) && (fa != 0) == bad && (fb != 0) == bad;
    for (int j = 0; j < k; j++) free(x[j]);
    free(x);
  }
  t_check(ok, "xsum_add_many = one xsum_add per array (1, 3, 40 arrays; out-of-range terms)");
  ok = 1;
  // c 0-2 terms of every size, 3-5 with one out of range, 6-8 gradient-sized
  // (every |g h| < 1/2: the fraction-only path) except in one row in three
  for (int c = 0; c < 9; c++) { // xsum_add_outer_rows = one add of fl(g h) per term
    const int R = ks[c % 3], bad = c >= 3 && c < 6, small = c >= 6;
    float *G = t_alloc((size_t)(R * V), sizeof(float)), *H = t_alloc((size_t)(R * D), sizeof(float));
    for (int i = 0; i < R * V; i++)
      G[i] = (i % 4 == 1) ? 0.0f : term((uint64_t)i, small ? (i / V) % 3 : 2 + i % 3);
    for (int i = 0; i < R * D; i++) H[i] = term((uint64_t)(500 + i), small ? 3 : i % 5);
    if (small)
      for (int r = 1; r < R; r += 3) H[r * D + 4] = 3e7f; // this row: products up to ~30 (the full path)
    if (R > 1) { // a row whose scores are all zero may hold anything: it adds nothing
      for (int v = 0; v < V; v++) G[(R - 1) * V + v] = 0.0f;
      H[(R - 1) * D + 2] = NAN;
    }
    if (bad) G[0] = 0x1p30f, H[5] = 0x1p20f; // a product of 2^50: out of range
    lr_xs a[V * D], b[V * D];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    uint32_t fa = 0;
    for (int r = 0; r < R; r++)
      for (int v = 0; v < V; v++)
        if (G[r * V + v] != 0) fa |= xsum_add_scaled(a + v * D, H + r * D, G[r * V + v], D);
    const uint32_t fb = xsum_add_outer_rows(b, G, V, H, D, R, V, D);
    ok &= !memcmp(a, b, sizeof a) && (fa != 0) == bad && (fb != 0) == bad;
    free(G), free(H);
  }
  t_check(ok, "xsum_add_outer_rows = one add of fl(g h) per term (1, 3, 40 rows; zeros skipped; "
              "gradient-sized rows beside large ones)");
  { // more terms per element than one double batch: 9000 terms near 2^39
    enum { K = 9000, M = 9 };
    float *row = t_alloc(M, sizeof(float));
    const float **x = t_alloc(K, sizeof(float *));
    for (int i = 0; i < M; i++) row[i] = 0x1p39f * (1.0f - 0x1p-23f * (float)(i + 1));
    for (int j = 0; j < K; j++) x[j] = row;
    lr_xs a[M], b[M];
    memset(a, 0, sizeof a), memset(b, 0, sizeof b);
    for (int j = 0; j < K; j++) xsum_add(a, row, M);
    xsum_add_many(b, x, K, M);
    t_check(!memcmp(a, b, sizeof a), "xsum_add_many: 9000 terms near 2^39 per element, exact");
    free(row), free(x);
  }
}

int main(void) {
  test_terms();
  test_orders();
  test_range();
  test_forms();
  test_batches();
  return t_done();
}
