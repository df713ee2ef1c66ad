// vmath.h: float exp and erf evaluated four lanes at a time with GCC/Clang
// vector extensions (no -ffast-math, no ISA flags; glibc's expf/erff are
// scalar calls here), for the GELU of the float training path. The double
// instantiation keeps libm.
//
//   exp (x <= 0): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, degree-7
//                 Taylor polynomial of e^r (truncation < 5e-9), 2^k built in
//                 the exponent bits; x clamped to [-87, 0] (e^-87 ~ 1.6e-38).
//   erf:          Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5)
//                 e^{-x^2}, t = 1 / (1 + p|x|), odd extension; absolute error
//                 < 1.5e-7 in exact arithmetic, < 7e-7 measured in float
//                 (tests/test_vmath.c); GELU's 0.5 x (1 + erf) turns it into a
//                 relative error of at most that size.
#ifndef LR_VMATH_H
#define LR_VMATH_H

#include <stdint.h>
#include <string.h> // memcpy

typedef float lr_v4f __attribute__((vector_size(16)));
typedef int32_t lr_v4i __attribute__((vector_size(16)));

// e^x for x <= 0 (larger x are treated as 0). Cannot fail.
static inline lr_v4f lr_exp4_neg(lr_v4f x) {
  lr_v4f lo = (lr_v4f){0} - 87.0f;
  lr_v4i below = x < lo, above = x > 0.0f;                   // comparison masks: -1 / 0
  x = (lr_v4f)(((lr_v4i)x & ~below) | ((lr_v4i)lo & below)); // max(x, -87)
  x = (lr_v4f)((lr_v4i)x & ~above);                          // min(x, 0)
  lr_v4f k = (x * 1.44269504f + 12582912.0f) - 12582912.0f; // round to nearest integer
  lr_v4f r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
  lr_v4f p = 1.0f / 5040.0f + r * 0.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  lr_v4f two_k = (lr_v4f)((__builtin_convertvector(k, lr_v4i) + 127) << 23);
  return p * two_k;
}

// erf(x). Cannot fail.
static inline lr_v4f lr_erf4(lr_v4f x) {
  lr_v4i sign = (lr_v4i)x & (int32_t)0x80000000u;
  lr_v4f a = (lr_v4f)((lr_v4i)x & 0x7fffffff);
  lr_v4f t = 1.0f / (1.0f + 0.3275911f * a);
  lr_v4f p = 1.061405429f + t * 0.0f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  lr_v4f y = 1.0f - p * t * lr_exp4_neg(-(a * a));
  return (lr_v4f)((lr_v4i)y | sign);
}

// Scalar forms (one lane used), for tests and odd ends.
static inline float lr_erff_fast(float x) { return lr_erf4((lr_v4f){x, 0, 0, 0})[0]; }
static inline float lr_expf_fast(float x) {
  // e^x = (e^{x/2})^2 extends the x <= 0 kernel to x <= 87 without overflow
  // handling of its own; exact enough for tests of the kernel.
  if (x <= 0.0f) return lr_exp4_neg((lr_v4f){x, 0, 0, 0})[0];
  x = x > 87.0f ? 87.0f : x;
  float h = 1.0f / lr_exp4_neg((lr_v4f){-x * 0.5f, 0, 0, 0})[0];
  return h * h;
}

// out (n) = gelu(in) = 0.5 x (1 + erf(x / sqrt 2)). Cannot fail.
static inline void lr_gelu4_forward(float *out, const float *in, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) {
    lr_v4f x = {0, 0, 0, 0};
    int64_t m = n - i < 4 ? n - i : 4;
    memcpy(&x, in + i, (size_t)m * sizeof(float));
    lr_v4f y = 0.5f * x * (1.0f + lr_erf4(x * 0.70710678118654752f));
    memcpy(out + i, &y, (size_t)m * sizeof(float));
  }
}

// din (n) += dout * gelu'(in), gelu'(x) = Phi(x) + x phi(x). Cannot fail.
static inline void lr_gelu4_backward(float *din, const float *dout, const float *in, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) {
    lr_v4f x = {0, 0, 0, 0}, g = {0, 0, 0, 0}, d = {0, 0, 0, 0};
    int64_t m = n - i < 4 ? n - i : 4;
    memcpy(&x, in + i, (size_t)m * sizeof(float));
    memcpy(&g, dout + i, (size_t)m * sizeof(float));
    memcpy(&d, din + i, (size_t)m * sizeof(float));
    lr_v4f cdf = 0.5f * (1.0f + lr_erf4(x * 0.70710678118654752f));
    lr_v4f pdf = 0.3989422804014327f * lr_exp4_neg(-0.5f * x * x);
    d += g * (cdf + x * pdf);
    memcpy(din + i, &d, (size_t)m * sizeof(float));
  }
}

#endif
