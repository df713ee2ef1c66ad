// vocab_ce.h: vocab-parallel full-catalog softmax cross-entropy over the
// row-sharded item table (dist/README.md, "The item table"), without ever
// gathering the table, bitwise the same at any number of ranks.
//
// Rank r owns item rows [lo, hi) = shard_items(I+1, r, P) (whole blocks of
// the loss's fixed item blocks, core/loss.h; the same cut as emb_shard.h)
// and M_r loss rows (hidden state hs_m, target tgt_m, example grp_m). With
// logit_mv = hs_m . E_v over the items v = 1..I (row 0 is padding, never a
// candidate):
//   gmax_m = max_v logit_mv
//   lse_m  = gmax_m + log sum_blocks [ sum_{v in block} exp(logit_mv - gmax_m) ]
//   loss_m = lse_m - logit_{m,tgt_m},  dloss_m/dlogit_mv = softmax_mv - [v == tgt_m]
// with the sums over blocks (and over ranks) exact (xsum.h), so every rank
// and every P compute the same lse.
// One call, on every rank:
//   1. MPI_Allgather of (M_r, wants-gradient, coef) as 3 int64: every rank
//      learns M_all = sum_r M_r and the displacements, and every rank sees a
//      bad argument on any rank (then all return LR_ERR_ARG, none hangs).
//   2. Three MPI_Allgatherv: hs (M_r*D floats) into hs_all (M_all,D), tgt
//      and grp (M_r int32 each), blocks in rank order.
//   Then, for each chunk of whole examples of at most rchunk gathered rows:
//   3. ce_rowmax over own rows [lo,hi) (logits in rchunk x tile tiles only,
//      never M x I); MPI_Allreduce MAX: gmax.
//   4. ce_sumexp relative to gmax, and the target logit where this rank owns
//      the target (0 elsewhere); one MPI_Allreduce SUM of the exact sums' limbs
//      and the target logits' bits (LR_XS_LIMBS + 1 int64 per row): lse, the same on
//      every rank.
//   5. (gradients) ce_backward over own rows: drows (own item rows, exact,
//      per example); partial dhs_all (chunk rows x D, exact per block).
//   Last, MPI_Reduce_scatter of dhs_all's limbs (block r = M_r*D*LR_XS_LIMBS int64)
//   leaves each rank the dhs of its own M_r rows, converted and added to dhs.
// When the slice is one tile, the chunk's logits from step 3 serve steps 4
// and 5; otherwise each pass recomputes them.
// Traffic per call: O(M_all*D) (allgather + reduce-scatter) plus O(M_all)
// statistics, independent of I.
//
// Memory per rank, allocated once by vocab_ce_init for up to max_rows loss
// rows per rank per call: hs_all (P*max_rows*D floats), dhs_all and the
// received dhs (P*max_rows*D and max_rows*D accumulators of 16 bytes), a
// few per-row statistics, and ce_scratch_elems(rchunk, tile, D) floats.
#ifndef LR_VOCAB_CE_H
#define LR_VOCAB_CE_H

#include <stdint.h>

#include "comm.h" // dist_stats
#include "xsum.h" // lr_xs

typedef struct {
  int64_t n_rows, D;       // global table (n_rows = I+1, D)
  int64_t lo, hi;          // own item rows: shard_items(n_rows, rank, P)
  int64_t max_rows;        // capacity: loss rows per rank per call
  int64_t tile, rchunk;    // logits tile: items (a multiple of the block) x loss rows
  int P, rank;
  int64_t *info;           // (3P) gathered (M_r, wants-gradient, coef bits)
  int64_t *cnt, *dsp;      // (P) loss rows of each rank, their offsets in the gathered rows
  int64_t *cnt_f, *dsp_f;  // (P) the same in floats (x D)
  int64_t *cnt_x;          // (P) the same in int64 limbs (x LR_XS_LIMBS D)
  float *hs_all;           // (P*max_rows, D)
  lr_xs *dhs_all;          // (P*max_rows, D)
  int32_t *tgt_all, *grp_all, *gid; // (P*max_rows) targets, examples, example ids across ranks
  float *gmax, *lse, *tlogit; // (P*max_rows)
  lr_xs *sx;               // (P*max_rows) sums of exponentials
  lr_xs *dhs_mine;         // (max_rows, D) reduce-scatter result
  int64_t *red;            // ((LR_XS_LIMBS+1)*rchunk) one chunk's sums and target logits, reduced
  float *scratch;          // ce_scratch_elems(rchunk, tile, D)
  // Blin's two-view loss (vocab_ce_enable_bkl; NULL until then): per pair
  // (Sa, Sb, Ta, Tb) sums, (lse_a, lse_b, Ea, Eb), the target logits of both
  // views, one chunk's reduction, bkl_scratch_elems floats
  lr_xs *sx4;
  float *st4, *tl2, *bkl_scratch;
  int64_t *red4;
  dist_stats stats;
} vocab_ce_plan;

