// xsum.c: the exact fixed-point sums of xsum.h.
//
// For a term x (|x| < 2^40), X = trunc(x 2^64) (toward zero) is split as
//     hi  = trunc(x)                 (|hi| < 2^40)
//     f   = (x - hi) 2^32            (exact: x's fraction bits, shifted)
//     mid = trunc(f),  lo = trunc((f - mid) 2^32)
// in double, where x (a float, or a double's 53 bits) and every step are
// exact but the last truncation; all three limbs carry x's sign and
// hi 2^64 + mid 2^32 + lo = X. Eight terms go through double lanes at a
// time (GCC vector extensions, built for x86-64-v4 (AVX-512 with DQ: vector
// double <-> int64 conversions), AVX2 and baseline, picked at load time);
// the scalar path for the last few terms computes the same integers.
#include "xsum.h"

#include <float.h>  // FLT_MAX
#include <math.h>   // fabsf
#include <string.h> // memcpy

// The clones of the vector loop (see vmath.h's LR_HOT_CLONES; x86-64-v4
// rather than avx512f for AVX-512DQ's int64 conversions).
#if defined(__GNUC__) && !defined(__clang__) && !defined(LR_NO_CLONES) && defined(__x86_64__)
#define XSUM_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define XSUM_CLONES
#endif

// ---- one term -----------------------------------------------------------------------

// The limbs of x; *bad |= 1 (limbs 0) if x is not finite or |x| >= 2^40.
static inline void conv1(int64_t *lo, int64_t *mid, int64_t *hi, uint32_t *bad, double x) {
  if (!(x < LR_XS_TERM_MAX && x > -LR_XS_TERM_MAX)) { // also NaN
    *bad |= 1u;
    *lo = *mid = *hi = 0;
    return;
  }
  const int64_t h = (int64_t)x;
  const double f = (x - (double)h) * 0x1p32;
  const int64_t m = (int64_t)f;
  *lo = (int64_t)((f - (double)m) * 0x1p32);
  *mid = m;
  *hi = h;
}

// ---- eight terms --------------------------------------------------------------------

typedef int64_t xv8_ __attribute__((vector_size(64)));
typedef double xd8_ __attribute__((vector_size(64)));
typedef float xf8_ __attribute__((vector_size(32)));

// The limbs of the 8 terms v, lane by lane as conv1, added to the planar
// sums *lo, *mi, *hi; bad lanes (-1 in *bad) add nothing.
__attribute__((always_inline)) static inline void limbs8(xv8_ *lo, xv8_ *mi, xv8_ *hi, xv8_ *bad,
                                                         xf8_ v) {
  const xd8_ x = __builtin_convertvector(v, xd8_);
  // |x| < 2^40 on the bits (magnitudes order like integers; inf and NaN
  // lie above): one integer compare (GCC 12 splits double compares into
  // scalar code)
  xv8_ bits;
  memcpy(&bits, &x, sizeof bits);
  const xv8_ ok = (bits & 0x7fffffffffffffffLL) < 0x4270000000000000LL; // 2^40
  *bad |= ~ok;
  // bad lanes convert to whatever the instruction gives and are masked out
  const xv8_ h = __builtin_convertvector(x, xv8_) & ok;
  const xd8_ f = (x - __builtin_convertvector(h, xd8_)) * 0x1p32;
  const xv8_ m = __builtin_convertvector(f, xv8_) & ok;
  *lo += __builtin_convertvector((f - __builtin_convertvector(m, xd8_)) * 0x1p32, xv8_) & ok;
  *mi += m;
  *hi += h;
}

// acc[0..8) += the planar limbs lo, mi, hi of 8 elements.
__attribute__((always_inline)) static inline void put8(lr_xs *acc, xv8_ lo, xv8_ mi, xv8_ hi) {
  // interleave to (lo, mid, hi) triples: 24 limbs in three vectors
  const xv8_ lm0 = __builtin_shufflevector(lo, mi, 0, 8, 1, 9, 2, 10, 3, 11);
  const xv8_ lm1 = __builtin_shufflevector(lo, mi, 4, 12, 5, 13, 6, 14, 7, 15);
  const xv8_ t0 = __builtin_shufflevector(lm0, hi, 0, 1, 8, 2, 3, 9, 4, 5);
  const xv8_ t1 = __builtin_shufflevector(lm0, hi, 10, 6, 7, 11, 0, 1, 12, 2);
  const xv8_ t1b = __builtin_shufflevector(t1, lm1, 0, 1, 2, 3, 8, 9, 6, 10);
  const xv8_ t2 = __builtin_shufflevector(lm1, hi, 3, 13, 4, 5, 14, 6, 7, 15);
  xv8_ a0, a1, a2;
  memcpy(&a0, acc, sizeof a0);
  memcpy(&a1, (int64_t *)(void *)acc + 8, sizeof a1);
  memcpy(&a2, (int64_t *)(void *)acc + 16, sizeof a2);
  a0 += t0, a1 += t1b, a2 += t2;
  memcpy(acc, &a0, sizeof a0);
  memcpy((int64_t *)(void *)acc + 8, &a1, sizeof a1);
  memcpy((int64_t *)(void *)acc + 16, &a2, sizeof a2);
}

