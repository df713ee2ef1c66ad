// test_io_real.c: the real datasets of LR_SHARED_DATA (see its README for
// the counts, measured there with awk). Each check is skipped, with the
// reason printed, when its file is absent.
//   ml-100k/u.data      movielens (tab): 943 users, 1682 items, 100000
//                       interactions; 55375 ratings >= 4
//   ml-1m/ml-1m.txt.gz  sasrec: 6040 users, 3416 items, 999611 interactions,
//                       already dense ids, already a 5-core
//   amazon-beauty/Beauty.pairs.txt  sasrec: 22363 users, 12101 items, 198502
// plus a binary round trip of ML-1M.
#define _GNU_SOURCE // mkdtemp
#include <stdio.h>  // printf
#include <stdlib.h> // mkdtemp
#include <string.h> // memcmp
#include <time.h>   // clock_gettime
#include <unistd.h> // access, unlink, rmdir

#include "dataset.h"
#include "lr.h"
#include "test_util.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int present(const char *path) {
  if (access(path, R_OK) == 0) return 1;
  printf("SKIPPED: %s is absent (real data lives in shared/data, see its README)\n", path);
  return 0;
}

// Load and check the counts; leaves ds loaded on success.
static int load_counts(lr_dataset *ds, const char *path, lr_data_format fmt, double min_rating,
                       int64_t kcore, int64_t U, int64_t I, int64_t n, const char *name) {
  lr_data_opts o = {.path = path, .format = fmt, .min_rating = min_rating, .kcore = kcore};
  lr_error_clear();
  double t0 = now_s();
  int rc = data_load(ds, &o);
  double dt = now_s() - t0;
  if (rc) printf("  %s\n", lr_error_msg());
  int ok =
      rc == LR_OK && (U < 0 || ds->n_users == U) && (I < 0 || ds->n_items == I) && ds->n_inter == n;
  t_check(ok, "real: %s: %lld users, %lld items, %lld interactions (%.2f s)", name,
          (long long)ds->n_users, (long long)ds->n_items, (long long)ds->n_inter, dt);
  return ok;
}

// Ids 1..n stay themselves when every id is present: users u -> u+1, items i -> i.
static int identity_maps(const lr_dataset *ds) {
  for (int64_t u = 0; u < ds->n_users; u++)
    if (ds->user_orig[u] != u + 1) return 0;
  for (int64_t i = 0; i <= ds->n_items; i++)
    if (ds->item_orig[i] != i) return 0;
  return 1;
}

static void test_ml100k(void) {
  const char *p = LR_SHARED_DATA "/ml-100k/u.data";
  if (!present(p)) return;
  lr_dataset ds;
  if (load_counts(&ds, p, LR_FMT_MOVIELENS, 0, 0, 943, 1682, 100000, "ml-100k u.data")) {
    // user 1's first items in time (ties in file order), from
    // `awk -F'\t' '$1==1' u.data | sort -s -t$'\t' -k4,4n | head`
    static const int32_t first[10] = {168, 172, 165, 156, 196, 166, 187, 14, 250, 127};
    t_check(identity_maps(&ds) && !memcmp(ds.items, first, sizeof first) && ds.offsets[1] == 272,
            "real: ml-100k ids kept, user 1 chronological (272 ratings)");
  }
  dataset_free(&ds);
  if (load_counts(&ds, p, LR_FMT_MOVIELENS, 4, 0, -1, -1, 55375, "ml-100k ratings >= 4"))
    dataset_free(&ds);
}

static void test_ml1m(const char *dir) {
  const char *p = LR_SHARED_DATA "/ml-1m/ml-1m.txt.gz";
  if (!present(p)) return;
  lr_dataset ds;
  if (!load_counts(&ds, p, LR_FMT_SASREC, 0, 0, 6040, 3416, 999611, "ml-1m.txt.gz as sasrec")) {
    dataset_free(&ds);
    return;
  }
  // SASRec's user 1 starts with items 1..10 in its file
  static const int32_t first[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  t_check(identity_maps(&ds) && !memcmp(ds.items, first, sizeof first),
          "real: ml-1m ids kept, file order kept");
  lr_dataset k5;
  if (load_counts(&k5, p, LR_FMT_SASREC, 0, 5, 6040, 3416, 999611, "ml-1m 5-core (no change)"))
    dataset_free(&k5);
  char bin[256];
  snprintf(bin, sizeof bin, "%s/ml-1m.lrd", dir);
  double t0 = now_s();
  int rc = data_write_binary(&ds, bin);
  double t1 = now_s();
  lr_dataset back;
  rc = rc ? rc : data_read_binary(&back, bin);
  double t2 = now_s();
  t_check(rc == LR_OK && back.n_inter == ds.n_inter &&
              !memcmp(back.items, ds.items, (size_t)ds.n_inter * 4) &&
              !memcmp(back.offsets, ds.offsets, (size_t)(ds.n_users + 1) * 8),
          "real: ml-1m binary round trip (write %.2f s, read %.2f s)", t1 - t0, t2 - t1);
  if (rc == LR_OK) dataset_free(&back);
  unlink(bin);
  dataset_free(&ds);
}

static void test_beauty(void) {
  const char *p = LR_SHARED_DATA "/amazon-beauty/Beauty.pairs.txt";
  if (!present(p)) return;
  lr_dataset ds;
  if (load_counts(&ds, p, LR_FMT_SASREC, 0, 0, 22363, 12101, 198502, "amazon-beauty pairs"))
    t_check(identity_maps(&ds), "real: amazon-beauty ids kept");
  dataset_free(&ds);
}

int main(void) {
  char dir[] = "/tmp/lr_test_io_real_XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_ml100k();
  test_ml1m(dir);
  test_beauty();
  rmdir(dir);
  return t_done();
}
