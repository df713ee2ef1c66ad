// loss.h: next-item losses over the tied item table (core/README.md, "Losses,
// optimizer, metrics").
// A loss row m is one position carrying a target: hs (M,D) its hidden state,
// tgt[m] in 1..I its target item. Gradients are those of coef * (sum of the
// rows' losses): the trainer passes coef = 1/M_total, so calls over any cut
// of a step's rows add up to the gradient of the step's mean loss.
//
// Reproducibility: every sum that runs over items or over examples goes into
// an exact accumulator (xsum.h), and every partial sum taken in floating
// point runs over a set that does not depend on how rows are cut into calls
// or how the catalog is cut into slices:
//   - the catalog is cut into fixed blocks of ce_block_items(n_rows) items
//     (block k = global ids [kB, (k+1)B), item 0 excluded); sums over items
//     (sum of exponentials, the hidden-state gradient) are taken inside a
//     block in a fixed order and added exactly block by block, so a slice
//     must start on a block boundary (dist/ cuts the table that way);
//   - sums over rows (item-row gradients, loss totals) are exact per
//     example: rows with equal consecutive grp values form one example,
//     whose rows are summed in their order, then added exactly.
// The results are then bitwise the same for any number of ranks, slices,
// calls and threads.
//
// Functions return a nonzero flag when some term was out of xsum.h's range
// (a non-finite or huge value: a diverging run); they are Local.
#ifndef LR_LOSS_H
#define LR_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "xsum.h"

// ---- full-catalog softmax cross-entropy --------------------------------------
// The rows argument holds item rows lo..hi-1 of the table ((hi-lo),D); global
// id lo+i is row i; lo is 0 or a multiple of the block size. Logits are
// computed in tiles of `tile` items (a multiple of the block size, see
// ce_tile_items) for up to `rchunk` rows at a time, never M x I at once.
// An example's rows must all fit in one chunk (group size <= rchunk).

// Items per block for a table of n_rows rows (I+1): a power of two in
// [64, 1024], about n_rows/16. Cannot fail.
int64_t ce_block_items(int64_t n_rows);
// tile rounded up to a multiple of the block (at least one block). Cannot fail.
int64_t ce_tile_items(int64_t tile, int64_t n_rows);
// Scratch elements: one logits tile (rchunk x tile) and the staging of one
// chunk's hidden-state gradient or one tile's item-row gradient. Cannot fail.
size_t ce_scratch_elems(int64_t rchunk, int64_t tile, int64_t D);

// The end of the chunk of rows starting at m0 < M: whole examples (runs of
// equal grp; grp NULL: single rows), at most rchunk rows. An example longer
// than rchunk is a bug (LR_ASSERT). Callers that reduce the per-row
// statistics themselves run the three passes chunk by chunk, so a chunk's
// logits computed by pass 1 serve passes 2 and 3. Cannot fail.
int64_t ce_chunk_end(const int32_t *grp, int64_t m0, int64_t M, int64_t rchunk);

// Pass 1: rmax (M) = max logit over the slice's items (-inf if it has none).
void ce_rowmax(float *rmax, const float *hs, const float *rows, int64_t lo, int64_t hi,
               int64_t n_rows, int64_t M, int64_t D, int64_t tile, int64_t rchunk, float *scratch);
// Pass 2, given gmax (M) = the max over the whole catalog: sx[m] +=
// the sum over the slice of exp(logit - gmax_m) (exact per
// block); tlogit[m] = the target's logit when the slice holds the target
// (else untouched). reuse = 1: scratch still holds the logits of a pass-1
// call on the same arguments (only when M <= rchunk and the slice is one
// tile; otherwise ignored).
uint32_t ce_sumexp(lr_xs *sx, float *tlogit, const float *hs, const int32_t *tgt,
                   const float *rows, const float *gmax, int64_t lo, int64_t hi, int64_t n_rows,
                   int64_t M, int64_t D, int64_t tile, int64_t rchunk, float *scratch, int reuse);
