// ckpt_resume.h: choosing, checking and loading the checkpoint a training run
// resumes from (io/ckpt.h).
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
// ckpt_manifest_free; zeroed on failure), with its loop state (m->loop,
// from the dense shard for versions 1-2), and check that it was written by
// config c: the manifest records config_to_json_trajectory's text, so the
// resume-free keys may differ (io/config.h). LR_ERR_CONFIG naming the keys
// that differ with both values, LR_ERR_NOMEM, the statuses of
// ckpt_manifest_read. Collective.
int ckpt_resume_open(const char *dir, const lr_config *c, ckpt_manifest *m);

// A group the run holds: its shape, checked against the checkpoint's, and
// where its rows [lo, hi) go (arrays[a]: (hi-lo) rows x width of array a;
// NULL entries are skipped).
typedef struct {
  const char *name;
  int kind; // ckpt_kind
  int64_t n_rows, width;
  int n_arrays;
  int64_t lo, hi;
  float *arrays[CKPT_MAX_ARRAYS];
} ckpt_resume_group;

// Check the manifest's groups against the run's g[0..n) (LR_ERR_CONFIG: the
// data, the model or the trainer changed: every group of either side must
// be in the other with the same shape), then load each group's rows
// [lo, hi) of every array, re-cut from whatever shards hold them (any world
// size); also checks the dense shard's Adam step against the manifest's
// step. The loop state is m->loop (ckpt_resume_open read it). Collective;
// the statuses of ckpt_load_rows (the destinations must not be used after a
// failure).
int ckpt_resume_load(const char *dir, const ckpt_manifest *m, const ckpt_resume_group *g, int n);

#endif
