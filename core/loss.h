// loss.h: next-item losses over the tied item table (DESIGN §1).
// A loss row m is one position carrying a target: hs (M,D) its hidden state,
// tgt[m] in 1..I its target item. The gradients accumulated are those of the
// MEAN over the M rows times `scale` (the trainer passes M_local/M_global so
// sums over ranks and micro-batches give the global mean); the loss values
// returned are plain means over the M rows. Item 0 (padding) is never a
// candidate.
// All functions are Local and cannot fail; backward ACCUMULATES (+=).
#ifndef LR_LOSS_H
#define LR_LOSS_H

#include <stddef.h>
#include <stdint.h>

// ---- full-catalog softmax cross-entropy, tiled over item rows -----------------
// The rows argument holds item rows lo..hi-1 of the table ((hi-lo),D); global
// id lo+i is row i. Logits are computed in tiles of `tile` items
// (hs rows x tile floats of scratch, see ce_scratch_elems), never M x I at once,
// so the same two passes serve a row-sharded table (dist/ combines the
// per-rank statistics). tile may exceed the slice (it is clamped).
//
// Scratch elements for M loss rows: M*tile for the logits tile (all that
// ce_stats and ce_backward use) plus 3*M per-row statistics that
// ce_forward_backward keeps after it. Cannot fail.
size_t ce_scratch_elems(int64_t M, int64_t tile);

// Per-row partial statistics over this slice of the catalog:
// rmax (M) = max logit, rsum (M) = sum exp(logit - rmax), tlogit (M) = the
// target's logit if lo <= tgt < hi else left untouched. A slice holding no
// candidate (lo = 0, hi <= 1) gives rmax = -inf, rsum = 0. tgt >= 1 asserted.
void ce_stats(float *rmax, float *rsum, float *tlogit, const float *hs, const int32_t *tgt,
              const float *rows, int64_t lo, int64_t hi, int64_t M, int64_t D, int64_t tile,
              float *scratch);

// Fold the statistics of another slice (rmax2, rsum2) into (rmax, rsum):
// the result is that of the union of the two slices (empty slices allowed).
void ce_stats_merge(float *rmax, float *rsum, const float *rmax2, const float *rsum2, int64_t M);
// lse (M) = rmax + log(rsum): the log-sum-exp ce_backward takes. lse may
// equal rmax.
void ce_lse(float *lse, const float *rmax, const float *rsum, int64_t M);

// Given lse (M) = log sum_v exp(logit_v) over the whole catalog:
// dhs (M,D) += scale/M_total * sum_v (softmax_v - [v==tgt]) rows_v,
// drows ((hi-lo),D) += scale/M_total * sum_m (softmax_mv - [v==tgt_m]) hs_m.
// M_total is the number of loss rows the mean is over (>= M). Row 0 of the
// table (global id 0, when lo == 0) is skipped: drows row 0 is never written.
// dhs or drows may be NULL. scratch: M*tile elements. reuse = 1 promises
// that scratch still holds the logits of the ce_stats call on the same hs,
// rows and slice: when the slice is one tile (hi - max(lo, 1) <= tile) they
// are not computed again (a quarter of the loss's FLOPs); otherwise, and
// with reuse = 0, every tile is recomputed.
void ce_backward(float *dhs, float *drows, const float *hs, const int32_t *tgt, const float *rows,
                 const float *lse, int64_t lo, int64_t hi, int64_t M, int64_t M_total, int64_t D,
                 int64_t tile, float scale, float *scratch, int reuse);

// Single-slice convenience (the whole catalog local): returns the mean loss
// over M rows and accumulates dhs, drows (rows = whole table incl. row 0).
// dhs/drows may be NULL to skip gradients (evaluation). 1 <= tgt < n_rows is
// asserted. scratch: ce_scratch_elems(M, tile) elements.
double ce_forward_backward(float *dhs, float *drows, const float *hs, const int32_t *tgt,
                           const float *table, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                           float *scratch);

// ---- sampled objectives -----------------------------------------------------
// Candidates per loss row: cand (M,C) indexes rows (U,D), the distinct item
// rows the batch touches; cand[m*C+0] is the target, the rest are the k = C-1
// negatives. A negative equal to the target (same row index) is ignored.
// cand_ids (M,C) are the global item ids (to detect collisions); NULL
// compares the row indices of cand instead. Duplicate negatives (not equal
// to the target) each count, as drawn with replacement.
typedef enum { LR_SAMPLED_SOFTMAX = 0, LR_SAMPLED_BCE = 1 } lr_sampled_kind;

// Returns the mean loss over the M rows (NOT multiplied by scale); the
// gradients are those of scale * mean: dhs (M,D) += ..., drows (U,D) += ...
// (either may be NULL).
// softmax: -log softmax over the C candidates at the target.
// bce: -log sigmoid(s_target) - sum_neg log(1 - sigmoid(s_neg)).
// scratch: M*C floats.
double sampled_forward_backward(float *dhs, float *drows, const float *hs, const int32_t *cand,
                                const int32_t *cand_ids, const float *rows, int64_t M, int64_t C,
                                int64_t D, lr_sampled_kind kind, float scale, float *scratch);

// ---- double-precision instantiation for the gradient tests -------------------------
// The same kernels (loss_impl.inc) over double, through lr_dgemm; contracts and
// scratch sizes (in doubles) as above.
void ce_stats_f64(double *rmax, double *rsum, double *tlogit, const double *hs, const int32_t *tgt,
                  const double *rows, int64_t lo, int64_t hi, int64_t M, int64_t D, int64_t tile,
                  double *scratch);
void ce_stats_merge_f64(double *rmax, double *rsum, const double *rmax2, const double *rsum2,
                        int64_t M);
void ce_lse_f64(double *lse, const double *rmax, const double *rsum, int64_t M);
void ce_backward_f64(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                     const double *rows, const double *lse, int64_t lo, int64_t hi, int64_t M,
                     int64_t M_total, int64_t D, int64_t tile, double scale, double *scratch,
                     int reuse);
double ce_forward_backward_f64(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                               const double *table, int64_t n_rows, int64_t M, int64_t D,
                               int64_t tile, double *scratch);
double sampled_forward_backward_f64(double *dhs, double *drows, const double *hs,
                                    const int32_t *cand, const int32_t *cand_ids,
                                    const double *rows, int64_t M, int64_t C, int64_t D,
                                    lr_sampled_kind kind, double scale, double *scratch);

#endif
