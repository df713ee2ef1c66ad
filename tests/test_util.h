// test_util.h: the tiny test harness every test binary uses. A check prints
// "name: PASSED/FAILED (maxdiff ...)" and a failed check makes main return 1.
#ifndef LR_TEST_UTIL_H
#define LR_TEST_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int lr_test_failures;

// Report a boolean check.
void t_check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Report a comparison: relative error max|a-b| / max(max|b|, floor) <= tol.
// Returns the relative error.
double t_close_f(const float *a, const double *b, int64_t n, double tol, const char *name);
double t_close_d(const double *a, const double *b, int64_t n, double tol, const char *name);
// Deterministic test data: uniform in [-scale, scale) keyed by (seed, i).
void t_fill_f(float *x, int64_t n, uint64_t seed, float scale);
void t_fill_d(double *x, int64_t n, uint64_t seed, double scale);
// Print the summary "N passed, M failed" and return the exit code.
int t_done(void);

// Test files: the whole of path (NUL-terminated beyond *n; caller frees;
// NULL and *n = 0 if it cannot be read), path := b[0..n) (a failure is a
// failed check), and rm -rf of a test's directory.
// t_tmpdir makes a fresh directory /tmp/<tag>_XXXXXX for the test's files
// (NULL if it cannot); t_path gives name inside it (one of 8 rotating
// buffers: valid for the next 7 calls).
const char *t_tmpdir(const char *tag);
const char *t_path(const char *name);
unsigned char *t_read_file(const char *path, size_t *n);
void t_write_file(const char *path, const void *b, size_t n);
void t_rm_tree(const char *dir);

#endif
