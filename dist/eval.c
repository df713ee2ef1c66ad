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
#include "shard.h"
#include "rng.h"

#define MAX_TILE_FLOATS (16 * 1024 * 1024) // score tile budget (Bu x T)
#define SAMPLED_NEG 100

typedef struct {
  int64_t Bu, N, D, T;
  int gathered;                    // sharded table at P > 1: rank the gathered batch
  int64_t P;
  int64_t *cnt, *dsp, *cnt_d, *dsp_d, *hcnt, *hdsp; // (P) rows, floats, history items
  int64_t M_all;                   // rows of the gathered batch
  float *hs_all;                   // (P*Bu, D) gathered hidden states
  int32_t *tgt_all;                // (P*Bu)
  int64_t *hlen_all;               // (P*Bu) history lengths (exclude_history)
  int32_t *hist_all;               // gathered histories
  int64_t *hoff_all;               // (P*Bu+1) offsets into hist_all
  int64_t hist_cap;                // capacity of hist_all
  float *tscore_all;               // (P*Bu)
  int64_t *ahead_all;              // (P*Bu)
  int32_t *hist_local;             // (Bu*maxlen) this rank's batch histories, back to back
  int32_t *ids, *lens, *tgt, *idx; // (Bu,N), (Bu), (Bu), (Bu,N)
  uint64_t *row_ids;               // (Bu,N), zeros (no dropout in evaluation)
  int64_t *users, *hist_len;       // (Bu)
  float *hs;                       // (Bu,D)
  float *tile;                     // (Bu,T)
  float *tscore;                   // (Bu) target scores
  int64_t *ahead;                  // (Bu) candidates ranked at or above the target
  int32_t *hist;                   // sorted history of one user (max length)
  int32_t *cand, *cand_idx;        // (Bu, SAMPLED_NEG+1) candidate ids (target first), rows
  int64_t *n_cand;                 // (Bu) candidates of each row
} eval_ws;

static void ws_free(eval_ws *w) {
  lr_free(w->cnt), lr_free(w->dsp), lr_free(w->cnt_d), lr_free(w->dsp_d), lr_free(w->hcnt);
  lr_free(w->hdsp), lr_free(w->hs_all), lr_free(w->tgt_all), lr_free(w->hlen_all);
  lr_free(w->hist_all), lr_free(w->hoff_all), lr_free(w->tscore_all), lr_free(w->ahead_all);
  lr_free(w->hist_local);
  lr_free(w->ids), lr_free(w->lens), lr_free(w->tgt), lr_free(w->idx);
  lr_free(w->row_ids), lr_free(w->users), lr_free(w->hist_len), lr_free(w->hs);
  lr_free(w->tile), lr_free(w->tscore), lr_free(w->ahead), lr_free(w->hist), lr_free(w->cand);
  lr_free(w->cand_idx), lr_free(w->n_cand);
  memset(w, 0, sizeof *w);
}

