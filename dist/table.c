// table.c: the item table in sharded or replicated layout (table.h).
#include "table.h"

#include <string.h> // memset

#include "loss.h"
#include "lr.h"
#include "shard.h" // shard_items

void table_free(lr_table *t) {
  itemtab_free(&t->tab);
  emb_shard_free(&t->emb);
  vocab_ce_free(&t->ce);
  void *bufs[] = {t->rows, t->drows, t->ce_scratch, t->gmax, t->lse, t->tlogit,
                  t->sx,   t->dhs_x, t->mark,       t->touched, t->bkl_f, t->bkl_scratch,
                  t->bkl_x};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(t, 0, sizeof *t);
}

int table_init(lr_table *t, lr_table_mode mode, int64_t n_rows, int64_t D, int64_t max_ids,
               int64_t max_loss_rows, int64_t tile, int64_t rchunk, uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->mode = mode, t->n_rows = n_rows, t->D = D;
  LR_CHECK(rchunk >= 1 && tile >= 1, LR_ERR_ARG, "table_init: tile %lld, rchunk %lld",
           (long long)tile, (long long)rchunk);
  // at most 2^22 logits per tile (16 MiB), at least one block
  const int64_t cap = ((int64_t)1 << 22) / rchunk;
  t->tile = ce_tile_items(tile < cap ? tile : cap, n_rows);
  if (t->tile > ce_tile_items(n_rows, n_rows)) t->tile = ce_tile_items(n_rows, n_rows);
  t->rchunk = rchunk;
  int rc;
  if (mode == LR_TABLE_SHARDED) {
    if ((rc = emb_shard_init(&t->emb, n_rows, D, max_ids))) goto fail;
    if ((rc = itemtab_init(&t->tab, t->emb.lo, t->emb.hi, D, seed))) goto fail;
    if (max_loss_rows > 0 &&
        (rc = vocab_ce_init(&t->ce, n_rows, D, max_loss_rows, t->tile, rchunk)))
      goto fail;
    // a lookup returns its distinct rows: at most min(max_ids, n_rows)
    const size_t U = (size_t)(max_ids < n_rows ? max_ids : n_rows);
    t->rows = lr_calloc(U * (size_t)D, sizeof(float), "looked-up item rows");
    t->drows = lr_calloc(U * (size_t)D, sizeof(lr_xs), "item row gradients");
    if (!t->rows || !t->drows) goto nomem;
  } else {
    if ((rc = itemtab_init(&t->tab, 0, n_rows, D, seed))) goto fail;
    t->mark = lr_calloc((size_t)n_rows, sizeof *t->mark, "looked-up row marks");
    t->touched = lr_calloc((size_t)n_rows, sizeof *t->touched, "looked-up rows");
    if (!t->mark || !t->touched) goto nomem;
    if (max_loss_rows > 0) {
      const size_t R = (size_t)rchunk;
      t->ce_scratch = lr_calloc(ce_scratch_elems(rchunk, t->tile, D), sizeof(float), "CE tile");
      t->gmax = lr_calloc(R, sizeof(float), "CE row max");
      t->lse = lr_calloc(R, sizeof(float), "CE log-sum-exp");
      t->tlogit = lr_calloc(R, sizeof(float), "CE target logits");
      t->sx = lr_calloc(R, sizeof(lr_xs), "CE row sums");
      t->dhs_x = lr_calloc(R * (size_t)D, sizeof(lr_xs), "CE hidden gradients");
      if (!t->ce_scratch || !t->gmax || !t->lse || !t->tlogit || !t->sx || !t->dhs_x) goto nomem;
    }
  }
  return LR_OK;
nomem:
  rc = LR_ERR_NOMEM;
fail:
  table_free(t);
  lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
}

