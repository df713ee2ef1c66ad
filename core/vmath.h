// vmath.h: float exp and erf evaluated LR_VL = 16 lanes at a time with
// GCC/Clang vector extensions (no -ffast-math, no ISA flags: the compiler
// lowers a 16-lane vector to whatever the target has, and the GELU loops are
// built for AVX-512 and AVX2 too, picked at load time; glibc's expf/erff are
// scalar calls here), for the GELU of the float training path. The double
// instantiation keeps libm.
//
//   exp (x <= 0): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-7
//                 Taylor polynomial of e^r - 1 (truncation < 2e-8), 2^k built
//                 in the exponent bits; x clamped to [-87, 0] (e^-87 ~ 1.6e-38).
//                 The attention's elu maps use the same kernel (lr_exp_parts).
//   erf:          Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5)
//                 e^{-x^2}, t = 1 / (1 + p|x|), odd extension; absolute error
//                 < 1.5e-7 in exact arithmetic, < 7e-7 measured in float
//                 (tests/test_vmath.c); GELU's 0.5 x (1 + erf) turns it into a
//                 relative error of at most that size.
#ifndef LR_VMATH_H
#define LR_VMATH_H

#include <stdint.h>
#include <string.h> // memcpy

// The 16-lane helpers below are always inlined, so no vector crosses a
// translation unit's ABI: GCC's note about AVX-512 argument passing is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#define LR_VL 16
typedef float lr_vf __attribute__((vector_size(4 * LR_VL)));
typedef int32_t lr_vi __attribute__((vector_size(4 * LR_VL)));

// Hot float loops are compiled for these targets and the best one the CPU
// has is chosen at load time (GCC function multi-versioning, x86-64 only;
// LR_NO_CLONES turns it off).
#if defined(__GNUC__) && !defined(__clang__) && !defined(LR_NO_CLONES) && defined(__x86_64__)
#define LR_HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LR_HOT_CLONES
#endif

// Lane masks (-1 where true, else 0) of a < b. Compared as two 8-lane
// halves: GCC 12 evaluates a 16-lane comparison lane by lane in scalar code
// when the target has no 512-bit vectors (the AVX2 and baseline clones);
// halves stay in vector registers there and fuse back into one compare
// with AVX-512. Every vector comparison of the hot loops goes through here.
typedef float lr_vf8_ __attribute__((vector_size(32)));
typedef int32_t lr_vi8_ __attribute__((vector_size(32)));
__attribute__((always_inline)) static inline lr_vi lr_vlt(lr_vf a, lr_vf b) {
  lr_vf8_ al = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7);
  lr_vf8_ ah = __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
  lr_vf8_ bl = __builtin_shufflevector(b, b, 0, 1, 2, 3, 4, 5, 6, 7);
  lr_vf8_ bh = __builtin_shufflevector(b, b, 8, 9, 10, 11, 12, 13, 14, 15);
  lr_vi8_ l = al < bl, h = ah < bh;
  return __builtin_shufflevector(l, h, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// e^x = 2^k (1 + q) for x clamped to [-87, 0] (a NaN gives q = 0, k = 0:
// callers that must keep NaN add 0*x): x = k ln2 + r, |r| <= ln2/2
// (Cody-Waite split of ln2), q = expm1(r) by its degree-7 Taylor polynomial
// (truncation < 2e-8 relative), 2^k built in the exponent bits. Returns q,
// 2^k in *two_k. Keeping q apart lets elu's e^x - 1 = 2^k q + (2^k - 1)
// stay exact near 0. Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_exp_parts(lr_vf x, lr_vf *two_k) {
  const lr_vf zero = {0}, lo = zero - 87.0f;
  lr_vi neg = lr_vlt(x, zero), below = lr_vlt(x, lo);
  x = (lr_vf)((lr_vi)x & neg);                             // min(x, 0); a NaN: 0
  x = (lr_vf)(((lr_vi)x & ~below) | ((lr_vi)lo & below)); // max(x, -87)
  lr_vf k = (x * 1.44269504f + 12582912.0f) - 12582912.0f; // round to nearest integer
  lr_vf r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  lr_vf q = 0.0001984127f + r * 0.0f;
  q = q * r + 0.0013888889f;
  q = q * r + 0.008333334f;
  q = q * r + 0.041666668f;
  q = q * r + 0.16666667f;
  q = q * r + 0.5f;
  q = r + r * r * q;
  *two_k = (lr_vf)((__builtin_convertvector(k, lr_vi) + 127) << 23);
  return q;
}

// e^x for x <= 0 (larger x are treated as 0). Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_expv_neg(lr_vf x) {
  lr_vf two_k, q = lr_exp_parts(x, &two_k);
  return two_k * q + two_k;
}

// erf(x), with e^{-x^2} (its exponential) in *e. Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_erfv_e(lr_vf x, lr_vf *e) {
  lr_vi sign = (lr_vi)x & (int32_t)0x80000000u;
  lr_vf a = (lr_vf)((lr_vi)x & 0x7fffffff);
  lr_vf t = 1.0f / (1.0f + 0.3275911f * a);
  lr_vf p = 1.061405429f + t * 0.0f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  *e = lr_expv_neg(-(a * a));
  lr_vf y = 1.0f - p * t * *e;
  return (lr_vf)((lr_vi)y | sign);
}

// erf(x). Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_erfv(lr_vf x) {
  lr_vf e;
  return lr_erfv_e(x, &e);
}

// Scalar forms (one lane used), for tests and odd ends.
static inline float lr_erff_fast(float x) { return lr_erfv((lr_vf){x})[0]; }
static inline float lr_expf_fast(float x) {
  // e^x = (e^{x/2})^2 extends the x <= 0 kernel to x <= 87 without overflow
  // handling of its own; exact enough for tests of the kernel.
  if (x <= 0.0f) return lr_expv_neg((lr_vf){x})[0];
  x = x > 87.0f ? 87.0f : x;
  float h = 1.0f / lr_expv_neg((lr_vf){-x * 0.5f})[0];
  return h * h;
}

// gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), and gelu'(x) = Phi(x) +
// x phi(x) in *grad: erf's e^{-x^2/2} is phi's too. Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_gelu_pair_v(lr_vf x, lr_vf *grad) {
  lr_vf e, cdf = 0.5f * (1.0f + lr_erfv_e(x * 0.70710678118654752f, &e));
  *grad = cdf + x * (0.3989422804014327f * e);
  return x * cdf;
}

// gelu(x) alone (the unused derivative folds away). Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_gelu_v(lr_vf x) {
  lr_vf g;
  return lr_gelu_pair_v(x, &g);
}

// gelu'(x) alone. Cannot fail.
__attribute__((always_inline)) static inline lr_vf lr_gelu_grad_v(lr_vf x) {
  lr_vf g;
  lr_gelu_pair_v(x, &g);
  return g;
}

#endif
