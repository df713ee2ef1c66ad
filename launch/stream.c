// stream.c: `linrec recommend --stream` (stream.h has the semantics).
#include "stream.h"

#include <stdlib.h> // free, realloc, qsort
#include <string.h> // memcpy, memset, strlen, strdup
#include <time.h>   // clock_gettime

#include "ids.h" // find_id, canonical_id, print_id, print_json_str
#include "lr.h"
#include "model.h" // model_stream_*
#include "rng.h"   // lr_philox, lr_below
#include "state.h" // state_model_cfg

// One user of the stream.
typedef struct {
  char *id;      // canonical original id; NULL: an empty slot of the map
  int64_t known; // the data's user, or -1
  int32_t *hist; // the history: the data's, then the events' items
  int64_t n, cap;
  int64_t w0;    // the model's state st holds the window hist[w0 .. n)
  int64_t w1;    // st2 holds hist[w1 .. n) when w1 < n: the next window
  float *st, *st2; // one allocation (the lower address is the block's start)
} suser;

typedef struct {
  const lr_stream_opts *o;
  lr_model *m;
  int stepping;           // the model streams (model_stream_capable)
  int users_table;        // the architecture reads a per-user row (model.arch=ram)
  int64_t N, D, keep;
  size_t st_elems;
  suser *map;             // open addressing on the id, capacity a power of 2
  int64_t cap, n_users;
  uint8_t *skip;          // (I+1) the history items of the ranked user
  float *h, *hb, *tile, *scores;
  int32_t *top;
} stream;

static uint64_t hash_id(const char *s) {
  uint64_t x = 1469598103934665603ull; // FNV-1a
  for (; *s; s++) x = (x ^ (uint8_t)*s) * 1099511628211ull;
  return x;
}

static suser *slot_of(suser *map, int64_t cap, const char *id) {
  for (uint64_t i = hash_id(id) & (uint64_t)(cap - 1);; i = (i + 1) & (uint64_t)(cap - 1))
    if (!map[i].id || !strcmp(map[i].id, id)) return &map[i];
}

static int map_grow(stream *S) {
  const int64_t nc = S->cap ? 2 * S->cap : 1024;
  suser *nm = lr_calloc((size_t)nc, sizeof *nm, "stream users");
  if (!nm) return LR_ERR_NOMEM;
  for (int64_t i = 0; i < S->cap; i++)
    if (S->map[i].id) *slot_of(nm, nc, S->map[i].id) = S->map[i];
  lr_free(S->map);
  S->map = nm, S->cap = nc;
  return LR_OK;
}

static int hist_push(suser *u, int32_t v) {
  if (u->n == u->cap) {
    const int64_t nc = u->cap ? 2 * u->cap : 64;
    int32_t *p = realloc(u->hist, (size_t)nc * sizeof *p);
    LR_CHECK(p, LR_ERR_NOMEM, "out of memory for a history of %lld items", (long long)nc);
    u->hist = p, u->cap = nc;
  }
  u->hist[u->n++] = v;
  return LR_OK;
}

// The user with canonical id `id`, created (with the data's history when the
// data knows it) if new. *out NULL with LR_OK: a new user this model cannot
// rank (it has a users table).
static int user_get(stream *S, const char *id, suser **out) {
  *out = NULL;
  if (2 * (S->n_users + 1) > S->cap) LR_CALL(map_grow(S));
  suser *u = slot_of(S->map, S->cap, id);
  if (u->id) {
    *out = u;
    return LR_OK;
  }
  const lr_stream_opts *o = S->o;
  const int64_t known = find_id(o->users, o->uorder, id, strlen(id));
  if (known < 0 && S->users_table) return LR_OK;
  u->id = strdup(id);
  LR_CHECK(u->id, LR_ERR_NOMEM, "out of memory for a user id");
  u->known = known;
  S->n_users++;
  if (known >= 0)
    for (int64_t i = o->ds->offsets[known]; i < o->ds->offsets[known + 1]; i++)
      LR_CALL(hist_push(u, o->ds->items[i]));
  *out = u;
  return LR_OK;
}

// Step state st over hist[from .. to) (window start w: positions from - w ..).
static void replay(lr_model *m, float *st, const float *table, const int32_t *hist, int64_t w,
                   int64_t from, int64_t to, float *h) {
  const int64_t D = m->cfg.d;
  for (int64_t i = from; i < to; i++)
    model_stream_step(m, st, table + (size_t)hist[i] * (size_t)D, i - w, h);
}

