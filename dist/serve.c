// serve.c: see serve.h.
#include "serve.h"

#include <stdio.h>  // printf
#include <stdlib.h> // qsort
#include <string.h> // memcpy, memset

#include "comm.h"  // dist_wtime
#include "lr.h"
#include "model.h" // model_stream_*, model_forward
#include "rng.h"   // lr_philox, lr_below
#include "state.h" // state_model_cfg

// Step state st over hist[from .. to) (window start w: positions from - w ..).
static void replay(lr_model *m, float *st, const float *table, const int32_t *hist, int64_t w,
                   int64_t from, int64_t to, float *h) {
  const int64_t D = m->cfg.d;
  for (int64_t i = from; i < to; i++)
    model_stream_step(m, st, table + (size_t)hist[i] * (size_t)D, i - w, h);
}

// The window policy (serve.h) for a sequence hist[0..n) whose last item is
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

int server_init(lr_server *s, const lr_scorer *sc, const lr_config *c, int64_t keep) {
  memset(s, 0, sizeof *s);
  lr_model *m = sc->model;
  s->c = c, s->sc = sc;
  s->arch = model_arch_name(m->arch), s->kind = m->cfg.attn->name;
  s->N = m->cfg.max_len, s->D = m->cfg.d, s->rows = itemtab_rows(&sc->table->tab);
  s->keep = keep ? keep : (s->N + 1) / 2;
  LR_CHECK(s->keep >= 1 && s->keep <= s->N, LR_ERR_CONFIG,
           "--stream-keep: expected 1..model.max_len (%lld), got %lld", (long long)s->N,
           (long long)s->keep);
  LR_ASSERT(sc->table->tab.lo == 0);
  s->stepping = model_stream_capable(m);
  s->users_table = m->n_seq_groups > 0;
  s->state_elems = model_stream_elems(m);
  s->skip = lr_calloc((size_t)s->rows, 1, "history marks");
  s->h = lr_calloc(2 * (size_t)s->D, sizeof(float), "hidden state");
  s->tile = lr_calloc(EVAL_ONE_TILE, sizeof(float), "score tile");
  if (!s->skip || !s->h || !s->tile) {
    server_free(s);
    return LR_ERR_NOMEM;
  }
  s->hb = s->h + s->D;
  int rc = s->stepping ? model_stream_open(m) : LR_OK;
  if (rc) server_free(s);
  return rc;
}

void server_free(lr_server *s) {
  lr_free(s->skip), lr_free(s->h), lr_free(s->tile);
  memset(s, 0, sizeof *s);
}

void server_window_free(lr_serve_window *w) {
  lr_free(w->a < w->b ? w->a : w->b);
  memset(w, 0, sizeof *w);
}

int server_rank(lr_server *s, lr_serve_window *w, const int32_t *hist, int64_t n, int64_t user,
                int K, int include_history, int32_t *items, float *scores) {
  LR_CHECK(user >= 0 || !s->users_table, LR_ERR_ARG,
           "model.arch=%s ranks known users only (it reads their row of the users table)",
           s->arch);
  if (!s->stepping) { // re-encode: the history as a dataset of one user (eval takes its last N)
    int64_t off[2] = {0, n};
    lr_dataset one = {0};
    one.n_users = 1, one.n_items = s->rows - 1, one.n_inter = n;
    one.offsets = off, one.items = (int32_t *)hist;
    const int64_t zero = 0;
    return eval_topk_hidden(items, scores, NULL, s->sc, &one, &zero,
                            s->users_table ? &user : NULL, 1, K, !include_history, s->c);
  }
  const int fresh = !w->a;
  if (fresh) {
    w->a = lr_calloc(2 * s->state_elems, sizeof(float), "stream state");
    if (!w->a) return LR_ERR_NOMEM;
    w->b = w->a + s->state_elems;
  }
  window_step(s->sc->model, &w->a, &w->b, s->state_elems, s->sc->table->tab.w, hist, n, &w->w0,
              &w->w1, fresh, s->keep, s->h, s->hb);
  if (!include_history)
    for (int64_t i = 0; i < n; i++) s->skip[hist[i]] = 1;
  eval_topk_one(items, scores, s->sc->table->tab.w, s->rows, s->D, s->h,
                include_history ? NULL : s->skip, K, s->tile);
  if (!include_history)
    for (int64_t i = 0; i < n; i++) s->skip[hist[i]] = 0;
  return LR_OK;
}

// ---- the benchmark (linrec bench --stream) -------------------------------------------------

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
  const double t_start = dist_wtime();
  const lr_dropout off = {0};
  while (rc == LR_OK && e < cap && (e < 20 || dist_wtime() - t_start < budget)) {
    const int64_t u = e % users;
    int32_t *hu = hist + u * hcap;
    if (n[u] == hcap) break;
    const double t0 = dist_wtime();
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
    const double t1 = dist_wtime();
    eval_topk_one(top, scores, table, rows, D, h, NULL, 10, tile);
    const double t2 = dist_wtime();
    enc[e] = t1 - t0, lat[e] = t2 - t0;
    e++;
  }
  if (rc == LR_OK) {
    r->events = e;
    r->seconds = dist_wtime() - t_start;
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
