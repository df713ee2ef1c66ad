// raw.c: the id map (original id -> dense index in order of first
// appearance) and the growable raw interaction buffer the readers fill
// (data_internal.h). Open addressing with linear probing, load <= 1/2;
// numeric ids, or strings once one id is not a decimal integer.
// Not here: parsing (readers.c), ordering and filtering (prep.c).
#include <stdio.h>  // snprintf
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

static uint64_t str_hash(const char *s) { // FNV-1a, then mixed
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return mix64(h);
}

// Hash of the key in slot value k (numeric: the id; strings: a dense index).
static uint64_t slot_hash(const lr_idmap_ *m, int64_t k) {
  return m->str ? str_hash(m->pool + m->orig[k]) : mix64((uint64_t)k);
}

static int idmap_grow(lr_idmap_ *m, int64_t cap) {
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
    uint64_t h = slot_hash(m, m->keys[i]) & (uint64_t)(cap - 1);
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

// Append name s (NUL included) to the pool; *at receives its offset.
static int pool_add(lr_idmap_ *m, const char *s, int64_t *at) {
  int64_t len = (int64_t)strlen(s) + 1;
  if (m->pool_n + len > m->pool_cap) {
    int64_t cap = m->pool_cap ? m->pool_cap : 4096;
    while (cap < m->pool_n + len)
      cap *= 2;
    char *p = realloc(m->pool, (size_t)cap);
    LR_CHECK(p, LR_ERR_NOMEM, "id map: out of memory (%lld bytes of id strings)", (long long)cap);
    m->pool = p;
    m->pool_cap = cap;
  }
  memcpy(m->pool + m->pool_n, s, (size_t)len);
  *at = m->pool_n;
  m->pool_n += len;
  return LR_OK;
}

// Turn a numeric map into a string map: each id becomes its decimal text.
static int idmap_to_strings(lr_idmap_ *m) {
  for (int64_t i = 0; i < m->n; i++) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)m->orig[i]);
    LR_CALL(pool_add(m, buf, &m->orig[i]));
  }
  m->str = 1;
  int64_t cap = m->cap ? m->cap : 1024;
  lr_idmap_ tmp = *m;
  tmp.keys = NULL, tmp.vals = NULL, tmp.cap = 0;
  LR_CALL(idmap_grow(&tmp, cap));
  // rehash from the dense indices (every slot's hash changed)
  memset(tmp.keys, 0xff, (size_t)cap * sizeof *tmp.keys);
  for (int64_t i = 0; i < m->n; i++) {
    uint64_t h = str_hash(m->pool + m->orig[i]) & (uint64_t)(cap - 1);
    while (tmp.keys[h] >= 0)
      h = (h + 1) & (uint64_t)(cap - 1);
    tmp.keys[h] = i;
    tmp.vals[h] = (int32_t)i;
  }
  free(m->keys);
  free(m->vals);
  m->keys = tmp.keys, m->vals = tmp.vals, m->cap = cap;
  return LR_OK;
}

static int idmap_new_index(lr_idmap_ *m, const char *what) {
  LR_CHECK(m->n < INT32_MAX - 1, LR_ERR_DATA, "more than %d distinct %s: not supported",
           INT32_MAX - 2, what);
  if (m->n == m->orig_cap) {
    int64_t cap = m->orig_cap ? m->orig_cap * 2 : 1024;
    int64_t *o = realloc(m->orig, (size_t)cap * sizeof *o);
    LR_CHECK(o, LR_ERR_NOMEM, "id map: out of memory (%lld %s)", (long long)cap, what);
    m->orig = o;
    m->orig_cap = cap;
  }
  return LR_OK;
}

int idmap_get_(lr_idmap_ *m, lr_id_ key, int32_t *idx, const char *what) {
  *idx = -1;
  char buf[24];
  if (key.s && !m->str) LR_CALL(idmap_to_strings(m));
  if (!key.s && m->str) {
    snprintf(buf, sizeof buf, "%lld", (long long)key.v);
    key.s = buf;
  }
  if ((m->n + 1) * 2 > m->cap) LR_CALL(idmap_grow(m, m->cap ? m->cap * 2 : 1024));
  uint64_t mask = (uint64_t)(m->cap - 1);
  uint64_t h = (key.s ? str_hash(key.s) : mix64((uint64_t)key.v)) & mask;
  while (m->keys[h] >= 0) {
    if (key.s ? !strcmp(m->pool + m->orig[m->keys[h]], key.s) : m->keys[h] == key.v) {
      *idx = m->vals[h];
      return LR_OK;
    }
    h = (h + 1) & mask;
  }
  LR_CALL(idmap_new_index(m, what));
  if (key.s) {
    LR_CALL(pool_add(m, key.s, &m->orig[m->n]));
    m->keys[h] = m->n;
  } else {
    m->orig[m->n] = key.v;
    m->keys[h] = key.v;
  }
  m->vals[h] = (int32_t)m->n;
  *idx = (int32_t)m->n++;
  return LR_OK;
}

void idmap_free_(lr_idmap_ *m) {
  free(m->keys);
  free(m->vals);
  free(m->orig);
  free(m->pool);
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

int raw_push_(lr_raw_ *r, lr_id_ user, lr_id_ item, double ts) {
  if (r->n == r->cap) LR_CALL(raw_grow(r));
  int32_t u = -1, i = -1;
  if (!user.s && r->has_last && r->last_user == user.v) {
    u = r->last_idx;
  } else {
    LR_CALL(idmap_get_(&r->users, user, &u, "users"));
    r->has_last = !user.s;
    r->last_user = user.v;
    r->last_idx = u;
  }
  LR_CALL(idmap_get_(&r->items, item, &i, "items"));
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