// The window policy (stream.h) for a sequence hist[0..n) whose last item is
// new: h = the hidden state after it. (*a) holds the window hist[*w0 .. n-1)
// (or nothing yet when fresh: the window is then the last min(n, N) items);
// past N the window restarts from the last `keep` items. Without a pause:
// the next window is built alongside, (*b) holding hist[*w1 .. n-1) with
// *w1 = *w0 + N + 1 - keep, where it will start, so the restart is a swap
// and an event costs at most two steps (keep <= N/2 + 1; a larger keep
// replays the next window's first items at the swap). hb: D scratch.
static void window_step(lr_model *m, float **a, float **b, size_t se, const float *table,
                        const int32_t *hist, int64_t n, int64_t *w0, int64_t *w1, int fresh,
                        int64_t keep, float *h, float *hb) {
  const int64_t N = m->cfg.max_len;
  const int swap = !fresh && n - *w0 > N; // the next window is due: it holds hist[*w1 .. n-1)
  if (fresh) {
    *w0 = n > N ? n - N : 0;
    replay(m, *a, table, hist, *w0, *w0, n, h);
  } else {
    if (swap) {
      float *t = *a;
      *a = *b, *b = t;
      *w0 = *w1;
    }
    replay(m, *a, table, hist, *w0, n - 1, n, h);
  }
  if (fresh || swap) { // (re)start the next window
    memset(*b, 0, se * sizeof(float));
    *w1 = *w0 + N + 1 - keep;
    if (*w1 < n) replay(m, *b, table, hist, *w1, *w1, n, hb);
  } else if (*w1 < n) {
    replay(m, *b, table, hist, *w1, n - 1, n, hb);
  }
}

// S->h = the hidden state after u's last item (stepping models).
static int advance(stream *S, suser *u) {
  const int fresh = !u->st;
  if (fresh) {
    u->st = lr_calloc(2 * S->st_elems, sizeof(float), "stream state");
    if (!u->st) return LR_ERR_NOMEM;
    u->st2 = u->st + S->st_elems;
  }
  window_step(S->m, &u->st, &u->st2, S->st_elems, S->o->sc->table->tab.w, u->hist, u->n, &u->w0,
              &u->w1, fresh, S->keep, S->h, S->hb);
  return LR_OK;
}

// Top-K of u after its last item into S->top, S->scores.
static int rank_user(stream *S, suser *u) {
  const lr_stream_opts *o = S->o;
  if (S->stepping) {
    LR_CALL(advance(S, u));
    if (!o->include_history)
      for (int64_t i = 0; i < u->n; i++) S->skip[u->hist[i]] = 1;
    eval_topk_one(S->top, S->scores, o->sc->table->tab.w, o->ds->n_items + 1, S->D, S->h,
                  S->skip, o->k, S->tile);
    if (!o->include_history)
      for (int64_t i = 0; i < u->n; i++) S->skip[u->hist[i]] = 0;
    return LR_OK;
  }
  // re-encode: the history as a dataset of one user (eval takes its last N items)
  int64_t off[2] = {0, u->n};
  lr_dataset one = {0};
  one.n_users = 1, one.n_items = o->ds->n_items, one.n_inter = u->n;
  one.offsets = off, one.items = u->hist;
  const int64_t zero = 0;
  return eval_topk_hidden(S->top, S->scores, NULL, o->sc, &one, &zero,
                          S->users_table ? &u->known : NULL, 1, o->k, !o->include_history, o->c);
}

static void print_user(FILE *f, const stream *S, const suser *u) {
  if (u->known >= 0) {
    print_id(f, S->o->users, u->known, S->o->ustr);
    return;
  }
  int digits = u->id[0] != '\0';
  for (const char *p = u->id; *p; p++) digits &= *p >= '0' && *p <= '9';
  if (digits && !S->o->ustr) fputs(u->id, f);
  else print_json_str(f, u->id);
}

static void print_answer(const stream *S, const suser *u, int32_t item) {
  const lr_stream_opts *o = S->o;
  FILE *f = o->out;
  fputs("{\"user\":", f);
  print_user(f, S, u);
  fputs(",\"item\":", f);
  print_id(f, o->items, item, o->istr);
  fputs(",\"items\":[", f);
  for (int j = 0, first = 1; j < o->k; j++)
    if (S->top[j]) {
      fputs(first ? "" : ",", f), first = 0;
      print_id(f, o->items, S->top[j], o->istr);
    }
  fputs("],\"scores\":[", f);
  for (int j = 0, first = 1; j < o->k; j++)
    if (S->top[j]) fprintf(f, "%s%.5f", first ? "" : ",", S->scores[j]), first = 0;
  fputs("]}\n", f);
  fflush(f);
}

