// model.h: the sequence encoder (core/README.md, "The model" and
// "Architectures"): an architecture (a block type with its embedding stage)
// with a pluggable attention kind, its one dense parameter arena (params,
// grads, Adam m, v and the exact gradient mirror it) and its activation
// arena, sized once for a maximum batch.
//
// The architecture is cfg.arch (NULL: `sasrec`, below); each is one file
// core/arch_<name>.c behind model_arch.h, so a new block type (pre-LN gated:
// recgrela; recursive query stream over fixed item representations: ram) is
// a new file, not a fork of the engine.
//
// sasrec (SASRec/LinRec, post-LN as RecBole):
//   E   = ItemEmb[s_t] + PosEmb[t]                    (item rows come from outside:
//   H^0 = Dropout(LayerNorm(E))                        the item table is not here)
//   per layer l:
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

typedef struct lr_arch lr_arch; // model_arch.h

typedef struct {
  int64_t n_items; // I
  int64_t max_len; // N
  int64_t d, heads, layers, inner;
  float dropout, ln_eps;
  const lr_attn_ops *attn; // the attention kind (attention.h registry)
  const lr_arch *arch;     // the architecture (NULL: sasrec)
  float drop_path;         // DropPath rate of the blocks that have one (recgrela); training only
  // Only row lens[b]-1 of each sequence's output is read, and only its
  // gradient is given (train.positions=last, evaluation): an architecture
  // may compute that row alone (ram does; the others ignore it).
  int last_only;
  // ram (core/arch_ram.c) only; zeros are the plain form:
  float emb_scale;   // item rows scaled by this in E (0: 1; the released code: sqrt(D))
  int pos_from_end;  // position of row t is N - len + t (left-padding semantics), else t
  int no_user_table; // RAM-u: no users row group
  int ffn_relu;      // sasrec: ReLU in the FFN (Blin's, model.ffn=relu), else GELU
} lr_model_cfg;

// ---- the architectures ---------------------------------------------------------------------
// The registry, as attention.h's: the built-in ones (sasrec), then any
// registered at run time (tests, extensions). Ids are indices in that order.
// Local; cannot fail.
int model_arch_count(void);
const lr_arch *model_arch_get(int id);           // NULL outside 0..count-1
const lr_arch *model_arch_find(const char *name); // NULL if unknown
const char *model_arch_name(const lr_arch *a);    // NULL: sasrec
// The names in id order (the config's choices of model.arch). Cannot fail.
const char *const *model_arch_names(void);
// Add an architecture: its id, or LR_ERR_ARG (a name in use, a required
// function missing, the registry full; message set). Not thread safe; call
// before any config is parsed.
int model_arch_register(const lr_arch *a);

// ---- per-sequence row groups ---------------------------------------------------------------
// Besides its dense arena and the batch's item rows, an architecture may
// read one row per sequence of tables it declares here, keyed by the
// sequence's user (a user embedding, a per-user bias). The tables live
// outside the model (dist/ places them: the rank that holds a user's
// sequences holds its rows); forward takes the batch's rows, backward adds
// their gradients, exactly, one row per sequence.
#define LR_MAX_SEQ_GROUPS 4
typedef struct {
  const char *name; // "users", ... (checkpoints and model files name the table)
  int64_t width;    // floats per row
  uint32_t key;     // init: N(0, 0.02) keyed by (seed, key, global row, column); 0: zeros
} lr_seq_group;

// The per-sequence row groups of cfg's architecture; returns their number
// (0..LR_MAX_SEQ_GROUPS). Cannot fail.
int model_seq_groups(const lr_model_cfg *cfg, lr_seq_group g[LR_MAX_SEQ_GROUPS]);
// Initial rows lo..hi-1 of a row table of `width` floats per row keyed by
// `key` (0: zeros): ((hi-lo), width), keyed by global row id so any cut of
// the rows gives the same values. Cannot fail.
void model_init_rows(float *rows, int64_t lo, int64_t hi, int64_t width, uint32_t key,
                     uint64_t seed);

