// synth.c: the synthetic dataset (data_synthesize), the built-in default so
// that training runs with no download. It has sequential structure that a
// sequence model can learn and a popularity ranking cannot:
//
//   Topics. Items 1..I are spread over T = clamp(round(sqrt(I/4)), 2, 512)
//   latent topics by a seeded bijection p(i) = (a*(i-1) + b) mod I:
//   topic(i) = p mod T, rank(i) = p div T. Inside a topic, popularity is
//   Zipf: P(rank r) ~ (r+1)^-zipf. Topics have Zipf(0.5) popularity.
//   Transitions. Every item has S = 4 successors (a sparse item-to-item
//   table): each drawn by Zipf rank from the item's own topic with
//   probability 0.85, else from a topic drawn by topic popularity; the
//   successors are followed with probabilities 0.45, 0.30, 0.15, 0.10.
//   Users. Length n = 3 + round(X), X lognormal (sigma 1) with mean
//   mean_len - 3, capped at min(I, 3 + 50 (mean_len - 3)); with
//   `interactions` set, lengths are then moved by one at a time, user by
//   user, until they sum to it exactly (fit_total). Step 0 draws a
//   topic z (by topic popularity) and an item of z (Zipf). Each later step
//   first switches z to a fresh topic with probability 0.05 (interest
//   drift), then takes a successor of the previous item with probability
//   0.6, else an item of z by Zipf. An item already in the history is drawn
//   again (up to 8 times, then the next unseen id in cyclic order), so a
//   history never repeats an item, like MovieLens ratings.
//
// So the previous item predicts the next one with probability >= 0.6 *
// 0.45, while the most popular items of the whole catalog are spread over
// T topics. Every random number is lr_philox(seed, LR_STREAM_SYNTH, ...)
// keyed by (item, tag, successor) for the tables and (user, step, attempt)
// for histories: the data is a pure function of the options. Cost
// O(interactions * log(I/T)) time, 4 bytes per interaction plus O(I);
// options whose estimate exceeds the memory available are refused up front.
// Not here: preprocessing (data_load applies dedup/k-core when asked).
#include <math.h>         // exp, log, pow, sqrt, isfinite
#include <stdio.h>        // fopen, fgets, sscanf
#include <stdlib.h>       // malloc, free
#include <string.h>       // memset
#include <sys/resource.h> // getrlimit, RLIMIT_AS
#include <unistd.h>       // sysconf

#include "dataset.h"
#include "lr.h"
#include "rng.h" // lr_philox, lr_u01, lr_normal, LR_STREAM_SYNTH

#define N_SUCC 4
#define P_SAME_TOPIC 0.85
#define P_SWITCH 0.05
#define P_TRANSITION 0.6
#define TOPIC_ZIPF 0.5
#define LEN_SIGMA 1.0
#define MAX_REDRAWS 8
#define TAG_ITEM 0xFFFFFFFFu // c1 of item-table draws (user steps never reach it)
#define TAG_LEN 0xFFFFFFFEu  // c1 of length draws

static const double SUCC_CDF[N_SUCC] = {0.45, 0.75, 0.90, 1.0};

typedef struct {
  uint64_t seed;
  int64_t I, T, R;   // items, topics, largest topic size
  double *rank_cdf;  // (R) Zipf over ranks, unnormalised cumulative
  double *topic_cdf; // (T)
  int32_t *item_of;  // (I) item id at position p of the bijection
  int32_t *succ;     // (I*N_SUCC) successors of item i at (i-1)*N_SUCC
} synth_model;

static lr_rng4 draw(const synth_model *m, uint32_t c0, uint32_t c1, uint32_t c2) {
  return lr_philox(m->seed, LR_STREAM_SYNTH, c0, c1, c2, 0);
}

