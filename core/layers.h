// layers.h: the elementwise and row-wise layers of the encoders
// (core/README.md, "Architectures"), each a forward/backward pair in llm.c's
// argument order (core/README.md, "Conventions"): written buffers, then read
// buffers, then parameters, then sizes. Every _backward ACCUMULATES
// (+=) into its input and parameter gradients; the training step zeroes them.
// The fused training passes say where they write instead (gelu_backward_stored
// works in place, ln_dropout_backward writes its two input gradients, and
// linear_backward_to its din).
// Shapes: R rows (= B*N), D features. All functions are Local and cannot fail
// (shape errors are bugs and hit LR_ASSERT).
#ifndef LR_LAYERS_H
#define LR_LAYERS_H

#include <stdint.h>

// ---- embedding: item rows + position rows -----------------------------------
// out (B,N,D) = rows[idx[b,t]] + pos[t]; idx (B,N) indexes rows (U,D), the
// distinct item rows of the batch; idx < 0 marks padding (item row = 0).
// pos may be NULL (no position rows).
void embedding_forward(float *out, const int32_t *idx, const float *rows, const float *pos,
                       int64_t B, int64_t N, int64_t D);
// drows (U,D) += dout summed over positions with that idx (padding skipped);
// dpos (N,D) += dout summed over the batch (every position, padding included,
// because forward added pos[t] there too). drows or dpos may be NULL (idx
// is not read when drows is NULL).
void embedding_backward(float *drows, float *dpos, const float *dout, const int32_t *idx, int64_t B,
                        int64_t N, int64_t D);

// ---- LayerNorm over the last dim (biased variance, eps inside the sqrt) -----
// out (R,D) = (in - mean) * rstd * w + b, mean (R), rstd (R) = 1/sqrt(var + eps);
// w, b (D). The model uses eps = 1e-12 (RecBole).
void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                       const float *b, int64_t R, int64_t D, float eps);
// din (R,D) +=, dw (D) +=, db (D) += (parameter sums accumulated in double).
void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, const float *mean, const float *rstd, int64_t R, int64_t D);

// ---- linear: out (R,OC) = in (R,C) W^T + b; W (OC,C) as PyTorch; b may be NULL
void linear_forward(float *out, const float *in, const float *w, const float *b, int64_t R,
                    int64_t C, int64_t OC);
// din (R,C) +=, dw (OC,C) +=, db (OC) += (dw, db may be NULL; din may be NULL when
// the input needs no gradient).
void linear_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, int64_t R, int64_t C, int64_t OC);
// The same with din (R,C) WRITTEN, not accumulated (no zeroing pass first).
void linear_backward_to(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, int64_t R, int64_t C, int64_t OC);

// ---- GELU, exact erf form (PyTorch's F.gelu default) --------------------------
// out = 0.5 in (1 + erf(in/sqrt 2)); din += dout * gelu'(in). out may equal in.
void gelu_forward(float *out, const float *in, int64_t n);
void gelu_backward(float *din, const float *dout, const float *in, int64_t n);
// The training pair, with the bias of the linear before it: over R rows of
// C, x = in_grad + bias (bias (C) may be NULL), forward writes out =
// gelu(x) and overwrites in_grad with gelu'(x), all backward needs of the
// pre-activation; backward turns the output gradient d (n = R*C) into the
// input gradient in place, d *= grad (no transcendental left for
// backward). out and in_grad must not overlap.
void gelu_forward_train(float *out, float *in_grad, const float *bias, int64_t R, int64_t C);
void gelu_backward_stored(float *d, const float *grad, int64_t n);
// The same pair's forward for ReLU (Blin's FFN, model.ffn=relu): out =
// max(x, 0), in_grad := 1 where x > 0 else 0; its backward is
// gelu_backward_stored.
void relu_forward_train(float *out, float *in_grad, const float *bias, int64_t R, int64_t C);

// ---- dropout with a regenerated mask -------------------------------------------
// The keep/drop decision of element j of row r is a pure function of
// (seed, epoch, site, row_ids[r], j) through Philox (rng.h), so backward
// regenerates the mask instead of storing it and the mask does not depend on
// the number of ranks. site = layer * 8 + which dropout in the layer.
// Philox counter of elements 8k..8k+7 of row r, keyed (seed, LR_STREAM_DROPOUT):
//   (row_ids[r] & 0xffffffff, row_ids[r] >> 32, epoch << 8 | site, k)
// with site < 256 and epoch < 2^24 (asserted), so no two (row, epoch, site,
// block) share a counter. Element 8k+i is kept iff the 16-bit half i%2 (0 =
// low) of word i/2 is >= round(p * 65536); kept elements are scaled by 1/(1-p).
// row_ids may be NULL when p == 0.
// bits (optional) keeps the mask between the passes: the forward functions
// write it, the backward ones read it instead of regenerating (the same
// bits; a bit per element, lr_dropout_words(D) 32-bit words per row, row r
// of the call at bits + r * words). NULL: nothing stored, backward regenerates.
typedef struct {
  uint64_t seed;
  uint32_t epoch;
  uint32_t site;
  float p; // drop probability; p == 0 or !training makes dropout the identity
  uint32_t *bits;
} lr_dropout;