// lse (M) = gmax + log(value(sx)). lse may equal gmax.
void ce_lse(float *lse, const float *gmax, const lr_xs *sx, int64_t M);
// Pass 3, given lse (M) over the whole catalog, G = coef * (softmax - onehot):
// dhs (M,D) += G rows (exact per block; NULL: skip), drows ((hi-lo),D) +=
// G^T hs (exact per example, grp (M) as above, NULL = every row its own
// example; NULL: skip). Row 0 of the table (global id 0) is never written.
// reuse as for ce_sumexp.
uint32_t ce_backward(lr_xs *dhs, lr_xs *drows, const float *hs, const int32_t *tgt,
                     const int32_t *grp, const float *rows, const float *lse, int64_t lo,
                     int64_t hi, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                     int64_t rchunk, float coef, float *scratch, int reuse);

// Single-slice convenience (the whole catalog local, every row its own
// example): returns the mean loss over M rows; dhs (M,D) += and drows
// (n_rows,D) += the gradients of the mean (either may be NULL; evaluation).
// scratch: ce_fb_scratch_elems(M, tile, D, n_rows) floats. For tests and
// small callers; the trainer uses the passes above.
size_t ce_fb_scratch_elems(int64_t M, int64_t tile, int64_t D, int64_t n_rows);
double ce_forward_backward(float *dhs, float *drows, const float *hs, const int32_t *tgt,
                           const float *table, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                           float *scratch);

// ---- sampled objectives -----------------------------------------------------
// Candidates per loss row: cand (M,C) indexes rows (U,D), the distinct item
// rows the batch touches; cand[m*C+0] is the target, the rest are the k = C-1
// negatives. A negative equal to the target (same global id) is ignored.
// cand_ids (M,C) are the global item ids (to detect collisions); NULL
// compares the row indices of cand instead. Duplicate negatives (not equal
// to the target) each count, as drawn with replacement.
typedef enum { LR_SAMPLED_SOFTMAX = 0, LR_SAMPLED_BCE = 1 } lr_sampled_kind;

// softmax: loss_m = -log softmax over the C candidates at the target.
// bce: loss_m = -log sigmoid(s_target) - sum_neg log(1 - sigmoid(s_neg)).
// *loss += sum_m loss_m (exact); dhs (M,D) += coef * dloss/dhs
// (per row, candidates in order); drows (U,D) += coef * dloss/drows (exact
// per row and candidate). dhs, drows may be NULL. scratch: M*C floats.
uint32_t sampled_forward_backward(lr_xs *loss, float *dhs, lr_xs *drows, const float *hs,
                                  const int32_t *cand, const int32_t *cand_ids, const float *rows,
                                  int64_t M, int64_t C, int64_t D, lr_sampled_kind kind,
                                  float coef, float *scratch);

// ---- double-precision twins for the gradient tests -------------------------------
// The same kernels (loss_impl.inc) over double with plain double sums in place
// of the exact accumulators (a double "accumulator" per element; the scales
// above apply the same way); contracts as above.
void ce_rowmax_f64(double *rmax, const double *hs, const double *rows, int64_t lo, int64_t hi,
                   int64_t n_rows, int64_t M, int64_t D, int64_t tile, int64_t rchunk,
                   double *scratch);
uint32_t ce_sumexp_f64(double *sx, double *tlogit, const double *hs, const int32_t *tgt,
                       const double *rows, const double *gmax, int64_t lo, int64_t hi,
                       int64_t n_rows, int64_t M, int64_t D, int64_t tile, int64_t rchunk,
                       double *scratch, int reuse);
void ce_lse_f64(double *lse, const double *gmax, const double *sx, int64_t M);
uint32_t ce_backward_f64(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                         const int32_t *grp, const double *rows, const double *lse, int64_t lo,
                         int64_t hi, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                         int64_t rchunk, double coef, double *scratch, int reuse);
double ce_forward_backward_f64(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                               const double *table, int64_t n_rows, int64_t M, int64_t D,
                               int64_t tile, double *scratch);
uint32_t sampled_forward_backward_f64(double *loss, double *dhs, double *drows, const double *hs,
                                      const int32_t *cand, const int32_t *cand_ids,
                                      const double *rows, int64_t M, int64_t C, int64_t D,
                                      lr_sampled_kind kind, double coef, double *scratch);

