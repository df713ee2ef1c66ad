// test_examples.c: io/examples.c on a hand-built dataset (README "Examples"
// and "Evaluation protocol"):
//   - the leave-one-out training length (n-2 for n >= 3, else n);
//   - the example count for positions=last (sum of max(train_len-1, 0)) and
//     positions=all (one per user with train_len >= 2);
//   - batch contents against a reference written from the definitions:
//     last: input = the (up to N) items before position t, right-padded with
//     0, target = item t; all: the window of the last N+1 training items,
//     inputs and targets shifted by one, 0 at padding; lens and ex_ids, also
//     for a shuffled order and a batch starting mid-epoch;
//   - positions=all with every window (train.windows=all): the user's
//     targets cut into windows of N from the end, each target in exactly one;
//   - loss rows (n for last, the sum of input lengths for all);
//   - shuffling: a permutation, a pure function of (seed, epoch), different
//     across epochs and seeds, and not grossly biased;
//   - evaluation inputs for the validation and test splits (history
//     truncated to the last N items, target, returned history length);
//   - a dataset with no training example at all.
#include <stdlib.h> // calloc, free
#include <string.h> // memset

#include "dataset.h"  // lr_dataset, dataset_free
#include "examples.h" // examples_*
#include "lr.h"       // lr_calloc
#include "test_util.h"

#define N 5 // model.max_len of every check

// Users in this order: lengths 3, 1, 30, 2, 7, 1 (zero-example users at the
// start, the middle and the end exercise the example -> user search).
static const int64_t LENS[] = {3, 1, 30, 2, 7, 1};
#define NU ((int64_t)(sizeof LENS / sizeof LENS[0]))

// Item at position p of user u: distinct and recognisable.
static int32_t item_at(int64_t u, int64_t p) { return (int32_t)(u * 40 + p + 1); }

// Build ds from lens (n users). Items from item_at. Returns 0 on success.
static int build(lr_dataset *ds, const int64_t *lens, int64_t n) {
  memset(ds, 0, sizeof *ds);
  ds->n_users = n;
  ds->n_items = n * 40;
  ds->offsets = lr_calloc((size_t)n + 1, sizeof(int64_t), "offsets");
  if (!ds->offsets) return -1;
  for (int64_t u = 0; u < n; u++)
    ds->offsets[u + 1] = ds->offsets[u] + lens[u];
  ds->n_inter = ds->offsets[n];
  ds->items = lr_calloc((size_t)ds->n_inter, sizeof(int32_t), "items");
  ds->user_orig = lr_calloc((size_t)n, sizeof(int64_t), "user_orig");
  ds->item_orig = lr_calloc((size_t)ds->n_items + 1, sizeof(int64_t), "item_orig");
  if (!ds->items || !ds->user_orig || !ds->item_orig) return -1;
  for (int64_t u = 0; u < n; u++) {
    ds->user_orig[u] = u;
    for (int64_t p = 0; p < lens[u]; p++)
      ds->items[ds->offsets[u] + p] = item_at(u, p);
  }
  for (int64_t i = 0; i <= ds->n_items; i++)
    ds->item_orig[i] = i;
  return 0;
}

static int64_t ref_train_len(int64_t n) { return n >= 3 ? n - 2 : n; }

// ---- reference enumeration -----------------------------------------------------------

typedef struct {
  int64_t u, t; // user, position of the (last) target
} ref_ex;

// Examples in id order; returns the count (ex may be NULL to count).
static int64_t ref_enumerate(ref_ex *ex, int all) {
  int64_t k = 0;
  for (int64_t u = 0; u < NU; u++) {
    int64_t tl = ref_train_len(LENS[u]);
    if (all == 2) { // every window: last targets tl-1, tl-1-N, ... down to >= 1, in order
      int64_t w = tl >= 2 ? (tl - 1 + N - 1) / N : 0;
      for (int64_t j = w - 1; j >= 0; j--) {
        if (ex) ex[k] = (ref_ex){u, tl - 1 - j * N};
        k++;
      }
    } else if (all) {
      if (tl >= 2) {
        if (ex) ex[k] = (ref_ex){u, tl - 1};
        k++;
      }
    } else {
      for (int64_t t = 1; t < tl; t++) {
        if (ex) ex[k] = (ref_ex){u, t};
        k++;
      }
    }
  }
  return k;
}

