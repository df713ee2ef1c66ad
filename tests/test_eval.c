// test_eval.c: dist/eval.c against a naive reference written here from the
// README's evaluation protocol, with one process (no mpirun: dist_size() is 1
// before dist_init, so the metric reduction returns at once).
//
// Reference: for every user with n >= 3 and the split's target position t,
// score all items 1..I the slow way (the training popularity, or the model
// run on that user alone followed by double-precision dot products with the
// item rows), rank = #{v != target, candidate, score(v) >= score(target)}
// and Recall/MRR/NDCG at K in {1, 5, 10, 100, 10^6} (the last K > I makes
// MRR and NDCG a function of the exact rank of every user). Candidates: all items
// (full), all but the history before the target (full + exclude_history), or
// all items the user never interacted with (uni100/pop100 on a catalog
// smaller than 100 + history, where every such item must be used).
//
// Model scores from the GEMM and from the reference differ by float rounding,
// so for the model a candidate within `tol` of the target's score is
// "ambiguous" and the metrics must lie between those of the worst and of the
// best resolution (the count is printed; 0 ambiguous means an exact check).
// The popularity scorer is exact (integer counts, many ties).
//
// Cases:
//   A: hand-built, 8 users (lengths 1..12, repeats, a target that never
//      occurs in training, an item that never occurs at all), I = 14, N = 4,
//      eval.batch_size 3 (several batches, one tile): full +- exclude, both
//      splits, pop and model; uni100/pop100 against the exact reference (the
//      catalog is smaller than 100); eval_topk exact for pop (ties by id,
//      fewer candidates than K), by score set for the model.
//   B: generated, 900 users, I = 100000, eval.batch_size 500: the score tile
//      is MAX_TILE_FLOATS/500 = 33554 items (eval.c's constant, 16M floats),
//      so the pop ranking runs over 3 tiles and 2 batches, with targets and
//      history items placed on the tile edges; eval_topk across tiles;
//      sampled modes: deterministic (also across batch sizes), every user
//      counted once, and never worse than full ranking with exclusion (their
//      candidates are a subset of its candidates).
//   B2: the model over 3 tiles: I = 5000, max_B = eval.batch_size = 7000
//      (tiles of 2396 items; the 212 evaluable users fit in one batch), the
//      same full-mode, sampled-mode and top-K checks.
//   C/D: I = 1000, targets 2 and 3 (pop 50) after one rare item: with an item
//      1 of pop 120 the rank is 1 iff item 1 is sampled: uni100 Recall@1 is
//      about 1-100/997, pop100 about 0; another seed or the other split draws
//      other negatives; without it (D) every sampled mode has Recall@1 = 1.
//   eval_popularity counts only the training part of every sequence.
#include <float.h>  // FLT_EPSILON
#include <math.h>   // log2, fabs, INFINITY
#include <stdlib.h> // calloc, free
#include <string.h> // memset, memcpy, memcmp

#include "attention.h" // attn_names
#include "config.h"   // lr_config, config_defaults
#include "dataset.h"  // lr_dataset, dataset_free
#include "eval.h"     // eval_split, eval_topk, eval_popularity, lr_scorer
#include "examples.h" // lr_split
#include "table.h"    // lr_table (replicated)
#include "lr.h"       // lr_calloc, lr_error_msg
#include "model.h"    // lr_model, model_init, model_forward
#include "rng.h"      // lr_philox, lr_below
#include "state.h" // state_config_choices
#include "test_util.h"

#define NK 5
static const int KS[NK] = {1, 5, 10, 100, 1000000};

// ---- datasets ------------------------------------------------------------------------

// ds from n_users sequences of lengths lens, items concatenated in seq.
static int ds_build(lr_dataset *ds, int64_t n_items, const int64_t *lens, const int32_t *seq,
                    int64_t n_users) {
  memset(ds, 0, sizeof *ds);
  ds->n_users = n_users;
  ds->n_items = n_items;
  ds->offsets = lr_calloc((size_t)n_users + 1, sizeof(int64_t), "offsets");
  if (!ds->offsets) return -1;
  for (int64_t u = 0; u < n_users; u++)
    ds->offsets[u + 1] = ds->offsets[u] + lens[u];
  ds->n_inter = ds->offsets[n_users];
  ds->items = lr_calloc((size_t)ds->n_inter, sizeof(int32_t), "items");
  ds->user_orig = lr_calloc((size_t)n_users, sizeof(int64_t), "user_orig");
  ds->item_orig = lr_calloc((size_t)n_items + 1, sizeof(int64_t), "item_orig");
  if (!ds->items || !ds->user_orig || !ds->item_orig) return -1;
  memcpy(ds->items, seq, (size_t)ds->n_inter * sizeof(int32_t));
  for (int64_t u = 0; u < n_users; u++)
    ds->user_orig[u] = u;
  for (int64_t i = 0; i <= n_items; i++)
    ds->item_orig[i] = i;
  return 0;
}

