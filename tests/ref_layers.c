// ref_layers.c: finite differences and small helpers of ref_layers.h.
#include "ref_layers.h"

#include <stdio.h>  // fprintf
#include <stdlib.h> // calloc, exit

void t_fd_grad(double *fd, t_scalar_fn f, void *ctx, double *x, int64_t n, double h) {
  for (int64_t i = 0; i < n; i++) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double p1 = f(ctx);
    x[i] = x0 - h;
    const double m1 = f(ctx);
    x[i] = x0 + 2 * h;
    const double p2 = f(ctx);
    x[i] = x0 - 2 * h;
    const double m2 = f(ctx);
    x[i] = x0;
    fd[i] = (8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h);
  }
}

double t_dot_d(const double *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

double t_dot_fd(const float *a, const double *b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double)a[i] * b[i];
  return s;
}

void t_to_f(float *dst, const double *src, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = (float)src[i];
}

void t_to_d(double *dst, const float *src, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dst[i] = src[i];
}

void *t_alloc(int64_t n, int64_t elem_bytes) {
  void *p = calloc((size_t)(n > 0 ? n : 1), (size_t)elem_bytes);
  if (!p) {
    fprintf(stderr, "test: out of memory (%lld x %lld bytes)\n", (long long)n,
            (long long)elem_bytes);
    exit(2);
  }
  return p;
}