// First index k in cdf[0..n) with u < cdf[k] (u in [0, cdf[n-1])).
static int64_t cdf_find(const double *cdf, int64_t n, double u) {
  int64_t lo = 0, hi = n - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (u < cdf[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

static int64_t topic_size(const synth_model *m, int64_t t) {
  return m->I / m->T + (t < m->I % m->T);
}

static int64_t topic_draw(const synth_model *m, uint32_t w) {
  return cdf_find(m->topic_cdf, m->T, lr_u01(w) * m->topic_cdf[m->T - 1]);
}

// Item of topic t with Zipf rank drawn from w.
static int32_t topic_item(const synth_model *m, int64_t t, uint32_t w) {
  int64_t n = topic_size(m, t);
  LR_ASSERT(n >= 1); // T <= I, so every topic has an item
  int64_t r = cdf_find(m->rank_cdf, n, lr_u01(w) * m->rank_cdf[n - 1]);
  return m->item_of[r * m->T + t];
}

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t t = a % b;
    a = b, b = t;
  }
  return a;
}

static void synth_model_free(synth_model *m) {
  free(m->rank_cdf);
  free(m->topic_cdf);
  free(m->item_of);
  free(m->succ);
  memset(m, 0, sizeof *m);
}

static int synth_model_init(synth_model *m, const lr_synth_opts *o) {
  memset(m, 0, sizeof *m);
  int64_t I = o->items;
  m->seed = o->seed;
  m->I = I;
  m->T = (int64_t)llround(sqrt((double)I / 4.0));
  if (m->T < 2) m->T = 2;
  if (m->T > 512) m->T = 512;
  m->R = (I + m->T - 1) / m->T;
  m->rank_cdf = malloc((size_t)m->R * sizeof *m->rank_cdf);
  m->topic_cdf = malloc((size_t)m->T * sizeof *m->topic_cdf);
  m->item_of = malloc((size_t)I * sizeof *m->item_of);
  m->succ = malloc((size_t)I * N_SUCC * sizeof *m->succ);
  if (!m->rank_cdf || !m->topic_cdf || !m->item_of || !m->succ) {
    synth_model_free(m);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__,
                    "synthetic data: out of memory for %lld items", (long long)I);
  }
  double acc = 0;
  for (int64_t r = 0; r < m->R; r++)
    m->rank_cdf[r] = acc += pow((double)(r + 1), -o->zipf);
  acc = 0;
  for (int64_t t = 0; t < m->T; t++)
    m->topic_cdf[t] = acc += pow((double)(t + 1), -TOPIC_ZIPF);
  // the bijection p(i) = (a*(i-1) + b) mod I, a coprime to I
  lr_rng4 r = draw(m, 0, TAG_ITEM, 0xAB);
  int64_t a = 1 + (int64_t)lr_below(r.v[0], r.v[1], (uint64_t)(I > 1 ? I - 1 : 1));
  while (gcd64(a, I) != 1)
    a = a % (I - 1) + 1;
  int64_t b = (int64_t)lr_below(r.v[2], r.v[3], (uint64_t)I);
  for (int64_t i = 1; i <= I; i++)
    m->item_of[((uint64_t)a * (uint64_t)(i - 1) + (uint64_t)b) % (uint64_t)I] = (int32_t)i;
  // successors
  for (int64_t p = 0; p < I; p++) {
    int32_t i = m->item_of[p];
    int64_t t = p % m->T;
    for (int j = 0; j < N_SUCC; j++) {
      lr_rng4 w = draw(m, (uint32_t)i, TAG_ITEM, (uint32_t)j);
      int64_t ts = lr_u01(w.v[0]) < P_SAME_TOPIC ? t : topic_draw(m, w.v[1]);
      int32_t s = topic_item(m, ts, w.v[2]);
      if (s == i) { // no self loop: the next rank of the same topic
        int64_t n = topic_size(m, t), rk = (p / m->T + 1) % n;
        s = m->item_of[rk * m->T + t];
      }
      m->succ[(int64_t)(i - 1) * N_SUCC + j] = s;
    }
  }
  return LR_OK;
}

// Longest history for mean_len.
static int64_t len_cap(const synth_model *m, double mean_len) {
  return (int64_t)fmin((double)m->I, 3.0 + 50.0 * fmax(mean_len - 3.0, 0.0));
}