// ---- Blin: two views, mean CE + lambda * bidirectional KL ------------------------------
// Loss row m has two hidden states, hs_a[m] and hs_b[m] (the two RandomPad
// views of one example), one target tgt[m]; with pa, pb the softmaxes of
// their logits za, zb over the catalog (or the candidates, sampled):
//   loss_m = (CE_a + CE_b) / 2 + lambda (KL(pa||pb) + KL(pb||pa)) / 2
// The bidirectional KL is (Ea + Eb) / 2, Ea = E_pa[za - zb], Eb =
// E_pb[zb - za] (the log-sum-exps cancel): one more per-row sum per view
// over the catalog, Ta = sum_v exp(za_v - ma)(za_v - zb_v), taken in pass 2
// next to Sa = sum_v exp(za_v - ma) and reduced over slices the same way
// (exact, relative to the global max), so no extra pass. Same block and
// tile rules as ce_*; grp as ce_backward.
// Scratch elements of bkl_sumexp/bkl_backward. Cannot fail.
size_t bkl_scratch_elems(int64_t rchunk, int64_t tile, int64_t D);
// Pass 1 is ce_rowmax on each view: gmax (M,2) = (max za, max zb) over the
// whole catalog. Pass 2: sx (M,4) += (Sa, Sb, Ta, Tb) over the slice;
// tlogit (M,2) = (za, zb) at the target when the slice holds it.
uint32_t bkl_sumexp(lr_xs *sx, float *tlogit, const float *hs_a, const float *hs_b,
                    const int32_t *tgt, const float *rows, const float *gmax, int64_t lo,
                    int64_t hi, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                    int64_t rchunk, float *scratch);
// st (M,4) = (lse_a, lse_b, Ea, Eb) from gmax and the merged sx.
void bkl_stats(float *st, const float *gmax, const lr_xs *sx, int64_t M);
// One row's loss from st (4) and tlogit (2); *ce, *kl (may be NULL) its mean
// CE and bidirectional KL.
double bkl_row_loss(const float *st, const float *tlogit, double lambda, double *ce, double *kl);
// Pass 3: dhs_a, dhs_b (M,D) += (exact per block), drows ((hi-lo),D) +=
// (exact per example and view) coef times the gradients (any may be NULL).
uint32_t bkl_backward(lr_xs *dhs_a, lr_xs *dhs_b, lr_xs *drows, const float *hs_a,
                      const float *hs_b, const int32_t *tgt, const int32_t *grp,
                      const float *rows, const float *st, double lambda, int64_t lo, int64_t hi,
                      int64_t n_rows, int64_t M, int64_t D, int64_t tile, int64_t rchunk,
                      float coef, float *scratch);
// Sampled: both views score the same candidates cand (M,C) (the target
// first; as sampled_forward_backward). *loss += sum_m loss_m; dhs_a, dhs_b
// (M,D) += per row; drows (U,D) += exact per row and candidate. scratch:
// 4 M C floats.
uint32_t bkl_sampled_forward_backward(lr_xs *loss, float *dhs_a, float *dhs_b, lr_xs *drows,
                                      const float *hs_a, const float *hs_b, const int32_t *cand,
                                      const int32_t *cand_ids, const float *rows, int64_t M,
                                      int64_t C, int64_t D, double lambda, float coef,
                                      float *scratch);
uint32_t bkl_sumexp_f64(double *sx, double *tlogit, const double *hs_a, const double *hs_b,
                        const int32_t *tgt, const double *rows, const double *gmax, int64_t lo,
                        int64_t hi, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                        int64_t rchunk, double *scratch);
void bkl_stats_f64(double *st, const double *gmax, const double *sx, int64_t M);
double bkl_row_loss_f64(const double *st, const double *tlogit, double lambda, double *ce,
                        double *kl);
uint32_t bkl_backward_f64(double *dhs_a, double *dhs_b, double *drows, const double *hs_a,
                          const double *hs_b, const int32_t *tgt, const int32_t *grp,
                          const double *rows, const double *st, double lambda, int64_t lo,
                          int64_t hi, int64_t n_rows, int64_t M, int64_t D, int64_t tile,
                          int64_t rchunk, double coef, double *scratch);
uint32_t bkl_sampled_forward_backward_f64(double *loss, double *dhs_a, double *dhs_b,
                                          double *drows, const double *hs_a, const double *hs_b,
                                          const int32_t *cand, const int32_t *cand_ids,
                                          const double *rows, int64_t M, int64_t C, int64_t D,
                                          double lambda, double coef, double *scratch);

#endif
