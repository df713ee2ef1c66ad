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

// acc[0..8) += the limbs of the 8 terms v (as conv1 lane by lane); bad
// lanes (-1 in *bad) add nothing.
__attribute__((always_inline)) static inline void add8(lr_xs *acc, xv8_ *bad, xf8_ v) {
  const xd8_ x = __builtin_convertvector(v, xd8_);
  // |x| < 2^40 on the bits (magnitudes order like integers; inf and NaN
  // lie above): one integer compare (GCC 12 splits double compares into
  // scalar code)
  xv8_ bits;
  memcpy(&bits, &x, sizeof bits);
  const xv8_ ok = (bits & 0x7fffffffffffffffLL) < 0x4270000000000000LL; // 2^40
  *bad |= ~ok;
  // bad lanes convert to whatever the instruction gives and are masked out
  const xv8_ hi = __builtin_convertvector(x, xv8_) & ok;
  const xd8_ f = (x - __builtin_convertvector(hi, xd8_)) * 0x1p32;
  const xv8_ mi = __builtin_convertvector(f, xv8_) & ok;
  const xv8_ lo =
      __builtin_convertvector((f - __builtin_convertvector(mi, xd8_)) * 0x1p32, xv8_) & ok;
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
  for (; i < n; i++) {
    int64_t lo, mid, hi;
    conv1(&lo, &mid, &hi, b, (double)(scaled ? s * x[i] : x[i]));
    acc[i].lo += lo;
    acc[i].mid += mid;
    acc[i].hi += hi;
  }
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

XSUM_CLONES uint32_t xsum_add_outer(lr_xs *acc, const float *g, const float *h, int64_t n,
                                    int64_t D) {
  xv8_ bad = {0};
  uint32_t b = 0;
  for (int64_t v = 0; v < n; v++)
    if (g[v] != 0) add_row(acc + v * D, &bad, &b, h, g[v], 1, D);
  return flags(&bad, b);
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
