// xsum.h: exact, order-independent sums of floats, the other half (with the
// canonical GEMM of gemm.h) of bitwise-reproducible training: every sum that
// runs over examples (parameter and item-row gradients, loss totals, the
// cross-entropy's sums over the catalog, evaluation metrics) is kept here,
// so its bits do not depend on how the examples were cut into ranks,
// micro-batches or threads.
//
// An accumulator element is three int64 limbs holding the fixed-point value
//     value = (hi * 2^64 + mid * 2^32 + lo) * 2^-64,
// i.e. hi is the integer part and mid, lo the two 32-bit halves of the
// fraction. Adding a float x truncates it toward zero to the 2^-64 grid
// (every float with |x| >= 2^-41 is taken exactly, smaller ones lose their
// low bits, those below 2^-64 add nothing), splits the integer into its
// integer part and two 32-bit fraction words, and adds them to the limbs:
// integer additions, so any order or grouping of the same terms gives the
// same limbs, and limbs from threads or ranks merge exactly (an MPI_SUM
// over int64).
//
// Limits: a term must be finite with |x| < 2^40 (LR_XS_TERM_MAX); a term
// outside that adds nothing and makes the call return nonzero (callers
// report it as a diverging run). The limbs cannot overflow for up to 2^23
// terms of that size per element (2^31 terms of any size for mid and lo):
// the value range is |value| < 2^63. Conversion back to float rounds the
// exact value once to double and once to float (deterministic, within one
// float ulp).
//
// All functions are Local and cannot fail.
#ifndef LR_XSUM_H
#define LR_XSUM_H

#include <stdint.h>

typedef struct {
  int64_t lo, mid, hi;
} lr_xs;

#define LR_XS_TERM_MAX 0x1p40
#define LR_XS_LIMBS 3 // int64 limbs per element (for MPI and byte counts)

// a == b, limb by limb (the same exact value). Cannot fail.
static inline int xsum_eq(lr_xs a, lr_xs b) { return a.lo == b.lo && a.mid == b.mid && a.hi == b.hi; }
// a == 0. Cannot fail.
static inline int xsum_is_zero(lr_xs a) { return !(a.lo | a.mid | a.hi); }

// acc[i] += x[i] for i < n. Returns 0, or nonzero if some x[i] was
// non-finite or |x[i]| >= LR_XS_TERM_MAX (that term added nothing).
uint32_t xsum_add(lr_xs *acc, const float *x, int64_t n);
// acc[i] += (float)(s * x[i]) (the product rounded to float first).
uint32_t xsum_add_scaled(lr_xs *acc, const float *x, float s, int64_t n);
// acc (n,D) += the sum over rows r < R of the outer product of
// G[r*ldg .. +n) and H[r*ldh .. +D) (each element fl(g_rv h_rd), zeros of g
// skipped; a zero g_rv adds nothing even where h_r is not finite). The terms
// of the R rows meet acc's memory once.
uint32_t xsum_add_outer_rows(lr_xs *acc, const float *G, int64_t ldg, const float *H,
                             int64_t ldh, int64_t R, int64_t n, int64_t D);
// acc[i] += x[0][i] + ... + x[k-1][i], every term exact: k calls of
// xsum_add in one pass over acc (the same limbs).
uint32_t xsum_add_many(lr_xs *acc, const float *const *x, int k, int64_t n);
// acc += x for one double (truncated to the grid like a float; |x| < 2^40).
uint32_t xsum_add_d(lr_xs *acc, double x);
// dst[i] += src[i] (limb-wise; exact). dst and src must not overlap.
void xsum_merge(lr_xs *restrict dst, const lr_xs *restrict src, int64_t n);
// The value of a as double (one rounding of the exact value).
double xsum_value(lr_xs a);
// out[i] = (float)xsum_value(acc[i]).
void xsum_to_float(float *out, const lr_xs *acc, int64_t n);

#endif