// The first two fields of a line (separated by blanks or commas): [*a, *a+*na), [*b, *b+*nb).
static int two_fields(const char *s, const char **a, size_t *na, const char **b, size_t *nb) {
  const char *p = s;
  const char *f[2];
  size_t n[2];
  for (int k = 0; k < 2; k++) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (!*p || *p == '\n' || *p == '\r') return 0;
    f[k] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '\n' && *p != '\r') p++;
    n[k] = (size_t)(p - f[k]);
  }
  *a = f[0], *na = n[0], *b = f[1], *nb = n[1];
  return 1;
}

static void stream_free(stream *S) {
  for (int64_t i = 0; i < S->cap; i++) {
    free(S->map[i].id);
    free(S->map[i].hist);
    lr_free(S->map[i].st < S->map[i].st2 ? S->map[i].st : S->map[i].st2);
  }
  lr_free(S->map), lr_free(S->skip), lr_free(S->h), lr_free(S->hb), lr_free(S->tile);
  lr_free(S->scores);
  lr_free(S->top);
}

int recommend_stream(const lr_stream_opts *o) {
  stream S = {0};
  S.o = o;
  S.m = o->sc->model;
  S.N = S.m->cfg.max_len, S.D = S.m->cfg.d;
  S.keep = o->keep ? o->keep : (S.N + 1) / 2;
  LR_CHECK(S.keep >= 1 && S.keep <= S.N, LR_ERR_CONFIG,
           "--stream-keep: expected 1..model.max_len (%lld), got %lld", (long long)S.N,
           (long long)S.keep);
  S.stepping = model_stream_capable(S.m);
  S.users_table = S.m->n_seq_groups > 0;
  const int64_t I = o->ds->n_items;
  S.skip = lr_calloc((size_t)(I + 1), 1, "stream history marks");
  S.h = lr_calloc((size_t)S.D, sizeof(float), "stream hidden state");
  S.hb = lr_calloc((size_t)S.D, sizeof(float), "stream hidden state");
  S.tile = lr_calloc(EVAL_ONE_TILE, sizeof(float), "stream score tile");
  S.scores = lr_calloc((size_t)o->k, sizeof(float), "stream scores");
  S.top = lr_calloc((size_t)o->k, sizeof(int32_t), "stream top-K");
  int rc = S.skip && S.h && S.hb && S.tile && S.scores && S.top ? LR_OK : LR_ERR_NOMEM;
  if (rc == LR_OK && S.stepping) {
    S.st_elems = model_stream_elems(S.m);
    rc = model_stream_open(S.m);
  }
  if (rc == LR_OK && S.stepping)
    fprintf(stderr,
            "stream: %s/%s steps an event at a time (%.1f KiB of state per user); windows of "
            "at most %lld items, restarted from the last %lld\n",
            model_arch_name(S.m->arch), S.m->cfg.attn->name, (double)S.st_elems / 128.0,
            (long long)S.N, (long long)S.keep);
  else if (rc == LR_OK)
    fprintf(stderr, "stream: %s/%s cannot step: each event re-encodes the history's last %lld items\n",
            model_arch_name(S.m->arch), S.m->cfg.attn->name, (long long)S.N);
  char *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  long long ln = 0, bad = 0, events = 0;
  while (rc == LR_OK && (got = getline(&line, &lcap, o->in)) >= 0) {
    ln++;
    const char *a, *b;
    size_t na, nb;
    const char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\n' || *s == '\r' || !*s) continue;
    if (!two_fields(line, &a, &na, &b, &nb)) {
      size_t len = strcspn(s, "\r\n");
      fprintf(stderr, "linrec: %s:%lld: expected `user item`, got '%.*s': event skipped\n",
              o->in_name, ln, (int)(len > 60 ? 60 : len), s);
      bad++;
      continue;
    }
    const int64_t item = find_id(o->items, o->iorder, b, nb);
    if (item <= 0) {
      fprintf(stderr, "linrec: %s:%lld: item '%.*s' is not in the model's catalog: event skipped\n",
              o->in_name, ln, (int)(nb > 80 ? 80 : nb), b);
      bad++;
      continue;
    }
    char id[LR_ID_MAX_BYTES + 1];
    if (na > LR_ID_MAX_BYTES) {
      fprintf(stderr, "linrec: %s:%lld: user id longer than %d bytes: event skipped\n",
              o->in_name, ln, LR_ID_MAX_BYTES);
      bad++;
      continue;
    }
    canonical_id(a, na, id);
    suser *u;
    if ((rc = user_get(&S, id, &u)) != LR_OK) break;
    if (!u) {
      fprintf(stderr,
              "linrec: %s:%lld: user '%s' is not in the data, and this model (model.arch=%s) "
              "needs a known user's row: event skipped\n",
              o->in_name, ln, id, model_arch_name(S.m->arch));
      bad++;
      continue;
    }
    if ((rc = hist_push(u, (int32_t)item)) != LR_OK || (rc = rank_user(&S, u)) != LR_OK) break;
    print_answer(&S, u, (int32_t)item);
    if (ferror(o->out)) rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write the answers: error");
    events++;
  }
  free(line);
  if (rc == LR_OK && ferror(o->in))
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "read %s: error", o->in_name);
  if (rc == LR_OK && bad)
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s: %lld of %lld events skipped (each reported above)", o->in_name, bad,
                  bad + events);
  stream_free(&S);
  return rc;
}

