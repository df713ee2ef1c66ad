// prep.c: preprocessing (io/README.md, "Data") on the per-user CSR
// (data_internal.h).
//
// Order of operations (the rating threshold is applied earlier, while
// reading):
//   1. group by user: counting sort, O(n), keeps file order within a user;
//   2. chronological order: per-user stable merge sort on the timestamp
//      (ties keep file order); skipped for users already in order and for
//      formats without timestamps (file order is the order);
//   3. dedup of repeated (user,item) pairs: keep all, the first or the last
//      occurrence in that chronological order;
//   4. k-core: drop users and items with < k interactions, repeated until
//      no more change (users and items each >= k in the result);
//   5. remap: users 0..U-1 in increasing original id, items 1..I in
//      increasing original id (so already-dense ids like SASRec's or
//      ML-100K's stay what they were); user_orig/item_orig keep the maps.
//      String ids go in byte order (strcmp), their names into
//      user_names/item_names and their ranks into user_orig/item_orig.
// Cost: O(n log L) for n interactions and longest user history L, plus
// O(U log U + I log I) for the remap. Peak memory about 24 bytes per
// interaction while grouping, 12 afterwards.
// Not here: parsing (readers.c), the binary file (dataset_bin.c).
#include <stdlib.h> // malloc, calloc, free, qsort
#include <string.h> // memcpy, memset

#include "data_internal.h"
#include "lr.h"

void csr_free_(lr_csr_ *c) {
  free(c->offsets);
  free(c->items);
  free(c->ts);
  free(c->user_orig);
  free(c->item_orig);
  free(c->user_pool);
  free(c->item_pool);
  memset(c, 0, sizeof *c);
}

// ---------------------------------------------------------------------------
// 1. group

int prep_group_(lr_csr_ *c, lr_raw_ *r) {
  memset(c, 0, sizeof *c);
  int64_t U = r->users.n, n = r->n;
  int64_t *cur = malloc((size_t)(U + 1) * sizeof *cur);
  c->offsets = calloc((size_t)U + 1, sizeof *c->offsets);
  c->items = malloc((size_t)(n ? n : 1) * sizeof *c->items);
  if (!cur || !c->offsets || !c->items) goto nomem;
  for (int64_t k = 0; k < n; k++)
    c->offsets[r->user[k] + 1]++;
  for (int64_t u = 0; u < U; u++)
    c->offsets[u + 1] += c->offsets[u];
  memcpy(cur, c->offsets, (size_t)U * sizeof *cur);
  for (int64_t k = 0; k < n; k++)
    c->items[cur[r->user[k]]++] = r->item[k];
  free(r->item);
  r->item = NULL;
  if (r->has_ts) {
    c->ts = malloc((size_t)(n ? n : 1) * sizeof *c->ts);
    if (!c->ts) goto nomem;
    memcpy(cur, c->offsets, (size_t)U * sizeof *cur);
    for (int64_t k = 0; k < n; k++)
      c->ts[cur[r->user[k]]++] = r->ts[k];
  }
  free(cur);
  c->n_users = U;
  c->n_items = r->items.n;
  c->user_orig = r->users.orig; // the maps move over
  c->item_orig = r->items.orig;
  r->users.orig = r->items.orig = NULL;
  if (r->users.str) c->user_pool = r->users.pool, r->users.pool = NULL;
  if (r->items.str) c->item_pool = r->items.pool, r->items.pool = NULL;
  raw_free_(r);
  return LR_OK;
nomem:
  free(cur);
  csr_free_(c);
  raw_free_(r);
  return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory grouping %lld interactions",
                  (long long)n);
}