// A: I = 14. Training parts give pop: 1:3 2:2 3:3 4:1 5:3 6:2 7:2 8:2 9:1
// 10:2 11:2 12:2 13:0 14:0; item 13 is only ever a test target, 14 never occurs.
#define A_ITEMS 14
static const int64_t A_LENS[] = {1, 2, 3, 4, 7, 12, 5, 3};
// clang-format off
static const int32_t A_SEQ[] = {
    5,                                     // u0: training only
    3, 5,                                  // u1: training only
    1, 2, 3,                               // u2: train [1], valid 2, test 3
    3, 3, 5, 2,                            // u3: repeat in history
    2, 7, 1, 8, 2, 8, 1,                   // u4: both targets also in history
    4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 12, // u5: longer than N, 3 items never seen
    12, 11, 10, 9, 9,                      // u6: valid target repeated as test target
    6, 11, 13,                             // u7: test target never in training
};
// clang-format on

static int ds_build_a(lr_dataset *ds) {
  return ds_build(ds, A_ITEMS, A_LENS, A_SEQ, (int64_t)(sizeof A_LENS / sizeof A_LENS[0]));
}

static uint64_t rnd(uint64_t key, uint64_t i, uint64_t n) {
  lr_rng4 r = lr_philox(key, 77, (uint32_t)i, (uint32_t)(i >> 32), 0, 0);
  return lr_below(r.v[0], r.v[1], n);
}

// B: U users, a third training-only (1-2 items), the rest 3..12 items; half
// the items from 40 popular ids spread over the catalog (skewed), half uniform.
static int ds_build_b(lr_dataset *ds, int64_t U, int64_t I) {
  int64_t *lens = calloc((size_t)U, sizeof *lens);
  int32_t *seq = calloc((size_t)U * 12, sizeof *seq);
  int rc = -1;
  if (lens && seq) {
    int64_t k = 0, c = 0;
    for (int64_t u = 0; u < U; u++) {
      lens[u] = rnd(1, u, 3) == 0 ? 1 + (int64_t)rnd(2, u, 2) : 3 + (int64_t)rnd(3, u, 10);
      for (int64_t p = 0; p < lens[u]; p++, c++) {
        int32_t v;
        if (rnd(4, c, 2)) {
          int64_t j = (int64_t)(rnd(5, c, 40) * rnd(6, c, 40) / 40); // skewed to small j
          v = (int32_t)(1 + j * (I / 40) + j);
        } else {
          v = (int32_t)(1 + rnd(7, c, (uint64_t)I));
        }
        seq[k++] = v;
      }
    }
    rc = ds_build(ds, I, lens, seq, U);
  }
  free(lens), free(seq);
  return rc;
}

// Put items at the tile edges T-1, T, 2T-1, 2T and the last item I into the
// targets and first history items of the first 8 evaluable users, so some
// target is the first or last item of a tile and some history item too.
static void ds_tile_edges(lr_dataset *ds, int64_t T) {
  const int32_t I = (int32_t)ds->n_items, t1 = (int32_t)T, t2 = (int32_t)(2 * T);
  const int32_t pick[8][3] = {{t1, t2, t1 - 1}, {t2, t1, t2 - 1}, {I, t1 - 1, t1},
                              {t2 - 1, I, t2},  {t1, t1 - 1, t2}, {t2, t2 - 1, I},
                              {t1 - 1, t2, t1}, {t2 - 1, t1, t2}};
  LR_ASSERT(t2 <= I);
  for (int64_t u = 0, k = 0; u < ds->n_users && k < 8; u++) {
    int64_t n = ds->offsets[u + 1] - ds->offsets[u];
    if (n < 3) continue;
    int32_t *seq = ds->items + ds->offsets[u];
    seq[n - 1] = pick[k][0], seq[n - 2] = pick[k][1], seq[0] = pick[k][2];
    k++;
  }
}

// C (with_top = 1) / D (0): I = 1000; 400 users [x_u, 2, 3] with distinct rare
// x_u in 4..1000; 50 training-only users [2, 3]; with_top: 60 users [1, 1].
static int ds_build_cd(lr_dataset *ds, int with_top) {
  enum { NE = 400, NP = 50, NT = 60 };
  int64_t U = NE + NP + (with_top ? NT : 0);
  int64_t lens[NE + NP + NT];
  int32_t seq[3 * NE + 2 * NP + 2 * NT];
  int64_t u = 0, k = 0;
  for (int64_t i = 0; i < NE; i++, u++) {
    lens[u] = 3;
    seq[k++] = (int32_t)(4 + (i * 13) % 997), seq[k++] = 2, seq[k++] = 3;
  }
  for (int64_t i = 0; i < NP; i++, u++)
    lens[u] = 2, seq[k++] = 2, seq[k++] = 3;
  for (int64_t i = 0; with_top && i < NT; i++, u++)
    lens[u] = 2, seq[k++] = 1, seq[k++] = 1;
  return ds_build(ds, 1000, lens, seq, U);
}

// ---- reference scores ----------------------------------------------------------------

typedef struct {
  const lr_scorer *sc;
  int64_t N, I, D;
  int32_t *ids, *idx; // (N)
  uint64_t *row_ids;  // (N) zeros
  float max_abs_row;  // max |item row element| (model)
  char *zero_row;     // (I+1) item row all zero (model): its score is exactly 0
} ref_ctx;