// 32-bit words of one row's keep bits. Cannot fail.
static inline int64_t lr_dropout_words(int64_t D) { return (D + 31) / 32; }

// out (R,D) = in * mask / (1-p). out may equal in.
void dropout_forward(float *out, const float *in, const uint64_t *row_ids, int64_t R, int64_t D,
                     lr_dropout dp);
// din (R,D) += dout * mask / (1-p).
void dropout_backward(float *din, const float *dout, const uint64_t *row_ids, int64_t R, int64_t D,
                      lr_dropout dp);

// ---- residual: out = a + b; da += dout, db += dout -------------------------------
// out may equal a or b; da or db may be NULL.
void residual_forward(float *out, const float *a, const float *b, int64_t n);
// The post-LN block's sum in one pass: out (R,D) = resid + Dropout(x + bias),
// bias (D) (may be NULL), the dropout as dropout_forward (row_ids keys). out
// may equal x. Its backward is dropout_backward plus the residual's dS += dout.
void dropout_residual_forward(float *out, const float *x, const float *bias, const float *resid,
                              const uint64_t *row_ids, int64_t R, int64_t D, lr_dropout dp);
// The backward of y = LN(resid + Dropout(x + bias)) (dropout_residual_forward,
// then layernorm_forward with in = its output): from dout (R,D) WRITES dres
// (R,D), the gradient w.r.t. the LayerNorm's input (= resid's), and dx
// (R,D), w.r.t. x (the dropout applied to dres); ADDS the LayerNorm's dw, db
// (D) and dbias (D, may be NULL) += the column sums of dx. No output may
// overlap dout or in; dres and dx must not overlap each other.
void ln_dropout_backward(float *dres, float *dx, float *dw, float *db, float *dbias,
                         const float *dout, const float *in, const float *w, const float *mean,
                         const float *rstd, const uint64_t *row_ids, int64_t R, int64_t D,
                         lr_dropout dp);

void residual_backward(float *da, float *db, const float *dout, int64_t n);

// ---- double-precision instantiation for the gradient tests ------------------------
// The same kernels (layers_impl.inc) over double, through lr_dgemm; contracts
// as above.
void embedding_forward_f64(double *out, const int32_t *idx, const double *rows, const double *pos,
                           int64_t B, int64_t N, int64_t D);
void embedding_backward_f64(double *drows, double *dpos, const double *dout, const int32_t *idx,
                            int64_t B, int64_t N, int64_t D);
void layernorm_forward_f64(double *out, double *mean, double *rstd, const double *in,
                           const double *w, const double *b, int64_t R, int64_t D, double eps);
void layernorm_backward_f64(double *din, double *dw, double *db, const double *dout,
                            const double *in, const double *w, const double *mean,
                            const double *rstd, int64_t R, int64_t D);
void linear_forward_f64(double *out, const double *in, const double *w, const double *b, int64_t R,
                        int64_t C, int64_t OC);
void linear_backward_f64(double *din, double *dw, double *db, const double *dout, const double *in,
                         const double *w, int64_t R, int64_t C, int64_t OC);
void linear_backward_to_f64(double *din, double *dw, double *db, const double *dout,
                            const double *in, const double *w, int64_t R, int64_t C, int64_t OC);
void gelu_forward_f64(double *out, const double *in, int64_t n);
void gelu_backward_f64(double *din, const double *dout, const double *in, int64_t n);
void gelu_forward_train_f64(double *out, double *in_grad, const double *bias, int64_t R,
                            int64_t C);
void gelu_backward_stored_f64(double *d, const double *grad, int64_t n);
void relu_forward_train_f64(double *out, double *in_grad, const double *bias, int64_t R,
                            int64_t C);
void dropout_forward_f64(double *out, const double *in, const uint64_t *row_ids, int64_t R,
                         int64_t D, lr_dropout dp);
void dropout_backward_f64(double *din, const double *dout, const uint64_t *row_ids, int64_t R,
                          int64_t D, lr_dropout dp);
void residual_forward_f64(double *out, const double *a, const double *b, int64_t n);
void ln_dropout_backward_f64(double *dres, double *dx, double *dw, double *db, double *dbias,
                             const double *dout, const double *in, const double *w,
                             const double *mean, const double *rstd, const uint64_t *row_ids,
                             int64_t R, int64_t D, lr_dropout dp);
void dropout_residual_forward_f64(double *out, const double *x, const double *bias,
                                  const double *resid, const uint64_t *row_ids, int64_t R,
                                  int64_t D, lr_dropout dp);
void residual_backward_f64(double *da, double *db, const double *dout, int64_t n);

#endif
