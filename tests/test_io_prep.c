// test_io_prep.c: preprocessing in data_load. Hand examples for the rating
// threshold, dedup first/last, k-core, stable chronological order and id
// remapping, then a naive reference (qsort with an explicit file-index
// tie-break, quadratic dedup, one-at-a-time k-core removal) against
// data_load on random files for every combination of the options.
#define _GNU_SOURCE // nftw, mkdtemp
#include <ftw.h>    // nftw
#include <stdio.h>  // fopen, fprintf
#include <stdlib.h> // mkdtemp, qsort
#include <string.h> // memcmp, strstr

#include "dataset.h"
#include "lr.h"
#include "rng.h"
#include "test_util.h"

static char g_dir[64];

static const char *path_of(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

static int load(lr_dataset *ds, const char *path, lr_data_format fmt, double min_rating,
                lr_dedup dd, int64_t k) {
  lr_data_opts o = {.path = path, .format = fmt, .min_rating = min_rating, .dedup = dd, .kcore = k};
  lr_error_clear();
  return data_load(ds, &o);
}

// ds equals the given CSR (items in remapped ids) and maps.
static int same(const lr_dataset *ds, int64_t U, int64_t I, const int64_t *off, const int32_t *it,
                const int64_t *uo, const int64_t *io) {
  if (ds->n_users != U || ds->n_items != I || ds->n_inter != off[U]) return 0;
  return !memcmp(ds->offsets, off, (size_t)(U + 1) * 8) &&
         !memcmp(ds->items, it, (size_t)off[U] * 4) && !memcmp(ds->user_orig, uo, (size_t)U * 8) &&
         !memcmp(ds->item_orig, io, (size_t)(I + 1) * 8);
}

// ---------------------------------------------------------------------------
// hand examples

static void test_threshold(void) {
  const char *p = path_of("thr.dat");
  write_text(p, "1::10::5::1\n1::11::3::2\n1::12::3.5::3\n2::11::4::1\n2::13::1::2\n");
  lr_dataset ds;
  int rc = load(&ds, p, LR_FMT_MOVIELENS, 3.5, LR_DEDUP_NONE, 0);
  // kept: (1,10) (1,12) (2,11); items 10,11,12 -> 1,2,3 (13 only in a dropped line)
  static const int64_t off[3] = {0, 2, 3}, uo[2] = {1, 2}, io[4] = {0, 10, 11, 12};
  static const int32_t it[3] = {1, 3, 2};
  t_check(rc == LR_OK && same(&ds, 2, 3, off, it, uo, io), "prep: min_rating 3.5 keeps >= 3.5");
  dataset_free(&ds);
  rc = load(&ds, p, LR_FMT_MOVIELENS, 0, LR_DEDUP_NONE, 0);
  t_check(rc == LR_OK && ds.n_inter == 5 && ds.n_items == 4, "prep: min_rating 0 keeps all");
  dataset_free(&ds);
  lr_error_clear();
  rc = load(&ds, p, LR_FMT_MOVIELENS, 6, LR_DEDUP_NONE, 0);
  t_check(rc == LR_ERR_DATA && strstr(lr_error_msg(), p), "prep: min_rating above all is a data "
                                                          "error");
}

static void test_dedup(void) {
  // user 1 in time: a(1) b(2) a(3) c(4) b(5), written out of order
  const char *p = path_of("dup.dat");
  write_text(p, "1::300::1::4\n1::100::1::3\n1::100::1::1\n1::200::1::5\n1::200::1::2\n"
                "2::100::1::7\n");
  static const int64_t uo[2] = {1, 2}, io[4] = {0, 100, 200, 300};
  lr_dataset ds;
  int rc = load(&ds, p, LR_FMT_MOVIELENS, 0, LR_DEDUP_NONE, 0);
  static const int64_t off0[3] = {0, 5, 6};
  static const int32_t it0[6] = {1, 2, 1, 3, 2, 1};
  t_check(rc == LR_OK && same(&ds, 2, 3, off0, it0, uo, io), "prep: dedup none keeps repeats");
  dataset_free(&ds);
  rc = load(&ds, p, LR_FMT_MOVIELENS, 0, LR_DEDUP_FIRST, 0);
  static const int64_t off1[3] = {0, 3, 4};
  static const int32_t it1[4] = {1, 2, 3, 1};
  t_check(rc == LR_OK && same(&ds, 2, 3, off1, it1, uo, io), "prep: dedup first");
  dataset_free(&ds);
  rc = load(&ds, p, LR_FMT_MOVIELENS, 0, LR_DEDUP_LAST, 0);
  static const int32_t it2[4] = {1, 3, 2, 1}; // a(3) c(4) b(5)
  t_check(rc == LR_OK && same(&ds, 2, 3, off1, it2, uo, io), "prep: dedup last");
  dataset_free(&ds);
}

static void test_kcore(void) {
  // 2-core: user 40 and items 4, 5 go first, then user 30 (left with item 3
  // only), then item 3 (left with user 10 only): {10, 20} x {1, 2} remains.
  const char *p = path_of("kcore.txt");
  write_text(p, "10 1\n10 2\n10 3\n20 1\n20 2\n30 3\n30 4\n40 5\n");
  lr_dataset ds;
  int rc = load(&ds, p, LR_FMT_SASREC, 0, LR_DEDUP_NONE, 2);
  static const int64_t off[3] = {0, 2, 4}, uo[2] = {10, 20}, io[3] = {0, 1, 2};
  static const int32_t it[4] = {1, 2, 1, 2};
  t_check(rc == LR_OK && same(&ds, 2, 2, off, it, uo, io), "prep: 2-core hand example");
  dataset_free(&ds);
  rc = load(&ds, p, LR_FMT_SASREC, 0, LR_DEDUP_NONE, 1);
  t_check(rc == LR_OK && ds.n_users == 4 && ds.n_items == 5 && ds.n_inter == 8,
          "prep: 1-core keeps everything");
  dataset_free(&ds);
  lr_error_clear();
  rc = load(&ds, p, LR_FMT_SASREC, 0, LR_DEDUP_NONE, 3);
  t_check(rc == LR_ERR_DATA && strstr(lr_error_msg(), p) && ds.items == NULL,
          "prep: a k-core that empties the data is a data error");
}

static void test_chrono_and_remap(void) {
  // user 7 (orig) with ties: t=5 twice (file order b then a), t=1, t=9.
  // Sparse and large ids: users remapped by increasing original id,
  // items too.
  const char *p = path_of("chrono.csv");
  write_text(p, "userId,movieId,rating,timestamp\n"
                "900000000000,9007199254740991,1,5\n" // item X
                "7,55,1,5\n"                          // b, tie
                "7,3,1,5\n"                           // a, tie, after b in file
                "7,9007199254740991,1,1\n"            // X first in time
                "7,0,1,9\n"                           // item 0 is a valid original id
                "0,55,1,3\n");
  lr_dataset ds;
  int rc = load(&ds, p, LR_FMT_CSV, 0, LR_DEDUP_NONE, 0);
  // users 0, 7, 900000000000 -> 0,1,2; items 0,3,55,X -> 1,2,3,4
  static const int64_t off[4] = {0, 1, 5, 6}, uo[3] = {0, 7, 900000000000LL},
                       io[5] = {0, 0, 3, 55, 9007199254740991LL};
  static const int32_t it[6] = {3, 4, 3, 2, 1, 4};
  t_check(rc == LR_OK && same(&ds, 3, 4, off, it, uo, io),
          "prep: stable chronological order and remap by original id");
  dataset_free(&ds);
  // SASRec keeps the file order; users interleaved in the file
  p = path_of("order.txt");
  write_text(p, "2 30\n1 10\n2 20\n1 30\n2 10\n");
  rc = load(&ds, p, LR_FMT_SASREC, 0, LR_DEDUP_NONE, 0);
  static const int64_t off2[3] = {0, 2, 5}, uo2[2] = {1, 2}, io2[4] = {0, 10, 20, 30};
  static const int32_t it2[5] = {1, 3, 3, 2, 1};
  t_check(rc == LR_OK && same(&ds, 2, 3, off2, it2, uo2, io2), "prep: sasrec keeps file order");
  dataset_free(&ds);
}

static void test_synthetic_filters(void) {
  lr_data_opts o = {.format = LR_FMT_SYNTHETIC,
                    .kcore = 10,
                    .dedup = LR_DEDUP_FIRST,
                    .synth = {.users = 500, .items = 400, .mean_len = 12, .zipf = 1.0, .seed = 3}};
  lr_dataset ds;
  lr_error_clear();
  int rc = data_load(&ds, &o);
  int ok = rc == LR_OK && ds.n_users > 0 && ds.n_items > 0;
  int64_t *cnt = calloc((size_t)ds.n_items + 1, sizeof *cnt);
  for (int64_t u = 0; ok && u < ds.n_users; u++) {
    ok &= ds.offsets[u + 1] - ds.offsets[u] >= 10;
    for (int64_t q = ds.offsets[u]; q < ds.offsets[u + 1]; q++)
      cnt[ds.items[q]]++;
  }
  for (int64_t i = 1; ok && i <= ds.n_items; i++)
    ok &= cnt[i] >= 10;
  t_check(ok, "prep: synthetic data through a 10-core (%lld users, %lld items left)",
          (long long)ds.n_users, (long long)ds.n_items);
  free(cnt);
  dataset_free(&ds);
}

// ---------------------------------------------------------------------------
// naive reference

#define USER_STRIDE 1000003
#define REF_USERS 600
#define REF_ITEMS 500

typedef struct {
  int64_t u, i, idx;
  double r, ts;
  int alive;
} rec;

static int rec_cmp(const void *a, const void *b) {
  const rec *x = a, *y = b;
  if (x->u != y->u) return x->u < y->u ? -1 : 1;
  if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
  return (x->idx > y->idx) - (x->idx < y->idx);
}

static int i64_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

// Index of v in sorted a[0..n), or -1.
static int64_t find(const int64_t *a, int64_t n, int64_t v) {
  const int64_t *p = bsearch(&v, a, (size_t)n, sizeof *a, i64_cmp);
  return p ? p - a : -1;
}

// data_load's result (rc, ds) matches the reference on records r.
static int ref_matches(int rc, const lr_dataset *ds, rec *r, int64_t n, double min_rating,
                       lr_dedup dd, int64_t k) {
  for (int64_t a = 0; a < n; a++)
    r[a].alive = min_rating <= 0 || r[a].r >= min_rating;
  qsort(r, (size_t)n, sizeof *r, rec_cmp);
  for (int64_t a = 0; a < n; a++) {
    if (!r[a].alive || dd == LR_DEDUP_NONE) continue;
    for (int64_t b = 0; b < n; b++) {
      if (b == a || !r[b].alive || r[b].u != r[a].u || r[b].i != r[a].i) continue;
      if ((dd == LR_DEDUP_FIRST && b < a) || (dd == LR_DEDUP_LAST && b > a)) {
        r[a].alive = 0;
        break;
      }
    }
  }
  // k-core by removing one violating user or item at a time (users are
  // multiples of USER_STRIDE below REF_USERS, items below REF_ITEMS)
  for (int removed = 1; k > 1 && removed;) {
    int64_t du[REF_USERS] = {0}, di[REF_ITEMS] = {0};
    for (int64_t a = 0; a < n; a++)
      if (r[a].alive) du[r[a].u / USER_STRIDE]++, di[r[a].i]++;
    int64_t bad_u = -1, bad_i = -1;
    for (int64_t u = 0; u < REF_USERS && bad_u < 0; u++)
      if (du[u] > 0 && du[u] < k) bad_u = u * USER_STRIDE;
    for (int64_t i = 0; i < REF_ITEMS && bad_u < 0 && bad_i < 0; i++)
      if (di[i] > 0 && di[i] < k) bad_i = i;
    removed = bad_u >= 0 || bad_i >= 0;
    for (int64_t a = 0; a < n; a++)
      if (r[a].u == bad_u || r[a].i == bad_i) r[a].alive = 0;
  }
  int64_t *us = malloc((size_t)n * 8), *is = malloc((size_t)n * 8), nu = 0, ni = 0, m = 0;
  for (int64_t a = 0; a < n; a++)
    if (r[a].alive) us[nu++] = r[a].u, is[ni++] = r[a].i;
  qsort(us, (size_t)nu, 8, i64_cmp);
  qsort(is, (size_t)ni, 8, i64_cmp);
  int64_t U = 0, I = 0;
  for (int64_t a = 0; a < nu; a++)
    if (!U || us[U - 1] != us[a]) us[U++] = us[a];
  for (int64_t a = 0; a < ni; a++)
    if (!I || is[I - 1] != is[a]) is[I++] = is[a];
  int ok = U == 0 ? rc == LR_ERR_DATA : rc == LR_OK && ds->n_users == U && ds->n_items == I;
  for (int64_t a = 0; ok && a < n; a++) {
    if (!r[a].alive) continue;
    int64_t u = find(us, U, r[a].u);
    ok = ds->user_orig[u] == r[a].u && ds->offsets[u] <= m && m < ds->offsets[u + 1] &&
         ds->items[m] == find(is, I, r[a].i) + 1;
    m++;
  }
  ok = ok && (U == 0 || (m == ds->n_inter && ds->item_orig[0] == 0));
  for (int64_t j = 0; ok && j < I; j++)
    ok = ds->item_orig[j + 1] == is[j];
  free(us);
  free(is);
  return ok;
}

static void test_against_reference(void) {
  const int64_t n = 4000;
  rec *r = malloc((size_t)n * sizeof *r);
  const char *p = path_of("rand.dat");
  FILE *f = fopen(p, "w");
  for (int64_t a = 0; a < n; a++) {
    lr_rng4 w = lr_philox(77, 1, (uint32_t)a, 0, 0, 0);
    // sparse user ids, Zipf-ish items, few distinct timestamps (many ties)
    int64_t wu = w.v[0] % REF_USERS, wi = w.v[1] % REF_ITEMS;
    r[a] = (rec){.u = wu * wu / REF_USERS * USER_STRIDE,
                 .i = wi * wi * wi / (REF_ITEMS * REF_ITEMS),
                 .idx = a,
                 .r = 1 + w.v[2] % 5,
                 .ts = (double)(w.v[3] % 20)};
    fprintf(f, "%lld::%lld::%g::%g\n", (long long)r[a].u, (long long)r[a].i, r[a].r, r[a].ts);
  }
  fclose(f);
  rec *work = malloc((size_t)n * sizeof *work);
  const double ratings[2] = {0, 3};
  const int64_t ks[4] = {0, 4, 8, 400};
  for (int ri = 0; ri < 2; ri++)
    for (int dd = LR_DEDUP_NONE; dd <= LR_DEDUP_LAST; dd++)
      for (int ki = 0; ki < 4; ki++) {
        lr_dataset ds;
        int rc = load(&ds, p, LR_FMT_MOVIELENS, ratings[ri], (lr_dedup)dd, ks[ki]);
        memcpy(work, r, (size_t)n * sizeof *r);
        t_check(ref_matches(rc, &ds, work, n, ratings[ri], (lr_dedup)dd, ks[ki]),
                "prep: random file vs reference (min_rating %g, dedup %s, kcore %lld: %lld "
                "users, %lld items, %lld interactions)",
                ratings[ri], data_dedup_name((lr_dedup)dd), (long long)ks[ki],
                (long long)ds.n_users, (long long)ds.n_items, (long long)ds.n_inter);
        dataset_free(&ds);
      }
  free(work);
  free(r);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/lr_test_io_prep_XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_threshold();
  test_dedup();
  test_kcore();
  test_chrono_and_remap();
  test_synthetic_filters();
  test_against_reference();
  nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return t_done();
}