int table_lookup(lr_table *t, const float **rows, lr_xs **drows, int32_t *idx,
                 const int32_t *ids, int64_t n, int32_t *idx2, const int32_t *ids2, int64_t n2) {
  if (t->mode == LR_TABLE_SHARDED) {
    int64_t U;
    LR_CALL(emb_shard_lookup(&t->emb, t->rows, idx, idx2, &U, ids, n, ids2, n2, &t->tab));
    memset(t->drows, 0, (size_t)U * (size_t)t->D * sizeof *t->drows);
    *rows = t->rows;
    *drows = t->drows;
    return LR_OK;
  }
  // Replicated: the table itself; row index = item id.
  for (int64_t i = 0; i < n; i++) {
    LR_CHECK(ids[i] >= 0 && ids[i] < t->n_rows, LR_ERR_ARG, "item id %d outside [0, %lld)", ids[i],
             (long long)t->n_rows);
    idx[i] = ids[i] ? ids[i] : -1;
    t->mark[ids[i]] = ids[i] != 0;
  }
  for (int64_t i = 0; i < n2; i++) {
    LR_CHECK(ids2[i] >= 0 && ids2[i] < t->n_rows, LR_ERR_ARG, "item id %d outside [0, %lld)",
             ids2[i], (long long)t->n_rows);
    idx2[i] = ids2[i] ? ids2[i] : -1;
    t->mark[ids2[i]] = ids2[i] != 0;
  }
  *rows = t->tab.w;
  *drows = t->tab.gx;
  return LR_OK;
}

int table_push(lr_table *t) {
  if (t->mode == LR_TABLE_SHARDED) LR_CALL(emb_shard_push_grad(&t->emb, &t->tab, t->drows));
  return LR_OK;
}

// The replicated table's CE: the whole catalog is local, so the three passes
// run chunk by chunk (whole examples) on one logits tile each when it fits.
static void ce_replicated(lr_table *t, lr_xs *loss, float *dhs, const float *hs,
                          const int32_t *tgt, const int32_t *grp, int64_t M, float coef) {
  const int64_t D = t->D, n = t->n_rows;
  for (int64_t m0 = 0, m1; m0 < M; m0 = m1) {
    m1 = ce_chunk_end(grp, m0, M, t->rchunk);
    const int64_t mc = m1 - m0;
    const float *hc = hs + (size_t)m0 * (size_t)D;
    ce_rowmax(t->gmax, hc, t->tab.w, 0, n, n, mc, D, t->tile, t->rchunk, t->ce_scratch);
    memset(t->sx, 0, (size_t)mc * sizeof *t->sx);
    t->bad |= ce_sumexp(t->sx, t->tlogit, hc, tgt + m0, t->tab.w, t->gmax, 0, n, n, mc, D, t->tile,
                        t->rchunk, t->ce_scratch, 1);
    ce_lse(t->lse, t->gmax, t->sx, mc);
    for (int64_t m = 0; m < mc; m++)
      t->bad |= xsum_add_d(loss, ((double)t->lse[m] - (double)t->tlogit[m]));
    if (!dhs) continue;
    memset(t->dhs_x, 0, (size_t)mc * (size_t)D * sizeof *t->dhs_x);
    t->bad |= ce_backward(t->dhs_x, t->tab.gx, hc, tgt + m0, grp ? grp + m0 : NULL, t->tab.w,
                          t->lse, 0, n, n, mc, D, t->tile, t->rchunk, coef, t->ce_scratch, 1);
    float *dh = dhs + (size_t)m0 * (size_t)D;
    for (int64_t i = 0; i < mc * D; i++) dh[i] += (float)xsum_value(t->dhs_x[i]);
  }
}

int table_ce(lr_table *t, lr_xs *loss, float *dhs, const float *hs, const int32_t *tgt,
             const int32_t *grp, int64_t M, float coef) {
  if (t->mode == LR_TABLE_SHARDED)
    return vocab_ce_forward_backward(&t->ce, loss, &t->bad, dhs, dhs ? t->tab.gx : NULL, hs, tgt,
                                     grp, t->tab.w, M, coef);
  double t0 = dist_wtime();
  for (int64_t m = 0; m < M; m++)
    LR_CHECK(tgt[m] >= 1 && tgt[m] < t->n_rows, LR_ERR_ARG, "CE target %d outside [1, %lld)",
             tgt[m], (long long)t->n_rows);
  ce_replicated(t, loss, dhs, hs, tgt, grp, M, coef);
  t->loss.calls++;
  t->loss.seconds += dist_wtime() - t0;
  return LR_OK;
}

// The rows with gradient this step when not dense (lazy): *n of them.
static const int64_t *lazy_rows(const lr_table *t, int64_t *n) {
  if (t->mode == LR_TABLE_SHARDED) return emb_shard_touched(&t->emb, n);
  *n = t->n_touched;
  return t->touched;
}

