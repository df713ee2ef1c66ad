// optim.h: Adam (bias-corrected, decoupled weight decay as AdamW when wd > 0)
// over one flat buffer, its row-wise lazy form for the item table, and
// gradient-norm clipping. All Local; cannot fail.
#ifndef LR_OPTIM_H
#define LR_OPTIM_H

#include <stdint.h>

typedef struct {
  float lr, beta1, beta2, eps, weight_decay;
} lr_adam_cfg;

// One Adam step at step number t (1-based) over n parameters:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + lr*wd*p.
void adam_update(float *p, float *m, float *v, const float *g, int64_t n, lr_adam_cfg c, int64_t t);

// Lazy Adam on the listed rows only: rows[i] is a local row index of the
// table p (n_rows_total, D); grow (n,D) its gradient. Rows not listed keep
// their parameters and moments (the sparse-update semantics of lazy Adam);
// listed rows take the same step as adam_update at global step t (weight
// decay included). rows must be distinct (sum duplicate rows' gradients first).
void adam_update_rows(float *p, float *m, float *v, const float *grow, const int64_t *rows,
                      int64_t n, int64_t D, lr_adam_cfg c, int64_t t);

// Sum of squares of g (double accumulation). Global-norm clipping over
// several buffers (dense arena, item rows, other ranks) adds their sums.
double grad_sumsq(const float *g, int64_t n);
// g *= s.
void grad_scale(float *g, int64_t n, float s);
// The factor that clips a gradient of squared norm sumsq to max_norm
// (PyTorch's clip_grad_norm_): max_norm / (norm + 1e-6) when norm > max_norm,
// else 1; also 1 when max_norm <= 0 (clipping off) or the norm is NaN.
float grad_clip_coef(double sumsq, double max_norm);

#endif
