// model_arch.h: what an encoder architecture (a block type with its
// embedding stage) provides to the model engine of model.c, and the engine's
// helpers it may use. Internal to core/: the public interface is model.h.
//
// The engine owns everything an architecture shares: the parameter arena
// laid out from the architecture's tensor table (params, float gradients,
// Adam moments, the exact gradient), the activation arena sized from its
// buffer table, the lanes (a batch's sequences cut over the thread team),
// the forward chunks, the per-sequence backward with its staging and exact
// adds (xsum.h), the dropout mask bits and the per-layer backward hook. An
// architecture provides:
//   tensors   its parameter tensors in arena order: the embedding part
//             (not per layer) first, then per-layer tensors stacked (L, ...);
//   acts      its activation buffers, each a number of floats per row
//             (R = B*N rows), per sequence or fixed, per layer or not;
//   fwd       one chunk of a lane's sequences through the embedding stage and
//             every layer;
//   bwd       one sequence through layer l (l = -1: the embedding stage): from
//             the gradient w.r.t. the layer's output to that w.r.t. its input,
//             adding its parameters' gradients to the lane's staging views;
//   output    the final hidden states (B,N,D) of the last forward;
//   layer_flops  the forward multiply-adds of one layer (attention aside);
//   seq_groups   optional: tables read one row per sequence (model.h).
// Adding an architecture is a new file core/arch_<name>.c and a line in the
// registry (model.c), or a model_arch_register call; model.c itself does not
// change.
#ifndef LR_MODEL_ARCH_H
#define LR_MODEL_ARCH_H

#include "model.h"

// Rows of a lane's chunk: sequences b0..b1-1 of the batch of m->B are rows
// r0 .. r0+nr-1 of every (R = B*N)-row buffer; RD, RF the sizes of a
// (R,D) and an (R,F) buffer, oD, oF the chunk's offsets in them, nD, nF its
// element counts (F = cfg.inner).
typedef struct {
  int64_t b0, b1, R, r0, nr;
  size_t RD, RF, oD, oF, nD, nF;
} lr_lane_rows;

// What the lanes of one forward or backward pass share.
typedef struct {
  lr_model *m;
  const int32_t *idx;      // forward: (B,N) row of each position in rows, -1 at padding
  const float *rows;       // forward: the batch's distinct item rows
  const uint64_t *row_ids; // dropout keys (B*N)
  lr_dropout dp;
  const float *const *seq_rows; // per row group (model_seq_groups): (B, width) rows
  int64_t l;               // backward: the layer (-1: the embedding stage)
  float *dh, *dhin;        // backward: (B*N,D) gradients w.r.t. the layer's output / input
  lr_xs *const *dseq;      // backward: per row group (B, width), the engine's
} lr_lane_job;

// An activation buffer: floats = per_row * R (R = max_B*N rows), times L
// when per_layer; or, per_tmp_row != 0, a lane's chunk temporary of
// per_tmp_row floats per row for lanes x chunk x N rows (the backward's
// per-sequence scratch). The engine lays them out in table order.
typedef struct {
  const char *name;
  size_t per_row;
  int per_layer;
  size_t per_tmp_row;
} lr_act;

struct lr_arch {
  const char *name;
  int (*tensors)(const lr_model_cfg *c, lr_tensor t[LR_MAX_TENSORS]);
  int (*acts)(const lr_model_cfg *c, lr_act a[LR_MAX_ACTS]);
  int64_t (*keep_blocks)(const lr_model_cfg *c); // dropout sites whose masks are kept, per row
  void (*fwd)(const lr_lane_job *j, const lr_lane_rows *z);
  void (*bwd)(const lr_lane_job *j, const lr_lane_rows *z);
  const float *(*output)(const lr_model *m);
  // Its per-sequence row groups (model.h); NULL: none. bwd adds a
  // sequence's row gradients into model_lane_seq_stage.
  int (*seq_groups)(const lr_model_cfg *c, lr_seq_group g[LR_MAX_SEQ_GROUPS]);
  // Forward multiply-adds of one layer over N rows, the attention kind's
  // own excluded (model_train_flops adds it).
  double (*layer_flops)(const lr_model_cfg *c);
  // Optional (NULL: the architecture cannot stream): one item at a time
  // (model.h, model_stream_step). step_elems: one sequence's state (zeroed
  // = empty), 0 when m's attention kind cannot step; step_ws_elems: the
  // workspace, set once by step_ws_init (the kind's part: its step_ws_init);
  // step: h (D) = the final hidden state of row t, appending item row `row`.
  size_t (*step_elems)(const lr_model *m);
  size_t (*step_ws_elems)(const lr_model *m);
  void (*step_ws_init)(const lr_model *m, float *ws);
  void (*step)(const lr_model *m, float *st, float *ws, const float *row, int64_t t, float *h);
};

// ---- the engine's helpers ------------------------------------------------------------------

// Activation buffer i (the architecture's table order) of m. Cannot fail.
float *model_act(const lr_model *m, int i);
// Tensor i of an arena laid out by m's tensor table (params, stage, ...).
float *model_tensor_in(const lr_model *m, float *arena, int i);
// Layer l's slice of per-layer tensor i in such an arena (elems / L floats
// per layer); NULL for an empty tensor (a kind without parameters).
float *model_tensor_layer(const lr_model *m, float *arena, int i, int64_t l);
// Layer l's block of per-layer activation buffer i for the batch of the
// last forward (R = B*N rows of per_row floats each). Cannot fail.
float *model_act_layer(const lr_model *m, int i, int64_t l);
// The calling lane's staging arena (where bwd adds parameter gradients).
float *model_lane_stage(const lr_model *m);
// The calling lane's staging row of row group g for the sequence in bwd
// (width floats, zeroed before each sequence and layer).
float *model_lane_seq_stage(const lr_model *m, int g);
// The first row of the calling lane's chunk temporaries (chunk x N rows).
size_t model_lane_tmp_row(const lr_model *m);
// The calling thread's copy of the attention scratch.
float *model_lane_attn_scratch(const lr_model *m);
// Dropout site s (key) of a chunk starting at row r0; its mask bits kept in
// keep block k. Cannot fail.
lr_dropout model_site(const lr_model *m, lr_dropout dp, uint32_t s, int64_t k, int64_t r0);
// Charge the time since *t0 to phase ph (lane 0 keeps the books).
void model_lap(lr_model *m, lr_model_phase ph, double *t0);
double model_now(void);

#endif