// ---- the parameter tensors -----------------------------------------------------------------
// A model's parameters are the architecture's tensors laid out back to back
// in one arena: the embedding part first (per_layer = 0), then per-layer
// tensors stacked (L, elems/L). Every arena of the model (parameters,
// gradients, Adam moments, staging, the exact gradient) has this layout.
#define LR_MAX_TENSORS 32
#define LR_MAX_ACTS 48 // activation buffers of an architecture
typedef enum {
  LR_INIT_ZERO = 0, // biases, LayerNorm shifts
  LR_INIT_ONE,      // LayerNorm scales
  LR_INIT_NORMAL,   // N(0, 0.02) from the counter-based RNG keyed by (seed, key, element)
  LR_INIT_ATTN,     // the attention kind's own init (zeros without one)
  LR_INIT_UNIFORM,  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) keyed by (seed, key, element):
                    // PyTorch's default init of Conv1d/Linear weights and biases
  LR_INIT_XAVIER    // U(-sqrt(6/(fan_in+fan_out)), +...) keyed as _UNIFORM: PyTorch's
                    // xavier_uniform_
} lr_init_kind;

typedef struct {
  const char *name;  // "pos", "qkv_w", ... (checkpoints and dumps name them)
  size_t elems;      // all layers together for a per-layer tensor
  int per_layer;
  lr_init_kind init;
  uint32_t key;      // LR_INIT_NORMAL's, _UNIFORM's RNG key (kept stable: results depend on it)
  int64_t fan_in;    // LR_INIT_UNIFORM, _XAVIER: the fan-in that sets its bound
  int64_t fan_out;   // LR_INIT_XAVIER: the fan-out
} lr_tensor;

// The tensors of cfg's architecture in arena order; returns their number.
// Cannot fail.
int model_tensors(const lr_model_cfg *cfg, lr_tensor t[LR_MAX_TENSORS]);
// Floats in one arena (the sum of the tensors' elems). Cannot fail.
size_t model_param_elems(const lr_model_cfg *cfg);

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
  const lr_arch *arch; // cfg.arch, or sasrec
  double phase_s[LR_MODEL_PHASES];
  lr_backward_hook hook; // NULL: none (model_set_backward_hook)
  void *hook_ctx;
  int64_t max_B;     // activation capacity in sequences
  int n_tensors;
  lr_tensor tensors[LR_MAX_TENSORS];
  size_t tensor_off[LR_MAX_TENSORS]; // offset of each tensor in an arena
  size_t n_params;   // floats in each of params/grads/m/v
  float *params_mem, *grads_mem, *m_mem, *v_mem;
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
  // at a time through a layer, each sequence's parameter gradients land in
  // one of the lane's float staging slots (zeroed per sequence), and the
  // slots of stage_slots sequences are added exactly into the lane's
  // accumulator in one pass; after each layer the lanes' accumulators are
  // merged into gx. The result does not depend on how sequences are cut
  // into batches, lanes, slots or ranks.
  int64_t lanes;           // = attention scratch copies
  int64_t chunk;           // sequences per forward chunk
  lr_xs *gx;               // (n_params) the dense gradient, exact (lane 0's accumulator)
  lr_xs *lane_gx_mem;      // (lanes-1) x n_params; all zero outside model_backward
  int64_t stage_slots;     // staging slots per lane (sequences per exact add)
  float *stage_mem;        // lanes x stage_slots x n_params: sequences' parameter gradients
  int *lane_slot;          // (lanes) the slot the lane's running sequence stages into
  uint32_t *lane_bad;      // (lanes) out-of-range gradient terms seen (xsum.h)
  uint32_t grad_bad;       // any lane's, since model_zero_grad
  int n_acts;              // the architecture's activation buffers (model_arch.h)
  struct lr_act_slot {
    size_t off, elems;
  } acts[LR_MAX_ACTS];
  float *acts_mem;
  size_t acts_elems;
  int n_seq_groups;        // the architecture's per-sequence row groups
  lr_seq_group seq_groups[LR_MAX_SEQ_GROUPS];
  size_t seq_stage_off[LR_MAX_SEQ_GROUPS]; // in a lane's seq staging
  size_t seq_stage_elems;  // per lane: the widths summed
  float *seq_stage_mem;    // lanes x seq_stage_elems: one sequence's row gradients
  const float *const *seq_rows; // of the last forward (borrowed)
  float *dh_a, *dh_b;      // (max_B,N,D) the backward's whole-batch gradient ping-pong
  float *attn_cache, *attn_scratch; // (L, attn_cache_elems); one scratch per thread
  uint32_t *keep_bits; // dropout masks, forward to backward: keep_blocks x max_B*N rows of bits
  int64_t B;         // batch of the last forward
  const int32_t *lens; // lens of the last forward (borrowed)
  // Per-position key mask (B,N) of the next forward and its backward
  // (borrowed; NULL: none): model_set_keymask. Only sasrec passes it to its
  // attention kind (which must take one: attention.h, fwd_km).
  const uint8_t *kmask;
  float *stream_ws; // model_stream_open's workspace (NULL until then)
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
// seq_rows: per row group of model_seq_groups, the (B, width) rows of the
// batch's sequences (NULL when the architecture has none).
const float *model_forward(lr_model *m, const int32_t *idx, const float *rows,
                           const int32_t *lens, const uint64_t *row_ids, int64_t B,
                           lr_dropout dp, const float *const *seq_rows);

