// ref_util.c: the test harness behind test_util.h.
#include <stdarg.h>
#include <stdio.h>

#include "rng.h"
#include "test_util.h"

int lr_test_failures;
static int g_passed;

void t_check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf(": %s\n", ok ? "PASSED" : "FAILED");
  if (ok) g_passed++;
  else lr_test_failures++;
  fflush(stdout);
}

static double rel_report(double maxdiff, double maxref, double tol, const char *name) {
  double floor = 1e-30;
  double rel = maxdiff / (maxref > floor ? maxref : floor);
  if (maxref == 0.0 && maxdiff == 0.0) rel = 0.0;
  t_check(rel <= tol && rel == rel, "%s (rel err %.3g, tol %.1g)", name, rel, tol);
  return rel;
}

double t_close_f(const float *a, const double *b, int64_t n, double tol, const char *name) {
  double md = 0, mr = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= md)) md = d; // catches NaN
    if (fabs(b[i]) > mr) mr = fabs(b[i]);
  }
  return rel_report(md, mr, tol, name);
}

double t_close_d(const double *a, const double *b, int64_t n, double tol, const char *name) {
  double md = 0, mr = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(a[i] - b[i]);
    if (!(d <= md)) md = d;
    if (fabs(b[i]) > mr) mr = fabs(b[i]);
  }
  return rel_report(md, mr, tol, name);
}

void t_fill_f(float *x, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = 0; i < n; i++) {
    lr_rng4 r = lr_philox(seed, 99, (uint32_t)i, (uint32_t)(i >> 32), 0, 0);
    x[i] = scale * (2.0f * lr_u01(r.v[0]) - 1.0f);
  }
}

void t_fill_d(double *x, int64_t n, uint64_t seed, double scale) {
  for (int64_t i = 0; i < n; i++) {
    lr_rng4 r = lr_philox(seed, 99, (uint32_t)i, (uint32_t)(i >> 32), 0, 0);
    x[i] = scale * (2.0 * lr_u01d(r.v[0], r.v[1]) - 1.0);
  }
}

int t_done(void) {
  printf("%d passed, %d failed\n", g_passed, lr_test_failures);
  return lr_test_failures ? 1 : 0;
}