// History length of user u.
static int64_t user_len(const synth_model *m, int64_t u, double mean_len) {
  double extra = mean_len - 3.0;
  if (extra <= 0) return 3;
  lr_rng4 r = draw(m, (uint32_t)u, TAG_LEN, 0);
  double mu = log(extra) - 0.5 * LEN_SIGMA * LEN_SIGMA;
  double x = exp(mu + LEN_SIGMA * lr_normal(r));
  double cap = (double)len_cap(m, mean_len);
  double n = 3.0 + floor(x + 0.5);
  return (int64_t)(n < cap ? n : cap);
}

// Make the lengths len (U) sum to `total` exactly: sweep the users in order,
// moving each length by one toward the target while it stays in [3, cap],
// until the sum is reached; the shape of the distribution is kept (every
// length moves by at most ceil(|difference| / U)).
static void fit_total(int64_t *len, int64_t U, int64_t total, int64_t cap) {
  int64_t sum = 0;
  for (int64_t u = 0; u < U; u++) sum += len[u];
  while (sum != total) {
    const int64_t step = sum < total ? 1 : -1;
    for (int64_t u = 0; u < U && sum != total; u++) {
      const int64_t n = len[u] + step;
      if (n >= 3 && n <= cap) len[u] = n, sum += step;
    }
  }
}

// One candidate next item from two words: transition test and choice.
static int32_t next_item(const synth_model *m, int32_t prev, int64_t z, uint32_t w_kind,
                         uint32_t w_pick) {
  if (lr_u01(w_kind) < P_TRANSITION) {
    float u = lr_u01(w_pick);
    int j = 0;
    while (j < N_SUCC - 1 && u >= SUCC_CDF[j])
      j++;
    return m->succ[(int64_t)(prev - 1) * N_SUCC + j];
  }
  return topic_item(m, z, w_pick);
}

// Fill the history of user u (n items) into out, using seen[] stamps.
static void user_history(const synth_model *m, int64_t u, int64_t n, int32_t *out, int32_t *seen) {
  lr_rng4 r = draw(m, (uint32_t)u, 0, 0);
  int64_t z = topic_draw(m, r.v[0]);
  int32_t it = topic_item(m, z, r.v[1]);
  for (int64_t t = 0;;) {
    for (int a = 1; seen[it] == (int32_t)u && a <= MAX_REDRAWS; a++) {
      lr_rng4 ra = draw(m, (uint32_t)u, (uint32_t)t, (uint32_t)a);
      it = t == 0 ? topic_item(m, z, ra.v[1]) : next_item(m, out[t - 1], z, ra.v[0], ra.v[1]);
    }
    while (seen[it] == (int32_t)u)
      it = (int32_t)(it % m->I + 1);
    seen[it] = (int32_t)u;
    out[t] = it;
    if (++t == n) return;
    r = draw(m, (uint32_t)u, (uint32_t)t, 0);
    if (lr_u01(r.v[0]) < P_SWITCH) z = topic_draw(m, r.v[1]);
    it = next_item(m, out[t - 1], z, r.v[2], r.v[3]);
  }
}

// Bytes data_synthesize holds at its peak for o: 4 per interaction (the
// expected total: o->interactions, else users x mean_len, which the capped
// long tail never exceeds by much), 16 per user (offsets, ids), and per item
// 8 (ids) + 4 (item_of) + 16 (successors) + 4 (seen) + at most 8 (rank cdf).
static double synth_bytes(const lr_synth_opts *o, double *n_inter) {
  *n_inter = o->interactions ? (double)o->interactions : (double)o->users * o->mean_len;
  return 4.0 * *n_inter + 16.0 * (double)o->users + 40.0 * (double)o->items;
}

// Memory this process may still use: MemAvailable of /proc/meminfo (else
// the physical memory), or the address-space limit if lower; *what names
// the source. Cannot fail.
static double memory_available(const char **what) {
  double avail = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
  *what = "physical memory";
  FILE *f = fopen("/proc/meminfo", "r");
  char line[128];
  long long kb;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
      avail = 1024.0 * (double)kb;
      *what = "MemAvailable in /proc/meminfo";
    }
  if (f) fclose(f);
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (double)rl.rlim_cur < avail) {
    avail = (double)rl.rlim_cur;
    *what = "the address-space limit (ulimit -v)";
  }
  return avail;
}