// Expected ids (N), lens, targets ((1) for last, (N) for all) of example e.
static void ref_fill(const ref_ex *e, int all, int32_t *ids, int32_t *len, int32_t *tgt) {
  memset(ids, 0, N * sizeof *ids);
  memset(tgt, 0, (all ? N : 1) * sizeof *tgt);
  int64_t l = e->t < N ? e->t : N, from = e->t - l;
  for (int64_t i = 0; i < l; i++)
    ids[i] = item_at(e->u, from + i);
  if (all)
    for (int64_t i = 0; i < l; i++)
      tgt[i] = item_at(e->u, from + i + 1);
  else
    tgt[0] = item_at(e->u, e->t);
  *len = (int32_t)l;
}

// Compare examples_batch(start, B) with the reference, given ex->perm.
static int batch_matches(const lr_examples *ex, const ref_ex *ref, int64_t start, int64_t B) {
  int all = ex->all, ok = 1;
  int64_t tw = all ? N : 1;
  int32_t *ids = calloc((size_t)(B * N), sizeof *ids), *lens = calloc((size_t)B, sizeof *lens);
  int32_t *tgt = calloc((size_t)(B * tw), sizeof *tgt);
  uint64_t *eid = calloc((size_t)B, sizeof *eid);
  if (!ids || !lens || !tgt || !eid) ok = 0;
  // poison: the batch must write every element (padding included)
  if (ok) {
    for (int64_t i = 0; i < B * N; i++)
      ids[i] = -7;
    for (int64_t i = 0; i < B * tw; i++)
      tgt[i] = -7;
    examples_batch(ex, start, B, ids, lens, tgt, eid);
  }
  for (int64_t b = 0; ok && b < B; b++) {
    int64_t e = ex->perm[start + b];
    int32_t rids[N], rtgt[N], rlen;
    ref_fill(&ref[e], all, rids, &rlen, rtgt);
    ok = eid[b] == (uint64_t)e && lens[b] == rlen && !memcmp(ids + b * N, rids, sizeof rids) &&
         !memcmp(tgt + b * tw, rtgt, (size_t)tw * 4);
    if (!ok)
      printf("  mismatch at batch row %lld (example %lld, user %lld, t %lld)\n", (long long)b,
             (long long)e, (long long)ref[e].u, (long long)ref[e].t);
  }
  free(ids), free(lens), free(tgt), free(eid);
  return ok;
}

// ---- checks --------------------------------------------------------------------------

static void test_train_len(const lr_dataset *ds) {
  int ok = 1, ok_eval = 1;
  for (int64_t u = 0; u < NU; u++) {
    ok &= examples_train_len(ds, u) == ref_train_len(LENS[u]);
    ok_eval &= examples_has_eval(ds, u) == (LENS[u] >= 3);
  }
  t_check(ok, "train_len: n-2 for n >= 3, n for n = 1, 2");
  t_check(ok_eval, "has_eval: users with n >= 3 only");
}