// acc[0..8) += the limbs of the 8 terms v.
__attribute__((always_inline)) static inline void add8(lr_xs *acc, xv8_ *bad, xf8_ v) {
  xv8_ lo = {0}, mi = {0}, hi = {0};
  limbs8(&lo, &mi, &hi, bad, v);
  put8(acc, lo, mi, hi);
}

// acc[i] += x (exact), one scalar term.
static inline void add1(lr_xs *acc, uint32_t *b, float x) {
  int64_t lo, mid, hi;
  conv1(&lo, &mid, &hi, b, (double)x);
  acc->lo += lo;
  acc->mid += mid;
  acc->hi += hi;
}

// acc[0..n) += s x[0..n) (scaled) or x; the scalar tail as conv1.
__attribute__((always_inline)) static inline void add_row(lr_xs *acc, xv8_ *bad, uint32_t *b,
                                                          const float *x, float s, int scaled,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    xf8_ v;
    memcpy(&v, x + i, sizeof v);
    if (scaled) v *= s;
    add8(acc + i, bad, v);
  }
  for (; i < n; i++) add1(acc + i, b, scaled ? s * x[i] : x[i]);
}

// Always inlined, like every helper that takes a vector: a call from a clone
// built for AVX-512 to a function built for the baseline target passes a
// 64-byte vector in a different place than the callee reads it (at -O0 the
// flags were garbage and every sum looked out of range).
__attribute__((always_inline)) static inline uint32_t flags(const xv8_ *bad, uint32_t b) {
  for (int k = 0; k < 8; k++) b |= (uint32_t)((*bad)[k] & 1);
  return b;
}

XSUM_CLONES static uint32_t add_scaled(lr_xs *acc, const float *x, float s, int scaled,
                                       int64_t n) {
  xv8_ bad = {0};
  uint32_t b = 0;
  add_row(acc, &bad, &b, x, s, scaled, n);
  return flags(&bad, b);
}

// ---- several terms per element ------------------------------------------------------
// The terms of several rows go through the limbs in registers and meet
// acc's memory once (the interleave and the read-modify-write are half the
// cost of a one-term add). With AVX-512 the limbs of a batch are summed as
// doubles: each limb is an integer below 2^40 in magnitude, so a sum of up to
// 2^13 of them is exact in double, and the truncations are one roundscale each
// instead of two conversions; the batch's sums convert to int64 once (for a
// batch of one term that last conversion is a loss: one term goes the
// generic way).

// The generic loops (clones for AVX-512, AVX2, baseline).
XSUM_CLONES static uint32_t outer_rows_int(lr_xs *acc, const float *G, int64_t ldg,
                                           const float *H, int64_t ldh, int64_t R, int64_t n,
                                           int64_t D) {
  xv8_ bad = {0};
  uint32_t b = 0;
  for (int64_t v = 0; v < n; v++) {
    lr_xs *a = acc + v * D;
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
      xv8_ lo = {0}, mi = {0}, hi = {0};
      for (int64_t r = 0; r < R; r++) {
        const float g = G[r * ldg + v];
        if (g == 0) continue;
        xf8_ t;
        memcpy(&t, H + r * ldh + d, sizeof t);
        limbs8(&lo, &mi, &hi, &bad, t * g);
      }
      put8(a + d, lo, mi, hi);
    }
    for (; d < D; d++)
      for (int64_t r = 0; r < R; r++) {
        const float g = G[r * ldg + v];
        if (g != 0) add1(a + d, &b, g * H[r * ldh + d]);
      }
  }
  return flags(&bad, b);
}

XSUM_CLONES static uint32_t add_many_int(lr_xs *acc, const float *const *x, int k, int64_t n) {
  xv8_ bad = {0};
  uint32_t b = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    xv8_ lo = {0}, mi = {0}, hi = {0};
    for (int j = 0; j < k; j++) {
      xf8_ t;
      memcpy(&t, x[j] + i, sizeof t);
      limbs8(&lo, &mi, &hi, &bad, t);
    }
    put8(acc + i, lo, mi, hi);
  }
  for (; i < n; i++)
    for (int j = 0; j < k; j++) add1(acc + i, &b, x[j][i]);
  return flags(&bad, b);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    (!defined(LR_NO_CLONES) || (defined(__AVX512F__) && defined(__AVX512DQ__)))
