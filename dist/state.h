// state.h: a model's parameters and optimizer state on one rank, as named
// parameter groups, and everything that walks them: the gradient's zeroing,
// summing over ranks, clipping and Adam, the best-model snapshot, the state
// hash, checkpoints and the model file. Training, bench, eval and recommend
// all build their state here, so the placement of every table and the cut
// of the users into ranks follow one rule each.
//
// A group is DENSE (one arena replicated on every rank, its gradient summed
// over ranks: the encoder's parameters, core/model.h) or ROWS (an embedding
// table of rows x width, initialised by global row id, placed one of three
// ways):
//   sharded     rank r holds the rows shard_items cuts for it; a batch's rows
//               travel between ranks (the item table in `sharded` mode);
//   replicated  every rank holds every row, the gradient summed over ranks
//               (the item table in `replicated` mode);
//   users       rank r holds the rows of its own users (state.user_lo): a
//               user's sequences and its rows are on the same rank, so its
//               gradient never travels (recommend, which may score any user
//               on any rank, holds them all: lr_state_opts.all_users).
// The groups of a model: "dense" and "items" always (the encoder and its
// tied item table), then one "users"-placed group per row group its
// architecture declares (model_seq_groups: a user embedding, a per-user
// bias). Adding such a group to an architecture needs nothing here.
//
// Placement rules (the only ones):
//   users: shard_users_by_inter, contiguous ranges balanced by interactions;
//   items: dist.item_table, or for `auto` the layout that moves fewer bytes
//     per step (state_items_mode); with no gradients (eval) a replicated
//     table moves nothing, so auto shards only a table over 256 MiB.
#ifndef LR_STATE_H
#define LR_STATE_H

#include <stdint.h>

#include "ckpt.h"
#include "ckpt_resume.h"
#include "ckpt_writer.h"
#include "config.h"
#include "dataset.h"
#include "gradsync.h"
#include "model.h"
#include "optim.h"
#include "table.h"

#define LR_MAX_GROUPS (2 + LR_MAX_SEQ_GROUPS)
#define LR_GROUP_NAME_MAX 16

typedef enum { LR_GROUP_DENSE = 0, LR_GROUP_ROWS } lr_group_kind;
typedef enum { LR_PLACE_REPLICATED = 0, LR_PLACE_SHARDED, LR_PLACE_USERS } lr_place;

// One group on this rank: rows [lo, hi) of the global (n_rows, width) are
// held here (a dense group is n_params rows of width 1, all held). The
// arrays are views into the owning structure (the model, the item table or
// the row group below); best is NULL without training.
typedef struct {
  char name[LR_GROUP_NAME_MAX];
  lr_group_kind kind;
  lr_place place;
  int64_t n_rows, width;
  int64_t lo, hi;
  float *w, *m, *v, *best;
} lr_group;

// A users-placed row group's own arrays and its batch traffic.
typedef struct {
  lr_seq_group spec;           // name, width, init key (core/model.h)
  int64_t lo, hi;              // the users whose rows this rank holds
  float *w, *g, *m, *v, *best; // (hi-lo, width)
  lr_xs *gx;                   // (hi-lo, width) exact gradient
  uint8_t *touched;            // (hi-lo) rows with gradient this step
  int64_t *list, n_list;       // those rows (local indices), in first-touch order
  float *batch;                // (max_B, width) the batch's sequences' rows
  lr_xs *dbatch;               // (max_B, width) their gradient
  dist_stats comm;             // rows or gradients sent to or taken from other ranks
} lr_rowgroup;

// What a state is for.
typedef struct {
  int training;        // optimizer state, gradients, best-model snapshot
  int64_t max_B;       // the model's activation capacity in sequences
  int64_t max_ids;     // item ids one lookup may ask for
  int64_t ce_rows;     // full-CE loss rows one call may score (0: none)
  int64_t rchunk;      // CE loss rows per chunk
  lr_table_mode items; // the item table's layout (state_items_mode)
  int all_users;       // every rank holds every user's rows (recommend: any user, any rank)
} lr_state_opts;

typedef struct {
  const lr_config *c;
  int training;
  lr_model model;     // the "dense" group's arena
  lr_table table;     // the "items" group
  lr_gradsync *gsync; // training: the dense gradient allreduce
  int64_t n_users;
  int64_t *user_lo;  // (P+1) rank r holds users user_lo[r] .. user_lo[r+1]-1
  int n_rows_groups; // users-placed row groups
  lr_rowgroup rg[LR_MAX_SEQ_GROUPS];
  float *seq_rows[LR_MAX_SEQ_GROUPS]; // rg[g].batch, as the model takes them
  lr_xs *dseq[LR_MAX_SEQ_GROUPS];     // rg[g].dbatch
  float *best_dense, *best_items;     // training: the best model's dense and item rows
  uint32_t bad;                       // row-group gradient terms out of xsum.h's range this step
  int n_groups;
  lr_group g[LR_MAX_GROUPS]; // every group, "dense" first, then "items", then row groups
} lr_state;

// Teach the config the run-time choices of model.attention and model.arch
// (the attention kinds and architectures registered so far: call after any
// run-time registration, before parsing a config). Local; LR_ERR_ARG.
int state_config_choices(void);

// The encoder's configuration from c for a catalog of n_items (dropout off
// unless training). LR_ERR_CONFIG naming the key when model.attention or
// model.arch names nothing registered. Local.
int state_model_cfg(lr_model_cfg *mc, const lr_config *c, int64_t n_items, int training);