static int ref_init(ref_ctx *r, const lr_scorer *sc, int64_t N, int64_t I, int64_t D) {
  memset(r, 0, sizeof *r);
  r->sc = sc, r->N = N, r->I = I, r->D = D;
  r->ids = calloc((size_t)N, sizeof *r->ids);
  r->idx = calloc((size_t)N, sizeof *r->idx);
  r->row_ids = calloc((size_t)N, sizeof *r->row_ids);
  r->zero_row = calloc((size_t)I + 1, 1);
  if (!r->ids || !r->idx || !r->row_ids || !r->zero_row) return -1;
  for (int64_t v = 0; sc->model && v <= I; v++) {
    r->zero_row[v] = 1;
    for (int64_t j = 0; j < D; j++) {
      float x = sc->table->tab.w[v * D + j];
      if (fabsf(x) > r->max_abs_row) r->max_abs_row = fabsf(x);
      if (x != 0.0f) r->zero_row[v] = 0;
    }
  }
  return 0;
}

static void ref_free(ref_ctx *r) {
  free(r->ids), free(r->idx), free(r->row_ids), free(r->zero_row);
  memset(r, 0, sizeof *r);
}

// s (I+1) = scores of every item for user u given the first t items of its
// sequence (the model sees the last N of them). Returns the tolerance of a
// score comparison: 0 for pop, a float-rounding bound for the model.
static double ref_scores(double *s, ref_ctx *r, const lr_dataset *ds, int64_t u, int64_t t) {
  const lr_scorer *sc = r->sc;
  if (!sc->model) {
    for (int64_t v = 0; v <= r->I; v++)
      s[v] = sc->pop[v];
    return 0.0;
  }
  const int32_t *seq = ds->items + ds->offsets[u];
  int64_t from = t > r->N ? t - r->N : 0, len = t - from;
  for (int64_t i = 0; i < r->N; i++) {
    r->ids[i] = i < len ? seq[from + i] : 0;
    r->idx[i] = r->ids[i] ? r->ids[i] : -1;
  }
  int32_t l = (int32_t)(len > 0 ? len : 1);
  lr_dropout dp = {0};
  const float *h = model_forward(sc->model, r->idx, sc->table->tab.w, &l, r->row_ids, 1, dp, NULL);
  h += (int64_t)(l - 1) * r->D;
  double habs = 0;
  for (int64_t j = 0; j < r->D; j++)
    habs += fabs((double)h[j]);
  for (int64_t v = 0; v <= r->I; v++) {
    const float *e = sc->table->tab.w + v * r->D;
    double acc = 0;
    for (int64_t j = 0; j < r->D; j++)
      acc += (double)h[j] * e[j];
    s[v] = acc;
  }
  // |GEMM - exact| <= (D eps/2) sum_j |h_j e_j| on each side of a comparison
  // (h from a batch equals h alone up to a few ulps). Measured with D = 8,
  // I = 100000: below 4e-8, about 1/10 of this bound.
  return (double)r->D * FLT_EPSILON * habs * r->max_abs_row;
}

// ---- reference metrics ---------------------------------------------------------------

typedef enum { CAND_ALL = 0, CAND_NOT_HISTORY, CAND_NOT_INTERACTED, CAND_KINDS } cand_kind;

typedef struct {
  // [0] worst case (ambiguous candidates ahead), [1] best case (behind)
  double recall[2][NK], mrr[2][NK], ndcg[2][NK];
  int64_t n, ambiguous;
} ref_metrics;

static void ref_add(ref_metrics *m, int side, int64_t rank) {
  for (int i = 0; i < NK; i++)
    if (rank < KS[i]) {
      m->recall[side][i] += 1.0;
      m->mrr[side][i] += 1.0 / (double)(rank + 1);
      m->ndcg[side][i] += 1.0 / log2((double)rank + 2.0);
    }
}

// Metrics of split over ds with the reference scorer, m[k] for candidate
// kind k (all three from one scoring of each user).
static void ref_eval(ref_metrics m[CAND_KINDS], ref_ctx *r, const lr_dataset *ds, lr_split split) {
  memset(m, 0, CAND_KINDS * sizeof *m);
  double *s = calloc((size_t)r->I + 1, sizeof *s);
  int64_t *mark = calloc((size_t)r->I + 1, sizeof *mark); // 1 history, 2 after the target
  for (int64_t u = 0; s && mark && u < ds->n_users; u++) {
    int64_t n = ds->offsets[u + 1] - ds->offsets[u];
    if (n < 3) continue;
    const int32_t *seq = ds->items + ds->offsets[u];
    int64_t t = split == LR_SPLIT_TEST ? n - 1 : n - 2;
    int32_t target = seq[t];
    for (int64_t i = n - 1; i >= 0; i--)
      mark[seq[i]] = i < t ? 1 : 2;
    double tol = ref_scores(s, r, ds, u, t), st = s[target];
    int64_t sure[CAND_KINDS] = {0}, maybe[CAND_KINDS] = {0};
    for (int64_t v = 1; v <= r->I; v++) {
      if (v == target) continue;
      int64_t *cnt;
      if (r->zero_row[target] && r->zero_row[v])
        cnt = sure; // both exactly 0: a tie in any GEMM
      else if (tol == 0 ? s[v] >= st : s[v] > st + tol)
        cnt = sure;
      else if (s[v] >= st - tol)
        cnt = maybe;
      else
        continue;
      cnt[CAND_ALL]++;
      cnt[CAND_NOT_HISTORY] += mark[v] != 1;
      cnt[CAND_NOT_INTERACTED] += mark[v] == 0;
    }
    for (int k = 0; k < CAND_KINDS; k++) {
      ref_add(&m[k], 0, sure[k] + maybe[k]);
      ref_add(&m[k], 1, sure[k]);
      m[k].ambiguous += maybe[k];
      m[k].n++;
    }
    for (int64_t i = 0; i < n; i++)
      mark[seq[i]] = 0;
  }
  for (int k = 0; k < CAND_KINDS; k++)
    for (int side = 0; side < 2; side++)
      for (int i = 0; i < NK && m[k].n; i++) {
        m[k].recall[side][i] /= (double)m[k].n;
        m[k].mrr[side][i] /= (double)m[k].n;
        m[k].ndcg[side][i] /= (double)m[k].n;
      }
  free(s), free(mark);
}

