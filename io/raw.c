// raw.c: the id map (original id -> dense index in order of first
// appearance) and the growable raw interaction buffer the readers fill
// (data_internal.h). Open addressing with linear probing, load <= 1/2.
// Not here: parsing (readers.c), ordering and filtering (prep.c).
#include <stdlib.h> // malloc, realloc, free
#include <string.h> // memset

#include "data_internal.h"
#include "lr.h"

// ---------------------------------------------------------------------------
// id map

static uint64_t mix64(uint64_t x) { // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static int idmap_grow(lr_idmap_ *m) {
  int64_t cap = m->cap ? m->cap * 2 : 1024;
  int64_t *keys = malloc((size_t)cap * sizeof *keys);
  int32_t *vals = malloc((size_t)cap * sizeof *vals);
  if (!keys || !vals) {
    free(keys);
    free(vals);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "id map: out of memory (%lld slots)",
                    (long long)cap);
  }
  memset(keys, 0xff, (size_t)cap * sizeof *keys); // -1 = empty
  for (int64_t i = 0; i < m->cap; i++) {
    if (m->keys[i] < 0) continue;
    uint64_t h = mix64((uint64_t)m->keys[i]) & (uint64_t)(cap - 1);
    while (keys[h] >= 0)
      h = (h + 1) & (uint64_t)(cap - 1);
    keys[h] = m->keys[i];
    vals[h] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = keys;
  m->vals = vals;
  m->cap = cap;
  return LR_OK;
}

int idmap_get_(lr_idmap_ *m, int64_t key, int32_t *idx, const char *what) {
  *idx = -1;
  if ((m->n + 1) * 2 > m->cap) LR_CALL(idmap_grow(m));
  uint64_t mask = (uint64_t)(m->cap - 1), h = mix64((uint64_t)key) & mask;
  while (m->keys[h] >= 0) {
    if (m->keys[h] == key) {
      *idx = m->vals[h];
      return LR_OK;
    }
    h = (h + 1) & mask;
  }
  LR_CHECK(m->n < INT32_MAX - 1, LR_ERR_DATA, "more than %d distinct %s: not supported",
           INT32_MAX - 2, what);
  if (m->n == m->orig_cap) {
    int64_t cap = m->orig_cap ? m->orig_cap * 2 : 1024;
    int64_t *o = realloc(m->orig, (size_t)cap * sizeof *o);
    LR_CHECK(o, LR_ERR_NOMEM, "id map: out of memory (%lld %s)", (long long)cap, what);
    m->orig = o;
    m->orig_cap = cap;
  }
  m->keys[h] = key;
  m->vals[h] = (int32_t)m->n;
  m->orig[m->n] = key;
  *idx = (int32_t)m->n++;
  return LR_OK;
}

void idmap_free_(lr_idmap_ *m) {
  free(m->keys);
  free(m->vals);
  free(m->orig);
  memset(m, 0, sizeof *m);
}

// ---------------------------------------------------------------------------
// raw buffer

// Grow all arrays to a new capacity (x1.5). An array already grown when a
// later one fails is only larger than r->cap, which is harmless.
static int raw_grow(lr_raw_ *r) {
  int64_t cap = r->cap < 65536 ? 65536 : r->cap + r->cap / 2;
  int32_t *u = realloc(r->user, (size_t)cap * sizeof *u);
  if (!u) goto nomem;
  r->user = u;
  int32_t *it = realloc(r->item, (size_t)cap * sizeof *it);
  if (!it) goto nomem;
  r->item = it;
  if (r->has_ts) {
    double *ts = realloc(r->ts, (size_t)cap * sizeof *ts);
    if (!ts) goto nomem;
    r->ts = ts;
  }
  r->cap = cap;
  return LR_OK;
nomem:
  return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory for %lld interactions",
                  (long long)cap);
}

int raw_push_(lr_raw_ *r, int64_t user_orig, int64_t item_orig, double ts) {
  if (r->n == r->cap) LR_CALL(raw_grow(r));
  int32_t u = -1, i = -1;
  if (r->has_last && r->last_user == user_orig) {
    u = r->last_idx;
  } else {
    LR_CALL(idmap_get_(&r->users, user_orig, &u, "users"));
    r->has_last = 1;
    r->last_user = user_orig;
    r->last_idx = u;
  }
  LR_CALL(idmap_get_(&r->items, item_orig, &i, "items"));
  r->user[r->n] = u;
  r->item[r->n] = i;
  if (r->has_ts) r->ts[r->n] = ts;
  r->n++;
  return LR_OK;
}

void raw_free_(lr_raw_ *r) {
  free(r->user);
  free(r->item);
  free(r->ts);
  idmap_free_(&r->users);
  idmap_free_(&r->items);
  memset(r, 0, sizeof *r);
}