#include <immintrin.h>
#define XSUM_DBL 1
#define XSUM_DBL_TARGET __attribute__((target("avx512f,avx512dq")))
#define XSUM_DBL_BATCH 8192 // terms per element summed in double before int64 (< 2^13)

// The limbs of the 8 terms v (as conv1) added to the double sums; bad
// lanes add nothing and set their bit in *bad.
XSUM_DBL_TARGET __attribute__((always_inline)) static inline void
limbs8_dbl(__m512d *lo, __m512d *mi, __m512d *hi, __mmask8 *bad, __m256 v) {
  const int tz = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
  const __m512d x = _mm512_cvtps_pd(v);
  const __mmask8 ok = _mm512_cmp_pd_mask(_mm512_abs_pd(x), _mm512_set1_pd(LR_XS_TERM_MAX), _CMP_LT_OQ);
  *bad |= (__mmask8)~ok;
  const __m512d h = _mm512_roundscale_pd(x, tz);
  const __m512d f = _mm512_mul_pd(_mm512_sub_pd(x, h), _mm512_set1_pd(0x1p32));
  const __m512d m = _mm512_roundscale_pd(f, tz);
  const __m512d l =
      _mm512_roundscale_pd(_mm512_mul_pd(_mm512_sub_pd(f, m), _mm512_set1_pd(0x1p32)), tz);
  *hi = _mm512_mask_add_pd(*hi, ok, *hi, h);
  *mi = _mm512_mask_add_pd(*mi, ok, *mi, m);
  *lo = _mm512_mask_add_pd(*lo, ok, *lo, l);
}

// acc[0..8) += the double sums (whole numbers, exact) as int64 limbs.
XSUM_DBL_TARGET __attribute__((always_inline)) static inline void
put8_dbl(lr_xs *acc, __m512d lo, __m512d mi, __m512d hi) {
  xv8_ l, m, h;
  const __m512i il = _mm512_cvttpd_epi64(lo), im = _mm512_cvttpd_epi64(mi),
                ih = _mm512_cvttpd_epi64(hi);
  memcpy(&l, &il, sizeof l);
  memcpy(&m, &im, sizeof m);
  memcpy(&h, &ih, sizeof h);
  put8(acc, l, m, h);
}

// The limbs of 8 terms v known finite with |v| < 1 (the integer limb is
// zero): limbs8_dbl without the range check and the integer part. The
// same lo and mid (h = 0 there, so f = v * 2^32 alike).
XSUM_DBL_TARGET __attribute__((always_inline)) static inline void
limbs8_dbl_frac(__m512d *lo, __m512d *mi, __m256 v) {
  const int tz = _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC;
  const __m512d f = _mm512_mul_pd(_mm512_cvtps_pd(v), _mm512_set1_pd(0x1p32));
  const __m512d m = _mm512_roundscale_pd(f, tz);
  *mi = _mm512_add_pd(*mi, m);
  *lo = _mm512_add_pd(*lo, _mm512_roundscale_pd(_mm512_mul_pd(_mm512_sub_pd(f, m),
                                                              _mm512_set1_pd(0x1p32)),
                                                tz));
}

// Whether every |x[i]| (i < n) is finite and at most *max (its maximum is
// stored there).
static int max_abs(float *max, const float *x, int64_t n) {
  float m = 0;
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    const float a = fabsf(x[i]);
    ok &= a <= FLT_MAX; // false for NaN and infinities
    m = a > m ? a : m;
  }
  *max = m;
  return ok;
}

// Rows per pass that get the fraction-only path when their terms allow.
#define OUTER_FRAC_ROWS 64