// ---- the benchmark (linrec bench --stream) -------------------------------------------------

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// The q-quantile of the n values x (sorted in place), in milliseconds.
static double quantile_ms(double *x, int64_t n, double q) {
  qsort(x, (size_t)n, sizeof *x, cmp_double);
  int64_t k = (int64_t)(q * (double)(n - 1) + 0.5);
  return 1e3 * x[k];
}

// Item 1..rows-1 number k of the benchmark's stream.
static int32_t random_item(uint64_t seed, uint64_t k, int64_t rows) {
  const lr_rng4 r = lr_philox(seed, LR_STREAM_SYNTH, (uint32_t)k, (uint32_t)(k >> 32), 0x5e7u, 0);
  return 1 + (int32_t)lr_below(r.v[0], r.v[1], (uint64_t)(rows - 1));
}

typedef struct {
  int64_t events;
  double seconds, p50, p99, max, enc_p50, enc_p99;
} bench_mode;

// One mode over `users` users whose histories start with N random items:
// events round robin, each a random item, until `budget` seconds have passed
// (at least 20 events). step: window_step; else model_forward of the last N.
static int bench_run(bench_mode *r, lr_model *m, const float *table, int64_t rows, int step,
                     int64_t users, double budget, uint64_t seed) {
  const int64_t N = m->cfg.max_len, D = m->cfg.d, cap = 1 << 16, hcap = N + cap / users + 1;
  const int64_t keep = (N + 1) / 2;
  const size_t se = step ? model_stream_elems(m) : 0;
  int32_t *hist = lr_calloc((size_t)(users * hcap), sizeof(int32_t), "bench histories");
  int64_t *n = lr_calloc((size_t)users, sizeof(int64_t), "bench lengths");
  int64_t *w0 = lr_calloc((size_t)users, sizeof(int64_t), "bench windows");
  int64_t *w1 = lr_calloc((size_t)users, sizeof(int64_t), "bench windows");
  float *st = lr_calloc(2 * (size_t)users * se + 1, sizeof(float), "bench states");
  float **pa = lr_calloc((size_t)users, sizeof(float *), "bench states");
  float **pb = lr_calloc((size_t)users, sizeof(float *), "bench states");
  int32_t *idx = lr_calloc((size_t)N, sizeof(int32_t), "bench positions");
  double *lat = lr_calloc((size_t)cap, sizeof(double), "bench latencies");
  double *enc = lr_calloc((size_t)cap, sizeof(double), "bench latencies");
  float *h = lr_calloc(2 * (size_t)D, sizeof(float), "bench hidden"), tile[EVAL_ONE_TILE];
  float scores[10];
  int32_t top[10];
  int rc = hist && n && w0 && w1 && st && pa && pb && idx && lat && enc && h ? LR_OK : LR_ERR_NOMEM;
  for (int64_t u = 0; rc == LR_OK && u < users; u++) {
    for (int64_t i = 0; i < N; i++)
      hist[u * hcap + i] = random_item(seed, (uint64_t)(u * hcap + i), rows);
    n[u] = N;
    pa[u] = st + 2 * (size_t)u * se, pb[u] = pa[u] + se;
    if (step)
      window_step(m, &pa[u], &pb[u], se, table, hist + u * hcap, N, &w0[u], &w1[u], 1, keep, h,
                  h + D);
  }
  int64_t e = 0;
  const double t_start = now_s();
  const lr_dropout off = {0};
  while (rc == LR_OK && e < cap && (e < 20 || now_s() - t_start < budget)) {
    const int64_t u = e % users;
    int32_t *hu = hist + u * hcap;
    if (n[u] == hcap) break;
    const double t0 = now_s();
    hu[n[u]] = random_item(seed, (1ull << 40) + (uint64_t)e, rows);
    n[u]++;
    if (step) {
      window_step(m, &pa[u], &pb[u], se, table, hu, n[u], &w0[u], &w1[u], 0, keep, h, h + D);
    } else {
      const int32_t len = (int32_t)N;
      memcpy(idx, hu + n[u] - N, (size_t)N * sizeof(int32_t));
      model_set_last_only(m, 1);
      const float *out = model_forward(m, idx, table, &len, NULL, 1, off, NULL);
      memcpy(h, out + (N - 1) * D, (size_t)D * sizeof(float));
    }
    const double t1 = now_s();
    eval_topk_one(top, scores, table, rows, D, h, NULL, 10, tile);
    const double t2 = now_s();
    enc[e] = t1 - t0, lat[e] = t2 - t0;
    e++;
  }
  if (rc == LR_OK) {
    r->events = e;
    r->seconds = now_s() - t_start;
    r->p50 = quantile_ms(lat, e, 0.5), r->p99 = quantile_ms(lat, e, 0.99);
    r->max = quantile_ms(lat, e, 1.0);
    r->enc_p50 = quantile_ms(enc, e, 0.5), r->enc_p99 = quantile_ms(enc, e, 0.99);
  }
  lr_free(hist), lr_free(n), lr_free(w0), lr_free(w1), lr_free(st), lr_free(pa), lr_free(pb);
  lr_free(idx), lr_free(lat), lr_free(enc);
  lr_free(h);
  return rc;
}