// One metric of eval against the reference interval [lo, hi]; returns the
// distance outside it (0 when inside).
static double outside(double x, double lo, double hi) {
  return x < lo ? lo - x : x > hi ? x - hi : 0.0;
}

static void check_against(const lr_metrics *m, const ref_metrics *r, const char *name) {
  double worst = 0;
  int ok = m->n == r->n && m->nk == NK;
  for (int i = 0; ok && i < NK; i++) {
    const double d[3] = {outside(m->recall[i], r->recall[0][i], r->recall[1][i]),
                         outside(m->mrr[i], r->mrr[0][i], r->mrr[1][i]),
                         outside(m->ndcg[i], r->ndcg[0][i], r->ndcg[1][i])};
    for (int j = 0; j < 3; j++)
      if (!(d[j] <= worst)) worst = d[j]; // catches NaN
  }
  ok = ok && worst <= 1e-12;
  t_check(ok, "%s (users %lld/%lld, ambiguous %lld, R@10 %.4f NDCG@10 %.4f, maxdiff %.2g)", name,
          (long long)m->n, (long long)r->n, (long long)r->ambiguous, m->recall[2], m->ndcg[2],
          worst);
}

static lr_config make_config(int64_t N, int64_t D, int64_t batch, int mode, int exclude) {
  lr_config c;
  config_defaults(&c);
  c.model_max_len = N;
  c.model_d = D;
  c.eval_batch_size = batch;
  c.eval_mode = mode;
  c.eval_exclude_history = exclude;
  c.eval_nk = NK;
  for (int i = 0; i < NK; i++)
    c.eval_k[i] = KS[i];
  c.train_seed = 42;
  return c;
}

static const char *mode_name(int mode) {
  return mode == LR_EVAL_FULL ? "full" : mode == LR_EVAL_UNI100 ? "uni100" : "pop100";
}

// eval_split against the reference for both splits, full with and without
// exclusion, and (when the catalog is small) both sampled modes.
static void check_split_modes(const lr_scorer *sc, const lr_dataset *ds, int64_t N, int64_t D,
                              int64_t batch, int sampled, const char *tag) {
  ref_ctx r;
  memset(&r, 0, sizeof r);
  if (ref_init(&r, sc, N, ds->n_items, D)) {
    t_check(0, "%s: reference scratch", tag);
    ref_free(&r);
    return;
  }
  for (int s = 0; s < 2; s++) {
    lr_split split = s ? LR_SPLIT_TEST : LR_SPLIT_VALID;
    ref_metrics ref[CAND_KINDS];
    ref_eval(ref, &r, ds, split);
    for (int mode = LR_EVAL_FULL; mode <= (sampled ? LR_EVAL_POP100 : LR_EVAL_FULL); mode++)
      for (int ex = 0; ex < (mode == LR_EVAL_FULL ? 2 : 1); ex++) {
        lr_config c = make_config(N, D, batch, mode, ex);
        lr_metrics m;
        memset(&m, 0, sizeof m);
        int rc = eval_split(&m, sc, ds, split, &c);
        cand_kind k = mode != LR_EVAL_FULL ? CAND_NOT_INTERACTED : ex ? CAND_NOT_HISTORY : CAND_ALL;
        char name[160];
        snprintf(name, sizeof name, "%s: %s %s%s", tag, s ? "test" : "valid", mode_name(mode),
                 mode == LR_EVAL_FULL ? (ex ? " exclude_history" : " all items") : "");
        if (rc != LR_OK)
          t_check(0, "%s: eval_split failed: %s", name, lr_error_msg());
        else
          check_against(&m, &ref[k], name);
      }
  }
  ref_free(&r);
}

