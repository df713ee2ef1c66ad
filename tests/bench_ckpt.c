// bench_ckpt.c: compression ratio and write/read throughput of one
// checkpoint shard (io/ckpt.h) holding an item table with its Adam moments,
// (rows, D) floats x 3 arrays, at zstd levels 1, 3 and 9. Built, not run by
// ctest. Usage: bench_ckpt [dir (default /tmp)] [rows (100000)] [D (64)]
//
// Two contents, because the ratio depends on them:
//   dense   every row updated: w ~ N(0, 0.05), m ~ N(0, 1e-3), v = m^2-ish
//           (full-entropy mantissas: close to the worst case);
//   lazy    as dense, but the m and v of the rows that were never looked up
//           are exactly 0, as lazy Adam leaves them (here: 60% of the rows,
//           what a Zipf(1) item popularity leaves untouched after a short run).
// Throughput is of raw (uncompressed) bytes: write = create..fsync of the
// directory; read = the full streaming check and copy-out, page cache warm.
#include <stdio.h>  // printf
#include <stdlib.h> // malloc, mkdtemp
#include <string.h> // memcmp
#include <time.h>   // clock_gettime
#include <unistd.h> // unlink, rmdir

#include "ckpt.h"
#include "lr.h"
#include "rng.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(float *w, float *m, float *v, int64_t rows, int64_t D, double touched) {
  for (int64_t r = 0; r < rows; r++) {
    lr_rng4 u = lr_philox(42, 99, (uint32_t)r, 0, 0, 1);
    int live = lr_u01(u.v[0]) < touched;
    for (int64_t j = 0; j < D; j++) {
      int64_t i = r * D + j;
      lr_rng4 a = lr_philox(42, 99, (uint32_t)i, (uint32_t)(i >> 32), 0, 0);
      w[i] = (float)(0.05 * lr_normal(a));
      float g = (float)(1e-3 * lr_normal((lr_rng4){{a.v[2], a.v[3], a.v[0], a.v[1]}}));
      m[i] = live ? g : 0.0f;
      v[i] = live ? g * g * 0.5f + 1e-9f : 0.0f;
    }
  }
}

int main(int argc, char **argv) {
  const char *base = argc > 1 ? argv[1] : "/tmp";
  int64_t rows = argc > 2 ? atoll(argv[2]) : 100000, D = argc > 3 ? atoll(argv[3]) : 64;
  char dir[512];
  snprintf(dir, sizeof dir, "%s/lr_bench_ckpt_XXXXXX", base);
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  size_t n = (size_t)(rows * D);
  float *a[3], *b[3];
  for (int k = 0; k < 3; k++) {
    a[k] = malloc(n * sizeof(float));
    b[k] = malloc(n * sizeof(float));
    if (!a[k] || !b[k]) return 1;
  }
  const struct {
    const char *name;
    double touched;
  } contents[2] = {{"dense", 1.0}, {"lazy", 0.4}};
  printf("shard: %lld rows x %lld floats x 3 arrays (w, m, v) = %.1f MB raw, in %s\n",
         (long long)rows, (long long)D, 3.0 * (double)n * 4 / 1e6, base);
  printf("%-6s %5s %8s %10s %10s %12s %10s\n", "data", "level", "ratio", "MB", "write MB/s",
         "(zstd MB/s)", "read MB/s");
  int rc = 0;
  for (int c = 0; c < 2; c++) {
    fill(a[0], a[1], a[2], rows, D, contents[c].touched);
    const int levels[3] = {1, 3, 9};
    for (int l = 0; l < 3; l++) {
      ckpt_shard_desc d = {CKPT_KIND_ROWS, 3, 0, rows, D, 0, "items"};
      ckpt_file_info info;
      const float *const ca[3] = {a[0], a[1], a[2]};
      if (ckpt_shard_write(dir, "items-r0000.zst", &d, ca, levels[l], &info) != LR_OK) {
        fprintf(stderr, "write: %s\n", lr_error_msg());
        return 1;
      }
      double t0 = now();
      if (ckpt_shard_read(dir, &info.entry, 0, rows, b) != LR_OK) {
        fprintf(stderr, "read: %s\n", lr_error_msg());
        return 1;
      }
      double tr = now() - t0;
      for (int k = 0; k < 3; k++)
        rc |= memcmp(a[k], b[k], n * sizeof(float)) != 0;
      double raw = (double)info.raw_bytes;
      printf("%-6s %5d %8.3f %10.1f %10.0f %12.0f %10.0f\n", contents[c].name, levels[l],
             raw / (double)info.entry.bytes, (double)info.entry.bytes / 1e6,
             raw / 1e6 / info.seconds, raw / 1e6 / info.compress_seconds, raw / 1e6 / tr);
    }
  }
  char p[600];
  snprintf(p, sizeof p, "%s/items-r0000.zst", dir);
  unlink(p);
  rmdir(dir);
  for (int k = 0; k < 3; k++)
    free(a[k]), free(b[k]);
  if (rc) fprintf(stderr, "read-back mismatch\n");
  return rc;
}