int data_synthesize(lr_dataset *ds, const lr_synth_opts *o) {
  memset(ds, 0, sizeof *ds);
  LR_CHECK(o->users >= 1 && o->users <= INT32_MAX - 2, LR_ERR_CONFIG,
           "synthetic data: users must be in [1, %d], got %lld", INT32_MAX - 2,
           (long long)o->users);
  LR_CHECK(o->items >= 3 && o->items <= INT32_MAX - 2, LR_ERR_CONFIG,
           "synthetic data: items must be in [3, %d], got %lld", INT32_MAX - 2,
           (long long)o->items);
  LR_CHECK(isfinite(o->mean_len) && o->mean_len >= 3 && o->mean_len <= (double)o->items,
           LR_ERR_CONFIG,
           "synthetic data: mean_len must be in [3, items=%lld] (histories have >= 3 "
           "distinct items), got %g",
           (long long)o->items, o->mean_len);
  LR_CHECK(isfinite(o->zipf) && o->zipf >= 0 && o->zipf <= 5, LR_ERR_CONFIG,
           "synthetic data: zipf must be in [0, 5], got %g", o->zipf);
  const char *source;
  double n_inter, need = synth_bytes(o, &n_inter), avail = memory_available(&source);
  LR_CHECK(need <= avail, LR_ERR_CONFIG,
           "synthetic data: %lld users x mean_len %g (about %.3g interactions) and %lld items "
           "need about %.1f GiB to generate (4 bytes per interaction, 16 per user, 40 per "
           "item), more than the %.1f GiB available (%s)\nHINT: lower data.synthetic.users, "
           "data.synthetic.mean_len, data.synthetic.interactions or data.synthetic.items",
           (long long)o->users, o->mean_len, n_inter, (long long)o->items, need / 1073741824.0,
           avail / 1073741824.0, source);
  synth_model m;
  LR_CALL(synth_model_init(&m, o));
  const int64_t cap = len_cap(&m, o->mean_len);
  if (o->interactions &&
      (o->interactions < 3 * o->users || o->interactions > cap * o->users)) {
    synth_model_free(&m);
    return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                    "synthetic data: interactions=%lld cannot be reached by %lld users with "
                    "lengths in [3, %lld] (mean_len=%g)",
                    (long long)o->interactions, (long long)o->users, (long long)cap,
                    o->mean_len);
  }
  int rc = LR_OK;
  int64_t U = o->users;
  int32_t *seen = malloc((size_t)(m.I + 1) * sizeof *seen);
  ds->offsets = lr_calloc((size_t)U + 1, sizeof *ds->offsets, "synthetic offsets");
  ds->user_orig = lr_calloc((size_t)U, sizeof *ds->user_orig, "synthetic user ids");
  ds->item_orig = lr_calloc((size_t)m.I + 1, sizeof *ds->item_orig, "synthetic item ids");
  if (!seen || !ds->offsets || !ds->user_orig || !ds->item_orig) goto nomem;
  // lengths first (in offsets[1..U]), then their prefix sums
  for (int64_t u = 0; u < U; u++) {
    ds->offsets[u + 1] = user_len(&m, u, o->mean_len);
    ds->user_orig[u] = u + 1;
  }
  if (o->interactions) fit_total(ds->offsets + 1, U, o->interactions, cap);
  for (int64_t u = 0; u < U; u++) ds->offsets[u + 1] += ds->offsets[u];
  for (int64_t i = 0; i <= m.I; i++)
    ds->item_orig[i] = i;
  ds->n_users = U;
  ds->n_items = m.I;
  ds->n_inter = ds->offsets[U];
  ds->items = lr_calloc((size_t)ds->n_inter, sizeof *ds->items, "synthetic items");
  if (!ds->items) goto nomem;
  memset(seen, 0xff, (size_t)(m.I + 1) * sizeof *seen);
  for (int64_t u = 0; u < U; u++)
    user_history(&m, u, ds->offsets[u + 1] - ds->offsets[u], ds->items + ds->offsets[u], seen);
  goto done;
nomem:
  rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "synthetic data: out of memory for %lld users",
                (long long)U);
  dataset_free(ds);
done:
  free(seen);
  synth_model_free(&m);
  return rc;
}
