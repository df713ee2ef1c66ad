// train_internal.h: the trainer's state and its parts, shared by the files
// of the trainer (not an API; train.h is):
//   train.c        the run: epochs, evaluation, early stopping, the end
//   train_setup.c  data, examples, the state (state.h) and the buffers
//   train_step.c   one optimizer step: micro-batches, loss, gradients, Adam
//   train_ckpt.c   checkpoints: the step boundary, writing, resuming
//   bench.c        `linrec bench`
// Events and the progress line are report.h's.
#ifndef LR_TRAIN_INTERNAL_H
#define LR_TRAIN_INTERNAL_H

#include <stdint.h>

#include "ckpt.h"
#include "ckpt_writer.h"
#include "config.h"
#include "dataset.h"
#include "examples.h"
#include "report.h"
#include "state.h"
#include "train.h"

typedef struct {
  const lr_config *c;
  lr_dataset ds;
  lr_data_fp data_fp; // of ds (every rank's, checked alike)
  lr_examples ex;
  lr_state st;     // the parameter groups (state.h)
  float *pop;      // (I+1) training counts
  double *pop_cdf; // (I+1) for the pop negative sampler
  int64_t Bm;      // micro-batch
  int64_t N, D, C; // C = candidates per loss row (sampled objectives)
  int full;        // every own item row gets gradient each step (full CE)
  // the current step's examples
  int64_t *local_ex; // (batch) this rank's examples
  int64_t *rank_cnt; // (P) examples of each rank
  // micro-batch buffers
  int32_t *ids, *lens, *tgt, *idx; // (Bm,N), (Bm), (Bm,N), (Bm,N)
  uint64_t *ex_ids, *row_ids;      // (Bm), (Bm*N)
  int64_t *users;                  // (Bm) the user of each sequence
  float *hs, *dhs, *dout;          // (Bm*N,D) x2, (Bm,N,D)
  int32_t *ltgt;                   // (Bm*N) targets of loss rows
  int32_t *lgrp;                   // (Bm*N) the micro-batch example of each loss row
  int64_t *lrow;                   // (Bm*N) (b*N+t) of each loss row
  lr_xs loss_x;                    // this step's loss rows' losses (exact)
  uint32_t bad;                    // sampled loss terms out of xsum.h's range this step
  int32_t *cand, *cand_ids;        // (Bm*N, C)
  // Blin (train.views 2): the buffers above hold V = 2 sequences per
  // example (view v of example b at sequence v*nb + b) and 2 loss rows per
  // pair in lrow; the examples as filled, before RandomPad
  int64_t V;                       // 1 or 2
  int32_t *src_ids, *src_lens;     // (Bm,N), (Bm)
  uint8_t *kmask;                  // (V*Bm,N) key mask (RandomPad's delimiters 0)
  float *s_scratch;                // (Bm*N*C)
  lr_report rep;                   // metrics.jsonl
  // seconds of this rank in the step's phases outside the model (the model's
  // own are in model.phase_s): loss (with the sharded CE's collectives),
  // optimizer (clipping, Adam), communication (row exchange, gradient
  // reductions: the time spent waiting in them)
  double ph_loss, ph_opt, ph_comm;
  // checkpoints
  char ckpt_root[LR_PATH_MAX + 32]; // train.checkpoint.dir or OUT/checkpoints
  char *traj_json;                  // config_to_json_trajectory (free())
  ckpt_manifest resume_from;        // the manifest resumed from
  ckpt_writer *ckw;
  int64_t ckpt_last;     // step of the last committed or resumed checkpoint, -1
  const char *ck_reason; // of the pending checkpoint: "steps", "epochs", "signal"
  int64_t ck_epoch, ck_cursor;
  double ck_start_s; // its start on this thread (snapshot; foreground: the write)
} trainer;

// ---- train_setup.c ---------------------------------------------------------------------------
// Data, examples, the state and the buffers for c. Collective (errors agreed).
int trainer_init(trainer *t, const lr_config *c);
// Free everything (joins a checkpoint writer first). Accepts a zeroed trainer.
void trainer_free(trainer *t);

// ---- train_step.c ----------------------------------------------------------------------------
// One optimizer step over the global batch perm[start .. start+G) at step
// number step_no (1-based) of `epoch`: *loss the mean loss over its loss
// rows. LR_ERR_DIVERGED on every rank alike (not yet agreed: the caller
// reports it) when a loss or gradient is not finite or out of range.
// Collective.
int train_step(trainer *t, int64_t start, int64_t G, uint32_t epoch, int64_t step_no, double *loss);

// ---- train_ckpt.c ----------------------------------------------------------------------------
// The checkpoint root for c and out_dir into root[size]. LR_ERR_CONFIG.
int ckpt_root_path(char *root, size_t size, const lr_config *c, const char *out_dir);
// The writer (after trainer_init). Collective.
int ckpt_setup(trainer *t);
// The step boundary after `step` (cursor of spe steps of `epoch` done, loop
// state *lp): agree on a stop request and on a failed metrics write, commit
// a pending checkpoint when its writers are done, start the one due. On a
// stop request the checkpoint is written and committed before returning,
// with *stop_sig = the signal. Collective.
int ckpt_boundary(trainer *t, const lr_train_opts *o, int64_t step, int epoch, int64_t cursor,
                  int64_t spe, const ckpt_loop *lp, lr_train_result *res, int *stop_sig);
// Commit the pending checkpoint, if any, and report it. Collective.
int ckpt_commit(trainer *t, lr_train_result *res);
// Load the checkpoint resumed from (t->resume_from, of dir) into the state.
// Collective.
int ckpt_restore(trainer *t, const char *dir, int64_t steps_per_epoch);
// The resumed checkpoint's training data against this run's: LR_ERR_CONFIG
// unless equal or allowed. Local (alike on every rank).
int ckpt_check_data(const trainer *t, const char *dir, int allow);

#endif
