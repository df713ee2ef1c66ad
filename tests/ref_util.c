// ref_util.c: the test harness behind test_util.h.
#define _XOPEN_SOURCE 700 // nftw, mkdtemp
#include <ftw.h>          // nftw
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h> // malloc, mkdtemp

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

static char g_tmpdir[256];

const char *t_tmpdir(const char *tag) {
  snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/%.200s_XXXXXX", tag);
  return mkdtemp(g_tmpdir);
}

const char *t_path(const char *name) {
  static char buf[8][512];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmpdir, name);
  return buf[k];
}

unsigned char *t_read_file(const char *path, size_t *n) {
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = size >= 0 ? malloc((size_t)size + 1) : NULL;
  if (b) {
    *n = fread(b, 1, (size_t)size, f);
    b[*n] = 0;
  }
  fclose(f);
  return b;
}

void t_write_file(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(b, 1, n, f) == n;
  if (f) ok &= fclose(f) == 0;
  if (!ok) t_check(0, "write test file %s", path);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

void t_rm_tree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }
