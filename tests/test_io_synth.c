// test_io_synth.c: the synthetic generator. Determinism (same seed, same
// bytes; another seed, other data), shape (counts, lengths >= 3 and long
// tailed, no repeated item in a history, identity-like id maps), option
// checks (sizes too large for memory refused up front), learnable structure (a bigram model on the
// training part beats popularity >= 3x in NDCG@10 on the leave-one-out test item), and the ML-20M
// shape generated in seconds.
#include <math.h>   // log2
#include <stdio.h>  // printf
#include <stdlib.h> // calloc, qsort
#include <string.h> // memcmp
#include <time.h>   // clock_gettime

#include "dataset.h"
#include "lr.h"
#include "test_util.h"

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int same_data(const lr_dataset *a, const lr_dataset *b) {
  return a->n_users == b->n_users && a->n_items == b->n_items && a->n_inter == b->n_inter &&
         !memcmp(a->offsets, b->offsets, (size_t)(a->n_users + 1) * 8) &&
         !memcmp(a->items, b->items, (size_t)a->n_inter * 4);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

// Shape checks; prints length statistics.
static void check_shape(const lr_dataset *ds, const lr_synth_opts *o, const char *name) {
  int ok = ds->n_users == o->users && ds->n_items == o->items && ds->offsets[0] == 0 &&
           ds->offsets[ds->n_users] == ds->n_inter;
  int32_t *seen = calloc((size_t)ds->n_items + 1, sizeof *seen);
  int64_t *len = malloc((size_t)ds->n_users * sizeof *len), max = 0;
  for (int64_t u = 0; ok && u < ds->n_users; u++) {
    len[u] = ds->offsets[u + 1] - ds->offsets[u];
    ok &= len[u] >= 3 && ds->user_orig[u] == u + 1;
    if (len[u] > max) max = len[u];
    for (int64_t p = ds->offsets[u]; ok && p < ds->offsets[u + 1]; p++) {
      int32_t i = ds->items[p];
      ok &= i >= 1 && i <= ds->n_items && seen[i] != (int32_t)(u + 1);
      if (ok) seen[i] = (int32_t)(u + 1);
    }
  }
  for (int64_t i = 0; ok && i <= ds->n_items; i++)
    ok &= ds->item_orig[i] == i;
  qsort(len, (size_t)ds->n_users, sizeof *len, cmp_i64);
  double mean = (double)ds->n_inter / (double)ds->n_users;
  int64_t median = len[ds->n_users / 2];
  t_check(ok, "synth: %s ids in range, lengths >= 3, no repeats, identity id maps", name);
  t_check(fabs(mean - o->mean_len) <= 0.05 * o->mean_len, "synth: %s mean length %.2f (asked %.2f)",
          name, mean, o->mean_len);
  t_check(o->mean_len < 6 || (max > 4 * mean && (double)median < mean),
          "synth: %s lengths long-tailed (median %lld, mean %.1f, max %lld)", name,
          (long long)median, mean, (long long)max);
  free(seen);
  free(len);
}

static void test_determinism(void) {
  lr_synth_opts o = {.users = 3000, .items = 800, .mean_len = 30, .zipf = 1.0, .seed = 42};
  lr_dataset a, b, c;
  int rc = data_synthesize(&a, &o);
  rc |= data_synthesize(&b, &o);
  o.seed = 43;
  rc |= data_synthesize(&c, &o);
  t_check(rc == LR_OK && same_data(&a, &b), "synth: same seed gives the same data");
  int64_t diff = 0;
  for (int64_t k = 0; rc == LR_OK && k < a.n_inter && k < c.n_inter; k++)
    diff += a.items[k] != c.items[k];
  t_check(rc == LR_OK && !same_data(&a, &c) && diff > a.n_inter / 2,
          "synth: another seed gives other data (%lld of %lld positions differ)", (long long)diff,
          (long long)a.n_inter);
  o.seed = 42;
  check_shape(&a, &o, "3000x800");
  dataset_free(&a);
  dataset_free(&b);
  dataset_free(&c);
  lr_synth_opts tiny = {.users = 5, .items = 3, .mean_len = 3, .zipf = 0, .seed = 1};
  rc = data_synthesize(&a, &tiny);
  t_check(rc == LR_OK && a.n_inter == 15, "synth: smallest catalog (3 items, length 3)");
  if (rc == LR_OK) check_shape(&a, &tiny, "5x3");
  dataset_free(&a);
}

static void test_options(void) {
  const lr_synth_opts bad[] = {
      {.users = 0, .items = 100, .mean_len = 10, .zipf = 1},
      {.users = 10, .items = 2, .mean_len = 3, .zipf = 1},
      {.users = 10, .items = 100, .mean_len = 2.5, .zipf = 1},
      {.users = 10, .items = 100, .mean_len = 101, .zipf = 1},
      {.users = 10, .items = 100, .mean_len = 10, .zipf = -1},
      {.users = 10, .items = 100, .mean_len = NAN, .zipf = 1},
  };
  int ok = 1;
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    lr_dataset ds;
    lr_error_clear();
    int rc = data_synthesize(&ds, &bad[k]);
    ok &= rc == LR_ERR_CONFIG && ds.items == NULL && strstr(lr_error_msg(), "synthetic");
  }
  t_check(ok, "synth: options out of range are configuration errors");
  lr_data_opts o = {.format = LR_FMT_SYNTHETIC,
                    .min_rating = 3,
                    .synth = {.users = 10, .items = 100, .mean_len = 10, .zipf = 1}};
  lr_dataset ds;
  lr_error_clear();
  t_check(data_load(&ds, &o) == LR_ERR_CONFIG, "synth: min_rating on synthetic data is refused");
  // Sizes beyond any memory: refused before anything is allocated, with
  // the estimate and the memory available (about 8 PB here).
  const lr_synth_opts huge[] = {
      {.users = INT32_MAX - 2, .items = 2000000000, .mean_len = 1e6, .zipf = 1},
      {.users = 1000000000,
       .items = 1000,
       .mean_len = 40,
       .interactions = 500000000000LL,
       .zipf = 1}};
  for (int k = 0; k < 2; k++) {
    lr_error_clear();
    double t0 = now_s();
    int rc = data_synthesize(&ds, &huge[k]);
    double dt = now_s() - t0;
    const char *m = lr_error_msg();
    t_check(rc == LR_ERR_CONFIG && ds.items == NULL && strstr(m, "GiB to generate") &&
                strstr(m, "GiB available") && strstr(m, "HINT") && dt < 0.5,
            "synth: %s too large for memory is refused up front in %.3f s (%s)",
            k ? "interactions" : "users x mean_len", dt, m);
  }
  lr_error_clear();
}

