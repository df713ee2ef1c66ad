// model.h: the SASRec-style encoder of DESIGN §1 with a pluggable attention
// kind, its one dense parameter arena (params, grads, Adam m, v mirror it) and
// its activation arena, sized once for a maximum batch.
//
//   E   = ItemEmb[s_t] + PosEmb[t]                    (item rows come from outside:
//   H^0 = Dropout(LayerNorm(E))                        the item table is not here)
//   per layer l (post-LN, as RecBole):
//     S = LayerNorm(H + Dropout(MultiHead(H) W_O + b_O))
//     H = LayerNorm(S + Dropout(W2 gelu(W1 S + b1) + b2))
//
// The item table lives in its own (row-shardable) arena, itemtab.h; the
// model only ever sees the distinct rows of a batch (rows, idx) and returns
// their gradient (drows). Dimension letters: see lr.h.
#ifndef LR_MODEL_H
#define LR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "layers.h"
#include "xsum.h"

typedef struct {
  int64_t n_items; // I
  int64_t max_len; // N
  int64_t d, heads, layers, inner;
  float dropout, ln_eps;
  const lr_attn_ops *attn; // the attention kind (attention.h registry)
} lr_model_cfg;

#define LR_N_PARAM_TENSORS 16
typedef struct {
  float *pos;          // (N,D)
  float *ln0_w, *ln0_b; // (D)
  float *qkv_w;        // (L,3D,D)
  float *qkv_b;        // (L,3D)
  float *o_w;          // (L,D,D)
  float *o_b;          // (L,D)
  float *ln1_w, *ln1_b; // (L,D)
  float *fc1_w;        // (L,F,D)
  float *fc1_b;        // (L,F)
  float *fc2_w;        // (L,D,F)
  float *fc2_b;        // (L,D)
  float *ln2_w, *ln2_b; // (L,D)
  float *attn_p;        // (L,A) the attention kind's own parameters (A = attn_param_elems; 0 for most)
} lr_params;

// Element counts of the tensors above in declaration order; returns the total.
size_t model_param_sizes(const lr_model_cfg *cfg, size_t sizes[LR_N_PARAM_TENSORS]);
// Names of the tensors ("pos", "ln0_w", ...), for dumps and tests.
extern const char *const LR_PARAM_NAMES[LR_N_PARAM_TENSORS];
// Point the views of p into mem laid out as model_param_sizes says.
void model_point_params(lr_params *p, float *mem, const lr_model_cfg *cfg);

typedef struct {
  float *emb;           // (B,N,D) item + position
  float *ln0, *ln0_mean, *ln0_rstd; // (B,N,D), (B,N), (B,N)
  float *h0;            // (B,N,D) input of layer 0 (after dropout)
  // per layer, (L, ...) contiguous:
  float *qkv;           // (L,B,N,3D)
  float *attn_cache;    // (L, attn_cache_elems)
  float *ctx;           // (L,B,N,D) attention output (heads concatenated)
  float *res1;          // (L,B,N,D) H + Dropout(ctx W_O^T + b_O)
  float *s, *ln1_mean, *ln1_rstd; // (L,B,N,D), (L,B,N), (L,B,N)
  float *fc1, *gelu;    // (L,B,N,F); after forward fc1 holds gelu'(fc1) (backward's only use)
  float *res2;          // (L,B,N,D) S + Dropout(FFN(S))
  float *h, *ln2_mean, *ln2_rstd; // (L,B,N,D) layer outputs, (L,B,N)
  // backward temporaries, reused by every layer: whole-batch dh ping-pong
  // (d_b, d_c; d_b also dE), then per lane one chunk's rows (T = lanes x
  // chunk x N): a dropout's or LayerNorm's input gradient d_a, dS d_s, the
  // FFN's inner gradient d_f2, the attention input's d_qkv
  float *d_b, *d_c;       // (B,N,D)
  float *d_a, *d_s;       // (T,D)
  float *d_f2;            // (T,F)
  float *d_qkv;           // (T,3D)
  float *attn_scratch;    // one attn_scratch_elems copy per thread of the team
} lr_acts;

// Called by model_backward when the gradients of layer l are complete for
// this backward (l = layers-1 .. 0), and with l = -1 after the embedding
// part (pos, ln0); lets dist/ start reducing a layer while the next one is
// still being computed.
typedef void (*lr_backward_hook)(void *ctx, int64_t layer);

// Where forward + backward time goes (lr_model.phase_s, seconds accumulated
// over every forward and backward since model_init or the caller's reset):
//   EMBED  embedding lookup, LayerNorm and dropout of layer 0's input
//   ATTN   the attention kernel (maps, scores or states, its backward)
//   PROJ   the Q/K/V and output projections with their dropout, residual
//          and LayerNorm
//   FFN    both FFN linears, GELU, dropout, residual and LayerNorm
typedef enum { LR_PHASE_EMBED = 0, LR_PHASE_ATTN, LR_PHASE_PROJ, LR_PHASE_FFN, LR_MODEL_PHASES } lr_model_phase;

#ifndef LR_CHUNK_ROWS
#define LR_CHUNK_ROWS 512
#endif