static int ws_init(eval_ws *w, const lr_scorer *sc, const lr_dataset *ds, const lr_config *c) {
  memset(w, 0, sizeof *w);
  w->N = c->model_max_len;
  w->D = c->model_d;
  w->Bu = c->eval_batch_size;
  if (sc->model && w->Bu > sc->model->max_B) w->Bu = sc->model->max_B;
  w->P = dist_size();
  w->gathered = sc->model && sc->table->mode == LR_TABLE_SHARDED && w->P > 1;
  int64_t rows_all = w->gathered ? w->P * w->Bu : w->Bu; // rows ranked at once
  int64_t own = sc->model ? itemtab_rows(&sc->table->tab) : ds->n_items + 1;
  w->T = MAX_TILE_FLOATS / rows_all;
  if (w->T < 1) w->T = 1; // eval.batch_size > MAX_TILE_FLOATS: 0 would never advance
  if (w->T > own) w->T = own;
  int64_t maxlen = 1;
  for (int64_t u = 0; u < ds->n_users; u++)
    if (ds->offsets[u + 1] - ds->offsets[u] > maxlen) maxlen = ds->offsets[u + 1] - ds->offsets[u];
  size_t BN = (size_t)(w->Bu * w->N), RA = (size_t)rows_all;
  w->ids = lr_calloc(BN, sizeof(int32_t), "eval ids");
  w->idx = lr_calloc(BN, sizeof(int32_t), "eval idx");
  w->row_ids = lr_calloc(BN, sizeof(uint64_t), "eval row ids");
  w->lens = lr_calloc((size_t)w->Bu, sizeof(int32_t), "eval lens");
  w->tgt = lr_calloc((size_t)w->Bu, sizeof(int32_t), "eval targets");
  w->users = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval users");
  w->hist_len = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval history lengths");
  w->hs = lr_calloc((size_t)(w->Bu * w->D), sizeof(float), "eval hidden");
  w->tile = lr_calloc(RA * (size_t)w->T, sizeof(float), "eval score tile");
  w->tscore = lr_calloc((size_t)w->Bu, sizeof(float), "eval target scores");
  w->ahead = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval ranks");
  w->hist = lr_calloc((size_t)maxlen, sizeof(int32_t), "eval history");
  w->cand = lr_calloc((size_t)w->Bu * (SAMPLED_NEG + 1), sizeof(int32_t), "eval candidates");
  w->cand_idx = lr_calloc((size_t)w->Bu * (SAMPLED_NEG + 1), sizeof(int32_t), "eval candidate rows");
  w->n_cand = lr_calloc((size_t)w->Bu, sizeof(int64_t), "eval candidate counts");
  w->tscore_all = lr_calloc(RA, sizeof(float), "eval target scores");
  w->ahead_all = lr_calloc(RA, sizeof(int64_t), "eval ranks");
  w->hoff_all = lr_calloc(RA + 1, sizeof(int64_t), "eval history offsets");
  w->hist_cap = (int64_t)RA * maxlen;
  w->hist_local = lr_calloc((size_t)(w->Bu * maxlen), sizeof(int32_t), "eval histories");
  if (!w->ids || !w->idx || !w->row_ids || !w->lens || !w->tgt || !w->users || !w->hist_len ||
      !w->hs || !w->tile || !w->tscore || !w->ahead || !w->hist || !w->cand || !w->cand_idx ||
      !w->n_cand || !w->tscore_all || !w->ahead_all || !w->hoff_all || !w->hist_local)
    goto nomem;
  if (w->gathered) {
    size_t P = (size_t)w->P;
    w->cnt = lr_calloc(P, sizeof(int64_t), "eval counts");
    w->dsp = lr_calloc(P, sizeof(int64_t), "eval displacements");
    w->cnt_d = lr_calloc(P, sizeof(int64_t), "eval counts");
    w->dsp_d = lr_calloc(P, sizeof(int64_t), "eval displacements");
    w->hcnt = lr_calloc(P, sizeof(int64_t), "eval counts");
    w->hdsp = lr_calloc(P, sizeof(int64_t), "eval displacements");
    w->hs_all = lr_calloc(RA * (size_t)w->D, sizeof(float), "eval gathered hidden");
    w->tgt_all = lr_calloc(RA, sizeof(int32_t), "eval gathered targets");
    w->hlen_all = lr_calloc(RA, sizeof(int64_t), "eval gathered history lengths");
    w->hist_all = lr_calloc((size_t)w->hist_cap, sizeof(int32_t), "eval gathered histories");
    if (!w->cnt || !w->dsp || !w->cnt_d || !w->dsp_d || !w->hcnt || !w->hdsp || !w->hs_all ||
        !w->tgt_all || !w->hlen_all || !w->hist_all)
      goto nomem;
  }
  return LR_OK;
nomem:
  ws_free(w);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

lr_scorer eval_scorer(lr_state *s, const float *pop, int64_t n_users) {
  lr_scorer sc = {.st = s, .pop = pop};
  if (s) {
    sc.model = &s->model, sc.table = &s->table;
    sc.user_lo = s->user_lo[dist_rank()], sc.user_hi = s->user_lo[dist_rank() + 1];
  } else {
    const lr_shard u = shard_range(n_users, dist_rank(), dist_size());
    sc.user_lo = u.offset, sc.user_hi = u.offset + u.count;
  }
  return sc;
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

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

// Sorted distinct items of the first n of user u's sequence into out; returns
// the count.
static int64_t sorted_history(int32_t *out, const lr_dataset *ds, int64_t u, int64_t n) {
  memcpy(out, ds->items + ds->offsets[u], (size_t)n * sizeof(int32_t));
  qsort(out, (size_t)n, sizeof(int32_t), cmp_i32);
  int64_t k = 0;
  for (int64_t i = 0; i < n; i++)
    if (k == 0 || out[k - 1] != out[i]) out[k++] = out[i];
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

// Sampled candidates of batch row b (user u): SAMPLED_NEG distinct items the
// user never interacted with, uniform or by popularity, keyed by (seed, user,
// split). Writes w->cand[b*(NEG+1) ..] (target first) and w->n_cand[b].
static void draw_candidates(eval_ws *w, const lr_dataset *ds, int64_t b, lr_split split,
                            int pop_mode, const double *cdf, uint64_t seed) {
  int64_t I = ds->n_items, u = w->users[b];
  int64_t k = sorted_history(w->hist, ds, u, ds->offsets[u + 1] - ds->offsets[u]);
  int64_t avail = I - k, want = avail < SAMPLED_NEG ? avail : SAMPLED_NEG;
  int32_t *cand = w->cand + b * (SAMPLED_NEG + 1);
  cand[0] = w->tgt[b];
  int64_t got = 0;
  for (uint32_t draw = 0; got < want; draw++) {
    lr_rng4 r = lr_philox(seed, LR_STREAM_EVAL, (uint32_t)u, (uint32_t)(u >> 32), (uint32_t)split,
                          draw);
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
    for (int64_t i = 0; i < got && !dup; i++) dup = cand[1 + i] == v;
    if (!dup) cand[1 + got++] = v;
  }
  w->n_cand[b] = 1 + got;
  for (int64_t i = 1 + got; i <= SAMPLED_NEG; i++) cand[i] = cand[0]; // unused slots: a valid id
}

// hs (nb,D) = hidden state at the last valid position of each input; with
// the candidates' rows fetched in the same exchange (sampled modes: n2 ids
// in w->cand, rows indexed by w->cand_idx). Collective with a sharded table.
static int hidden_states(const lr_scorer *sc, eval_ws *w, int64_t nb, int64_t n2,
                         const float **rows) {
  *rows = NULL;
  if (!sc->model) return LR_OK;
  lr_xs *drows;
  LR_CALL(table_lookup(sc->table, rows, &drows, w->idx, w->ids, nb * w->N, w->cand_idx, w->cand,
                       n2));
  if (nb == 0) return LR_OK;
  lr_dropout dp = {0};
  const int last_only = sc->model->cfg.last_only; // only the last rows are read: the fast path
  model_set_last_only(sc->model, 1);
  const float *h = model_forward(sc->model, w->idx, *rows, w->lens, w->row_ids, nb, dp,
                                 state_seq_rows(sc->st, w->users, nb));
  model_set_last_only(sc->model, last_only);
  for (int64_t b = 0; b < nb; b++)
    memcpy(w->hs + b * w->D, h + (b * w->N + w->lens[b] - 1) * w->D, (size_t)w->D * sizeof(float));
  return LR_OK;
}

// tile (M, hi-lo) = scores of global items lo..hi-1 (own rows) for the M
// ranked rows hs.
static void score_tile(const lr_scorer *sc, eval_ws *w, const float *hs, int64_t M, int64_t lo,
                       int64_t hi) {
  int64_t T = hi - lo;
  if (sc->model) {
    const lr_itemtab *tb = &sc->table->tab;
    lr_sgemm(0, 1, M, T, w->D, 1.0f, hs, w->D, tb->w + (lo - tb->lo) * w->D, w->D, 0.0f, w->tile,
             T);
  } else {
    for (int64_t b = 0; b < M; b++) memcpy(w->tile + b * T, sc->pop + lo, (size_t)T * sizeof(float));
  }
}

// Full ranking of M rows (hs, tgt, histories hist[hoff[m] .. hoff[m+1]) sorted
// distinct, or none) against this rank's items [own_lo, own_hi): tscore (M)
// gets the targets' scores (the owner's; 0 elsewhere, summed over ranks by
// `reduce`), ahead (M) the items other than the target, padding and
// (excluded) history scored >= the target. Exact: every score, the target's
// included, comes out of the same GEMM tile.
static int rank_full_rows(const lr_scorer *sc, eval_ws *w, const float *hs, const int32_t *tgt,
                          const int32_t *hist, const int64_t *hoff, int64_t M, int64_t own_lo,
                          int64_t own_hi, float *tscore, int64_t *ahead, int reduce) {
  int single = w->T >= own_hi - own_lo;
  for (int64_t m = 0; m < M; m++) tscore[m] = 0, ahead[m] = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t lo = own_lo; lo < own_hi; lo += w->T) {
      int64_t hi = lo + w->T < own_hi ? lo + w->T : own_hi, T = hi - lo;
      if (pass == 0 || !single) score_tile(sc, w, hs, M, lo, hi);
      if (pass == 0) {
        for (int64_t m = 0; m < M; m++)
          if (tgt[m] >= lo && tgt[m] < hi) tscore[m] = w->tile[m * T + tgt[m] - lo];
        continue;
      }
      for (int64_t m = 0; m < M; m++) {
        int32_t t = tgt[m];
        const float *s = w->tile + m * T;
        float st = tscore[m];
        int64_t cnt = 0;
        for (int64_t j = 0; j < T; j++) cnt += s[j] >= st;
        if (t >= lo && t < hi) cnt--;           // the target itself
        if (lo == 0 && s[0] >= st) cnt--;       // the padding row
        if (hist)                               // excluded history items
          for (int64_t i = hoff[m]; i < hoff[m + 1]; i++) {
            int32_t v = hist[i];
            if (v != t && v >= lo && v < hi && s[v - lo] >= st) cnt--;
          }
        ahead[m] += cnt;
      }
    }
    if (pass == 0 && reduce) LR_CALL(dist_allreduce_sum_f(tscore, M));
  }
  if (reduce) LR_CALL(dist_allreduce_sum_i64(ahead, M));
  return LR_OK;
}

// The histories of this rank's batch (sorted distinct, back to back) into
// w->hist_local with offsets w->hoff_all (M = nb). Returns the item count.
static int64_t batch_histories(eval_ws *w, const lr_dataset *ds, int64_t nb) {
  int64_t n = 0;
  w->hoff_all[0] = 0;
  for (int64_t b = 0; b < nb; b++) {
    n += sorted_history(w->hist_local + n, ds, w->users[b], w->hist_len[b]);
    w->hoff_all[b + 1] = n;
  }
  return n;
}

static int rank_full(const lr_scorer *sc, eval_ws *w, const lr_dataset *ds, int64_t nb,
                     int exclude) {
  int64_t n_hist = exclude ? batch_histories(w, ds, nb) : 0;
  if (!w->gathered) {
    return rank_full_rows(sc, w, w->hs, w->tgt, exclude ? w->hist_local : NULL, w->hoff_all, nb,
                          sc->model ? sc->table->tab.lo : 0,
                          sc->model ? sc->table->tab.hi : ds->n_items + 1, w->tscore, w->ahead, 0);
  }
  // Sharded: gather every rank's batch, rank it against the own rows, sum.
  const int64_t P = w->P, D = w->D;
  LR_CALL(dist_allgather(w->cnt, &nb, 1, LR_DTYPE_I64));
  w->M_all = 0;
  for (int64_t q = 0; q < P; q++) {
    w->dsp[q] = w->M_all;
    w->cnt_d[q] = w->cnt[q] * D, w->dsp_d[q] = w->M_all * D;
    w->M_all += w->cnt[q];
  }
  LR_CALL(dist_allgatherv(w->hs_all, w->cnt_d, w->dsp_d, w->hs, nb * D, LR_DTYPE_F32));
  LR_CALL(dist_allgatherv(w->tgt_all, w->cnt, w->dsp, w->tgt, nb, LR_DTYPE_I32));
  if (exclude) {
    int64_t lens[w->Bu > 0 ? w->Bu : 1];
    for (int64_t b = 0; b < nb; b++) lens[b] = w->hoff_all[b + 1] - w->hoff_all[b];
    LR_CALL(dist_allgatherv(w->hlen_all, w->cnt, w->dsp, lens, nb, LR_DTYPE_I64));
    LR_CALL(dist_allgather(w->hcnt, &n_hist, 1, LR_DTYPE_I64));
    int64_t tot = 0;
    for (int64_t q = 0; q < P; q++) w->hdsp[q] = tot, tot += w->hcnt[q];
    LR_ASSERT(tot <= w->hist_cap);
    LR_CALL(dist_allgatherv(w->hist_all, w->hcnt, w->hdsp, w->hist_local, n_hist, LR_DTYPE_I32));
    w->hoff_all[0] = 0;
    for (int64_t m = 0; m < w->M_all; m++) w->hoff_all[m + 1] = w->hoff_all[m] + w->hlen_all[m];
  }
  LR_CALL(rank_full_rows(sc, w, w->hs_all, w->tgt_all, exclude ? w->hist_all : NULL, w->hoff_all,
                         w->M_all, sc->table->tab.lo, sc->table->tab.hi, w->tscore_all,
                         w->ahead_all, 1));
  int64_t me = dist_rank();
  for (int64_t b = 0; b < nb; b++) w->ahead[b] = w->ahead_all[w->dsp[me] + b];
  return LR_OK;
}

static float dot(const float *a, const float *b, int64_t D) {
  double s = 0;
  for (int64_t j = 0; j < D; j++) s += (double)a[j] * b[j];
  return (float)s;
}

// Sampled ranking: the target against its drawn candidates; rows come from
// the lookup done with the hidden states.
static void rank_sampled(const lr_scorer *sc, eval_ws *w, int64_t nb, const float *rows) {
  for (int64_t b = 0; b < nb; b++) {
    const int32_t *cand = w->cand + b * (SAMPLED_NEG + 1);
    const int32_t *ci = w->cand_idx + b * (SAMPLED_NEG + 1);
    float st = sc->model ? dot(w->hs + b * w->D, rows + (int64_t)ci[0] * w->D, w->D) : sc->pop[cand[0]];
    int64_t ahead = 0;
    for (int64_t i = 1; i < w->n_cand[b]; i++) {
      float s = sc->model ? dot(w->hs + b * w->D, rows + (int64_t)ci[i] * w->D, w->D) : sc->pop[cand[i]];
      ahead += s >= st;
    }
    w->ahead[b] = ahead;
  }
}

int eval_split(lr_metrics *out, const lr_scorer *sc, const lr_dataset *ds, lr_split split,
               const lr_config *c) {
  eval_ws w;
  LR_CALL(ws_init(&w, sc, ds, c));
  int rc = LR_OK;
  double *cdf = NULL;
  int sampled = c->eval_mode != LR_EVAL_FULL;
  if (c->eval_mode == LR_EVAL_POP100) {
    cdf = lr_calloc((size_t)ds->n_items + 1, sizeof(double), "popularity cdf");
    if (!cdf) {
      rc = LR_ERR_NOMEM;
      goto out;
    }
    for (int64_t v = 1; v <= ds->n_items; v++) cdf[v] = cdf[v - 1] + sc->pop[v];
  }
  metrics_init(out, c->eval_k, c->eval_nk);
  // Every rank runs the same number of batches (the collectives inside).
  int64_t user_hi = sc->user_hi < ds->n_users ? sc->user_hi : ds->n_users;
  int64_t n_eval = 0;
  for (int64_t u = sc->user_lo; u < user_hi; u++) n_eval += examples_has_eval(ds, u);
  int64_t n_batches = (n_eval + w.Bu - 1) / w.Bu;
  if ((rc = dist_allreduce_max_i64(&n_batches, 1))) goto out;
  int64_t u = sc->user_lo;
  for (int64_t batch = 0; batch < n_batches; batch++) {
    int64_t nb = 0;
    for (; u < user_hi && nb < w.Bu; u++) {
      if (!examples_has_eval(ds, u)) continue;
      w.users[nb] = u;
      w.hist_len[nb] = examples_eval_input(ds, u, split, w.N, w.ids + nb * w.N, &w.lens[nb],
                                           &w.tgt[nb]);
      nb++;
    }
    if (sampled) {
      for (int64_t b = 0; b < nb; b++)
        draw_candidates(&w, ds, b, split, c->eval_mode == LR_EVAL_POP100, cdf,
                        (uint64_t)c->train_seed);
    }
    const float *rows; // candidates travel in their (nb, NEG+1) layout
    if ((rc = hidden_states(sc, &w, nb, sampled ? nb * (SAMPLED_NEG + 1) : 0, &rows))) goto out;
    if (sampled) rank_sampled(sc, &w, nb, rows);
    else if ((rc = rank_full(sc, &w, ds, nb, c->eval_exclude_history))) goto out;
    for (int64_t b = 0; b < nb; b++) metrics_add(out, w.ahead[b]);
  }
  // exact sums over ranks: the metrics do not depend on how users are cut
  if ((rc = dist_allreduce_xs(out->sum, 3 * out->nk))) goto out;
  if ((rc = dist_allreduce_sum_i64(&out->n, 1))) goto out;
  metrics_finish(out);
out:
  lr_free(cdf);
  ws_free(&w);
  if (rc) lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
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

// Heap of fill entries -> best first; the slots after them: item 0, -inf.
static void heap_sort(float *hs, int32_t *hi, int fill, int K) {
  for (int i = 1; i < fill; i++)
    for (int j = i; j > 0 && worse(hs[j - 1], hi[j - 1], hs[j], hi[j]); j--) {
      float ts = hs[j]; hs[j] = hs[j - 1]; hs[j - 1] = ts;
      int32_t ti = hi[j]; hi[j] = hi[j - 1]; hi[j - 1] = ti;
    }
  for (int i = fill; i < K; i++) hs[i] = -INFINITY, hi[i] = 0;
}

void eval_topk_one(int32_t *items, float *scores, const float *table, int64_t rows, int64_t D,
                   const float *h, const uint8_t *skip, int K, float *tile) {
  int fill = 0;
  for (int64_t lo = 0; lo < rows; lo += EVAL_ONE_TILE) {
    const int64_t T = rows - lo < EVAL_ONE_TILE ? rows - lo : EVAL_ONE_TILE;
    lr_sgemm(0, 1, 1, T, D, 1.0f, h, D, table + lo * D, D, 0.0f, tile, T);
    for (int64_t j = 0; j < T; j++) {
      const int32_t v = (int32_t)(lo + j);
      if (v == 0 || (skip && skip[v])) continue;
      heap_push(scores, items, &fill, K, tile[j], v);
    }
  }
  heap_sort(scores, items, fill, K);
}

int eval_topk(int32_t *items, float *scores, const lr_scorer *sc, const lr_dataset *ds,
              const int64_t *users, int64_t n, int K, int exclude_history, const lr_config *c) {
  return eval_topk_hidden(items, scores, NULL, sc, ds, users, NULL, n, K, exclude_history, c);
}

int eval_topk_hidden(int32_t *items, float *scores, float *hidden, const lr_scorer *sc,
                     const lr_dataset *ds, const int64_t *users, const int64_t *row_users,
                     int64_t n, int K, int exclude_history, const lr_config *c) {
  LR_CHECK(!hidden || sc->model, LR_ERR_ARG, "eval_topk: no hidden states without a model");
  LR_CHECK(!sc->model || sc->table->mode == LR_TABLE_REPLICATED || dist_size() == 1, LR_ERR_ARG,
           "eval_topk: needs the whole item table on this rank");
  eval_ws w;
  LR_CALL(ws_init(&w, sc, ds, c));
  int *fill = lr_calloc((size_t)w.Bu, sizeof(int), "top-K fill counts");
  if (!fill) {
    ws_free(&w);
    return LR_ERR_NOMEM;
  }
  int64_t rows = ds->n_items + 1;
  int rc = LR_OK;
  for (int64_t start = 0; start < n && rc == LR_OK; start += w.Bu) {
    int64_t nb = n - start < w.Bu ? n - start : w.Bu;
    memset(w.ids, 0, (size_t)(nb * w.N) * sizeof(int32_t));
    for (int64_t b = 0; b < nb; b++) {
      int64_t u = users[start + b];
      int64_t len = ds->offsets[u + 1] - ds->offsets[u];
      int64_t from = len > w.N ? len - w.N : 0;
      for (int64_t i = from; i < len; i++) w.ids[b * w.N + i - from] = ds->items[ds->offsets[u] + i];
      w.lens[b] = (int32_t)(len - from > 0 ? len - from : 1);
      w.users[b] = row_users ? row_users[start + b] : u;
    }
    const float *trows;
    if ((rc = hidden_states(sc, &w, nb, 0, &trows))) break;
    if (hidden) memcpy(hidden + start * w.D, w.hs, (size_t)(nb * w.D) * sizeof(float));
    memset(fill, 0, (size_t)w.Bu * sizeof(int));
    for (int64_t lo = 0; lo < rows; lo += w.T) {
      int64_t hi = lo + w.T < rows ? lo + w.T : rows, T = hi - lo;
      score_tile(sc, &w, w.hs, nb, lo, hi);
      for (int64_t b = 0; b < nb; b++) {
        int64_t u = users[start + b];
        int64_t k = exclude_history
                        ? sorted_history(w.hist, ds, u, ds->offsets[u + 1] - ds->offsets[u])
                        : 0;
        float *hs = scores + (start + b) * K;
        int32_t *hi_ = items + (start + b) * K;
        for (int64_t j = 0; j < T; j++) {
          int32_t v = (int32_t)(lo + j);
          if (v == 0 || (k && in_sorted(w.hist, k, v))) continue;
          heap_push(hs, hi_, &fill[b], K, w.tile[b * T + j], v);
        }
      }
    }
    for (int64_t b = 0; b < nb; b++)
      heap_sort(scores + (start + b) * K, items + (start + b) * K, fill[b], K);
  }
  lr_free(fill);
  ws_free(&w);
  return rc;
}