int prep_from_dataset_(lr_csr_ *c, lr_dataset *ds) {
  memset(c, 0, sizeof *c);
  int64_t U = ds->n_users, I = ds->n_items, n = ds->n_inter;
  c->offsets = malloc((size_t)(U + 1) * sizeof *c->offsets);
  c->items = malloc((size_t)(n ? n : 1) * sizeof *c->items);
  c->user_orig = malloc((size_t)(U ? U : 1) * sizeof *c->user_orig);
  c->item_orig = malloc((size_t)(I ? I : 1) * sizeof *c->item_orig);
  if (!c->offsets || !c->items || !c->user_orig || !c->item_orig) {
    csr_free_(c);
    dataset_free(ds);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory copying %lld interactions",
                    (long long)n);
  }
  memcpy(c->offsets, ds->offsets, (size_t)(U + 1) * sizeof *c->offsets);
  for (int64_t k = 0; k < n; k++)
    c->items[k] = ds->items[k] - 1;
  memcpy(c->user_orig, ds->user_orig, (size_t)U * sizeof *c->user_orig);
  memcpy(c->item_orig, ds->item_orig + 1, (size_t)I * sizeof *c->item_orig);
  c->n_users = U;
  c->n_items = I;
  dataset_free(ds);
  return LR_OK;
}

static int64_t max_len(const lr_csr_ *c) {
  int64_t m = 0;
  for (int64_t u = 0; u < c->n_users; u++)
    if (c->offsets[u + 1] - c->offsets[u] > m) m = c->offsets[u + 1] - c->offsets[u];
  return m;
}

// ---------------------------------------------------------------------------
// 2. stable chronological sort

typedef struct {
  double ts;
  int32_t item;
} event;

// Stable merge sort of a[0..n) by ts, tmp has room for n.
static void event_sort(event *a, event *tmp, int64_t n) {
  if (n <= 24) {
    for (int64_t i = 1; i < n; i++) {
      event x = a[i];
      int64_t j = i;
      for (; j > 0 && a[j - 1].ts > x.ts; j--)
        a[j] = a[j - 1];
      a[j] = x;
    }
    return;
  }
  int64_t h = n / 2;
  event_sort(a, tmp, h);
  event_sort(a + h, tmp, n - h);
  if (a[h - 1].ts <= a[h].ts) return; // halves already in order
  int64_t i = 0, j = h, k = 0;
  while (i < h && j < n)
    tmp[k++] = a[j].ts < a[i].ts ? a[j++] : a[i++]; // tie: left first
  while (i < h)
    tmp[k++] = a[i++];
  while (j < n)
    tmp[k++] = a[j++];
  memcpy(a, tmp, (size_t)n * sizeof *a);
}

static int sort_chrono(lr_csr_ *c) {
  int64_t L = max_len(c);
  event *ev = malloc((size_t)(2 * L + 1) * sizeof *ev);
  LR_CHECK(ev, LR_ERR_NOMEM, "out of memory sorting a history of %lld interactions", (long long)L);
  for (int64_t u = 0; u < c->n_users; u++) {
    int64_t b = c->offsets[u], n = c->offsets[u + 1] - b;
    const double *ts = c->ts + b;
    int64_t k = 1;
    while (k < n && ts[k - 1] <= ts[k])
      k++;
    if (k >= n) continue; // already chronological
    for (k = 0; k < n; k++)
      ev[k] = (event){ts[k], c->items[b + k]};
    event_sort(ev, ev + L, n);
    for (k = 0; k < n; k++)
      c->items[b + k] = ev[k].item;
  }
  free(ev);
  return LR_OK;
}

// ---------------------------------------------------------------------------
// 3. dedup