typedef struct {
  lr_model_cfg cfg;
  double phase_s[LR_MODEL_PHASES];
  lr_backward_hook hook; // NULL: none (model_set_backward_hook)
  void *hook_ctx;
  int64_t max_B;     // activation capacity in sequences
  size_t n_params;   // floats in each of params/grads/m/v
  float *params_mem, *grads_mem, *m_mem, *v_mem;
  lr_params p, g;
  size_t attn_cache_elems;   // per layer
  size_t attn_scratch_elems; // per thread
  // Lanes: with T threads (at model_init) a batch's sequences are cut into T
  // contiguous ranges, each run through forward and backward by one thread
  // on single-threaded kernels (data parallel inside the process: no team
  // synchronisation inside a layer). The forward runs a lane's sequences in
  // chunks of about LR_CHUNK_ROWS rows (whole sequences, at least one)
  // through every layer, so a layer's outputs are read back from cache by
  // the next kernel rather than from memory.
  // Gradients are exact (xsum.h): the backward takes a lane's sequences one
  // at a time through a layer, its parameter gradients land in the lane's
  // float staging arena (zeroed per sequence), and are added exactly into
  // the lane's accumulator; after each layer the lanes' accumulators are
  // merged into gx. The result does not depend on how sequences are cut
  // into batches, lanes or ranks.
  int64_t lanes;           // = attention scratch copies
  int64_t chunk;           // sequences per forward chunk
  lr_xs *gx;               // (n_params) the dense gradient, exact (lane 0's accumulator)
  lr_xs *lane_gx_mem;      // (lanes-1) x n_params; all zero outside model_backward
  float *stage_mem;        // lanes x n_params: one sequence's parameter gradients
  lr_params *lane_g;       // (lanes) views of the lanes' staging arenas
  uint32_t *lane_bad;      // (lanes) out-of-range gradient terms seen (xsum.h)
  uint32_t grad_bad;       // any lane's, since model_zero_grad
  float *acts_mem;
  size_t acts_elems;
  uint32_t *keep_bits; // dropout masks, forward to backward: (1 + 2L) x max_B*N rows of bits
  lr_acts a;
  int64_t B;         // batch of the last forward
  const int32_t *lens; // lens of the last forward (borrowed)
} lr_model;

// Allocate the arenas for up to max_B sequences and initialise parameters:
// weights N(0, 0.02) from the counter-based RNG keyed by (seed, tensor,
// element), biases 0, LayerNorm weights 1. LR_ERR_NOMEM / LR_ERR_ARG
// (heads not dividing d, ...) with a message; on failure m is freed.
int model_init(lr_model *m, const lr_model_cfg *cfg, int64_t max_B, uint64_t seed);
// Free; accepts a zeroed or half-initialised model.
void model_free(lr_model *m);
// Activation floats for max_B sequences (to report memory), with one
// attention scratch per thread of the team (lr_par_threads() now; set the
// threads before model_init). Cannot fail.
size_t model_acts_elems(const lr_model_cfg *cfg, int64_t max_B);
// Sequences of one chunk (about LR_CHUNK_ROWS rows, at least one sequence;
// the capacity caps it). Cannot fail.
int64_t model_chunk_seqs(const lr_model_cfg *cfg);
// Run forward chunks of seqs sequences instead, 1 <= seqs <= the chunk
// model_init chose. Results are bitwise the same (tests/test_model.c (f)).
void model_set_chunk(lr_model *m, int64_t seqs);

// Forward for B <= max_B sequences (shared out over the lanes). idx (B,N): row of each position in rows
// (U,D), the batch's distinct item rows, -1 at padding; lens (B) valid
// lengths (right padding, 1 <= lens <= N); row_ids (B*N) dropout keys
// (example id * N + position); dp: seed/epoch, p (0 in evaluation).
// Returns the final hidden states (B,N,D), valid until the next forward.
const float *model_forward(lr_model *m, const int32_t *idx, const float *rows,
                           const int32_t *lens, const uint64_t *row_ids, int64_t B,
                           lr_dropout dp);

// Backward of the last forward: dout (B,N,D) is the loss gradient w.r.t. the
// final hidden states (overwritten as scratch). Adds, exactly, into the
// dense gradient m->gx and into drows (U,D), the gradient of the distinct
// rows (NULL: not wanted). A gradient term out of xsum.h's range (a
// diverging run) sets m->grad_bad.
void model_backward(lr_model *m, lr_xs *drows, float *dout, const int32_t *idx,
                    const uint64_t *row_ids, lr_dropout dp);

// Install (or, with fn = NULL, remove) the backward hook. Cannot fail.
void model_set_backward_hook(lr_model *m, lr_backward_hook fn, void *ctx);

// The slice of the dense arena holding the parameters of layer l (0..L-1),
// or of the embedding part (pos, ln0) for l = -1: n_slices (offset, count)
// pairs in floats, written to off/cnt (room for LR_N_PARAM_TENSORS each).
// Returns n_slices. Cannot fail.
int model_layer_slices(const lr_model_cfg *cfg, int64_t l, size_t *off, size_t *cnt);

// Analytic floating-point operations of one training sequence (forward and
// backward, every position real): the matrix products of the projections,
// the FFN and the attention kind, plus the output scores of loss_rows rows
// against `cands` item rows (each multiply-add counts 2; backward = 2 x
// forward). The README's performance section gives the formula. Cannot fail.
double model_train_flops(const lr_model_cfg *cfg, int64_t loss_rows, int64_t cands);

// Zero the dense gradient (m->gx and m->grad_bad). Cannot fail.
void model_zero_grad(lr_model *m);
// m->g (the float gradient the optimizer reads) = the value of m->gx.
// Cannot fail.
void model_grads_to_float(lr_model *m);

// Item table rows, initialised as the paper (N(0, 0.02), row 0 = padding = 0),
// keyed by GLOBAL row id so any row range gives the same values.
// rows: ((hi-lo),D) for global rows lo..hi-1.
void model_init_item_rows(float *rows, int64_t lo, int64_t hi, int64_t D, uint64_t seed);

#endif
