// blin.h: Blin's pieces (Bai, Wang, He 2024; README "Blin as built") that are
// not an attention kind's table: the depthwise convolution over the sequence
// axis of the `blin` kinds (attn_blin.c) and RandomPad (Eq. 4, blin.c).
// Local; nothing here can fail.
#ifndef LR_BLIN_H
#define LR_BLIN_H

#include <stdint.h>

// The DWC kernel size of the registered kinds.
#define LR_BLIN_K 5

// ---- depthwise convolution over the sequence axis --------------------------------
// out (n rows, ld ldo) += DWC(v): for channel c < D and row t < n,
//   out_tc += b_c + sum_{j<k} w_{c,j} v'_{t+j-off, c}
// with off = (k-1)/2 (centred; PyTorch Conv1d padding (k-1)/2 on each side)
// or off = k-1 (left-aligned = causal: rows t-k+1..t). v' is v at rows s in
// 0..n-1 whose key mask km[s] is not 0, and 0 elsewhere (km NULL: every row
// below n). w (D,k) then b (D): prm of the kind.
void blin_dwc_forward(float *out, int64_t ldo, const float *v, int64_t ldv, const uint8_t *km,
                      const float *w, int64_t n, int64_t D, int64_t k, int left);
void blin_dwc_forward_f64(double *out, int64_t ldo, const double *v, int64_t ldv, const uint8_t *km,
                          const double *w, int64_t n, int64_t D, int64_t k, int left);
// dv (ld lddv) += the gradient of <g, out> w.r.t. v at unmasked rows < n;
// dw (D*k + D: weights then bias) += w.r.t. w and b (NULL: skipped). g (n
// rows, ld ldg).
void blin_dwc_backward(float *dv, int64_t lddv, float *dw, const float *g, int64_t ldg,
                       const float *v, int64_t ldv, const uint8_t *km, const float *w, int64_t n,
                       int64_t D, int64_t k, int left);
void blin_dwc_backward_f64(double *dv, int64_t lddv, double *dw, const double *g, int64_t ldg,
                           const double *v, int64_t ldv, const uint8_t *km, const double *w,
                           int64_t n, int64_t D, int64_t k, int left);

// ---- RandomPad (Eq. 4) ---------------------------------------------------------
// One view of history s[0..len-1] (item ids >= 1) in a window of N
// positions, left-aligned like every linrec input (positions 0..n-1, right
// padding): alpha ~ U{1..floor(N/len)} (alpha = 0 when len >= N, and then the
// last N items unchanged), the sequence repeated alpha+1 times with one
// delimiter (id 0, key mask 0) between copies, truncated to its last N
// positions. Writes out[0..n-1], km[0..n-1] (1 at items, 0 at delimiters) and
// returns n (<= N) and *alpha. The draw is keyed by (seed, LR_STREAM_AUGMENT,
// epoch, example, view): the same at any rank count, micro-batch or resume.
int64_t blin_randompad(int32_t *out, uint8_t *km, int32_t *alpha, const int32_t *s, int64_t len,
                       int64_t N, uint64_t seed, uint64_t epoch, uint64_t example, uint32_t view);
// alpha alone (the draw of blin_randompad). Cannot fail.
int32_t blin_randompad_alpha(int64_t len, int64_t N, uint64_t seed, uint64_t epoch,
                             uint64_t example, uint32_t view);

#endif
