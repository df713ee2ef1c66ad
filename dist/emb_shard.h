// emb_shard.h: the batch exchange of the row-sharded item table
// (dist/README.md, "The item table"): unique ids -alltoallv-> owner ranks
// -alltoallv-> rows, and the looked-up rows' gradients -alltoallv-> owners.
//
// Ownership: rank r of P owns global rows shard_items(I+1, r, P) of the
// (I+1, D) item table, held in an lr_itemtab with lo/hi equal to the plan's
// (row 0 is padding: it is never requested, never receives gradient and
// stays zero). No rank holds the whole table; traffic per step is
// O(distinct ids x D), independent of I.
//
// One training step, on every rank:
//   emb_shard_lookup      ids of this rank's micro-batch -> its distinct rows
//                         (U,D) and idx (position of each id in them; -1 at
//                         padding) for embedding_forward and the losses;
//   ...forward/backward adds into drows (U,D), exact...
//   emb_shard_push_grad   drows -> owners, summed into tab->gx; the owner
//                         records the local rows touched;
//   (repeat lookup/push per micro-batch: gradients and touched rows accumulate)
//   optimizer on emb_shard_touched rows, then emb_shard_zero_grad.
//
// Wire protocol (all collectives on the comm.h communicator):
//   lookup  1. MPI_Alltoall, 1 int64 per rank pair: how many distinct ids
//              this rank requests from owner q (-1 to every rank when this
//              rank's ids are invalid: then every rank returns LR_ERR_ARG
//              from the same call instead of hanging in the next collective).
//           2. MPI_Alltoallv of int32 ids, grouped by owner in rank order,
//              first-seen order within an owner (this is also the order of
//              the rows returned).
//           3. MPI_Alltoallv of float rows back (count*D floats per pair).
//   push    1. MPI_Alltoallv of the exact gradient rows (xsum.h limbs, LR_XS_LIMBS D
//              int64 per row) to the owners: the transpose of lookup step 3,
//              same counts, no count exchange. Each owner adds the limbs
//              (integer adds: the result is the same for any P and order).
//
// Negatives for sampled objectives travel in the same exchange: pass them as
// the second id array of emb_shard_lookup (ids2/idx2); the distinct rows
// cover both arrays and idx2 indexes the same rows.
//
// For sampled objectives put the targets there too (ids2 = the (M,C)
// candidate ids, target first): idx2 is then the cand array of
// sampled_forward_backward. With objective=ce every own row gets gradient
// from vocab_ce.h (dense over own rows), so the touched list matters for
// sampled objectives and the encoder-input rows.
//
// Memory (per rank, allocated once by emb_shard_init, nothing in the step):
// 36..52 bytes per max_ids of dedup/ordering state (hash at load <= 1/2),
// P*min(max_ids, I_r)*(4D+1)*4 bytes for the rows this rank serves
// (I_r = rows owned), 9*I_r bytes for the touched-row list, 64*P bytes of
// counts. The caller owns rows (max_ids, D), idx, idx2 and drows.
#ifndef LR_EMB_SHARD_H
#define LR_EMB_SHARD_H

#include <stdint.h>

#include "comm.h"    // dist_stats
#include "itemtab.h" // lr_itemtab

typedef struct {
  int64_t n_rows, D; // global table: (n_rows, D), n_rows = I+1
  int64_t lo, hi;    // global rows this rank owns: shard_items(n_rows, rank, P)
  int64_t max_ids;   // capacity: n + n2 ids per lookup
  int64_t serve_cap; // capacity: ids this rank serves per lookup, P*min(max_ids, hi-lo)
  int P, rank;
  // the last lookup (push_grad sends its transpose)
  int64_t n_distinct;                         // U
  int64_t n_served;                           // ids this rank served
  int64_t *scnt, *sdsp, *rcnt, *rdsp;         // (P) ids requested from / served to each rank
  int64_t *scnt_f, *sdsp_f, *rcnt_f, *rdsp_f; // (P) the same in floats (x D)
  int32_t *uniq;   // (max_ids) distinct ids in row order (grouped by owner)
  int64_t *scnt_x, *sdsp_x, *rcnt_x, *rdsp_x; // (P) the same in int64 limbs (x LR_XS_LIMBS D)
  int32_t *served; // (serve_cap) ids served, by source rank
  float *sbuf;     // (serve_cap, D) rows served
  lr_xs *xbuf;     // (serve_cap, D) gradients received
  // dedup: open-addressing hash id -> first-seen number (key 0 = empty)
  int64_t hcap;           // power of two >= 2*max_ids
  int32_t *hkey, *hval;   // (hcap)
  int32_t *slot;          // (max_ids) hash slot of each distinct id (to clear)
  int32_t *first, *owner; // (max_ids) distinct ids in first-seen order, their owners
  int32_t *pos;           // (max_ids) first-seen number -> row position
  // rows of tab->g holding gradient since the last emb_shard_zero_grad
  int64_t n_touched;
  int64_t *touched; // (hi-lo) local row indices (global id - lo), first-touch order
  uint8_t *mark;    // (hi-lo) 1 if listed in touched
  dist_stats lookup_stats, push_stats;
} emb_shard_plan;

