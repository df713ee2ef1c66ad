// data_internal.h: what the io/ data files share and nobody else sees
// (names end in `_`: internal to io/): the id map, the raw interaction
// buffer the text readers fill, and the CSR that preprocessing works on.
//
// Pipeline (data_load): reader -> lr_raw_ (file order, provisional dense ids
// in order of first appearance, rating threshold already applied)
// -> prep_group_ (CSR by provisional user, file order kept) -> prep_run_
// (stable chronological sort, dedup, k-core, final remap) -> lr_dataset.
#ifndef LR_DATA_INTERNAL_H
#define LR_DATA_INTERNAL_H

#include <stdint.h>

#include "dataset.h"

// Largest original user/item id accepted: 2^53 - 1, the largest integer a
// JSON number (or a Python float) carries exactly, so ids round-trip through
// manifests and scripts.
#define LR_DATA_ID_MAX ((int64_t)9007199254740991LL)

// ---------------------------------------------------------------------------
// id map: original id -> dense index 0..n-1 in order of first insert.
// Numeric until the first id that is not a decimal integer arrives; then
// the map turns to strings (every id seen so far becomes its decimal text,
// and later integer ids too: "007" and "7" stay one id either way).

typedef struct {
  int64_t *keys; // (cap) numeric: original id; strings: dense index; -1 = empty slot
  int32_t *vals; // (cap) dense index (numeric)
  int64_t cap;   // power of two
  int64_t n;     // dense indices handed out
  int64_t *orig; // (orig_cap) numeric: original id of dense index i; strings: offset of its name in pool
  int64_t orig_cap;
  int str;     // the ids are strings
  char *pool;  // (pool_cap) the names, NUL-terminated, back to back
  int64_t pool_n, pool_cap;
} lr_idmap_;

// An original id as read: a string s, or (s == NULL) the integer v.
typedef struct {
  const char *s;
  int64_t v;
} lr_id_;

// Dense index of `key`, inserting it if new. LR_ERR_NOMEM, or LR_ERR_DATA
// (via `what`, e.g. "items") when more than INT32_MAX - 1 distinct ids.
int idmap_get_(lr_idmap_ *m, lr_id_ key, int32_t *idx, const char *what);
void idmap_free_(lr_idmap_ *m);

// ---------------------------------------------------------------------------
// raw interactions in file order

typedef struct {
  int64_t n, cap;
  int32_t *user; // (n) dense user index (first appearance)
  int32_t *item; // (n) dense item index (first appearance)
  double *ts;    // (n) timestamp; NULL when the format has none (file order is time)
  int has_ts;
  lr_idmap_ users, items;
  int has_last; // cache of the last user looked up (files group users): numeric ids
  int64_t last_user;
  int32_t last_idx;
} lr_raw_;

// Append one interaction. LR_ERR_NOMEM, LR_ERR_DATA (too many ids).
int raw_push_(lr_raw_ *r, lr_id_ user, lr_id_ item, double ts);
void raw_free_(lr_raw_ *r);

// Parse o->path (format movielens, csv, recbole or sasrec) into r, dropping
// ratings below o->min_rating. Errors: LR_ERR_IO, LR_ERR_DATA
// ("path:line: reason"), LR_ERR_CORRUPT (damaged compressed stream),
// LR_ERR_CONFIG (min_rating for a file without ratings), LR_ERR_NOMEM.
int data_read_text_(lr_raw_ *r, const lr_data_opts *o);

// ---------------------------------------------------------------------------
// CSR by dense user, the working form of preprocessing

typedef struct {
  int64_t n_users, n_items; // dense (provisional) counts
  int64_t *offsets;         // (n_users+1)
  int32_t *items;           // (offsets[n_users]) dense item index 0..n_items-1
  double *ts;               // (offsets[n_users]) or NULL
  int64_t *user_orig;       // (n_users) numeric id, or offset of the name in user_pool
  int64_t *item_orig;       // (n_items) same for items
  char *user_pool, *item_pool; // string ids (NULL: numeric), moved over from the id maps
} lr_csr_;

// Group r by user (counting sort; file order kept within a user). Consumes
// r (freed, also on failure). LR_ERR_NOMEM.
int prep_group_(lr_csr_ *c, lr_raw_ *r);

// Stable chronological sort per user (when c->ts), dedup, k-core, then ids:
// users 0..U-1 in increasing original id, items 1..I in increasing original
// id. Consumes c (freed, also on failure); fills ds. `path` names the input
// in messages. Errors: LR_ERR_DATA (nothing left after filtering),
// LR_ERR_NOMEM.
int prep_run_(lr_dataset *ds, lr_csr_ *c, lr_dedup dedup, int64_t kcore, const char *path);

// Take a built dataset (ids already final) back into CSR form, to filter it
// again (synthetic data with dedup or k-core). Consumes ds (freed, also on
// failure). LR_ERR_NOMEM.
int prep_from_dataset_(lr_csr_ *c, lr_dataset *ds);

void csr_free_(lr_csr_ *c);

#endif
