// table.h: the item table as the trainer sees it, in one of two layouts
// (`dist.item_table`; dist/README.md, "The item table"):
//   sharded     rank r owns rows shard_items(I+1, r, P) and their Adam
//               moments; batch rows travel by emb_shard.h, the full
//               cross-entropy is vocab-parallel (vocab_ce.h); no rank holds
//               the whole table.
//   replicated  every rank holds the whole table; its gradient is summed over
//               ranks at the end of each step like the dense parameters.
// At P = 1 both are one local table. The functions below hide the layout
// from the training step and the evaluation.
#ifndef LR_TABLE_H
#define LR_TABLE_H

#include <stdint.h>

#include "comm.h"
#include "emb_shard.h"
#include "itemtab.h"
#include "optim.h"
#include "vocab_ce.h"

typedef enum { LR_TABLE_SHARDED = 0, LR_TABLE_REPLICATED = 1 } lr_table_mode;

typedef struct {
  lr_table_mode mode;
  int64_t n_rows, D;   // global (I+1, D)
  lr_itemtab tab;      // sharded: own rows [lo,hi); replicated: all rows
  emb_shard_plan emb;  // sharded
  vocab_ce_plan ce;    // sharded with full cross-entropy
  float *rows;         // sharded: (min(max_ids, n_rows), D) the last lookup's distinct rows
  lr_xs *drows;        //   and their exact gradient
  int64_t tile, rchunk; // CE: items per logits tile, loss rows per chunk
  float *ce_scratch, *gmax, *lse, *tlogit; // replicated CE (rchunk rows)
  lr_xs *sx, *dhs_x;                       //   their sums, hidden-state gradients
  float *bkl_f, *bkl_scratch; // replicated two-view loss (table_enable_bkl): 9 floats per row
  lr_xs *bkl_x;               //   4 sums per row, then two views' hidden-state gradients
  uint8_t *mark;        // replicated: (n_rows) rows looked up this step (any rank after sync)
  int64_t *touched, n_touched; // replicated: the marked rows, after table_sync
  uint32_t bad;         // gradient or loss terms out of xsum.h's range since table_zero_grad
  dist_stats allreduce; // replicated: the table-gradient allreduce
  dist_stats loss;      // replicated: the CE has no communication (sharded: ce.stats)
} lr_table;

// Set up a table of n_rows x D in `mode` for lookups of at most max_ids ids
// and at most max_loss_rows CE rows per call per rank (0: no CE), CE logits
// tiles of `tile` items by `rchunk` rows (at least the rows of one example;
// the tile shrinks so a tile holds at most 2^22 logits). Rows are
// initialised by global row id (itemtab_init), so every mode and P start
// from the same values. Collective. LR_ERR_NOMEM/LR_ERR_MPI/LR_ERR_ARG.
int table_init(lr_table *t, lr_table_mode mode, int64_t n_rows, int64_t D, int64_t max_ids,
               int64_t max_loss_rows, int64_t tile, int64_t rchunk, uint64_t seed);
void table_free(lr_table *t);

// The rows of ids (n) and ids2 (n2): *rows (U,D) with idx (n)/idx2 (n2)
// indexing them (-1 for id 0), and *drows (U,D), zeroed, where the caller
// adds their gradient (exactly) before table_push. idx2/ids2 may be NULL
// when n2 = 0. Collective in sharded mode (every rank calls, n = 0 allowed).
int table_lookup(lr_table *t, const float **rows, lr_xs **drows, int32_t *idx,
                 const int32_t *ids, int64_t n, int32_t *idx2, const int32_t *ids2, int64_t n2);
// Route the last lookup's drows to the rows' owners (sharded; replicated
// drows already is the table gradient). Collective in sharded mode.
int table_push(lr_table *t);

// Full cross-entropy of this rank's loss rows hs (M,D), tgt (M), grp (M)
// (examples, loss.h; NULL: every row its own): *loss += the
// sum of their losses (exact); dhs (M,D) += coef * dloss/dhs (NULL: no
// backward, evaluation); item-row gradients into the table (exact).
// Collective in sharded mode (every rank calls, M = 0 allowed, the same
// coef and NULL-ness of dhs).
int table_ce(lr_table *t, lr_xs *loss, float *dhs, const float *hs, const int32_t *tgt,
             const int32_t *grp, int64_t M, float coef);

// End of step: replicated sums the table gradient over ranks (exactly) and,
// when not dense, the marks of the rows any rank looked up; then tab->g =
// the value of tab->gx on the rows that have gradient: all own rows with
// dense (full CE), else the rows looked up this step by any rank (the same
// set in both layouts). Collective.
int table_sync(lr_table *t, int dense);
// Adam on the table rows that have gradient: all own rows but the padding
// row for full CE (dense), the rows looked up this step for sampled
// objectives (lazy Adam), in either layout. Local.
void table_adam(lr_table *t, lr_adam_cfg c, int64_t step, int dense);
// Clip support: sum of squares of the table gradient (tab->g, after
// table_sync) over this rank's rows (sharded: the caller sums over ranks;
// replicated: identical everywhere).
// Exact (xsum.h: row sums of squares in double, added row by row), so the sum over ranks is bitwise the same at any P.
lr_xs table_grad_sumsq(const lr_table *t);
void table_grad_scale(lr_table *t, float s);
// Zero the gradient (dense: all own rows; lazy: the touched rows) and bad. Local.
void table_zero_grad(lr_table *t, int dense);

// Traffic of the table by kind since the start: lookup, push, loss, allreduce.
void table_stats(const lr_table *t, dist_stats *lookup, dist_stats *push, dist_stats *loss,
                 dist_stats *allreduce);

// ---- Blin's two-view loss ---------------------------------------------------------------
// Buffers for table_bkl (after table_init with max_loss_rows = twice the
// pairs). LR_ERR_NOMEM. Local.
int table_enable_bkl(lr_table *t);
// Mean CE of two views + lambda * bidirectional KL over the full catalog
// (core/loss.h bkl_*; sharded: dist/vocab_ce.h vocab_bkl_forward_backward),
// for M pairs (hs_a[m], hs_b[m]) with target tgt[m], example grp[m]:
// *loss += the pairs' losses (exact), dhs_a, dhs_b (M,D) += and the table
// gradient += coef times the gradients. Collective in sharded mode.
int table_bkl(lr_table *t, lr_xs *loss, float *dhs_a, float *dhs_b, const float *hs_a,
              const float *hs_b, const int32_t *tgt, const int32_t *grp, int64_t M, double lambda,
              float coef);

#endif
