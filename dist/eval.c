// eval.c: leave-one-out evaluation and top-K recommendation (eval.h).
// Scores come from one of two scorers: the encoder (hidden state at the last
// valid position times the item rows, in tiles through GEMM) or the
// popularity baseline (training counts). Both share the ranking code.
#include "eval.h"

#include <math.h>   // log2
#include <stdlib.h> // qsort
#include <string.h> // memset, memcpy

#include "comm.h"
#include "embed.h"
#include "gemm.h"
#include "lr.h"
#include "rng.h"

#define MAX_TILE_FLOATS (16 * 1024 * 1024) // score tile budget (Bu x T)
#define SAMPLED_NEG 100

typedef struct {
  int64_t Bu, N, D, T;
  int32_t *ids, *lens, *tgt, *idx; // (Bu,N), (Bu), (Bu), (Bu,N)
  uint64_t *row_ids;               // (Bu,N), zeros (no dropout in evaluation)
  int64_t *users, *hist_len;       // (Bu)
  float *hs;                       // (Bu,D)
  float *tile;                     // (Bu,T)
  float *tscore;                   // (Bu) target scores
  int64_t *ahead;                  // (Bu) candidates ranked at or above the target
  int32_t *hist;                   // sorted history of one user (max length)
  int32_t *cand;                   // (SAMPLED_NEG+1)
} eval_ws;

static void ws_free(eval_ws *w) {
  lr_free(w->ids), lr_free(w->lens), lr_free(w->tgt), lr_free(w->idx);
  lr_free(w->row_ids), lr_free(w->users), lr_free(w->hist_len), lr_free(w->hs);
  lr_free(w->tile), lr_free(w->tscore), lr_free(w->ahead), lr_free(w->hist), lr_free(w->cand);
  memset(w, 0, sizeof *w);
}

static int ws_init(eval_ws *w, const lr_scorer *sc, const lr_dataset *ds, const lr_config *c) {
  memset(w, 0, sizeof *w);
  w->N = c->model_max_len;
  w->D = c->model_d;
  w->Bu = c->eval_batch_size;
  if (sc->model && w->Bu > sc->model->max_B) w->Bu = sc->model->max_B;
  int64_t rows = ds->n_items + 1;
  w->T = MAX_TILE_FLOATS / w->Bu;
  if (w->T < 1) w->T = 1; // eval.batch_size > MAX_TILE_FLOATS: 0 would never advance
  if (w->T > rows) w->T = rows;
  int64_t maxlen = 1;
  for (int64_t u = 0; u < ds->n_users; u++)
    if (ds->offsets[u + 1] - ds->offsets[u] > maxlen) maxlen = ds->offsets[u + 1] - ds->offsets[u];
  size_t BN = (size_t)(w->Bu * w->N);
  w->ids = lr_calloc(BN, sizeof(int32_t), "eval ids");
  w->idx = lr_calloc(BN, sizeof(int32_t), "eval idx");
  w->row_ids = lr_calloc(BN, sizeof(uint64_t), "eval row ids");
  w->lens = lr_calloc((size_t)w->Bu, sizeof(int32_t), "eval lens");
  w->tgt = lr_calloc((size_t)w->Bu, sizeof(int32_t), "eval targets");
  w->users = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval users");
  w->hist_len = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval history lengths");
  w->hs = lr_calloc((size_t)(w->Bu * w->D), sizeof(float), "eval hidden");
  w->tile = lr_calloc((size_t)(w->Bu * w->T), sizeof(float), "eval score tile");
  w->tscore = lr_calloc((size_t)w->Bu, sizeof(float), "eval target scores");
  w->ahead = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval ranks");
  w->hist = lr_calloc((size_t)maxlen, sizeof(int32_t), "eval history");
  w->cand = lr_calloc(SAMPLED_NEG + 1, sizeof(int32_t), "eval candidates");
  if (!w->ids || !w->idx || !w->row_ids || !w->lens || !w->tgt || !w->users || !w->hist_len ||
      !w->hs || !w->tile || !w->tscore || !w->ahead || !w->hist || !w->cand) {
    ws_free(w);
    lr_error_trace(__FILE__, __LINE__, __func__);
    return LR_ERR_NOMEM;
  }
  return LR_OK;
}

