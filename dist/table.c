// table.c: the item table in sharded or replicated layout (table.h).
#include "table.h"

#include <math.h>   // logf
#include <string.h> // memset

#include "loss.h"
#include "lr.h"

void table_free(lr_table *t) {
  itemtab_free(&t->tab);
  emb_shard_free(&t->emb);
  vocab_ce_free(&t->ce);
  lr_free(t->rows);
  lr_free(t->drows);
  lr_free(t->ce_scratch);
  lr_free(t->rmax);
  lr_free(t->rsum);
  lr_free(t->tlogit);
  memset(t, 0, sizeof *t);
}

int table_init(lr_table *t, lr_table_mode mode, int64_t n_rows, int64_t D, int64_t max_ids,
               int64_t max_loss_rows, int64_t tile, uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->mode = mode, t->n_rows = n_rows, t->D = D;
  t->tile = tile < n_rows ? tile : n_rows;
  int rc;
  if (mode == LR_TABLE_SHARDED) {
    if ((rc = emb_shard_init(&t->emb, n_rows, D, max_ids))) goto fail;
    if ((rc = itemtab_init(&t->tab, t->emb.lo, t->emb.hi, D, seed))) goto fail;
    if (max_loss_rows > 0 &&
        (rc = vocab_ce_init(&t->ce, n_rows, D, max_loss_rows, t->tile, 1024)))
      goto fail;
    // a lookup returns its distinct rows: at most min(max_ids, n_rows)
    const size_t U = (size_t)(max_ids < n_rows ? max_ids : n_rows);
    t->rows = lr_calloc(U * (size_t)D, sizeof(float), "looked-up item rows");
    t->drows = lr_calloc(U * (size_t)D, sizeof(float), "item row gradients");
    if (!t->rows || !t->drows) goto nomem;
  } else {
    if ((rc = itemtab_init(&t->tab, 0, n_rows, D, seed))) goto fail;
    if (max_loss_rows > 0) {
      t->ce_scratch = lr_calloc(ce_scratch_elems(max_loss_rows, t->tile), sizeof(float), "CE tile");
      t->rmax = lr_calloc((size_t)max_loss_rows, sizeof(float), "CE row max");
      t->rsum = lr_calloc((size_t)max_loss_rows, sizeof(float), "CE row sums");
      t->tlogit = lr_calloc((size_t)max_loss_rows, sizeof(float), "CE target logits");
      if (!t->ce_scratch || !t->rmax || !t->rsum || !t->tlogit) goto nomem;
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

int table_lookup(lr_table *t, const float **rows, float **drows, int32_t *idx,
                 const int32_t *ids, int64_t n, int32_t *idx2, const int32_t *ids2, int64_t n2) {
  if (t->mode == LR_TABLE_SHARDED) {
    int64_t U;
    LR_CALL(emb_shard_lookup(&t->emb, t->rows, idx, idx2, &U, ids, n, ids2, n2, &t->tab));
    memset(t->drows, 0, (size_t)U * (size_t)t->D * sizeof(float));
    *rows = t->rows;
    *drows = t->drows;
    return LR_OK;
  }
  // Replicated: the table itself; row index = item id.
  for (int64_t i = 0; i < n; i++) {
    LR_CHECK(ids[i] >= 0 && ids[i] < t->n_rows, LR_ERR_ARG, "item id %d outside [0, %lld)", ids[i],
             (long long)t->n_rows);
    idx[i] = ids[i] ? ids[i] : -1;
  }
  for (int64_t i = 0; i < n2; i++) {
    LR_CHECK(ids2[i] >= 0 && ids2[i] < t->n_rows, LR_ERR_ARG, "item id %d outside [0, %lld)",
             ids2[i], (long long)t->n_rows);
    idx2[i] = ids2[i] ? ids2[i] : -1;
  }
  *rows = t->tab.w;
  *drows = t->tab.g;
  return LR_OK;
}

int table_push(lr_table *t) {
  if (t->mode == LR_TABLE_SHARDED) LR_CALL(emb_shard_push_grad(&t->emb, &t->tab, t->drows));
  return LR_OK;
}

int table_ce(lr_table *t, double *loss_local, double *loss_global, float *dhs, const float *hs,
             const int32_t *tgt, int64_t M, int64_t M_total) {
  if (t->mode == LR_TABLE_SHARDED) {
    double loss = 0;
    LR_CALL(vocab_ce_forward_backward(&t->ce, &loss, dhs, dhs ? t->tab.g : NULL, hs, tgt, t->tab.w,
                                      M, M_total, 1.0f));
    *loss_global += loss;
    return LR_OK;
  }
  double t0 = dist_wtime();
  const int64_t D = t->D;
  ce_stats(t->rmax, t->rsum, t->tlogit, hs, tgt, t->tab.w, 0, t->n_rows, M, D, t->tile,
           t->ce_scratch);
  double sum = 0;
  for (int64_t m = 0; m < M; m++) {
    t->rmax[m] += logf(t->rsum[m]); // now the log-sum-exp
    sum += (double)t->rmax[m] - (double)t->tlogit[m];
  }
  *loss_local += sum / (double)M_total;
  if (dhs)
    ce_backward(dhs, t->tab.g, hs, tgt, t->tab.w, t->rmax, 0, t->n_rows, M, M_total, D, t->tile,
                1.0f, t->ce_scratch, 1); // the logits of ce_stats just above
  t->loss.calls++;
  t->loss.seconds += dist_wtime() - t0;
  return LR_OK;
}

int table_sync(lr_table *t) {
  if (t->mode != LR_TABLE_REPLICATED || dist_size() == 1) return LR_OK;
  double t0 = dist_wtime();
  int64_t n = t->n_rows * t->D;
  LR_CALL(dist_allreduce_sum_f(t->tab.g, n));
  int P = dist_size();
  int64_t bytes = (int64_t)(2.0 * (double)n * 4.0 * (P - 1) / P);
  t->allreduce.calls++;
  t->allreduce.bytes_sent += bytes;
  t->allreduce.bytes_recv += bytes;
  t->allreduce.seconds += dist_wtime() - t0;
  return LR_OK;
}

void table_adam(lr_table *t, lr_adam_cfg c, int64_t step, int dense) {
  lr_itemtab *tb = &t->tab;
  const int64_t D = t->D;
  if (dense || t->mode == LR_TABLE_REPLICATED) {
    // The padding row (global 0) has no gradient and stays zero.
    int64_t skip = tb->lo == 0 ? 1 : 0;
    int64_t n = (itemtab_rows(tb) - skip) * D;
    if (n > 0)
      adam_update(tb->w + skip * D, tb->m + skip * D, tb->v + skip * D, tb->g + skip * D, n, c,
                  step);
    return;
  }
  int64_t n;
  const int64_t *rows = emb_shard_touched(&t->emb, &n);
  for (int64_t i = 0; i < n; i++)
    adam_update_rows(tb->w, tb->m, tb->v, tb->g + rows[i] * D, &rows[i], 1, D, c, step);
}

double table_grad_sumsq(const lr_table *t) {
  return grad_sumsq(t->tab.g, itemtab_rows(&t->tab) * t->D);
}

void table_grad_scale(lr_table *t, float s) {
  grad_scale(t->tab.g, itemtab_rows(&t->tab) * t->D, s);
}

void table_zero_grad(lr_table *t, int dense) {
  if (t->mode == LR_TABLE_SHARDED && !dense) {
    emb_shard_zero_grad(&t->emb, &t->tab);
    return;
  }
  memset(t->tab.g, 0, (size_t)itemtab_rows(&t->tab) * (size_t)t->D * sizeof(float));
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
