// emb_shard.c: the lookup / gradient exchange of emb_shard.h.
//
// Dedup is O(n): an open-addressing hash (linear probing, load <= 1/2) maps
// each id to its first-seen number; a counting sort by owner (P buckets)
// then gives the row order, so no comparison sort runs in the step. The hash
// is emptied after each lookup by clearing only the slots it used.
#include "emb_shard.h"

#include <string.h> // memcpy, memset

#include "lr.h"    // LR_CALL, LR_CHECK, lr_calloc
#include "shard.h" // shard_items, shard_items_owner

// ---- set-up ---------------------------------------------------------------------------

void emb_shard_free(emb_shard_plan *p) {
  void *bufs[] = {p->scnt,   p->sdsp,   p->rcnt,   p->rdsp,   p->scnt_f,  p->sdsp_f, p->rcnt_f,
                  p->rdsp_f, p->scnt_x, p->sdsp_x, p->rcnt_x, p->rdsp_x,  p->uniq,   p->served,
                  p->sbuf,   p->xbuf,   p->hkey,   p->hval,   p->slot,    p->first,  p->owner,
                  p->pos,    p->touched, p->mark};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(p, 0, sizeof *p);
}

int emb_shard_init(emb_shard_plan *p, int64_t n_rows, int64_t D, int64_t max_ids) {
  memset(p, 0, sizeof *p);
  LR_CHECK(n_rows >= 1 && n_rows <= INT32_MAX && D >= 1 && max_ids >= 1 && max_ids < INT32_MAX / 2,
           LR_ERR_ARG, "emb_shard_init: bad sizes: %lld rows, D %lld, max_ids %lld",
           (long long)n_rows, (long long)D, (long long)max_ids);
  const int64_t same[3] = {n_rows, D, max_ids};
  LR_CALL(dist_check_same_i64(same, 3, "emb_shard_init (n_rows, D, max_ids)"));
  p->P = dist_size(), p->rank = dist_rank();
  p->n_rows = n_rows, p->D = D, p->max_ids = max_ids;
  const lr_shard s = shard_items(n_rows, p->rank, p->P);
  p->lo = s.offset, p->hi = s.offset + s.count;
  p->serve_cap = (int64_t)p->P * (max_ids < s.count ? max_ids : s.count);
  p->hcap = 1;
  while (p->hcap < 2 * max_ids)
    p->hcap *= 2;
  const size_t P = (size_t)p->P, mi = (size_t)max_ids, I_r = (size_t)s.count;
#define ALLOC(ptr, n, what)                                                                        \
  if (!((ptr) = lr_calloc((n), sizeof *(ptr), what))) goto nomem;
  ALLOC(p->scnt, P, "emb_shard counts");
  ALLOC(p->sdsp, P, "emb_shard counts");
  ALLOC(p->rcnt, P, "emb_shard counts");
  ALLOC(p->rdsp, P, "emb_shard counts");
  ALLOC(p->scnt_f, P, "emb_shard counts");
  ALLOC(p->sdsp_f, P, "emb_shard counts");
  ALLOC(p->rcnt_f, P, "emb_shard counts");
  ALLOC(p->rdsp_f, P, "emb_shard counts");
  ALLOC(p->scnt_x, P, "emb_shard counts");
  ALLOC(p->sdsp_x, P, "emb_shard counts");
  ALLOC(p->rcnt_x, P, "emb_shard counts");
  ALLOC(p->rdsp_x, P, "emb_shard counts");
  ALLOC(p->uniq, mi, "emb_shard distinct ids");
  ALLOC(p->served, (size_t)p->serve_cap, "emb_shard served ids");
  ALLOC(p->sbuf, (size_t)p->serve_cap * (size_t)D, "emb_shard served rows");
  ALLOC(p->xbuf, (size_t)p->serve_cap * (size_t)D, "emb_shard received gradients");
  ALLOC(p->hkey, (size_t)p->hcap, "emb_shard hash");
  ALLOC(p->hval, (size_t)p->hcap, "emb_shard hash");
  ALLOC(p->slot, mi, "emb_shard hash slots");
  ALLOC(p->first, mi, "emb_shard first-seen ids");
  ALLOC(p->owner, mi, "emb_shard owners");
  ALLOC(p->pos, mi, "emb_shard row positions");
  ALLOC(p->touched, I_r, "emb_shard touched rows");
  ALLOC(p->mark, I_r, "emb_shard touched marks");
#undef ALLOC
  return LR_OK;
nomem:
  emb_shard_free(p);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return LR_ERR_NOMEM;
}

// ---- lookup ---------------------------------------------------------------------------

static uint64_t hash_id(int32_t id) { return (uint32_t)id * UINT64_C(0x9E3779B97F4A7C15); }