float *eval_popularity(const lr_dataset *ds) {
  float *pop = lr_calloc((size_t)ds->n_items + 1, sizeof(float), "item popularity");
  if (!pop) return NULL;
  for (int64_t u = 0; u < ds->n_users; u++) {
    int64_t t = examples_train_len(ds, u);
    for (int64_t i = 0; i < t; i++) pop[ds->items[ds->offsets[u] + i]] += 1.0f;
  }
  pop[0] = 0.0f;
  return pop;
}

// hs (nb,D) = hidden state at the last valid position of each input.
static void hidden_states(const lr_scorer *sc, eval_ws *w, int64_t nb) {
  if (!sc->model) return;
  const float *rows = emb_lookup_local(w->idx, w->ids, nb * w->N, sc->tab);
  lr_dropout dp = {0};
  const float *h = model_forward(sc->model, w->idx, rows, w->lens, w->row_ids, nb, dp);
  for (int64_t b = 0; b < nb; b++)
    memcpy(w->hs + b * w->D, h + (b * w->N + w->lens[b] - 1) * w->D, (size_t)w->D * sizeof(float));
}

// tile (nb, hi-lo) = scores of items lo..hi-1.
static void score_tile(const lr_scorer *sc, eval_ws *w, int64_t nb, int64_t lo, int64_t hi) {
  int64_t T = hi - lo;
  if (sc->model) {
    lr_sgemm(0, 1, nb, T, w->D, 1.0f, w->hs, w->D, sc->tab->w + lo * w->D, w->D, 0.0f, w->tile, T);
  } else {
    for (int64_t b = 0; b < nb; b++) memcpy(w->tile + b * T, sc->pop + lo, (size_t)T * sizeof(float));
  }
}