int table_sync(lr_table *t, int dense) {
  lr_itemtab *tb = &t->tab;
  const int64_t D = t->D;
  if (t->mode == LR_TABLE_REPLICATED) {
    if (dist_size() > 1) {
      double t0 = dist_wtime();
      int64_t n = t->n_rows * D;
      LR_CALL(dist_allreduce_xs(tb->gx, n));
      if (!dense) LR_CALL(dist_allreduce_or_u8(t->mark, t->n_rows));
      int P = dist_size();
      int64_t bytes = (int64_t)(2.0 * (double)(n * 16 + (dense ? 0 : t->n_rows)) * (P - 1) / P);
      t->allreduce.calls++;
      t->allreduce.bytes_sent += bytes;
      t->allreduce.bytes_recv += bytes;
      t->allreduce.seconds += dist_wtime() - t0;
    }
    t->n_touched = 0;
    for (int64_t r = 1; !dense && r < t->n_rows; r++)
      if (t->mark[r]) t->touched[t->n_touched++] = r;
  }
  if (dense) {
    xsum_to_float(tb->g, tb->gx, itemtab_rows(tb) * D);
    return LR_OK;
  }
  int64_t n;
  const int64_t *rows = lazy_rows(t, &n);
  for (int64_t i = 0; i < n; i++)
    xsum_to_float(tb->g + rows[i] * D, tb->gx + rows[i] * D, D);
  return LR_OK;
}

void table_adam(lr_table *t, lr_adam_cfg c, int64_t step, int dense) {
  lr_itemtab *tb = &t->tab;
  const int64_t D = t->D;
  if (dense) {
    // The padding row (global 0) has no gradient and stays zero.
    int64_t skip = tb->lo == 0 ? 1 : 0;
    int64_t n = (itemtab_rows(tb) - skip) * D;
    if (n > 0)
      adam_update(tb->w + skip * D, tb->m + skip * D, tb->v + skip * D, tb->g + skip * D, n, c,
                  step);
    return;
  }
  int64_t n;
  const int64_t *rows = lazy_rows(t, &n);
  for (int64_t i = 0; i < n; i++)
    adam_update_rows(tb->w, tb->m, tb->v, tb->g + rows[i] * D, &rows[i], 1, D, c, step);
}

lr_xs table_grad_sumsq(const lr_table *t) {
  lr_xs acc = {0, 0, 0};
  const int64_t D = t->D, n = itemtab_rows(&t->tab);
  for (int64_t r = 0; r < n; r++) {
    const float *g = t->tab.g + r * D;
    double s = 0;
    for (int64_t j = 0; j < D; j++) s += (double)g[j] * (double)g[j];
    if (s != 0) (void)xsum_add_d(&acc, s);
  }
  return acc;
}

void table_grad_scale(lr_table *t, float s) {
  grad_scale(t->tab.g, itemtab_rows(&t->tab) * t->D, s);
}

void table_zero_grad(lr_table *t, int dense) {
  t->bad = 0;
  const int64_t D = t->D;
  if (t->mode == LR_TABLE_SHARDED && !dense) {
    emb_shard_zero_grad(&t->emb, &t->tab);
    return;
  }
  if (t->mode == LR_TABLE_REPLICATED && !dense) {
    for (int64_t i = 0; i < t->n_touched; i++) {
      const int64_t r = t->touched[i];
      memset(t->tab.g + r * D, 0, (size_t)D * sizeof(float));
      memset(t->tab.gx + r * D, 0, (size_t)D * sizeof(lr_xs));
    }
    memset(t->mark, 0, (size_t)t->n_rows);
    t->n_touched = 0;
    return;
  }
  const size_t n = (size_t)itemtab_rows(&t->tab) * (size_t)D;
  memset(t->tab.g, 0, n * sizeof(float));
  memset(t->tab.gx, 0, n * sizeof(lr_xs));
  if (t->mode == LR_TABLE_SHARDED) emb_shard_zero_grad(&t->emb, &t->tab);
}

void table_stats(const lr_table *t, dist_stats *lookup, dist_stats *push, dist_stats *loss,
                 dist_stats *allreduce) {
  dist_stats zero = {0};
  *lookup = t->mode == LR_TABLE_SHARDED ? t->emb.lookup_stats : zero;
  *push = t->mode == LR_TABLE_SHARDED ? t->emb.push_stats : zero;
  *loss = t->mode == LR_TABLE_SHARDED ? t->ce.stats : t->loss;
  *allreduce = t->allreduce;
}

