// vocab_ce.h: vocab-parallel full-catalog softmax cross-entropy over the
// row-sharded item table (DESIGN §2 "vocab-parallel loss"), without ever
// gathering the table.
//
// Rank r owns item rows [lo, hi) = shard_range(I+1, r, P) (the same cut as
// emb_shard.h) and M_r loss rows (hidden state hs_m, target tgt_m). With
// logit_mv = hs_m . E_v over the items v = 1..I (row 0 is padding, never a
// candidate):
//   lse_m = log sum_v exp(logit_mv)
//         = gmax_m + log sum_r [ sum_{v in rank r} exp(logit_mv - rmax_rm) ] exp(rmax_rm - gmax_m)
//   loss  = 1/M_total sum_m (lse_m - logit_{m,tgt_m})
//   dloss/dlogit_mv = (softmax_mv - [v == tgt_m]) / M_total
// One call, on every rank:
//   1. MPI_Allgather of (M_r, M_total, wants-gradient) as 3 int64: every rank
//      learns M_all = sum_r M_r and the displacements, and every rank sees a
//      bad argument on any rank (then all return LR_ERR_ARG, none hangs).
//   2. Two MPI_Allgatherv: hs (M_r*D floats) into hs_all (M_all,D), tgt
//      (M_r int32) into tgt_all (M_all), blocks in rank order.
//   3. ce_stats over own rows [lo,hi), logits in (tile_rows x tile) tiles only
//      (never M x I): row max, sum exp, and the target logit when this rank
//      owns the target (0 otherwise).
//   4. MPI_Allreduce MAX of the row max (M_all floats); each rank rescales
//      its sum to the global max; MPI_Allreduce SUM of [sums | target
//      logits] (2*M_all floats): lse and the loss, the same on every rank.
//   5. (gradients) ce_backward over own rows: drows (own rows, dense)
//      ACCUMULATES; partial dhs_all (M_all,D); MPI_Reduce_scatter (block r =
//      M_r*D floats) leaves each rank the dhs of its own M_r rows, added to
//      dhs (ACCUMULATES).
// Traffic per call: O(M_all*D) (allgather + reduce-scatter) plus O(M_all)
// statistics, independent of I.
//
// Memory per rank, allocated once by vocab_ce_init for up to max_rows loss
// rows per rank per call: hs_all and dhs_all (2*P*max_rows*D floats), 4*P*
// max_rows row statistics, max_rows*D for the received dhs, and one logits
// tile of min(tile_rows, P*max_rows) x min(tile, I+1) floats.
#ifndef LR_VOCAB_CE_H
#define LR_VOCAB_CE_H

#include <stdint.h>

#include "comm.h" // dist_stats

typedef struct {
  int64_t n_rows, D;       // global table (n_rows = I+1, D)
  int64_t lo, hi;          // own item rows: shard_range(n_rows, rank, P)
  int64_t max_rows;        // capacity: loss rows per rank per call
  int64_t tile, tile_rows; // logits tile: items x loss rows
  int P, rank;
  int64_t *info;           // (3P) gathered (M_r, M_total, wants-gradient)
  int64_t *cnt, *dsp;      // (P) loss rows of each rank, their offsets in the gathered rows
  int64_t *cnt_f, *dsp_f;  // (P) the same in floats (x D)
  float *hs_all, *dhs_all; // (P*max_rows, D)
  int32_t *tgt_all;        // (P*max_rows)
  float *rmax, *lse;       // (P*max_rows)
  float *sums;             // (2*P*max_rows): sums of exp, then target logits
  float *dhs_mine;         // (max_rows, D) reduce-scatter result
  float *scratch;          // (tile_rows_eff * tile_eff) logits tile
  dist_stats stats;
} vocab_ce_plan;

// Plan for a (n_rows, D) table cut across the comm.h ranks, at most max_rows
// loss rows per rank per call, logits tiles of `tile` items x `tile_rows`
// loss rows (tile_rows = 0: all gathered rows at once). Logically
// collective: every rank passes the same arguments (verified; LR_ERR_ARG on
// every rank if not). Collective. Returns LR_OK, LR_ERR_ARG (n_rows < 2,
// D < 1, max_rows < 0, tile < 1, tile_rows < 0), LR_ERR_NOMEM, LR_ERR_MPI;
// on failure the plan is freed (zeroed).
int vocab_ce_init(vocab_ce_plan *p, int64_t n_rows, int64_t D, int64_t max_rows, int64_t tile,
                  int64_t tile_rows);
// Free; accepts a zeroed or half-initialised plan. Local.
void vocab_ce_free(vocab_ce_plan *p);

// Loss and gradients of this call's loss rows, all ranks' rows together.
// In:  hs (M,D), tgt (M) in 1..I: this rank's loss rows (M <= max_rows,
//      M = 0 allowed; hs/tgt may then be NULL); rows (hi-lo, D): this rank's
//      item rows (tab->w); M_total: the number of loss rows the mean is over
//      (>= the gathered M_all; the trainer passes the global batch's count so
//      micro-batch calls add up to the global mean); scale multiplies the
//      gradients (not the loss).
// Out: *loss = sum over the M_all gathered rows of (lse - target logit) /
//      M_total: the same value on every rank (do not allreduce it again);
//      dhs (M,D) += scale * dloss/dhs for this rank's rows;
//      drows (hi-lo, D) += scale * dloss/drows for this rank's item rows
//      (row 0, the padding row, is never written).
// dhs NULL skips the backward pass and step 5 (evaluation; drows is then
// ignored): logically collective, every rank passes dhs NULL or every rank
// passes non-NULL (verified in step 1). drows may be NULL on any rank.
// Collective.
// Returns LR_OK; LR_ERR_ARG on EVERY rank if any rank passed M > max_rows,
// a target outside [1, n_rows), an M_total below M_all or differing across
// ranks, or mixed dhs NULL / non-NULL (then dhs, drows are untouched);
// LR_ERR_MPI (then they may be partly updated). *loss = 0 on failure.
int vocab_ce_forward_backward(vocab_ce_plan *p, double *loss, float *dhs, float *drows,
                              const float *hs, const int32_t *tgt, const float *rows, int64_t M,
                              int64_t M_total, float scale);

#endif