// Plan for a (n_rows, D) table cut across the comm.h ranks, at most max_rows
// loss rows per rank per call, logits tiles of `tile` items (rounded up to
// whole blocks) x `rchunk` loss rows (at least the rows of the longest
// example). Logically collective: every rank passes the same arguments
// (verified; LR_ERR_ARG on every rank if not). Collective. Returns LR_OK,
// LR_ERR_ARG (n_rows < 2, D < 1, max_rows < 0, tile < 1, rchunk < 1),
// LR_ERR_NOMEM, LR_ERR_MPI; on failure the plan is freed (zeroed).
int vocab_ce_init(vocab_ce_plan *p, int64_t n_rows, int64_t D, int64_t max_rows, int64_t tile,
                  int64_t rchunk);
// Free; accepts a zeroed or half-initialised plan. Local.
void vocab_ce_free(vocab_ce_plan *p);

// Loss and gradients of this call's loss rows, all ranks' rows together.
// In:  hs (M,D), tgt (M) in 1..I, grp (M) (rows with equal consecutive
//      values are one example; NULL: every row its own): this rank's loss
//      rows (M <= max_rows, M = 0 allowed; hs/tgt/grp may then be NULL);
//      rows (hi-lo, D): this rank's item rows (tab->w); coef: the gradient
//      weight of one row's loss (the trainer's 1/M_total).
// Out: *loss += the sum of this rank's rows' losses (exact;
//      the ranks' sums add up to the call's total);
//      dhs (M,D) += coef * dloss/dhs for this rank's rows;
//      drows (hi-lo, D) += coef * dloss/drows for this rank's item rows
//      (exact; row 0, the padding row, is never written);
//      *bad |= nonzero when a term fell out of xsum.h's range (diverging).
// dhs NULL skips the backward pass and step 5 (evaluation; drows is then
// ignored): logically collective, every rank passes dhs NULL or every rank
// passes non-NULL, and the same coef (verified in step 1). drows may be
// NULL on any rank. Collective.
// Returns LR_OK; LR_ERR_ARG on EVERY rank if any rank passed M > max_rows,
// a target outside [1, n_rows), a differing coef, or mixed dhs NULL /
// non-NULL (then nothing is written); LR_ERR_MPI (then the outputs may be
// partly updated).
int vocab_ce_forward_backward(vocab_ce_plan *p, lr_xs *loss, uint32_t *bad, float *dhs,
                              lr_xs *drows, const float *hs, const int32_t *tgt,
                              const int32_t *grp, const float *rows, int64_t M, float coef);

// ---- Blin: mean CE of two views + lambda * bidirectional KL (core/loss.h, bkl_*) ----------
// Each rank passes M pairs of loss rows (hs_a[m], hs_b[m]: the two views of
// one loss row, target tgt[m], example grp[m]); 2M must fit the plan's
// max_rows. The same steps as vocab_ce_forward_backward on both views at
// once: the two views' rows are gathered (two allgatherv), the row max of
// each view reduced by MAX, then pass 2 keeps per pair the two sums of
// exponentials and the two KL sums Ta, Tb (merged in the same one exact
// allreduce, next to the two target logits' bits: no extra pass), then the
// gradients; two reduce-scatters return dhs_a and dhs_b. *loss += each own
// pair's loss (exact). Bitwise the same at any P. Collective; errors as
// vocab_ce_forward_backward.
// Allocate the two-view buffers once (after vocab_ce_init). Local.
int vocab_ce_enable_bkl(vocab_ce_plan *p);
int vocab_bkl_forward_backward(vocab_ce_plan *p, lr_xs *loss, uint32_t *bad, float *dhs_a,
                               float *dhs_b, lr_xs *drows, const float *hs_a, const float *hs_b,
                               const int32_t *tgt, const int32_t *grp, const float *rows,
                               int64_t M, double lambda, float coef);

#endif