static void test_positions(const lr_dataset *ds, int all) {
  const char *name = all == 2 ? "all, every window" : all ? "all" : "last";
  int64_t n_ref = ref_enumerate(NULL, all);
  ref_ex *ref = calloc((size_t)n_ref, sizeof *ref);
  ref_enumerate(ref, all);
  lr_examples ex;
  int rc = examples_init(&ex, ds, N, all);
  t_check(rc == LR_OK, "%s: examples_init", name);
  if (rc != LR_OK) {
    free(ref);
    return;
  }
  t_check(ex.n_examples == n_ref && n_ref == (all == 2 ? 8 : all ? 3 : 32),
          "%s: n_examples = %lld (expect %lld)",
          name, (long long)ex.n_examples, (long long)n_ref);
  int ident = 1;
  for (int64_t i = 0; i < ex.n_examples; i++)
    ident &= ex.perm[i] == i;
  t_check(ident, "%s: initial order is the identity", name);

  // whole epoch in one batch, unshuffled: ids are 0..n-1 in user-major order
  t_check(batch_matches(&ex, ref, 0, ex.n_examples), "%s: batch contents (unshuffled, one batch)",
          name);
  // shuffled, in uneven batches starting mid-epoch
  examples_shuffle(&ex, 1234, 3);
  int ok = 1;
  for (int64_t s = 0; s < ex.n_examples; s += 3) {
    int64_t B = ex.n_examples - s < 3 ? ex.n_examples - s : 3;
    ok &= batch_matches(&ex, ref, s, B);
  }
  t_check(ok, "%s: batch contents (shuffled, batches of 3)", name);

  // loss rows: n for last, sum of lengths for all
  int ok_rows = 1;
  for (int64_t s = 0; s < ex.n_examples; s++)
    for (int64_t n = 0; s + n <= ex.n_examples; n++) {
      int64_t want = 0;
      for (int64_t b = 0; b < n; b++) {
        const ref_ex *e = &ref[ex.perm[s + b]];
        want += all ? (e->t < N ? e->t : N) : 1;
      }
      ok_rows &= examples_loss_rows(&ex, s, n) == want;
    }
  t_check(ok_rows, "%s: loss rows of every slice", name);
  if (all == 2) {
    // every training target (positions 1 .. train_len-1 of each user, 32 in all) is the
    // target of exactly one window
    int64_t rows = examples_loss_rows(&ex, 0, ex.n_examples);
    int covered = rows == 32;
    for (int64_t u = 0; u < NU; u++)
      for (int64_t p = 1; p < ref_train_len(LENS[u]); p++) {
        int hits = 0;
        for (int64_t e = 0; e < n_ref; e++) {
          int64_t l = ref[e].t < N ? ref[e].t : N;
          hits += ref[e].u == u && p > ref[e].t - l && p <= ref[e].t;
        }
        covered &= hits == 1;
      }
    t_check(covered, "all, every window: each of the 32 training targets in exactly one window "
                     "(loss rows of the epoch %lld)", (long long)rows);
  } else if (all) {
    // the three windows: user 2 (train 28: N inputs), user 3 (n = 2, both
    // training: 1 input), user 4 (train 5: 4 inputs)
    int64_t rows = examples_loss_rows(&ex, 0, 3);
    t_check(rows == N + 1 + 4, "all: loss rows of the epoch = %lld (expect %d)", (long long)rows,
            N + 1 + 4);
  }
  examples_free(&ex);
  t_check(ex.perm == NULL && ex.cum == NULL && ex.n_examples == 0, "%s: free zeroes", name);
  free(ref);
}

static int is_perm(const int64_t *p, int64_t n) {
  char *seen = calloc((size_t)n + 1, 1);
  int ok = seen != NULL;
  for (int64_t i = 0; ok && i < n; i++) {
    ok = p[i] >= 0 && p[i] < n && !seen[p[i]];
    if (ok) seen[p[i]] = 1;
  }
  free(seen);
  return ok;
}

static void test_shuffle(const lr_dataset *ds) {
  lr_examples ex;
  if (examples_init(&ex, ds, N, 0) != LR_OK) {
    t_check(0, "shuffle: examples_init");
    return;
  }
  int64_t n = ex.n_examples;
  int64_t *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
  examples_shuffle(&ex, 42, 1);
  memcpy(a, ex.perm, (size_t)n * sizeof *a);
  t_check(is_perm(a, n), "shuffle: a permutation of 0..n-1");
  int ident = 1;
  for (int64_t i = 0; i < n; i++)
    ident &= a[i] == i;
  t_check(!ident, "shuffle: not the identity");
  examples_shuffle(&ex, 42, 2);
  memcpy(b, ex.perm, (size_t)n * sizeof *b);
  t_check(is_perm(b, n) && memcmp(a, b, (size_t)n * sizeof *a),
          "shuffle: another epoch gives another permutation");
  examples_shuffle(&ex, 42, 1); // from a shuffled state: no hidden dependence on it
  t_check(!memcmp(a, ex.perm, (size_t)n * sizeof *a), "shuffle: same (seed, epoch) -> same order");
  examples_shuffle(&ex, 43, 1);
  t_check(memcmp(a, ex.perm, (size_t)n * sizeof *a), "shuffle: another seed -> another order");

  // a second examples object over the same data gives the same order
  lr_examples ex2;
  if (examples_init(&ex2, ds, N, 0) == LR_OK) {
    examples_shuffle(&ex2, 42, 1);
    t_check(!memcmp(a, ex2.perm, (size_t)n * sizeof *a), "shuffle: independent of the object");
    examples_free(&ex2);
  }

  // Rough uniformity: over E epochs, each example lands in slot 0 and in slot
  // n-1 about E/n times (binomial sd ~ 9.8 for E/n = 100): allow +-5 sd.
  enum { E = 3200 };
  int64_t first[64] = {0}, last[64] = {0};
  for (uint32_t e = 0; e < E; e++) {
    examples_shuffle(&ex, 7, e);
    first[ex.perm[0]]++, last[ex.perm[n - 1]]++;
  }
  int ok = 1;
  int64_t mean = E / n;
  for (int64_t i = 0; i < n; i++)
    ok &=
        first[i] > mean - 50 && first[i] < mean + 50 && last[i] > mean - 50 && last[i] < mean + 50;
  t_check(ok && n == 32, "shuffle: first/last slot frequencies within 5 sd of uniform");
  free(a), free(b);
  examples_free(&ex);
}

