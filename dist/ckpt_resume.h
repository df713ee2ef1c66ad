// ckpt_resume.h: choosing, checking and loading the checkpoint a training run
// resumes from (DESIGN §4), and the training loop's small state that a
// checkpoint carries beside the dense parameters.
//
// Resume, all Collective (rank 0 looks at the directory and decides, every
// rank learns the outcome; errors are agreed on and reported once):
//   ckpt_resume_find   "latest" or an explicit directory -> the checkpoint
//   ckpt_resume_adopt  newer checkpoints set aside, `latest` -> it
//   ckpt_resume_open   every rank reads the manifest; the config is checked
//                      (before the data is loaded: a mismatch fails fast)
//   ckpt_resume_load   shapes checked; every rank reads its (possibly re-cut)
//                      item rows and the dense arrays
// A fresh run instead calls ckpt_resume_check_fresh: it refuses a checkpoint
// directory that already holds complete checkpoints, so two runs never mix.
// Every rank must see the same file system path (a shared file system).
//
// Not here: writing (ckpt_writer.h), what the arrays mean (dist/train.c).
#ifndef LR_CKPT_RESUME_H
#define LR_CKPT_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"   // ckpt_manifest
#include "config.h" // lr_config

// ---- the training loop's state --------------------------------------------------------

// The trainer's dense arrays carry CKPT_LOOP_STATE_FLOATS more floats than
// the dense parameters: in array 0 (the parameters) they hold this state as
// raw 32-bit words (bit-exact: a double is two words, low word first):
//   word 0 magic 0x5354524c ("LRTS"), 1 version (1), 2-3 epoch_loss,
//   4-5 best_score, 6-7 since_best, 8-9 best_epoch, 10-15 zero;
// in the other arrays they are zero. The whole block is inside the dense
// shard, so the shard's checksums cover it.
#define CKPT_LOOP_STATE_FLOATS 16

typedef struct {
  double epoch_loss;  // sum of the step losses of the current epoch so far
  double best_score;  // best validation NDCG@10 so far (-1: none yet)
  int64_t since_best; // evaluations since the best one
  int64_t best_epoch; // epoch of the best model (0: none yet)
} ckpt_loop_state;

// Encode s into out. Local; cannot fail.
void ckpt_loop_state_pack(float out[CKPT_LOOP_STATE_FLOATS], const ckpt_loop_state *s);
// Decode; LR_ERR_CORRUPT naming `where` if the magic or version is wrong. Local.
int ckpt_loop_state_unpack(ckpt_loop_state *s, const float in[CKPT_LOOP_STATE_FLOATS],
                           const char *where);
// Read the loop state of the checkpoint in dir (manifest m) from its dense
// shard (for `linrec ckpt inspect`). Local. Statuses of ckpt_load_rows and
// unpack.
int ckpt_loop_state_read(const char *dir, const ckpt_manifest *m, ckpt_loop_state *s);

// ---- resume ---------------------------------------------------------------------------

// The checkpoint to resume from, into dir[size]. arg "latest": the newest
// checkpoint under root that verifies; damaged or incomplete newer ones are
// skipped with one line each on stderr; dir = "" (and a message) when root
// holds no complete checkpoint: a fresh start. LR_ERR_CORRUPT when complete
// checkpoints exist and none verifies. Any other arg is a checkpoint
// directory, which must verify: LR_ERR_CORRUPT / LR_ERR_IO naming the file
// and the reason otherwise (no fallback: the user named it). Rank 0 verifies
// every checksum (reads every shard once). Collective.
int ckpt_resume_find(const char *root, const char *arg, char *dir, size_t size);

// A fresh run's check of root: LR_ERR_CONFIG with a HINT if it holds a
// checkpoint (a step directory with a manifest.json entry, valid or
// damaged). Collective.
int ckpt_resume_check_fresh(const char *root);

// Resuming from the checkpoint dir (of step `step`) under root: rank 0
// renames every step directory of a later step that holds a manifest.json
// entry (complete, or damaged and skipped by ckpt_resume_find) to
// step-NNNNNNNN.abandoned-<unix time> (kept, never deleted: the run will
// write its own checkpoints of those steps), saying so, and points `latest`
// at dir when dir is under root. Collective. LR_ERR_IO.
int ckpt_resume_adopt(const char *root, const char *dir, int64_t step);

// Read dir's manifest into *m on every rank (caller frees with
// ckpt_manifest_free; zeroed on failure) and check that it was written by
// config c: the manifest records config_to_json_trajectory's text, so the
// resume-free keys may differ (io/config.h). LR_ERR_CONFIG naming the keys
// that differ with both values, LR_ERR_NOMEM, the statuses of
// ckpt_manifest_read. Collective.
int ckpt_resume_open(const char *dir, const lr_config *c, ckpt_manifest *m);

// The shapes the trainer expects, checked by ckpt_resume_load.
typedef struct {
  int64_t n_rows, D;  // item table
  int n_items_arrays; // arrays per item row shard
  int64_t n_dense;    // floats per dense array
  int n_dense_arrays;
} ckpt_resume_shape;

// Check the manifest's shapes against *shape (LR_ERR_CONFIG: the data or the
// trainer changed), then load item rows [lo, hi) of every items array
// (re-cut from whatever shards hold them: any world size) and the whole of
// every dense array; also checks the dense shard's Adam step against the
// manifest's step. Collective; the statuses of ckpt_load_rows (the
// destinations must not be used after a failure).
int ckpt_resume_load(const char *dir, const ckpt_manifest *m, const ckpt_resume_shape *shape,
                     int64_t lo, int64_t hi, float *const items[], float *const dense[]);

#endif