// NDCG@10 on the test item (last) given the history items[0 .. n-2], for
// popularity and for a bigram model, both fit on the training parts
// (items[0 .. n-3]) and both skipping items already in the history.
static void ndcg_pop_bigram(const lr_dataset *ds, double *ndcg_pop, double *ndcg_bi) {
  int64_t I = ds->n_items;
  int64_t *pop = calloc((size_t)I + 1, sizeof *pop);
  // bigram counts, dense (I+1)^2: fine for the catalog sizes used here
  int32_t *bi = calloc((size_t)(I + 1) * (size_t)(I + 1), sizeof *bi);
  for (int64_t u = 0; u < ds->n_users; u++) {
    int64_t b = ds->offsets[u], n = ds->offsets[u + 1] - b;
    for (int64_t t = 0; t < n - 2; t++) {
      pop[ds->items[b + t]]++;
      if (t > 0) bi[(int64_t)ds->items[b + t - 1] * (I + 1) + ds->items[b + t]]++;
    }
  }
  int32_t *in_hist = calloc((size_t)I + 1, sizeof *in_hist);
  double sp = 0, sb = 0;
  int64_t users = 0;
  for (int64_t u = 0; u < ds->n_users; u++) {
    int64_t b = ds->offsets[u], n = ds->offsets[u + 1] - b;
    if (n < 3) continue;
    users++;
    for (int64_t t = 0; t < n - 1; t++)
      in_hist[ds->items[b + t]] = (int32_t)(u + 1);
    int32_t target = ds->items[b + n - 1], last = ds->items[b + n - 2];
    const int32_t *row = bi + (int64_t)last * (I + 1);
    // rank = 1 + number of candidates scoring strictly higher (ties favour
    // the target: both models get the same treatment)
    int64_t rp = 1, rb = 1;
    for (int64_t i = 1; i <= I; i++) {
      if (i == target || in_hist[i] == (int32_t)(u + 1)) continue;
      rp += pop[i] > pop[target];
      rb += row[i] > row[target] || (row[i] == row[target] && pop[i] > pop[target]);
    }
    if (rp <= 10) sp += 1.0 / log2((double)rp + 1);
    if (rb <= 10) sb += 1.0 / log2((double)rb + 1);
  }
  *ndcg_pop = sp / (double)users;
  *ndcg_bi = sb / (double)users;
  free(pop);
  free(bi);
  free(in_hist);
}

