// grela.c: the RecGRELA pieces of grela.h. The logistic function is written
// here per type (float: vmath's exp kernel LR_VL lanes at a time through
// attn_exp_run; double: libm); the rest is grela_impl.inc, instantiated for
// float and for double; DropPath's scale is type-free.
#include "grela.h"

#include <math.h> // pow, cos, sin, exp, fabs

#include "attn_kernels.h" // attn_exp_run, attn_elu_run, attn_elu_grad_run (and _f64)
#include "lr.h"           // LR_ASSERT
#include "rng.h"          // lr_philox, lr_u01, LR_STREAM_DROPOUT

// s = sigmoid(z) for n <= SIG_BLOCK (grela_impl.inc): e^-|z| through the
// exp kernel (its argument is never positive), then 1/(1+e) or e/(1+e).
static void sig_run(float *s, const float *z, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    s[i] = -fabsf(z[i]);
  attn_exp_run(s, s, n);
  for (int64_t i = 0; i < n; i++)
    s[i] = z[i] >= 0 ? 1.0f / (1.0f + s[i]) : s[i] / (1.0f + s[i]);
}

static void sig_run_f64(double *s, const double *z, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double e = exp(-fabs(z[i]));
    s[i] = z[i] >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  }
}

float grela_droppath_scale(uint64_t seed, uint32_t epoch, uint32_t site, uint64_t ex, float p) {
  if (p <= 0.0f) return 1.0f;
  LR_ASSERT(p < 1.0f && site < 256 && epoch < (1u << 24));
  const lr_rng4 r = lr_philox(seed, LR_STREAM_DROPOUT, (uint32_t)ex, (uint32_t)(ex >> 32),
                              epoch << 8 | site, 0xd9a7u);
  return lr_u01(r.v[0]) < p ? 0.0f : 1.0f / (1.0f - p);
}

// clang-format off
#define LR_F64 0
#include "real_begin.inc"
#include "grela_impl.inc"
#include "real_end.inc"
#undef LR_F64

#define LR_F64 1
#include "real_begin.inc"
#include "grela_impl.inc"
#include "real_end.inc"
#undef LR_F64
// clang-format on