static float score_one(const lr_scorer *sc, const eval_ws *w, int64_t b, int32_t item) {
  if (!sc->model) return sc->pop[item];
  const float *h = w->hs + b * w->D, *r = sc->tab->w + (int64_t)item * w->D;
  double s = 0;
  for (int64_t j = 0; j < w->D; j++) s += (double)h[j] * r[j];
  return (float)s;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

// Sorted distinct items of the first n of user u's sequence into w->hist;
// returns the count.
static int64_t sorted_history(eval_ws *w, const lr_dataset *ds, int64_t u, int64_t n) {
  memcpy(w->hist, ds->items + ds->offsets[u], (size_t)n * sizeof(int32_t));
  qsort(w->hist, (size_t)n, sizeof(int32_t), cmp_i32);
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (k == 0 || w->hist[k - 1] != w->hist[i]) w->hist[k++] = w->hist[i];
  return k;
}

static int in_sorted(const int32_t *a, int64_t n, int32_t x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && a[lo] == x;
}

// Full ranking of a batch: ahead[b] = items v in 1..I, v != target, not
// excluded, with score >= the target's (exact: the target's score is taken
// from the same GEMM tile as the others).
static void rank_full(const lr_scorer *sc, eval_ws *w, const lr_dataset *ds, int64_t nb,
                      int exclude) {
  int64_t rows = ds->n_items + 1;
  int single = w->T >= rows;
  for (int64_t b = 0; b < nb; b++) w->ahead[b] = 0;
  for (int pass = single ? 1 : 0; pass < 2; pass++) {
    for (int64_t lo = 0; lo < rows; lo += w->T) {
      int64_t hi = lo + w->T < rows ? lo + w->T : rows, T = hi - lo;
      score_tile(sc, w, nb, lo, hi);
      for (int64_t b = 0; b < nb; b++) {
        int32_t t = w->tgt[b];
        const float *s = w->tile + b * T;
        if (t >= lo && t < hi) w->tscore[b] = s[t - lo];
        if (pass == 0) continue;
        float st = w->tscore[b];
        int64_t cnt = 0;
        for (int64_t j = 0; j < T; j++) cnt += s[j] >= st;
        // remove the target itself and the padding row
        if (t >= lo && t < hi) cnt--;
        if (lo == 0 && s[0] >= st) cnt--;
        if (exclude) { // history items other than the target are not candidates
          int64_t k = sorted_history(w, ds, w->users[b], w->hist_len[b]);
          for (int64_t i = 0; i < k; i++) {
            int32_t v = w->hist[i];
            if (v != t && v >= lo && v < hi && s[v - lo] >= st) cnt--;
          }
        }
        w->ahead[b] += cnt;
      }
    }
  }
}

// Sampled ranking: the target against SAMPLED_NEG distinct items the user
// never interacted with, uniform or by popularity.
static void rank_sampled(const lr_scorer *sc, eval_ws *w, const lr_dataset *ds, int64_t nb,
                         lr_split split, int pop_mode, const double *cdf, uint64_t seed) {
  int64_t I = ds->n_items;
  for (int64_t b = 0; b < nb; b++) {
    int64_t u = w->users[b];
    int64_t n_all = ds->offsets[u + 1] - ds->offsets[u];
    int64_t k = sorted_history(w, ds, u, n_all);
    int64_t avail = I - k, want = avail < SAMPLED_NEG ? avail : SAMPLED_NEG;
    int64_t got = 0;
    for (uint32_t draw = 0; got < want; draw++) {
      lr_rng4 r = lr_philox(seed, LR_STREAM_EVAL, (uint32_t)u, (uint32_t)(u >> 32),
                            (uint32_t)split, draw);
      int32_t v;
      if (pop_mode && draw < 64u * SAMPLED_NEG) {
        double x = lr_u01d(r.v[0], r.v[1]) * cdf[I];
        int64_t lo = 1, hi = I; // first v with cdf[v] > x
        while (lo < hi) {
          int64_t mid = (lo + hi) / 2;
          if (cdf[mid] > x) hi = mid;
          else lo = mid + 1;
        }
        v = (int32_t)lo;
      } else { // uniform (also the fallback when popular items are exhausted)
        v = (int32_t)(1 + lr_below(r.v[2], r.v[3], (uint64_t)I));
      }
      if (in_sorted(w->hist, k, v)) continue;
      int dup = 0;
      for (int64_t i = 0; i < got && !dup; i++) dup = w->cand[i] == v;
      if (!dup) w->cand[got++] = v;
    }
    float st = score_one(sc, w, b, w->tgt[b]);
    int64_t ahead = 0;
    for (int64_t i = 0; i < got; i++) ahead += score_one(sc, w, b, w->cand[i]) >= st;
    w->ahead[b] = ahead;
  }
}

int eval_split(lr_metrics *out, const lr_scorer *sc, const lr_dataset *ds, lr_split split,
               const lr_config *c) {
  eval_ws w;
  LR_CALL(ws_init(&w, sc, ds, c));
  double *cdf = NULL;
  if (c->eval_mode == LR_EVAL_POP100) {
    cdf = lr_calloc((size_t)ds->n_items + 1, sizeof(double), "popularity cdf");
    if (!cdf) {
      ws_free(&w);
      lr_error_trace(__FILE__, __LINE__, __func__);
      return LR_ERR_NOMEM;
    }
    for (int64_t v = 1; v <= ds->n_items; v++) cdf[v] = cdf[v - 1] + sc->pop[v];
  }
  metrics_init(out, c->eval_k, c->eval_nk);
  // Each rank ranks a contiguous share of the users; sums are reduced below.
  int64_t P = dist_size(), r = dist_rank();
  int64_t u = ds->n_users * r / P, u_end = ds->n_users * (r + 1) / P;
  while (u < u_end) {
    int64_t nb = 0;
    for (; u < u_end && nb < w.Bu; u++) {
      if (!examples_has_eval(ds, u)) continue;
      w.users[nb] = u;
      w.hist_len[nb] = examples_eval_input(ds, u, split, w.N, w.ids + nb * w.N, &w.lens[nb],
                                           &w.tgt[nb]);
      nb++;
    }
    if (nb == 0) break;
    // A user whose history is empty cannot be encoded; every evaluable user
    // has >= 1 history item since n >= 3.
    hidden_states(sc, &w, nb);
    if (c->eval_mode == LR_EVAL_FULL) rank_full(sc, &w, ds, nb, c->eval_exclude_history);
    else rank_sampled(sc, &w, ds, nb, split, c->eval_mode == LR_EVAL_POP100, cdf,
                      (uint64_t)c->train_seed);
    for (int64_t b = 0; b < nb; b++) metrics_add(out, w.ahead[b]);
  }
  lr_free(cdf);
  ws_free(&w);
  double sums[3 * LR_MAX_K + 1];
  for (int i = 0; i < out->nk; i++)
    sums[3 * i] = out->recall[i], sums[3 * i + 1] = out->mrr[i], sums[3 * i + 2] = out->ndcg[i];
  sums[3 * out->nk] = (double)out->n;
  LR_CALL(dist_allreduce_sum_d(sums, 3 * out->nk + 1));
  for (int i = 0; i < out->nk; i++)
    out->recall[i] = sums[3 * i], out->mrr[i] = sums[3 * i + 1], out->ndcg[i] = sums[3 * i + 2];
  out->n = (int64_t)sums[3 * out->nk];
  metrics_finish(out);
  return LR_OK;
}

// Min-heap of (score, item) of size K: root = the worst kept candidate.
// Worse = lower score, or equal score and larger item id.
static int worse(float sa, int32_t ia, float sb, int32_t ib) {
  return sa < sb || (sa == sb && ia > ib);
}

static void heap_push(float *hs, int32_t *hi, int *n, int K, float s, int32_t it) {
  if (*n == K) {
    if (!worse(hs[0], hi[0], s, it)) return;
    int i = 0; // replace root, sift down
    hs[0] = s, hi[0] = it;
    for (;;) {
      int l = 2 * i + 1, r = l + 1, m = i;
      if (l < K && worse(hs[l], hi[l], hs[m], hi[m])) m = l;
      if (r < K && worse(hs[r], hi[r], hs[m], hi[m])) m = r;
      if (m == i) break;
      float ts = hs[i]; hs[i] = hs[m]; hs[m] = ts;
      int32_t ti = hi[i]; hi[i] = hi[m]; hi[m] = ti;
      i = m;
    }
    return;
  }
  int i = (*n)++;
  hs[i] = s, hi[i] = it;
  while (i > 0) {
    int p = (i - 1) / 2;
    if (!worse(hs[i], hi[i], hs[p], hi[p])) break;
    float ts = hs[i]; hs[i] = hs[p]; hs[p] = ts;
    int32_t ti = hi[i]; hi[i] = hi[p]; hi[p] = ti;
    i = p;
  }
}

int eval_topk(int32_t *items, float *scores, const lr_scorer *sc, const lr_dataset *ds,
              const int64_t *users, int64_t n, int K, int exclude_history, const lr_config *c) {
  eval_ws w;
  LR_CALL(ws_init(&w, sc, ds, c));
  int64_t rows = ds->n_items + 1;
  for (int64_t start = 0; start < n; start += w.Bu) {
    int64_t nb = n - start < w.Bu ? n - start : w.Bu;
    memset(w.ids, 0, (size_t)(nb * w.N) * sizeof(int32_t));
    for (int64_t b = 0; b < nb; b++) {
      int64_t u = users[start + b];
      int64_t len = ds->offsets[u + 1] - ds->offsets[u];
      int64_t from = len > w.N ? len - w.N : 0;
      for (int64_t i = from; i < len; i++) w.ids[b * w.N + i - from] = ds->items[ds->offsets[u] + i];
      w.lens[b] = (int32_t)(len - from > 0 ? len - from : 1);
      w.users[b] = u;
    }
    hidden_states(sc, &w, nb);
    int fill[nb > 0 ? nb : 1];
    memset(fill, 0, sizeof fill);
    for (int64_t lo = 0; lo < rows; lo += w.T) {
      int64_t hi = lo + w.T < rows ? lo + w.T : rows, T = hi - lo;
      score_tile(sc, &w, nb, lo, hi);
      for (int64_t b = 0; b < nb; b++) {
        int64_t u = users[start + b];
        int64_t k = exclude_history ? sorted_history(&w, ds, u, ds->offsets[u + 1] - ds->offsets[u]) : 0;
        float *hs = scores + (start + b) * K;
        int32_t *hi_ = items + (start + b) * K;
        for (int64_t j = 0; j < T; j++) {
          int32_t v = (int32_t)(lo + j);
          if (v == 0 || (k && in_sorted(w.hist, k, v))) continue;
          heap_push(hs, hi_, &fill[b], K, w.tile[b * T + j], v);
        }
      }
    }
    // Heap -> best first.
    for (int64_t b = 0; b < nb; b++) {
      float *hs = scores + (start + b) * K;
      int32_t *hi_ = items + (start + b) * K;
      for (int i = 1; i < fill[b]; i++)
        for (int j = i; j > 0 && worse(hs[j - 1], hi_[j - 1], hs[j], hi_[j]); j--) {
          float ts = hs[j]; hs[j] = hs[j - 1]; hs[j - 1] = ts;
          int32_t ti = hi_[j]; hi_[j] = hi_[j - 1]; hi_[j - 1] = ti;
        }
      for (int i = fill[b]; i < K; i++) hs[i] = -INFINITY, hi_[i] = 0;
    }
  }
  ws_free(&w);
  return LR_OK;
}