// Backward of the last forward: dout (B,N,D) is the loss gradient w.r.t. the
// final hidden states (overwritten as scratch). Adds, exactly, into the
// dense gradient m->gx and into drows (U,D), the gradient of the distinct
// rows (NULL: not wanted) and, per row group, into dseq[g] (B, width), the
// gradient of the batch's sequences' rows (NULL when the architecture has
// none). A gradient term out of xsum.h's range (a diverging run) sets
// m->grad_bad.
void model_backward(lr_model *m, lr_xs *drows, float *dout, const int32_t *idx,
                    const uint64_t *row_ids, lr_dropout dp, lr_xs *const *dseq);

// Set the DropPath rate (0 <= p < 1, asserted by its user). Cannot fail.
static inline void model_set_drop_path(lr_model *m, float p) { m->cfg.drop_path = p; }
// Set the key mask (B,N) of the next forward and its backward (NULL:
// none; RandomPad's delimiters, core/blin.h). Cannot fail.
static inline void model_set_keymask(lr_model *m, const uint8_t *km) { m->kmask = km; }
// Set cfg.last_only for the next forward (and its backward). Cannot fail.
static inline void model_set_last_only(lr_model *m, int on) { m->cfg.last_only = on; }

// Install (or, with fn = NULL, remove) the backward hook. Cannot fail.
void model_set_backward_hook(lr_model *m, lr_backward_hook fn, void *ctx);

// The slice of the dense arena holding the parameters of layer l (0..L-1),
// or of the embedding part for l = -1: n_slices (offset, count) pairs in
// floats, written to off/cnt (room for LR_MAX_TENSORS each). Returns
// n_slices. Cannot fail.
int model_layer_slices(const lr_model_cfg *cfg, int64_t l, size_t *off, size_t *cnt);

// Analytic floating-point operations of one training sequence (forward and
// backward, every position real): the architecture's matrix products (the
// projections and the FFN) and the attention kind's, plus the output scores
// of loss_rows rows
// against `cands` item rows (each multiply-add counts 2; backward = 2 x
// forward). The README's performance section gives the formula. Cannot fail.
double model_train_flops(const lr_model_cfg *cfg, int64_t loss_rows, int64_t cands);

// Zero the dense gradient (m->gx and m->grad_bad). Cannot fail.
void model_zero_grad(lr_model *m);
// m->g (the float gradient the optimizer reads) = the value of m->gx.
// Cannot fail.
void model_grads_to_float(lr_model *m);

// ---- streaming: one sequence grown an item at a time (recommend --stream) -------------
// A causal model can carry a sequence's state from one item to the next:
// per layer the attention kind's carried state (a (d,d) sum per head, the
// current chunk's keys and values, running norms) and whatever else the
// block keeps (recgrela: the conv's last 3 rows of V), independent of the
// sequence's length, so an item costs O(L d^2) instead of a forward over
// the whole history. Each hidden state is bitwise model_forward's row t of
// the same sequence in evaluation (tests/test_stream.c).
// Whether m can: its architecture has a step (sasrec, recgrela and its
// ablations) and its attention kind has one (linrec_causal, rela_causal).
// Cannot fail.
int model_stream_capable(const lr_model *m);
// Floats of one sequence's state; all zero = the empty sequence. Cannot fail.
size_t model_stream_elems(const lr_model *m);
// Allocate and set the workspace (once; model_free frees it). LR_ERR_ARG
// (m cannot stream), LR_ERR_NOMEM.
int model_stream_open(lr_model *m);
// Append the item with table row `row` (D floats) at position t, the items
// already in st (0 <= t < N = cfg.max_len, asserted); h (D) = row t's final
// hidden state. Local, single-threaded, cannot fail.
void model_stream_step(lr_model *m, float *st, const float *row, int64_t t, float *h);

// Item table rows, initialised as the paper (N(0, 0.02), row 0 = padding = 0),
// keyed by GLOBAL row id so any row range gives the same values.
// rows: ((hi-lo),D) for global rows lo..hi-1.
void model_init_item_rows(float *rows, int64_t lo, int64_t hi, int64_t D, uint64_t seed);

#endif