// Insert ids (n) into the hash; tmp[i] = first-seen number of ids[i] (-1 for
// padding). New distinct ids are appended to p->first. Returns the distinct
// count so far.
static int64_t dedup(emb_shard_plan *p, int32_t *tmp, const int32_t *ids, int64_t n, int64_t U) {
  const uint64_t mask = (uint64_t)p->hcap - 1;
  const int shift = 64 - __builtin_ctzll((unsigned long long)p->hcap);
  for (int64_t i = 0; i < n; i++) {
    const int32_t id = ids[i];
    if (id == 0) {
      tmp[i] = -1;
      continue;
    }
    uint64_t h = hash_id(id) >> shift; // hcap >= 2: shift <= 63
    while (p->hkey[h] != 0 && p->hkey[h] != id)
      h = (h + 1) & mask;
    if (p->hkey[h] == 0) {
      p->hkey[h] = id;
      p->hval[h] = (int32_t)U;
      p->slot[U] = (int32_t)h;
      p->first[U++] = id;
    }
    tmp[i] = p->hval[h];
  }
  return U;
}

// 0 if every id is in [0, n_rows), else records the first bad one.
static int ids_valid(const emb_shard_plan *p, const int32_t *ids, int64_t n, const char *which) {
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= p->n_rows)
      return lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                      "[rank %d/%d] emb_shard_lookup: %s[%lld] = %d outside [0, %lld)", p->rank,
                      p->P, which, (long long)i, ids[i], (long long)p->n_rows);
  return LR_OK;
}

static void prefix(int64_t *dsp, const int64_t *cnt, int P) {
  int64_t acc = 0;
  for (int q = 0; q < P; q++)
    dsp[q] = acc, acc += cnt[q];
}

static void scaled_counts(int64_t *out, const int64_t *in, int P, int64_t D) { // out = in * D
  for (int q = 0; q < P; q++)
    out[q] = in[q] * D;
}

// Distinct ids of ids/ids2 grouped by owner: fills uniq, scnt, sdsp and
// idx/idx2 (final row positions). Returns U.
static int64_t plan_requests(emb_shard_plan *p, int32_t *idx, int32_t *idx2, const int32_t *ids,
                             int64_t n, const int32_t *ids2, int64_t n2) {
  int64_t U = dedup(p, idx, ids, n, 0);
  U = dedup(p, idx2, ids2, n2, U);
  memset(p->scnt, 0, (size_t)p->P * sizeof *p->scnt);
  for (int64_t u = 0; u < U; u++) {
    p->owner[u] = shard_items_owner(p->n_rows, p->P, p->first[u]);
    p->scnt[p->owner[u]]++;
  }
  prefix(p->sdsp, p->scnt, p->P);
  // counting sort by owner, stable: first-seen order within an owner
  int64_t *next = p->rdsp; // scratch: rdsp is rewritten after the count exchange
  memcpy(next, p->sdsp, (size_t)p->P * sizeof *next);
  for (int64_t u = 0; u < U; u++) {
    const int64_t at = next[p->owner[u]]++;
    p->pos[u] = (int32_t)at;
    p->uniq[at] = p->first[u];
    p->hkey[p->slot[u]] = 0; // empty the hash for the next lookup
  }
  for (int64_t i = 0; i < n; i++)
    if (idx[i] >= 0) idx[i] = p->pos[idx[i]];
  for (int64_t i = 0; i < n2; i++)
    if (idx2[i] >= 0) idx2[i] = p->pos[idx2[i]];
  return U;
}

// Forget the last exchange (after a failed lookup): a push_grad then sends
// and adds nothing.
static void exchange_clear(emb_shard_plan *p) {
  const size_t bytes = (size_t)p->P * sizeof(int64_t);
  int64_t *arrs[] = {p->scnt,   p->sdsp,   p->rcnt,   p->rdsp,
                     p->scnt_f, p->sdsp_f, p->rcnt_f, p->rdsp_f};
  for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++)
    memset(arrs[i], 0, bytes);
  p->n_distinct = p->n_served = 0;
}

static int64_t others(const int64_t *cnt, int64_t total, int rank) { return total - cnt[rank]; }