// Sampled modes on a large catalog (100 of many candidates): deterministic
// across calls (also with another batch size), one count per user, and
// never worse than full ranking with exclusion at any K (their candidates
// are a subset of its candidates, so every user's rank can only drop).
static void check_sampled(const lr_scorer *sc, const lr_dataset *ds, int64_t N, int64_t D,
                          int64_t batch, int64_t n_eval, const char *tag) {
  for (int s = 0; s < 2; s++) {
    lr_split split = s ? LR_SPLIT_TEST : LR_SPLIT_VALID;
    const char *sp = s ? "test" : "valid";
    lr_config cf = make_config(N, D, batch, LR_EVAL_FULL, 1);
    lr_metrics full;
    int rc = eval_split(&full, sc, ds, split, &cf);
    for (int mode = LR_EVAL_UNI100; mode <= LR_EVAL_POP100; mode++) {
      lr_config c1 = make_config(N, D, batch, mode, 0), c2 = make_config(N, D, 7, mode, 0);
      lr_metrics m1, m2;
      memset(&m1, 0, sizeof m1), memset(&m2, 0, sizeof m2);
      rc |= eval_split(&m1, sc, ds, split, &c1);
      rc |= eval_split(&m2, sc, ds, split, &c2);
      double d = 0;
      for (int i = 0; i < NK; i++) {
        d = fmax(d, fabs(m1.recall[i] - m2.recall[i]));
        d = fmax(d, fabs(m1.mrr[i] - m2.mrr[i]));
        d = fmax(d, fabs(m1.ndcg[i] - m2.ndcg[i]));
      }
      int ge = 1;
      for (int i = 0; i < NK; i++)
        ge &= m1.recall[i] >= full.recall[i] && m1.mrr[i] >= full.mrr[i] &&
              m1.ndcg[i] >= full.ndcg[i] && m1.recall[i] <= 1.0;
      // batch size changes only the summation order of the metric sums
      t_check(rc == LR_OK && m1.n == m2.n && d <= 1e-12,
              "%s: %s %s deterministic (batch %lld vs 7, maxdiff %.2g)", tag, sp, mode_name(mode),
              (long long)batch, d);
      t_check(rc == LR_OK && m1.n == n_eval, "%s: %s %s counts every user once (%lld)", tag, sp,
              mode_name(mode), (long long)m1.n);
      t_check(rc == LR_OK && ge, "%s: %s %s >= full exclude_history at every K (R@10 %.4f vs %.4f)",
              tag, sp, mode_name(mode), m1.recall[2], full.recall[2]);
    }
  }
}

// ---- eval_topk -----------------------------------------------------------------------

// eval_topk for n users against the reference: the K best candidates (all
// items, or those never interacted with), best first. Exact for pop (ties by
// smaller id); for the model: the returned scores match the reference, are
// sorted, and no candidate left out scores above the last one kept.
static void check_topk(const lr_scorer *sc, const lr_dataset *ds, int64_t N, int64_t D,
                       int64_t batch, const int64_t *users, int64_t n, int K, int exclude,
                       const char *tag) {
  lr_config c = make_config(N, D, batch, LR_EVAL_FULL, 0);
  int32_t *items = calloc((size_t)(n * K), sizeof *items);
  float *scores = calloc((size_t)(n * K), sizeof *scores);
  int64_t I = ds->n_items;
  double *s = calloc((size_t)I + 1, sizeof *s);
  char *excl = calloc((size_t)I + 1, 1), *taken = calloc((size_t)I + 1, 1);
  ref_ctx r;
  memset(&r, 0, sizeof r);
  int ok = items && scores && s && excl && taken && !ref_init(&r, sc, N, I, D);
  int rc = ok ? eval_topk(items, scores, sc, ds, users, n, K, exclude, &c) : -1;
  ok = ok && rc == LR_OK;
  int64_t n_short = 0;
  for (int64_t b = 0; ok && b < n; b++) {
    int64_t u = users[b], len = ds->offsets[u + 1] - ds->offsets[u];
    const int32_t *seq = ds->items + ds->offsets[u];
    memset(excl, 0, (size_t)I + 1), memset(taken, 0, (size_t)I + 1);
    for (int64_t i = 0; exclude && i < len; i++)
      excl[seq[i]] = 1;
    double tol = ref_scores(s, &r, ds, u, len);
    int64_t avail = 0;
    for (int64_t v = 1; v <= I; v++)
      avail += !excl[v];
    int64_t fill = avail < K ? avail : K;
    n_short += fill < K;
    const int32_t *it = items + b * K;
    const float *sc_b = scores + b * K;
    for (int64_t i = 0; ok && i < fill; i++) {
      int32_t v = it[i];
      ok = v >= 1 && v <= I && !excl[v] && !taken[v];
      if (!ok) break;
      taken[v] = 1;
      ok = fabs((double)sc_b[i] - s[v]) <= tol; // pop: exactly the count
      if (ok && i > 0)                          // best first; pop: equal scores by smaller id
        ok = sc_b[i] < sc_b[i - 1] || (sc_b[i] == sc_b[i - 1] && v > it[i - 1]);
    }
    for (int64_t i = fill; ok && i < K; i++)
      ok = it[i] == 0 && sc_b[i] == -INFINITY;
    if (ok && fill > 0) { // nothing left out beats the last one kept
      double last = s[it[fill - 1]];
      for (int64_t v = 1; ok && v <= I; v++)
        if (!excl[v] && !taken[v])
          ok = tol > 0 ? s[v] < last + tol : s[v] < last || (s[v] == last && v > it[fill - 1]);
    }
    if (!ok) printf("  user %lld: top-%d mismatch\n", (long long)u, K);
  }
  t_check(ok, "%s: eval_topk K=%d %s (%lld users, %lld with fewer candidates than K)", tag, K,
          exclude ? "exclude history" : "include history", (long long)n, (long long)n_short);
  ref_free(&r);
  free(items), free(scores), free(s), free(excl), free(taken);
}