static void test_eval_input(const lr_dataset *ds) {
  int ok = 1;
  for (int64_t u = 0; u < NU; u++) {
    int64_t n = LENS[u];
    if (n < 3) continue;
    for (int s = 0; s < 2; s++) {
      lr_split split = s ? LR_SPLIT_TEST : LR_SPLIT_VALID;
      int64_t t = s ? n - 1 : n - 2;
      int32_t ids[N], len = -1, target = -1;
      for (int i = 0; i < N; i++)
        ids[i] = -7;
      int64_t h = examples_eval_input(ds, u, split, N, ids, &len, &target);
      int64_t l = t < N ? t : N;
      int32_t want[N] = {0};
      for (int64_t i = 0; i < l; i++)
        want[i] = item_at(u, t - l + i);
      int good = h == t && len == l && target == item_at(u, t) && !memcmp(ids, want, sizeof want);
      if (!good)
        printf("  eval input of user %lld split %d: hist_len %lld len %d target %d\n", (long long)u,
               s, (long long)h, len, target);
      ok &= good;
    }
  }
  t_check(ok, "eval_input: last N history items right-padded, target, hist_len (valid, test)");
  // user 0 (n = 3): valid = item 1 after [item 0], test = item 2 after [item 0, item 1]
  int32_t ids[N], len, target;
  int64_t h = examples_eval_input(ds, 0, LR_SPLIT_TEST, N, ids, &len, &target);
  t_check(h == 2 && len == 2 && ids[0] == 1 && ids[1] == 2 && ids[2] == 0 && target == 3,
          "eval_input: n = 3 test split by hand");
  // user 2 (n = 30): test target item 29, input items 24..28
  h = examples_eval_input(ds, 2, LR_SPLIT_TEST, N, ids, &len, &target);
  t_check(h == 29 && len == N && ids[0] == item_at(2, 24) && ids[N - 1] == item_at(2, 28) &&
              target == item_at(2, 29),
          "eval_input: n = 30 test split truncated to N by hand");
}

// No user has two training items: zero examples, and init still succeeds.
static void test_empty(void) {
  static const int64_t lens[] = {1, 3, 3, 1};
  lr_dataset ds;
  if (build(&ds, lens, 4)) {
    t_check(0, "empty: build");
    dataset_free(&ds);
    return;
  }
  for (int all = 0; all < 2; all++) {
    lr_examples ex;
    int rc = examples_init(&ex, &ds, N, all);
    t_check(rc == LR_OK && ex.n_examples == 0, "empty (%s): no examples, init succeeds",
            all ? "all" : "last");
    if (rc == LR_OK) {
      examples_shuffle(&ex, 1, 1);
      examples_free(&ex);
    }
  }
  dataset_free(&ds);
}

int main(void) {
  lr_dataset ds;
  if (build(&ds, LENS, NU)) {
    t_check(0, "build dataset");
    dataset_free(&ds);
    return t_done();
  }
  test_train_len(&ds);
  test_positions(&ds, 0);
  test_positions(&ds, 1);
  test_positions(&ds, 2);
  test_shuffle(&ds);
  test_eval_input(&ds);
  test_empty();
  dataset_free(&ds);
  return t_done();
}
