// mpi_harness.c: the collective checks of mpi_harness.h.
#include "mpi_harness.h"

#include <stdarg.h> // va_list
#include <stdint.h> // int64_t
#include <stdio.h>  // printf, fprintf, vsnprintf

#include "comm.h" // dist_init, dist_allreduce_*, dist_log0, dist_rank
#include "lr.h"

static int g_fail; // failed checks (the same count on every rank)

int mt_init(int *argc, char ***argv) {
  if (dist_init(argc, argv) == LR_OK) return 0;
  fprintf(stderr, "dist_init: %s\n", lr_error_msg());
  return 1;
}

// Collective: every rank passes its own verdict ok; rank 0 prints
// "name: PASSED/FAILED" for all ranks, a failing rank adds
// "[rank r] FAILED name: detail".
static void report(int ok, const char *detail, const char *name) {
  if (!ok) printf("[rank %d] FAILED %s%s%s\n", dist_rank(), name, *detail ? ": " : "", detail);
  int64_t bad = !ok;
  if (dist_allreduce_sum_i64(&bad, 1) != LR_OK) {
    printf("[rank %d] FAILED %s: %s\n", dist_rank(), name, lr_error_msg());
    bad = 1;
  }
  if (bad) g_fail++;
  dist_log0("%s: %s\n", name, bad ? "FAILED" : "PASSED");
  fflush(stdout);
}

void mt_check(int ok, const char *fmt, ...) {
  char name[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  report(ok, "", name);
}

void mt_close(double err, double tol, const char *fmt, ...) {
  char what[400], name[512], detail[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  double e = err == err ? err : 1e300;
  if (dist_allreduce_max_d(&e, 1) != LR_OK) e = 1e300;
  snprintf(name, sizeof name, "%s (max rel err %.3g, tol %.1g)", what, e, tol);
  snprintf(detail, sizeof detail, "rel err %.3g on this rank", err);
  report(err <= tol, detail, name);
}

int mt_done(const char *prog) {
  int64_t fails = g_fail;
  if (dist_allreduce_max_i64(&fails, 1) != LR_OK) fails = 1;
  dist_log0("%s (%d ranks): %s\n", prog, dist_size(), fails ? "FAILED" : "PASSED");
  dist_finalize();
  return fails ? 1 : 0;
}