// ---- popularity ----------------------------------------------------------------------

static void check_popularity(const lr_dataset *ds, const float *pop, const char *tag) {
  double *ref = calloc((size_t)ds->n_items + 1, sizeof *ref);
  int ok = ref && pop;
  for (int64_t u = 0; ok && u < ds->n_users; u++) {
    int64_t n = ds->offsets[u + 1] - ds->offsets[u], tl = n >= 3 ? n - 2 : n;
    for (int64_t i = 0; i < tl; i++)
      ref[ds->items[ds->offsets[u] + i]] += 1.0;
  }
  for (int64_t v = 0; ok && v <= ds->n_items; v++)
    ok = (double)pop[v] == ref[v];
  t_check(ok, "%s: eval_popularity = training counts (valid/test targets not counted)", tag);
  free(ref);
}

// ---- model fixture -------------------------------------------------------------------

typedef struct {
  lr_model m;
  lr_table table;
  lr_itemtab *tab; // = &table.tab
} model_fx;

static int model_fx_init(model_fx *f, int64_t I, int64_t N, int64_t D, int64_t max_B,
                         uint64_t seed) {
  memset(f, 0, sizeof *f);
  lr_model_cfg cfg = {.n_items = I,
                      .max_len = N,
                      .d = D,
                      .heads = 2,
                      .layers = 2,
                      .inner = 2 * D,
                      .dropout = 0.0f,
                      .ln_eps = 1e-12f,
                      .attn = attn_find("linrec")};
  if (model_init(&f->m, &cfg, max_B, seed) != LR_OK) return -1;
  if (table_init(&f->table, LR_TABLE_REPLICATED, I + 1, D, max_B * (N + 101), 0, 4096, 256,
                 seed + 1) != LR_OK)
    return -1;
  f->tab = &f->table.tab;
  return 0;
}

static void model_fx_free(model_fx *f) {
  model_free(&f->m);
  table_free(&f->table);
}

// ---- cases ---------------------------------------------------------------------------

static void case_a(void) {
  lr_dataset ds;
  float *pop = NULL;
  model_fx f;
  memset(&f, 0, sizeof f);
  if (ds_build_a(&ds) || !(pop = eval_popularity(&ds))) {
    t_check(0, "A: build");
    goto done;
  }
  check_popularity(&ds, pop, "A");
  static const float want_pop[A_ITEMS + 1] = {0, 3, 2, 3, 1, 3, 2, 2, 2, 1, 2, 2, 2, 0, 0};
  t_check(!memcmp(pop, want_pop, sizeof want_pop), "A: popularity by hand");

  const int64_t N = 4, D = 8;
  lr_scorer pop_sc = {.model = NULL, .table = NULL, .pop = pop, .user_hi = INT64_MAX};
  check_split_modes(&pop_sc, &ds, N, D, 3, 1, "A pop");
  check_split_modes(&pop_sc, &ds, N, D, 1000, 1, "A pop, one batch");

  // Hand-checked ranks, test split, full, pop (ties count against): u2
  // target 3 (pop 3): 1, 5 tie -> rank 2; u3 target 2 (2): 1,3,5 above,
  // 6,7,8,10,11,12 tie -> 9; u4 target 1 (3): 3, 5 -> 2; u5 target 12 (2):
  // 1,3,5 + 2,6,7,8,10,11 -> 9; u6 target 9 (1): all but 13, 14 -> 11; u7
  // target 13 (0): every other item, 14 by a tie (the padding row is not an
  // item) -> 13. With exclude_history: u2 loses 1 -> 1; u3 loses 3, 5 -> 7;
  // u4 loses 2, 7, 8 (1 is the target) -> 2; u5 loses 4..11, 1, 2 (12 is the
  // target) -> 1; u6 loses 12, 11, 10 (9 is the target) -> 8; u7 loses 6, 11
  // -> 11.
  {
    lr_config c = make_config(N, D, 3, LR_EVAL_FULL, 0);
    lr_metrics m;
    int rc = eval_split(&m, &pop_sc, &ds, LR_SPLIT_TEST, &c);
    const double want_r[3] = {0, 2.0 / 6, 4.0 / 6};
    double want_mrr10 = (1.0 / 3 + 0.1 + 1.0 / 3 + 0.1) / 6.0;
    t_check(rc == LR_OK && m.n == 6 && fabs(m.recall[0] - want_r[0]) < 1e-15 &&
                fabs(m.recall[1] - want_r[1]) < 1e-15 && fabs(m.recall[2] - want_r[2]) < 1e-15 &&
                fabs(m.mrr[2] - want_mrr10) < 1e-15,
            "A pop: test full by hand (ranks 2 9 2 9 11 13)");
    c.eval_exclude_history = 1;
    rc = eval_split(&m, &pop_sc, &ds, LR_SPLIT_TEST, &c);
    const double want_x[3] = {0, 3.0 / 6, 5.0 / 6};
    double want_xmrr10 = (1.0 / 2 + 1.0 / 8 + 1.0 / 3 + 1.0 / 2 + 1.0 / 9) / 6.0;
    t_check(rc == LR_OK && m.n == 6 && fabs(m.recall[0] - want_x[0]) < 1e-15 &&
                fabs(m.recall[1] - want_x[1]) < 1e-15 && fabs(m.recall[2] - want_x[2]) < 1e-15 &&
                fabs(m.mrr[2] - want_xmrr10) < 1e-15,
            "A pop: test full exclude_history by hand (ranks 1 7 2 1 8 11)");
  }

  const int64_t users_all[] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int ex = 0; ex < 2; ex++) {
    check_topk(&pop_sc, &ds, N, D, 3, users_all, 8, 5, ex, "A pop");
    check_topk(&pop_sc, &ds, N, D, 3, users_all, 8, 16, ex, "A pop");
  }

  if (model_fx_init(&f, A_ITEMS, N, D, 4, 1234)) {
    t_check(0, "A: model init: %s", lr_error_msg());
    goto done;
  }
  lr_scorer msc = {.model = &f.m, .table = &f.table, .pop = pop, .user_hi = INT64_MAX};
  check_split_modes(&msc, &ds, N, D, 3, 1, "A model");
  check_split_modes(&msc, &ds, N, D, 100, 1, "A model, batch capped at max_B 4");
  for (int ex = 0; ex < 2; ex++)
    check_topk(&msc, &ds, N, D, 3, users_all, 8, 5, ex, "A model");

  // Exact ties in the model: items 9, 13 and 14 get zero rows, so they (and
  // the padding row) score exactly 0 in any GEMM: u6's test target 9 and u7's
  // test target 13 tie with the other two, which counts against them, while
  // the padding row is not a candidate.
  memset(f.tab->w + 9 * D, 0, (size_t)D * sizeof(float));
  memset(f.tab->w + 13 * D, 0, (size_t)D * sizeof(float));
  memset(f.tab->w + 14 * D, 0, (size_t)D * sizeof(float));
  check_split_modes(&msc, &ds, N, D, 3, 1, "A model, zero rows tie");

