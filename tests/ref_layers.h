// ref_layers.h: finite-difference and conversion helpers shared by the layer,
// loss and optimizer tests (gradients are checked in double against
// central differences, with a relative metric).
#ifndef LR_REF_LAYERS_H
#define LR_REF_LAYERS_H

#include <stdint.h>

// A scalar of the current contents of the buffers behind ctx (in double).
typedef double (*t_scalar_fn)(void *ctx);

// fd (n) = d f / d x[i] by the 4-point central difference
// (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h, truncation error O(h^4).
// x is perturbed in place and restored exactly. Cannot fail.
void t_fd_grad(double *fd, t_scalar_fn f, void *ctx, double *x, int64_t n, double h);

// sum_i a[i] * b[i] in double.
double t_dot_d(const double *a, const double *b, int64_t n);
double t_dot_fd(const float *a, const double *b, int64_t n);
// Element conversions.
void t_to_f(float *dst, const double *src, int64_t n);
void t_to_d(double *dst, const float *src, int64_t n);
// Checked calloc for tests (aborts the test binary on failure).
void *t_alloc(int64_t n, int64_t elem_bytes);

#endif