// The tensors of the "dense" group for config c and n_items items, in arena
// order (`linrec export` names them): t[0..*n) with their names, floats and
// per-layer flag (a per-layer tensor is layers x elems/layers); *layers =
// model.layers. LR_ERR_CONFIG as state_model_cfg. Local.
typedef struct {
  const char *name;
  size_t elems;
  int per_layer;
} lr_dense_tensor;
int state_dense_tensors(const lr_config *c, int64_t n_items, lr_dense_tensor t[LR_MAX_TENSORS],
                        int *n, int64_t *layers);

// The item table's layout by the rule above, for `rows_per_step` CE loss
// rows and `ids_per_step` looked-up ids per optimizer step over all ranks
// (training), or none (eval: 0, 0). Prints the choice for auto on rank 0.
// Local (the same inputs give the same answer on every rank).
lr_table_mode state_items_mode(const lr_config *c, int64_t n_items, int training,
                               int64_t rows_per_step, int64_t ids_per_step);

// Build the state of c's model for the data set ds (its users and items):
// the user split, the model (parameters initialised from train.seed), the
// item table in o->items, the users-placed row groups, and with o->training
// the optimizer state, the gradient allreduce and the best-model snapshot
// buffers. Collective. LR_ERR_CONFIG/NOMEM/MPI with a message; s is freed on
// failure.
int state_init(lr_state *s, const lr_config *c, const lr_dataset *ds, const lr_state_opts *o);
void state_free(lr_state *s);

// The state of a trained model for scoring (eval, recommend): c's model for
// ds with the weights of the model file at path (no optimizer state), the
// item table placed by the rule above; with all_users every rank holds every
// user's rows. Collective.
int state_open_model(lr_state *s, const lr_config *c, const lr_dataset *ds, const char *path,
                     int all_users);

// ---- a batch's user rows ------------------------------------------------------------------
// The rows of the users-placed groups for B sequences of users[] (all this
// rank's): the model's seq_rows (NULL when there are none, or s is NULL),
// their gradient buffers zeroed. Local; cannot fail.
const float *const *state_seq_rows(lr_state *s, const int64_t *users, int64_t B);
// The gradient buffers model_backward adds into (NULL when none).
lr_xs *const *state_seq_grads(lr_state *s);
// After model_backward: add the batch's row gradients into the groups (each
// user's rows on this rank, exactly) and mark the rows. Local.
void state_seq_push(lr_state *s, const int64_t *users, int64_t B);
// The traffic of the users-placed row groups, summed: always none in
// training (a user's rows, lookups, gradients and Adam updates stay on the
// rank of its sequences; the clipping norm's exact sum is one scalar,
// reported nowhere). Local.
dist_stats state_rows_stats(const lr_state *s);

// ---- one optimizer step ---------------------------------------------------------------------
// Zero every gradient (full: all item rows have gradient every step, the
// full CE). Local.
void state_zero_grad(lr_state *s, int full);
// After the last micro-batch: finish the dense allreduce, sum the item
// gradient over ranks (replicated), turn every exact gradient into the
// float one the optimizer reads. *bad = 1 if any gradient term of this
// rank was out of xsum.h's range. Collective.
int state_sync(lr_state *s, int full, uint32_t *bad);
// Scale every gradient so that their global norm is at most max_norm
// (max_norm <= 0: off). The norm is an exact sum over every group and rank,
// the same at any P. Collective.
int state_clip(lr_state *s, double max_norm);
// Adam step `step` on every group: dense and the item table as they are
// (full: every row, else the rows looked up), the row groups on their
// touched rows (lazy). Local.
void state_adam(lr_state *s, lr_adam_cfg ac, int64_t step, int full);

// ---- the best model ---------------------------------------------------------------------------
void state_snapshot_best(lr_state *s); // best = w, every group. Local.
void state_restore_best(lr_state *s);  // w = best, every group. Local.

// A hash of every group's parameters and Adam moments, independent of the
// number of ranks and of each group's placement (rows hashed with their
// global id and summed mod 2^64). Collective.
int state_hash(const lr_state *s, uint64_t *out);

// ---- checkpoints ------------------------------------------------------------------------------
// Every group is checkpointed with 4 arrays per row: weights, Adam m and v,
// and the best model's weights. The dense group is written by rank 0; a row
// group by every rank that holds rows of it: its rows, or for a replicated
// one the rows shard_items cuts for the rank (so writing is shared out).
#define LR_STATE_CK_ARRAYS 4

// The manifest's groups and this rank's parts (checkpoint shards), into the
// writer's configuration (groups, n_groups, parts, n_parts). Local.
void state_ckpt_layout(const lr_state *s, ckpt_writer_cfg *wc);
// The live arrays of this rank's parts, in state_ckpt_layout's order. Local.
void state_ckpt_source(const lr_state *s, ckpt_source *src);
// Load the checkpoint in dir (manifest m) into every group's rows on this
// rank (re-cut from any world size). Collective; LR_ERR_CONFIG when its
// groups are not the state's, the statuses of ckpt_resume_load.
int state_ckpt_load(lr_state *s, const char *dir, const ckpt_manifest *m);

// ---- the model file ---------------------------------------------------------------------------
// Write every group's weights (the current ones) with the config text to
// path (io/modelfile.h), rank 0 streaming the other ranks' rows in chunks.
// With ids (the whole dataset, on rank 0), the file carries its id maps
// (internal -> original user and item ids). Collective; the outcome is agreed.
int state_save_model(lr_state *s, const char *path, const char *config_json,
                     const lr_dataset *ids);
// Load path's weights into every group's rows on this rank (the file's
// groups must be the state's). Collective; the outcome is agreed.
int state_load_model(lr_state *s, const char *path);

#endif