int bench_stream(const lr_config *c, double budget) {
  lr_model_cfg mc;
  const int64_t I = c->syn_items;
  LR_CALL(state_model_cfg(&mc, c, I, 0));
  LR_CHECK(mc.attn->step, LR_ERR_CONFIG,
           "bench --stream: model.attention=%s cannot step (linrec_causal and rela_causal can)",
           mc.attn->name);
  lr_model m;
  LR_CALL(model_init(&m, &mc, 1, c->train_seed));
  float *table = lr_calloc((size_t)((I + 1) * mc.d), sizeof(float), "bench item table");
  int rc = table ? LR_OK : LR_ERR_NOMEM;
  if (rc == LR_OK) {
    model_init_item_rows(table, 0, I + 1, mc.d, c->train_seed);
    rc = model_stream_open(&m);
  }
  bench_mode r[2];
  for (int mode = 0; rc == LR_OK && mode < 2; mode++)
    rc = bench_run(&r[mode], &m, table, I + 1, mode == 0, 8, budget, c->train_seed);
  if (rc == LR_OK) {
    static const char *const names[2] = {"step", "reencode"};
    for (int mode = 0; mode < 2; mode++)
      printf("{\"event\":\"bench_stream\",\"arch\":\"%s\",\"attention\":\"%s\",\"mode\":"
             "\"%s\",\"N\":%lld,\"d\":%lld,\"heads\":%lld,\"layers\":%lld,\"items\":%lld,"
             "\"events\":%lld,\"events_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
             "\"max_ms\":%.4f,"
             "\"encode_p50_ms\":%.4f,\"encode_p99_ms\":%.4f}\n",
             model_arch_name(m.arch), mc.attn->name, names[mode], (long long)mc.max_len,
             (long long)mc.d, (long long)mc.heads, (long long)mc.layers, (long long)I,
             (long long)r[mode].events, (double)r[mode].events / r[mode].seconds, r[mode].p50,
             r[mode].p99, r[mode].max, r[mode].enc_p50, r[mode].enc_p99);
    printf("{\"event\":\"bench_stream_ratio\",\"N\":%lld,\"events_per_s\":%.2f,"
           "\"encode_p50\":%.2f}\n",
           (long long)mc.max_len,
           ((double)r[0].events / r[0].seconds) / ((double)r[1].events / r[1].seconds),
           r[1].enc_p50 / r[0].enc_p50);
    fflush(stdout);
  }
  lr_free(table);
  model_free(&m);
  return rc;
}
