// attention.h: the attention kinds of DESIGN §1 (`model.attention`), heads
// treated as a batch. Per head h, Q, K, V are the columns h*Dh..(h+1)*Dh of
// the fused projection qkv (B,N,3D): Q at column 0, K at D, V at 2D.
// Sequences are right-padded: positions t >= lens[b] are padding; they never
// contribute keys or values, and their outputs are unspecified but finite.
//
//   softmax        softmax(QK^T/sqrt(Dh) + causal + pad mask) V       O(N^2 Dh)
//   linrec         rho1(elu(Q)) (rho2(elu(K))^T V), paper Eq. 9:       O(N Dh^2)
//                  rho1 = row L2 norm scaled 1/sqrt(Dh), rho2 = column
//                  L2 norm over valid positions scaled 1/sqrt(n_valid)
//   linrec_code    released code: Qn = rownorm(elu(Q)), Kn = rownorm(elu(K)),
//                  Qn (Kn^T V) / sqrt(Dh)
//   linrec_causal  causal LinRec: prefix column norms (DESIGN §1)
//   elu1           causal linear transformer, phi = elu+1, with denominator
//   efficient      softmax_row(Q) (softmax_col(K)^T V), Shen et al.
// Every L2 norm is sqrt(sum x^2 + LR_ATTN_EPS) so a zero row/column is safe.
// This implementation writes 0 to the outputs at padded positions (so their
// gradient is 0 too) and never reads padded rows of qkv.
//
// Causal kinds (usable with train.positions=all): softmax, linrec_causal, elu1.
#ifndef LR_ATTENTION_H
#define LR_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#define LR_ATTN_EPS 1e-12f
// elu1: the additive constant of the denominator (Katharopoulos et al.).
#define LR_ATTN_ELU1_EPS 1e-6f
// Causal linear kinds (linrec_causal, elu1) run in chunks of this many
// positions: a masked GEMM inside a chunk plus a carried Dh x Dh state.
#define LR_ATTN_CHUNK 32

typedef enum {
  LR_ATTN_SOFTMAX = 0,
  LR_ATTN_LINREC,
  LR_ATTN_LINREC_CODE,
  LR_ATTN_LINREC_CAUSAL,
  LR_ATTN_ELU1,
  LR_ATTN_EFFICIENT,
  LR_ATTN_COUNT
} lr_attn_kind;

// "softmax", "linrec", ... Cannot fail.
const char *attn_kind_name(lr_attn_kind kind);
// Kind by name, or -1 if unknown. Cannot fail.
int attn_kind_parse(const char *name);
// 1 if output at position t depends only on positions <= t. Cannot fail.
int attn_kind_is_causal(lr_attn_kind kind);

// Floats of the per-layer cache that forward fills and backward reads, and of
// the scratch both may overwrite (shared by all layers), for B sequences of
// length N, hidden D, H heads. Cannot fail.
size_t attn_cache_elems(lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H);
size_t attn_scratch_elems(lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H);

// out (B,N,D): the heads' outputs concatenated (head h at columns h*Dh..).
// cache: attn_cache_elems floats; scratch: parts x attn_scratch_elems floats.
// With parts >= lr_par_threads() the sequences are shared out over the
// thread team (core/par.h), each range on its own scratch copy; the result
// is bitwise the same for any split.
void attn_forward(float *out, float *cache, const float *qkv, const int32_t *lens,
                  lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H, float *scratch,
                  int64_t parts);
// dqkv (B,N,3D) += gradient of <dout, out> with respect to qkv.
void attn_backward(float *dqkv, const float *dout, const float *qkv, const float *cache,
                   const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t N, int64_t D,
                   int64_t H, float *scratch, int64_t parts);

// The same for sequences b0..b1-1 of the B only (qkv and the cache laid out
// for B; out, dqkv and dout start at sequence b0's rows), on the calling
// thread with scratch copy lr_par_part() (inside a lr_par_for range: that
// range's copy). For callers that share a batch out themselves (the model's
// per-thread lanes and chunks); bitwise as above.
void attn_forward_range(float *out, float *cache, const float *qkv, const int32_t *lens,
                        lr_attn_kind kind, int64_t B, int64_t b0, int64_t b1, int64_t N, int64_t D,
                        int64_t H, float *scratch);
void attn_backward_range(float *dqkv, const float *dout, const float *qkv, const float *cache,
                         const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t b0, int64_t b1,
                         int64_t N, int64_t D, int64_t H, float *scratch);

// double-precision instantiation for the gradient tests: the same kernels and
// contracts as attn_forward/attn_backward, with attn_cache_elems and
// attn_scratch_elems counting doubles.
void attn_forward_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                      lr_attn_kind kind, int64_t B, int64_t N, int64_t D, int64_t H,
                      double *scratch, int64_t parts);
void attn_backward_f64(double *dqkv, const double *dout, const double *qkv, const double *cache,
                       const int32_t *lens, lr_attn_kind kind, int64_t B, int64_t N, int64_t D,
                       int64_t H, double *scratch, int64_t parts);

#endif