static int dedup(lr_csr_ *c, lr_dedup policy) {
  int64_t L = max_len(c);
  int32_t *stamp = malloc((size_t)(c->n_items ? c->n_items : 1) * sizeof *stamp);
  unsigned char *keep = malloc((size_t)(L ? L : 1));
  if (!stamp || !keep) {
    free(stamp);
    free(keep);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory for dedup");
  }
  memset(stamp, 0xff, (size_t)c->n_items * sizeof *stamp); // -1: not seen by any user
  int64_t w = 0;
  for (int64_t u = 0; u < c->n_users; u++) {
    int64_t b = c->offsets[u], n = c->offsets[u + 1] - b;
    int32_t *it = c->items + b;
    for (int64_t k = 0; k < n; k++) {
      int64_t j = policy == LR_DEDUP_LAST ? n - 1 - k : k; // scan order
      keep[j] = stamp[it[j]] != (int32_t)u;
      stamp[it[j]] = (int32_t)u;
    }
    c->offsets[u] = w;
    for (int64_t k = 0; k < n; k++)
      if (keep[k]) c->items[w++] = it[k];
  }
  c->offsets[c->n_users] = w;
  free(stamp);
  free(keep);
  return LR_OK;
}

// ---------------------------------------------------------------------------
// 4. k-core: sets ualive/ialive.

static int kcore(const lr_csr_ *c, int64_t k, unsigned char *ualive, unsigned char *ialive) {
  int64_t *deg = malloc((size_t)(c->n_items ? c->n_items : 1) * sizeof *deg);
  LR_CHECK(deg, LR_ERR_NOMEM, "out of memory for the k-core filter");
  for (int changed = 1; changed;) {
    changed = 0;
    memset(deg, 0, (size_t)c->n_items * sizeof *deg);
    for (int64_t u = 0; u < c->n_users; u++) {
      if (!ualive[u]) continue;
      int64_t cnt = 0;
      for (int64_t p = c->offsets[u]; p < c->offsets[u + 1]; p++) {
        int32_t i = c->items[p];
        if (ialive[i]) cnt++, deg[i]++;
      }
      if (cnt < k) ualive[u] = 0, changed = 1;
    }
    for (int64_t i = 0; i < c->n_items; i++)
      if (ialive[i] && deg[i] < k) ialive[i] = 0, changed = 1;
  }
  free(deg);
  return LR_OK;
}

// ---------------------------------------------------------------------------
// 5. remap into ds

typedef struct {
  int64_t orig;
  int64_t idx;
  const char *name; // string ids: the id (orig is its offset in the pool)
} keyed;

static int keyed_cmp(const void *a, const void *b) {
  const keyed *p = a, *q = b;
  if (p->name) return strcmp(p->name, q->name); // byte order (strcmp compares unsigned chars)
  return (p->orig > q->orig) - (p->orig < q->orig);
}

// The names of the kept ids, in their new order, into t (items: [0] = "").
static int keep_names(lr_names *t, const keyed *k, int64_t n, int items) {
  const char **p = malloc((size_t)(n + 1) * sizeof *p);
  LR_CHECK(p, LR_ERR_NOMEM, "out of memory for %lld id names", (long long)n);
  if (items) p[0] = "";
  for (int64_t j = 0; j < n; j++)
    p[j + items] = k[j].name;
  int rc = names_build(t, p, n + items);
  free(p);
  return rc;
}