// Set up the plan for a (n_rows, D) table cut across the comm.h ranks and
// lookups of at most max_ids ids (n + n2). Logically collective: every rank
// passes the same n_rows, D, max_ids (verified: LR_ERR_ARG on every rank if
// not). Collective. Returns LR_OK, LR_ERR_ARG (n_rows < 1 or >= 2^31,
// D < 1, max_ids < 1 or >= 2^31), LR_ERR_NOMEM or LR_ERR_MPI; on failure
// the plan is freed (zeroed). The caller then creates its table as
// itemtab_init(&tab, p->lo, p->hi, D, seed).
int emb_shard_init(emb_shard_plan *p, int64_t n_rows, int64_t D, int64_t max_ids);
// Free the plan; accepts a zeroed or half-initialised plan. Local.
void emb_shard_free(emb_shard_plan *p);

// Fetch the distinct rows of ids (n) and ids2 (n2) from their owners.
// Writes rows (U,D): the distinct nonzero ids' rows, U <= n + n2, in the
// order of p->uniq; idx (n) / idx2 (n2): position in rows of each id, -1 for
// id 0 (padding: no request); *U (may be NULL; also p->n_distinct).
// ids2/idx2 may be NULL when n2 = 0. tab: this rank's rows [p->lo, p->hi)
// (its w is read for the ids other ranks request). Collective: every rank
// calls, with its own ids (n = 0 allowed).
// Returns LR_OK; LR_ERR_ARG on EVERY rank if any rank passed an id outside
// [0, n_rows) or n + n2 > max_ids (that rank's message names the id);
// LR_ERR_MPI. rows is not written on failure.
int emb_shard_lookup(emb_shard_plan *p, float *rows, int32_t *idx, int32_t *idx2, int64_t *U,
                     const int32_t *ids, int64_t n, const int32_t *ids2, int64_t n2,
                     const lr_itemtab *tab);

// Send drows (U,D), the exact gradient of the rows of the LAST lookup, to
// their owners: tab->gx[id - lo] += the sum over all ranks of their drows
// row for id (exact), and the local rows are added to the touched list.
// Collective. Returns LR_OK or LR_ERR_MPI.
int emb_shard_push_grad(emb_shard_plan *p, lr_itemtab *tab, const lr_xs *drows);

// The local rows (global id - lo, distinct, first-touch order) that received
// gradient since the last emb_shard_zero_grad; *n their number. Valid until
// the next push_grad or zero_grad. Lazy Adam over them, row by row (after
// converting tab->gx to tab->g on them):
//   for (i < n) adam_update_rows(tab->w, tab->m, tab->v, tab->g + rows[i]*D,
//                                &rows[i], 1, D, cfg, t);
// Local; cannot fail.
const int64_t *emb_shard_touched(const emb_shard_plan *p, int64_t *n);
// Zero tab->gx and tab->g on the touched rows (all of them that is nonzero,
// when the table only ever receives gradient through push_grad) and empty
// the list. O(touched x D), not O(I_r x D). When tab->gx also takes dense
// gradient (vocab_ce_forward_backward's drows), memset all of it as well.
// Local; cannot fail.
void emb_shard_zero_grad(emb_shard_plan *p, lr_itemtab *tab);

#endif