// ---- Blin's two-view loss -----------------------------------------------------------

int table_enable_bkl(lr_table *t) {
  if (t->mode == LR_TABLE_SHARDED) return t->ce.max_rows > 0 ? vocab_ce_enable_bkl(&t->ce) : LR_OK;
  if (!t->ce_scratch || t->bkl_f) return LR_OK;
  const size_t R = (size_t)t->rchunk, D = (size_t)t->D;
  t->bkl_f = lr_calloc(9 * R, sizeof(float), "two-view loss row statistics");
  t->bkl_x = lr_calloc(4 * R + 2 * R * D, sizeof(lr_xs), "two-view loss sums");
  t->bkl_scratch =
      lr_calloc(bkl_scratch_elems(t->rchunk, t->tile, t->D), sizeof(float), "two-view CE tiles");
  LR_CHECK(t->bkl_f && t->bkl_x && t->bkl_scratch, LR_ERR_NOMEM, "table_enable_bkl: out of memory");
  return LR_OK;
}

int table_bkl(lr_table *t, lr_xs *loss, float *dhs_a, float *dhs_b, const float *hs_a,
              const float *hs_b, const int32_t *tgt, const int32_t *grp, int64_t M, double lambda,
              float coef) {
  if (t->mode == LR_TABLE_SHARDED)
    return vocab_bkl_forward_backward(&t->ce, loss, &t->bad, dhs_a, dhs_b,
                                      dhs_a ? t->tab.gx : NULL, hs_a, hs_b, tgt, grp, t->tab.w, M,
                                      lambda, coef);
  LR_ASSERT(t->bkl_f);
  const double t0 = dist_wtime();
  for (int64_t m = 0; m < M; m++)
    LR_CHECK(tgt[m] >= 1 && tgt[m] < t->n_rows, LR_ERR_ARG, "CE target %d outside [1, %lld)",
             tgt[m], (long long)t->n_rows);
  const int64_t D = t->D, n = t->n_rows, R = t->rchunk;
  float *gm = t->bkl_f, *g1 = gm + 2 * R, *tl = g1 + R, *st = tl + 2 * R;
  lr_xs *sx = t->bkl_x, *da = sx + 4 * R, *db = da + R * D;
  for (int64_t m0 = 0, m1; m0 < M; m0 = m1) {
    m1 = ce_chunk_end(grp, m0, M, R);
    const int64_t mc = m1 - m0;
    const float *ca = hs_a + (size_t)m0 * (size_t)D, *cb = hs_b + (size_t)m0 * (size_t)D;
    for (int v = 0; v < 2; v++) {
      ce_rowmax(g1, v ? cb : ca, t->tab.w, 0, n, n, mc, D, t->tile, R, t->bkl_scratch);
      for (int64_t i = 0; i < mc; i++) gm[2 * i + v] = g1[i];
    }
    memset(sx, 0, (size_t)(4 * mc) * sizeof *sx);
    t->bad |= bkl_sumexp(sx, tl, ca, cb, tgt + m0, t->tab.w, gm, 0, n, n, mc, D, t->tile, R,
                         t->bkl_scratch);
    bkl_stats(st, gm, sx, mc);
    for (int64_t i = 0; i < mc; i++)
      t->bad |= xsum_add_d(loss, bkl_row_loss(st + 4 * i, tl + 2 * i, lambda, NULL, NULL));
    if (!dhs_a) continue;
    memset(da, 0, (size_t)(mc * D) * sizeof *da);
    memset(db, 0, (size_t)(mc * D) * sizeof *db);
    t->bad |= bkl_backward(da, db, t->tab.gx, ca, cb, tgt + m0, grp ? grp + m0 : NULL, t->tab.w,
                           st, lambda, 0, n, n, mc, D, t->tile, R, coef, t->bkl_scratch);
    float *ha = dhs_a + (size_t)m0 * (size_t)D, *hb = dhs_b + (size_t)m0 * (size_t)D;
    for (int64_t i = 0; i < mc * D; i++)
      ha[i] += (float)xsum_value(da[i]), hb[i] += (float)xsum_value(db[i]);
  }
  t->loss.calls++;
  t->loss.seconds += dist_wtime() - t0;
  return LR_OK;
}
