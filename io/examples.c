// examples.c: example enumeration, shuffling and batch filling (examples.h).
#include "examples.h"

#include <string.h> // memset

#include "lr.h"
#include "rng.h"

int64_t examples_train_len(const lr_dataset *ds, int64_t u) {
  int64_t n = ds->offsets[u + 1] - ds->offsets[u];
  return n >= 3 ? n - 2 : n;
}

int examples_has_eval(const lr_dataset *ds, int64_t u) {
  return ds->offsets[u + 1] - ds->offsets[u] >= 3;
}

void examples_free(lr_examples *ex) {
  lr_free(ex->cum);
  lr_free(ex->perm);
  memset(ex, 0, sizeof *ex);
}

int examples_init(lr_examples *ex, const lr_dataset *ds, int64_t N, int positions_all) {
  memset(ex, 0, sizeof *ex);
  ex->ds = ds;
  ex->N = N;
  ex->all = positions_all;
  ex->cum = lr_calloc((size_t)ds->n_users + 1, sizeof(int64_t), "example index");
  if (!ex->cum) goto fail;
  for (int64_t u = 0; u < ds->n_users; u++) {
    int64_t t = examples_train_len(ds, u);
    int64_t k = t < 2 ? 0 : positions_all == 2 ? (t - 1 + N - 1) / N : positions_all ? 1 : t - 1;
    ex->cum[u + 1] = ex->cum[u] + k;
  }
  ex->n_examples = ex->cum[ds->n_users];
  ex->perm = lr_calloc((size_t)ex->n_examples, sizeof(int64_t), "example permutation");
  if (!ex->perm) goto fail;
  for (int64_t i = 0; i < ex->n_examples; i++) ex->perm[i] = i;
  return LR_OK;
fail:
  examples_free(ex);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

void examples_shuffle(lr_examples *ex, uint64_t seed, uint32_t epoch) {
  int64_t n = ex->n_examples;
  for (int64_t i = 0; i < n; i++) ex->perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    lr_rng4 r = lr_philox(seed, LR_STREAM_SHUFFLE, (uint32_t)i, (uint32_t)(i >> 32), epoch, 0);
    int64_t j = (int64_t)lr_below(r.v[0], r.v[1], (uint64_t)i + 1);
    int64_t t = ex->perm[i];
    ex->perm[i] = ex->perm[j];
    ex->perm[j] = t;
  }
}

// User owning example e (binary search in cum).
int64_t examples_user(const lr_examples *ex, int64_t e) {
  int64_t lo = 0, hi = ex->ds->n_users; // cum[lo] <= e < cum[hi]
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ex->cum[mid] <= e) lo = mid;
    else hi = mid;
  }
  return lo;
}

void examples_batch(const lr_examples *ex, int64_t start, int64_t B, int32_t *ids,
                    int32_t *lens, int32_t *tgt, uint64_t *ex_ids) {
  examples_fill(ex, ex->perm + start, B, ids, lens, tgt, ex_ids);
}

// Position of the (last) target of example e (of user u) in u's sequence;
// the input is the up to N items before it.
static int64_t target_pos(const lr_examples *ex, int64_t e, int64_t u) {
  if (ex->all == 2) // windows: the last ends at the last training item, each one N before
    return examples_train_len(ex->ds, u) - 1 - (ex->cum[u + 1] - 1 - e) * ex->N;
  return ex->all ? examples_train_len(ex->ds, u) - 1 : e - ex->cum[u] + 1;
}

int64_t examples_input_len(const lr_examples *ex, int64_t e) {
  int64_t t = target_pos(ex, e, examples_user(ex, e));
  return t < ex->N ? t : ex->N;
}

void examples_fill(const lr_examples *ex, const int64_t *exs, int64_t B, int32_t *ids,
                   int32_t *lens, int32_t *tgt, uint64_t *ex_ids) {
  const lr_dataset *ds = ex->ds;
  const int64_t N = ex->N;
  memset(ids, 0, (size_t)(B * N) * sizeof *ids);
  if (ex->all) memset(tgt, 0, (size_t)(B * N) * sizeof *tgt);
  for (int64_t b = 0; b < B; b++) {
    int64_t e = exs[b];
    int64_t u = examples_user(ex, e);
    const int32_t *seq = ds->items + ds->offsets[u];
    int64_t t = target_pos(ex, e, u), len = t < N ? t : N, from = t - len;
    for (int64_t i = 0; i < len; i++) ids[b * N + i] = seq[from + i];
    if (ex->all)
      for (int64_t i = 0; i < len; i++) tgt[b * N + i] = seq[from + i + 1];
    else tgt[b] = seq[t];
    lens[b] = (int32_t)len;
    ex_ids[b] = (uint64_t)e;
  }
}

int64_t examples_eval_input(const lr_dataset *ds, int64_t u, lr_split split, int64_t N,
                            int32_t *ids, int32_t *len, int32_t *target) {
  int64_t n = ds->offsets[u + 1] - ds->offsets[u];
  const int32_t *seq = ds->items + ds->offsets[u];
  int64_t t = split == LR_SPLIT_TEST ? n - 1 : n - 2; // target position
  int64_t from = t > N ? t - N : 0, l = t - from;
  memset(ids, 0, (size_t)N * sizeof *ids);
  for (int64_t i = 0; i < l; i++) ids[i] = seq[from + i];
  *len = (int32_t)l;
  *target = seq[t];
  return t;
}

int64_t examples_loss_rows(const lr_examples *ex, int64_t start, int64_t n) {
  if (!ex->all) return n;
  int64_t rows = 0;
  for (int64_t b = 0; b < n; b++)
    rows += examples_input_len(ex, ex->perm[start + b]);
  return rows;
}