int emb_shard_lookup(emb_shard_plan *p, float *rows, int32_t *idx, int32_t *idx2, int64_t *U,
                     const int32_t *ids, int64_t n, const int32_t *ids2, int64_t n2,
                     const lr_itemtab *tab) {
  const double t0 = dist_wtime();
  const int P = p->P, me = p->rank;
  const int64_t D = p->D;
  LR_ASSERT(tab->lo == p->lo && tab->hi == p->hi && tab->D == D && n >= 0 && n2 >= 0);
  // 0. local requests, or -1 counts that tell every rank to fail with us
  int bad = LR_OK;
  if (n + n2 > p->max_ids)
    bad = lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                   "[rank %d/%d] emb_shard_lookup: %lld ids exceed the plan's max_ids %lld", me, P,
                   (long long)(n + n2), (long long)p->max_ids);
  if (bad == LR_OK) bad = ids_valid(p, ids, n, "ids");
  if (bad == LR_OK) bad = ids_valid(p, ids2, n2, "ids2");
  int64_t nu = 0;
  if (bad == LR_OK)
    nu = plan_requests(p, idx, idx2, ids, n, ids2, n2);
  else
    for (int q = 0; q < P; q++)
      p->scnt[q] = -1;
  p->n_distinct = nu;
  if (U) *U = nu;
  // 1. counts
  LR_CALL(dist_alltoall(p->rcnt, p->scnt, 1, LR_DTYPE_I64));
  for (int q = 0; q < P; q++)
    if (p->rcnt[q] < 0) {
      exchange_clear(p);
      if (U) *U = 0;
      if (bad != LR_OK) return bad; // our own message is already recorded
      return lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                      "[rank %d/%d] emb_shard_lookup: rank %d passed invalid ids", me, P, q);
    }
  prefix(p->rdsp, p->rcnt, P);
  p->n_served = p->rdsp[P - 1] + p->rcnt[P - 1];
  LR_ASSERT(p->n_served <= p->serve_cap); // each rank sends <= min(max_ids, I_r) distinct ids
  // 2. ids to their owners
  LR_CALL(dist_alltoallv(p->served, p->rcnt, p->rdsp, p->uniq, p->scnt, p->sdsp, LR_DTYPE_I32));
  // 3. owners copy their rows and send them back
  for (int64_t k = 0; k < p->n_served; k++) {
    const int64_t id = p->served[k];
    LR_ASSERT(id > 0 && id >= p->lo && id < p->hi);
    memcpy(p->sbuf + (size_t)k * (size_t)D, tab->w + (size_t)(id - p->lo) * (size_t)D,
           (size_t)D * sizeof(float));
  }
  scaled_counts(p->scnt_f, p->scnt, P, D);
  scaled_counts(p->sdsp_f, p->sdsp, P, D);
  scaled_counts(p->rcnt_f, p->rcnt, P, D);
  scaled_counts(p->rdsp_f, p->rdsp, P, D);
  LR_CALL(dist_alltoallv(rows, p->scnt_f, p->sdsp_f, p->sbuf, p->rcnt_f, p->rdsp_f, LR_DTYPE_F32));
  // accounting: counts, ids, rows (own block excluded)
  const int64_t req_o = others(p->scnt, nu, me), srv_o = others(p->rcnt, p->n_served, me);
  dist_stats *st = &p->lookup_stats;
  st->calls++;
  st->bytes_sent += 8 * (int64_t)(P - 1) + 4 * req_o + 4 * D * srv_o;
  st->bytes_recv += 8 * (int64_t)(P - 1) + 4 * srv_o + 4 * D * req_o;
  st->seconds += dist_wtime() - t0;
  return LR_OK;
}

// ---- gradients ------------------------------------------------------------------------

int emb_shard_push_grad(emb_shard_plan *p, lr_itemtab *tab, const lr_xs *drows) {
  const double t0 = dist_wtime();
  const int P = p->P;
  const int64_t D = p->D;
  LR_ASSERT(tab->lo == p->lo && tab->hi == p->hi && tab->D == D);
  // the transpose of lookup step 3 in limbs: requesters send, owners receive
  scaled_counts(p->scnt_x, p->scnt, P, LR_XS_LIMBS * D);
  scaled_counts(p->sdsp_x, p->sdsp, P, LR_XS_LIMBS * D);
  scaled_counts(p->rcnt_x, p->rcnt, P, LR_XS_LIMBS * D);
  scaled_counts(p->rdsp_x, p->rdsp, P, LR_XS_LIMBS * D);
  LR_CALL(dist_alltoallv(p->xbuf, p->rcnt_x, p->rdsp_x, drows, p->scnt_x, p->sdsp_x, LR_DTYPE_I64));
  for (int64_t k = 0; k < p->n_served; k++) {
    const int64_t l = p->served[k] - p->lo;
    if (!p->mark[l]) {
      p->mark[l] = 1;
      p->touched[p->n_touched++] = l;
    }
    xsum_merge(tab->gx + (size_t)l * (size_t)D, p->xbuf + (size_t)k * (size_t)D, D);
  }
  const int64_t req_o = others(p->scnt, p->n_distinct, p->rank);
  const int64_t srv_o = others(p->rcnt, p->n_served, p->rank);
  dist_stats *st = &p->push_stats;
  st->calls++;
  st->bytes_sent += (int64_t)sizeof(lr_xs) * D * req_o;
  st->bytes_recv += (int64_t)sizeof(lr_xs) * D * srv_o;
  st->seconds += dist_wtime() - t0;
  return LR_OK;
}

const int64_t *emb_shard_touched(const emb_shard_plan *p, int64_t *n) {
  *n = p->n_touched;
  return p->touched;
}

void emb_shard_zero_grad(emb_shard_plan *p, lr_itemtab *tab) {
  const size_t D = (size_t)p->D;
  for (int64_t i = 0; i < p->n_touched; i++) {
    const int64_t l = p->touched[i];
    memset(tab->g + (size_t)l * D, 0, D * sizeof(float));
    memset(tab->gx + (size_t)l * D, 0, D * sizeof(lr_xs));
    p->mark[l] = 0;
  }
  p->n_touched = 0;
}