done:
  model_fx_free(&f);
  lr_free(pop);
  dataset_free(&ds);
}

static void case_b(void) {
  const int64_t U = 900, I = 100000, N = 6, D = 8, BATCH = 500;
  lr_dataset ds;
  float *pop = NULL;
  model_fx f;
  memset(&f, 0, sizeof f);
  const int64_t T = (16 * 1024 * 1024) / BATCH; // eval.c's tile: MAX_TILE_FLOATS / batch
  if (ds_build_b(&ds, U, I)) {
    t_check(0, "B: build");
    goto done;
  }
  ds_tile_edges(&ds, T);
  if (!(pop = eval_popularity(&ds))) {
    t_check(0, "B: popularity");
    goto done;
  }
  check_popularity(&ds, pop, "B");
  int64_t n_eval = 0;
  for (int64_t u = 0; u < U; u++)
    n_eval += ds.offsets[u + 1] - ds.offsets[u] >= 3;
  t_check(T < I + 1 && (I + 1 + T - 1) / T == 3 && n_eval > BATCH,
          "B: %lld evaluable users in batches of %lld, %lld items in tiles of %lld (3 tiles)",
          (long long)n_eval, (long long)BATCH, (long long)I, (long long)T);

  lr_scorer pop_sc = {.model = NULL, .table = NULL, .pop = pop, .user_hi = INT64_MAX};
  check_split_modes(&pop_sc, &ds, N, D, BATCH, 0, "B pop, multi-tile");

  check_sampled(&pop_sc, &ds, N, D, BATCH, n_eval, "B pop");

  int64_t users[12];
  for (int64_t i = 0; i < 12; i++)
    users[i] = (int64_t)rnd(9, (uint64_t)i, (uint64_t)U);
  for (int ex = 0; ex < 2; ex++)
    check_topk(&pop_sc, &ds, N, D, BATCH, users, 12, 20, ex, "B pop");

done:
  lr_free(pop);
  dataset_free(&ds);
}