XSUM_DBL_TARGET static uint32_t outer_rows_dbl(lr_xs *acc, const float *G, int64_t ldg,
                                               const float *H, int64_t ldh, int64_t R, int64_t n,
                                               int64_t D) {
  __mmask8 bad = 0;
  uint32_t b = 0;
  // Row r's terms g_rv h_rd all below 1/2 in magnitude (max|g_r| max|h_r|
  // < 1/2, both finite: the float product cannot round up to 1) have no
  // integer limb and cannot be out of range: the cheaper path, the same
  // limbs. Gradients are such terms nearly always.
  unsigned char frac[OUTER_FRAC_ROWS] = {0};
  if (R <= OUTER_FRAC_ROWS)
    for (int64_t r = 0; r < R; r++) {
      float gm, hm;
      frac[r] = max_abs(&gm, G + r * ldg, n) && max_abs(&hm, H + r * ldh, D) &&
                (double)gm * (double)hm < 0.5;
    }
  for (int64_t v = 0; v < n; v++) {
    lr_xs *a = acc + v * D;
    int64_t d = 0;
    for (; d + 8 <= D; d += 8)
      for (int64_t r0 = 0; r0 < R; r0 += XSUM_DBL_BATCH) {
        const int64_t r1 = R - r0 < XSUM_DBL_BATCH ? R : r0 + XSUM_DBL_BATCH;
        __m512d lo = _mm512_setzero_pd(), mi = lo, hi = lo;
        for (int64_t r = r0; r < r1; r++) {
          const float g = G[r * ldg + v];
          if (g == 0) continue;
          const __m256 t = _mm256_mul_ps(_mm256_set1_ps(g), _mm256_loadu_ps(H + r * ldh + d));
          if (r < OUTER_FRAC_ROWS && frac[r]) limbs8_dbl_frac(&lo, &mi, t);
          else limbs8_dbl(&lo, &mi, &hi, &bad, t);
        }
        put8_dbl(a + d, lo, mi, hi);
      }
    for (; d < D; d++)
      for (int64_t r = 0; r < R; r++) {
        const float g = G[r * ldg + v];
        if (g != 0) add1(a + d, &b, g * H[r * ldh + d]);
      }
  }
  return b | (bad != 0);
}

XSUM_DBL_TARGET static uint32_t add_many_dbl(lr_xs *acc, const float *const *x, int k,
                                             int64_t n) {
  __mmask8 bad = 0;
  uint32_t b = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j0 = 0; j0 < k; j0 += XSUM_DBL_BATCH) {
      const int j1 = k - j0 < XSUM_DBL_BATCH ? k : j0 + XSUM_DBL_BATCH;
      __m512d lo = _mm512_setzero_pd(), mi = lo, hi = lo;
      for (int j = j0; j < j1; j++) limbs8_dbl(&lo, &mi, &hi, &bad, _mm256_loadu_ps(x[j] + i));
      put8_dbl(acc + i, lo, mi, hi);
    }
  for (; i < n; i++)
    for (int j = 0; j < k; j++) add1(acc + i, &b, x[j][i]);
  return b | (bad != 0);
}

// Whether this CPU runs the double path (looked up once; a benign race).
static int use_dbl(void) {
#ifdef LR_NO_CLONES
  return 1;
#else
  static int known = -1;
  if (known < 0) {
    __builtin_cpu_init();
    known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  }
  return known;
#endif
}
#endif

uint32_t xsum_add_outer_rows(lr_xs *acc, const float *G, int64_t ldg, const float *H, int64_t ldh,
                             int64_t R, int64_t n, int64_t D) {
#ifdef XSUM_DBL
  if (R > 1 && use_dbl()) return outer_rows_dbl(acc, G, ldg, H, ldh, R, n, D);
#endif
  return outer_rows_int(acc, G, ldg, H, ldh, R, n, D);
}

uint32_t xsum_add_many(lr_xs *acc, const float *const *x, int k, int64_t n) {
#ifdef XSUM_DBL
  if (k > 1 && use_dbl()) return add_many_dbl(acc, x, k, n);
#endif
  return add_many_int(acc, x, k, n);
}

uint32_t xsum_add(lr_xs *acc, const float *x, int64_t n) { return add_scaled(acc, x, 1.0f, 0, n); }

uint32_t xsum_add_scaled(lr_xs *acc, const float *x, float s, int64_t n) {
  return add_scaled(acc, x, s, 1, n);
}

uint32_t xsum_add_d(lr_xs *acc, double x) {
  // As conv1 (a double's 53 significant bits: the first two steps are exact,
  // the last truncates)
  uint32_t bad = 0;
  int64_t lo, mid, hi;
  conv1(&lo, &mid, &hi, &bad, x);
  acc->lo += lo;
  acc->mid += mid;
  acc->hi += hi;
  return bad;
}

void xsum_merge(lr_xs *restrict dst, const lr_xs *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    dst[i].lo += src[i].lo;
    dst[i].mid += src[i].mid;
    dst[i].hi += src[i].hi;
  }
}

double xsum_value(lr_xs a) {
  const __int128 X = (__int128)a.hi * ((__int128)1 << 64) + (__int128)a.mid * ((__int128)1 << 32) +
                     (__int128)a.lo;
  return (double)X * 0x1p-64;
}

void xsum_to_float(float *out, const lr_xs *acc, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)xsum_value(acc[i]);
}
