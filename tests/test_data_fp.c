// test_data_fp.c: data_fingerprint (io/data_fp.c). The same data gives the
// same fingerprint however it was loaded (generated, or written and read
// back as a binary dataset); it changes when one interaction changes, when
// a user's interactions are reordered (same users, items and counts: the
// "reversed timestamps" case of a resume onto changed data), when an
// original id changes, and with the data's counts; it is fast enough to run
// at every start-up (20M interactions well under a second).
#include <stdio.h>  // snprintf, remove
#include <stdlib.h> // getenv
#include <time.h>   // clock_gettime
#include <unistd.h> // getpid

#include "dataset.h"
#include "lr.h"
#include "test_util.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static lr_data_fp fp_of(const lr_dataset *ds) {
  lr_data_fp f;
  data_fingerprint(ds, &f);
  return f;
}

static int same_fp(lr_data_fp a, lr_data_fp b) { return data_fp_equal(&a, &b); }

int main(void) {
  lr_synth_opts o = {.users = 500, .items = 200, .mean_len = 20, .zipf = 1.0, .seed = 3};
  lr_dataset a, b;
  t_check(data_synthesize(&a, &o) == LR_OK && data_synthesize(&b, &o) == LR_OK,
          "fp: two datasets generated");
  lr_data_fp fa = fp_of(&a);
  t_check(same_fp(fa, fp_of(&b)), "fp: the same data gives the same fingerprint (%016llx)",
          (unsigned long long)fa.hash);
  t_check(fa.n_users == 500 && fa.n_items == 200 && fa.n_inter == a.n_inter,
          "fp: the counts are the dataset's");

  // Round trip through the binary format.
  char path[256];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/lr_fp_%d.bin", tmp ? tmp : "/tmp", (int)getpid());
  lr_dataset r;
  int rc = data_write_binary(&a, path);
  if (rc == LR_OK) rc = data_read_binary(&r, path);
  remove(path);
  t_check(rc == LR_OK && same_fp(fa, fp_of(&r)), "fp: written and read back: the same fingerprint");
  if (rc == LR_OK) dataset_free(&r);

  // One interaction changed.
  int32_t keep = b.items[7];
  b.items[7] = b.items[7] % (int32_t)b.n_items + 1;
  t_check(!same_fp(fa, fp_of(&b)), "fp: one changed interaction changes it");
  b.items[7] = keep;
  // Every user's interactions in reverse order: same users, items, counts.
  for (int64_t u = 0; u < b.n_users; u++)
    for (int64_t i = b.offsets[u], j = b.offsets[u + 1] - 1; i < j; i++, j--) {
      int32_t x = b.items[i];
      b.items[i] = b.items[j], b.items[j] = x;
    }
  lr_data_fp fr = fp_of(&b);
  t_check(!same_fp(fa, fr) && fr.n_users == fa.n_users && fr.n_items == fa.n_items &&
              fr.n_inter == fa.n_inter,
          "fp: reversed histories (same counts) change the hash only");
  for (int64_t u = 0; u < b.n_users; u++) // back
    for (int64_t i = b.offsets[u], j = b.offsets[u + 1] - 1; i < j; i++, j--) {
      int32_t x = b.items[i];
      b.items[i] = b.items[j], b.items[j] = x;
    }
  t_check(same_fp(fa, fp_of(&b)), "fp: restored data: the same fingerprint again");
  b.user_orig[3] += 1000;
  t_check(!same_fp(fa, fp_of(&b)), "fp: another original user id changes it");
  b.user_orig[3] -= 1000;
  b.item_orig[5] += 1000;
  t_check(!same_fp(fa, fp_of(&b)), "fp: another original item id changes it");
  b.item_orig[5] -= 1000;
  // Another seed: other data.
  lr_dataset c;
  o.seed = 4;
  t_check(data_synthesize(&c, &o) == LR_OK && !same_fp(fa, fp_of(&c)),
          "fp: another generator seed: another fingerprint");
  dataset_free(&c);

  // Speed at the ML-20M size.
  lr_synth_opts big = {.users = 138493, .items = 26744, .mean_len = 144.4, .zipf = 1.0, .seed = 1};
  if (data_synthesize(&c, &big) == LR_OK) {
    double t0 = now_s();
    lr_data_fp fb = fp_of(&c);
    double s = now_s() - t0;
    t_check(s < 1.0, "fp: %lld interactions in %.3f s (hash %016llx)", (long long)fb.n_inter, s,
            (unsigned long long)fb.hash);
    dataset_free(&c);
  }
  dataset_free(&a);
  dataset_free(&b);
  return t_done();
}