// B2: the model over several tiles. eval's batch is capped at the model's
// max_B, so a 3-tile catalog needs max_B * (I+1) > 2 * 16M: I = 5000 with
// max_B = eval.batch_size = 7000 (tiles of 2396 items), all 200 evaluable
// users in one batch (several batches are covered by A for the model and by
// B for the shared ranking code). A small catalog keeps near-ties between the
// GEMM and the reference rare.
static void case_b2(void) {
  const int64_t U = 300, I = 5000, N = 6, D = 8, BATCH = 7000;
  lr_dataset ds;
  float *pop = NULL;
  model_fx f;
  memset(&f, 0, sizeof f);
  const int64_t T = (16 * 1024 * 1024) / BATCH;
  if (ds_build_b(&ds, U, I)) {
    t_check(0, "B2: build");
    goto done;
  }
  ds_tile_edges(&ds, T);
  if (!(pop = eval_popularity(&ds))) {
    t_check(0, "B2: popularity");
    goto done;
  }
  if (model_fx_init(&f, I, N, D, BATCH, 99)) {
    t_check(0, "B2: model init: %s", lr_error_msg());
    goto done;
  }
  t_check(T < I + 1 && (I + 1 + T - 1) / T == 3, "B2: %lld items in tiles of %lld (3 tiles)",
          (long long)I, (long long)T);
  lr_scorer msc = {.model = &f.m, .table = &f.table, .pop = pop, .user_hi = INT64_MAX};
  check_split_modes(&msc, &ds, N, D, BATCH, 0, "B2 model, multi-tile");
  int64_t n_eval = 0;
  for (int64_t u = 0; u < U; u++)
    n_eval += ds.offsets[u + 1] - ds.offsets[u] >= 3;
  check_sampled(&msc, &ds, N, D, BATCH, n_eval, "B2 model");
  int64_t users[12];
  for (int64_t i = 0; i < 12; i++)
    users[i] = (int64_t)rnd(9, (uint64_t)i, (uint64_t)U);
  for (int ex = 0; ex < 2; ex++)
    check_topk(&msc, &ds, N, D, BATCH, users, 12, 20, ex, "B2 model");

done:
  model_fx_free(&f);
  lr_free(pop);
  dataset_free(&ds);
}

static void case_cd(int with_top) {
  const char *tag = with_top ? "C" : "D";
  lr_dataset ds;
  float *pop = NULL;
  if (ds_build_cd(&ds, with_top) || !(pop = eval_popularity(&ds))) {
    t_check(0, "%s: build", tag);
    goto done;
  }
  t_check(pop[1] == (with_top ? 120.0f : 0.0f) && pop[2] == 50.0f && pop[3] == 50.0f &&
              pop[4] == 1.0f,
          "%s: popularity of items 1, 2, 3, 4", tag);
  lr_scorer sc = {.model = NULL, .table = NULL, .pop = pop, .user_hi = INT64_MAX};
  double r1_uni[2] = {0, 0};
  for (int s = 0; s < 2; s++) {
    lr_split split = s ? LR_SPLIT_TEST : LR_SPLIT_VALID;
    for (int mode = LR_EVAL_UNI100; mode <= LR_EVAL_POP100; mode++) {
      lr_config c = make_config(5, 8, 128, mode, 0);
      lr_metrics m;
      int rc = eval_split(&m, &sc, &ds, split, &c);
      const char *sp = s ? "test" : "valid";
      if (rc != LR_OK || m.n != 400) {
        t_check(0, "%s: %s %s: eval_split (n %lld)", tag, sp, mode_name(mode), (long long)m.n);
        continue;
      }
      if (!with_top) {
        int ok = 1;
        for (int i = 0; i < NK; i++)
          ok &= m.recall[i] == 1.0 && m.mrr[i] == 1.0 && m.ndcg[i] == 1.0;
        t_check(ok, "D: %s %s: the target is the most popular candidate -> Recall@1 = 1", sp,
                mode_name(mode));
      } else if (mode == LR_EVAL_UNI100) {
        r1_uni[s] = m.recall[0];
        // rank 1 iff item 1 is among 100 of the 997 candidates: p = 100/997,
        // 400 users, sd 0.015; +-5 sd
        double p = 1.0 - 100.0 / 997.0;
        t_check(fabs(m.recall[0] - p) < 0.075 && m.recall[1] == 1.0,
                "C: %s uni100: Recall@1 %.4f ~ 1-100/997 = %.4f, Recall@5 = 1", sp, m.recall[0], p);
        lr_config c2 = c;
        c2.train_seed = 43;
        lr_metrics m2;
        rc = eval_split(&m2, &sc, &ds, split, &c2);
        t_check(rc == LR_OK && m2.recall[0] != m.recall[0],
                "C: %s uni100: another seed draws other negatives (R@1 %.4f vs %.4f)", sp,
                m2.recall[0], m.recall[0]);
      } else {
        // item 1 carries 120/620 of the sampling mass: drawn almost surely
        t_check(m.recall[0] < 0.05 && m.recall[1] == 1.0,
                "C: %s pop100: Recall@1 %.4f ~ 0 (the popular item is sampled)", sp, m.recall[0]);
      }
    }
  }
  // Both splits look alike here (target 2 or 3, the other one interacted
  // with), so only their own negatives (keyed by the split) tell them apart.
  if (with_top)
    t_check(r1_uni[0] != r1_uni[1],
            "C: uni100 valid and test draw other negatives (R@1 %.4f, %.4f)", r1_uni[0], r1_uni[1]);
done:
  lr_free(pop);
  dataset_free(&ds);
}

int main(void) {
  state_config_choices(); // the attention kinds and architectures (dist/state.h)
  case_a();
  case_b();
  case_b2();
  case_cd(1);
  case_cd(0);
  return t_done();
}