static int remap(lr_dataset *ds, const lr_csr_ *c, const unsigned char *ualive,
                 unsigned char *ialive, const char *path, int64_t k) {
  int rc = LR_OK;
  int64_t U = c->n_users, I = c->n_items;
  keyed *ku = malloc((size_t)(U ? U : 1) * sizeof *ku);
  keyed *ki = malloc((size_t)(I ? I : 1) * sizeof *ki);
  int32_t *newid = malloc((size_t)(I ? I : 1) * sizeof *newid);
  if (!ku || !ki || !newid) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory remapping ids");
    goto done;
  }
  // Items that still occur (an alive item can lose every interaction only
  // through dropped users, which the k-core fixpoint excludes; be safe anyway).
  unsigned char *used = (unsigned char *)newid; // reuse as a flag array first
  memset(used, 0, (size_t)I);
  int64_t nu = 0, n = 0;
  for (int64_t u = 0; u < U; u++) {
    if (!ualive[u]) continue;
    int64_t cnt = 0;
    for (int64_t p = c->offsets[u]; p < c->offsets[u + 1]; p++)
      if (ialive[c->items[p]]) used[c->items[p]] = 1, cnt++;
    if (cnt > 0)
      ku[nu++] = (keyed){c->user_orig[u], u, c->user_pool ? c->user_pool + c->user_orig[u] : NULL},
      n += cnt;
  }
  int64_t ni = 0;
  for (int64_t i = 0; i < I; i++)
    if (used[i])
      ki[ni++] = (keyed){c->item_orig[i], i, c->item_pool ? c->item_pool + c->item_orig[i] : NULL};
  if (nu == 0) {
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s: no interactions left after the %lld-core filter (no set of users and "
                  "items each with >= %lld interactions)",
                  path, (long long)k, (long long)k);
    goto done;
  }
  qsort(ku, (size_t)nu, sizeof *ku, keyed_cmp);
  qsort(ki, (size_t)ni, sizeof *ki, keyed_cmp);
  for (int64_t j = 0; j < ni; j++)
    newid[ki[j].idx] = (int32_t)(j + 1);
  ds->n_users = nu;
  ds->n_items = ni;
  ds->n_inter = n;
  ds->offsets = lr_calloc((size_t)nu + 1, sizeof *ds->offsets, "dataset offsets");
  ds->items = lr_calloc((size_t)n, sizeof *ds->items, "dataset items");
  ds->user_orig = lr_calloc((size_t)nu, sizeof *ds->user_orig, "dataset user ids");
  ds->item_orig = lr_calloc((size_t)ni + 1, sizeof *ds->item_orig, "dataset item ids");
  if (!ds->offsets || !ds->items || !ds->user_orig || !ds->item_orig) {
    rc = LR_ERR_NOMEM;
    goto done;
  }
  if (c->user_pool && (rc = keep_names(&ds->user_names, ku, nu, 0)) != LR_OK) goto done;
  if (c->item_pool && (rc = keep_names(&ds->item_names, ki, ni, 1)) != LR_OK) goto done;
  for (int64_t j = 0; j < ni; j++) // string ids: their rank
    ds->item_orig[j + 1] = c->item_pool ? j : ki[j].orig;
  int64_t w = 0;
  for (int64_t j = 0; j < nu; j++) {
    int64_t u = ku[j].idx;
    ds->user_orig[j] = c->user_pool ? j : ku[j].orig;
    ds->offsets[j] = w;
    for (int64_t p = c->offsets[u]; p < c->offsets[u + 1]; p++)
      if (ialive[c->items[p]]) ds->items[w++] = newid[c->items[p]];
  }
  ds->offsets[nu] = w;
  LR_ASSERT(w == n);
done:
  free(ku);
  free(ki);
  free(newid);
  if (rc != LR_OK) dataset_free(ds);
  return rc;
}

// ---------------------------------------------------------------------------

int prep_run_(lr_dataset *ds, lr_csr_ *c, lr_dedup dedup_policy, int64_t k, const char *path) {
  memset(ds, 0, sizeof *ds);
  int rc = LR_OK;
  unsigned char *ualive = malloc((size_t)(c->n_users ? c->n_users : 1));
  unsigned char *ialive = malloc((size_t)(c->n_items ? c->n_items : 1));
  if (!ualive || !ialive) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory for preprocessing flags");
    goto done;
  }
  memset(ualive, 1, (size_t)c->n_users);
  memset(ialive, 1, (size_t)c->n_items);
  if (c->ts && (rc = sort_chrono(c)) != LR_OK) goto done;
  free(c->ts);
  c->ts = NULL;
  if (dedup_policy != LR_DEDUP_NONE && (rc = dedup(c, dedup_policy)) != LR_OK) goto done;
  if (k > 1 && (rc = kcore(c, k, ualive, ialive)) != LR_OK) goto done;
  rc = remap(ds, c, ualive, ialive, path, k);
done:
  free(ualive);
  free(ialive);
  csr_free_(c);
  if (rc != LR_OK) lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
}
