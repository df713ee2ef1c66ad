// optim.c: Adam / AdamW over one flat buffer, its lazy row-wise form for the
// item table, and the two helpers of global-norm gradient clipping (optim.h).
//
//   m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2
//   p -= lr * m_hat / (sqrt(v_hat) + eps) + lr * wd * p,
//   m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)
// (Kingma & Ba, Alg. 1; weight decay decoupled as AdamW, Loshchilov & Hutter).
// The decay term uses p before the step, as PyTorch's AdamW (p *= 1 - lr wd,
// then the Adam step, which does not depend on p).
#include "optim.h"

#include <math.h> // pow, sqrt, sqrtf

#include "lr.h" // LR_ASSERT

// Step constants shared by every element of one update.
typedef struct {
  float b1, b2, eps, step, rbc2, decay;
} adam_k;

static adam_k adam_consts(lr_adam_cfg c, int64_t t) {
  LR_ASSERT(t >= 1);
  LR_ASSERT(c.beta1 >= 0.0f && c.beta1 < 1.0f && c.beta2 >= 0.0f && c.beta2 < 1.0f);
  const double bc1 = 1.0 - pow((double)c.beta1, (double)t);
  const double bc2 = 1.0 - pow((double)c.beta2, (double)t);
  adam_k k = {c.beta1,
              c.beta2,
              c.eps,
              (float)((double)c.lr / bc1),
              (float)(1.0 / sqrt(bc2)),
              c.lr * c.weight_decay};
  return k;
}

// sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t); lr * m_hat = (lr / (1 - b1^t)) m.
static void adam_span(float *p, float *m, float *v, const float *g, int64_t n, adam_k k) {
  for (int64_t i = 0; i < n; i++) {
    const float gi = g[i];
    const float mi = k.b1 * m[i] + (1.0f - k.b1) * gi;
    const float vi = k.b2 * v[i] + (1.0f - k.b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= k.step * mi / (sqrtf(vi) * k.rbc2 + k.eps) + k.decay * p[i];
  }
}

void adam_update(float *p, float *m, float *v, const float *g, int64_t n, lr_adam_cfg c,
                 int64_t t) {
  adam_span(p, m, v, g, n, adam_consts(c, t));
}

void adam_update_rows(float *p, float *m, float *v, const float *grow, const int64_t *rows,
                      int64_t n, int64_t D, lr_adam_cfg c, int64_t t) {
  const adam_k k = adam_consts(c, t);
  for (int64_t i = 0; i < n; i++) {
    LR_ASSERT(rows[i] >= 0);
    const size_t off = (size_t)rows[i] * (size_t)D;
    adam_span(p + off, m + off, v + off, grow + (size_t)i * (size_t)D, D, k);
  }
}

double grad_sumsq(const float *g, int64_t n) {
  // four partial sums: independent chains the compiler may keep in flight
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += (double)g[i] * g[i];
    s1 += (double)g[i + 1] * g[i + 1];
    s2 += (double)g[i + 2] * g[i + 2];
    s3 += (double)g[i + 3] * g[i + 3];
  }
  for (; i < n; i++)
    s0 += (double)g[i] * g[i];
  return (s0 + s1) + (s2 + s3);
}

void grad_scale(float *g, int64_t n, float s) {
  for (int64_t i = 0; i < n; i++)
    g[i] *= s;
}

float grad_clip_coef(double sumsq, double max_norm) {
  if (!(max_norm > 0.0)) return 1.0f;
  const double norm = sqrt(sumsq);
  if (!(norm > max_norm)) return 1.0f; // also NaN: clipping cannot repair it
  return (float)(max_norm / (norm + 1e-6));
}