static void test_learnable(void) {
  // the configuration defaults (data.synthetic.*): 4000 users, 1000 items
  lr_synth_opts o = {.users = 4000, .items = 1000, .mean_len = 40, .zipf = 1.0, .seed = 1};
  lr_dataset ds;
  int rc = data_synthesize(&ds, &o);
  double p = 0, b = 0;
  if (rc == LR_OK) ndcg_pop_bigram(&ds, &p, &b);
  t_check(rc == LR_OK && b >= 3 * p,
          "synth: sequential signal: bigram NDCG@10 %.4f >= 3x popularity %.4f", b, p);
  dataset_free(&ds);
}

static void test_ml20m_shape(void) {
  lr_synth_opts o = {.users = 138493, .items = 26744, .mean_len = 144.41, .zipf = 1.0, .seed = 1,
                     .interactions = 20000263};
  lr_dataset ds;
  double t0 = now_s();
  int rc = data_synthesize(&ds, &o);
  double dt = now_s() - t0;
  t_check(rc == LR_OK && ds.n_users == 138493 && ds.n_items == 26744 && ds.n_inter == 20000263,
          "synth: ML-20M shape: %lld users, %lld items, %lld interactions in %.2f s",
          (long long)ds.n_users, (long long)ds.n_items, (long long)ds.n_inter, dt);
  if (rc == LR_OK) check_shape(&ds, &o, "ML-20M shape");
  t_check(dt < 20, "synth: ML-20M shape generated in < 20 s (%.2f s)", dt);
  dataset_free(&ds);
}

// data.synthetic.interactions: the exact total, up or down from the drawn
// one, and an unreachable total refused.
static void test_exact_total(void) {
  lr_synth_opts o = {.users = 500, .items = 300, .mean_len = 20, .zipf = 1.0, .seed = 3};
  lr_dataset ds;
  int ok = data_synthesize(&ds, &o) == LR_OK;
  int64_t drawn = ok ? ds.n_inter : 0;
  if (ok) dataset_free(&ds);
  for (int64_t want = drawn - 777; ok && want <= drawn + 777; want += 777) {
    o.interactions = want;
    ok &= data_synthesize(&ds, &o) == LR_OK && ds.n_inter == want;
    lr_synth_opts asked = o; // check_shape compares the mean with mean_len
    asked.mean_len = (double)want / (double)o.users;
    if (ok) check_shape(&ds, &asked, "exact total");
    if (ok) dataset_free(&ds);
  }
  t_check(ok, "synth: interactions = drawn -777, +0, +777 reached exactly (drawn %lld)",
          (long long)drawn);
  o.interactions = 2 * 500; // below 3 per user
  int rc = data_synthesize(&ds, &o);
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "interactions=1000"),
          "synth: unreachable interactions refused: %s", lr_error_msg());
  lr_error_clear();
}

int main(void) {
  test_determinism();
  test_exact_total();
  test_options();
  test_learnable();
  test_ml20m_shape();
  return t_done();
}
