// ckpt_writer.h: writing sharded checkpoints from P ranks (dist/README.md,
// "Checkpoints") with the storage layer of io/ckpt.h, in the background.
//
// A checkpoint is started at a step boundary and committed later:
//   start   (Collective) rank 0 creates ROOT/step-NNNNNNNN (ckpt_dir_create),
//           all ranks agree on its success; each rank copies the arrays it
//           must not let change ("snapshot": the weights and moments of
//           its parts) into buffers allocated once at init, and a writer
//           thread compresses and writes its shards while the training
//           thread goes on. Without snapshot buffers, or when asked, the
//           shards are written on the calling thread instead.
//   commit  (Collective) waits for the writer threads, agrees on their
//           statuses, gathers the shard entries to rank 0 (allgather: all
//           MPI stays on the training thread), and rank 0 writes the
//           manifest (the commit point), updates `latest` and prunes to
//           keep_last; all ranks agree on the outcome.
// A checkpoint whose commit never happens (crash, kill, a failed write) has
// no manifest and does not exist (io/ckpt.h); the next start of the same step
// empties its directory.
//
// What the caller guarantees: every array passed to start that is not
// snapshotted stays unchanged until commit returns; start is only called
// with no checkpoint pending; commit (or free, on an error path) before the
// source arrays go away.
//
// Threads: the writer thread only calls io/ (ckpt_shard_write); it never
// calls MPI. Its error message lands in the process's error record (core/lr.h)
// and is reported by commit. Not here: what the arrays mean (dist/state.h),
// the file formats (io/ckpt.h), choosing a checkpoint to resume (ckpt_resume.h).
#ifndef LR_CKPT_WRITER_H
#define LR_CKPT_WRITER_H

#include <stdint.h>

#include "ckpt.h" // CKPT_MAX_ARRAYS, CKPT_RNG_COUNTERS

typedef struct ckpt_writer ckpt_writer;

#define CKPT_MAX_PARTS 8 // shards one rank writes per checkpoint

// One shard this rank writes at every checkpoint: rows [lo, hi) of a group
// (a dense group's shard is "dense.zst", written by one rank; a row group's
// "GROUP-rRRRR.zst").
typedef struct {
  char group[CKPT_GROUP_MAX];
  int kind;       // ckpt_kind, the group's
  int64_t lo, hi; // global rows
  int64_t width;
  int n_arrays;   // the group's
  int n_snapshot; // the first n_snapshot arrays are copied at start (they change
                  // while a background write runs); the others must stay unchanged
} ckpt_part;

// Set once at init. Logically collective: the same on every rank except
// parts (each rank's own shards; a rank may have none of a group).
typedef struct {
  const char *root;        // checkpoint directory (copied)
  const char *config_json; // the manifest's config text (copied)
  int keep_last;           // >= 1
  int zstd_level;          // 1..19
  int n_groups;            // the manifest's groups
  ckpt_group groups[CKPT_MAX_GROUPS];
  int n_parts;             // this rank's shards
  ckpt_part parts[CKPT_MAX_PARTS];
  int background;          // allocate snapshot buffers (0: every write on the caller's thread)
  lr_data_fp data;         // the training data's fingerprint, for the manifest
} ckpt_writer_cfg;

// Where the training run is (the manifest's fields). Logically collective.
typedef struct {
  int64_t step, epoch, cursor; // cursor: steps done in `epoch`
  uint64_t rng_seed;
  uint64_t rng_counter[CKPT_RNG_COUNTERS];
  int64_t adam_step; // recorded as the dense shards' aux
  ckpt_loop loop;
} ckpt_point;

// The live arrays of this rank's parts: arrays[p][a] holds rows [lo, hi) of
// part p's array a, row lo first.
typedef struct {
  const float *arrays[CKPT_MAX_PARTS][CKPT_MAX_ARRAYS];
} ckpt_source;

// Figures of the last committed checkpoint (all ranks; sizes summed over
// ranks, write times the slowest rank's). Seconds on the training thread:
// start (directory creation and agreement), snapshot (copies), wait (for a
// writer still running at commit), commit (gather, manifest, latest, prune).
typedef struct {
  int64_t step;
  char name[32];              // step-NNNNNNNN
  int background;             // written by the writer thread
  double bytes, raw_bytes;    // on disk, uncompressed
  double start_s, snapshot_s, wait_s, commit_s;
  double write_s, compress_s; // writer side: open..fsync of its shards; zstd part
  int n_pruned;               // checkpoint directories removed by the prune
} ckpt_stats;

// Allocate the writer (and with cfg->background the snapshot buffers:
// (hi-lo)*width*n_snapshot floats per part). Local. LR_ERR_NOMEM, LR_ERR_ARG.
// *w is NULL on failure.
int ckpt_writer_init(ckpt_writer **w, const ckpt_writer_cfg *cfg);

// Join a running writer thread (without committing) and free. Accepts NULL.
// Local; cannot fail.
void ckpt_writer_free(ckpt_writer *w);

// Start the checkpoint of step pt->step (see above); background = 0 writes
// on this thread before returning. Collective. LR_ERR_STATE (a checkpoint is
// pending, or that step is already committed), LR_ERR_IO from creating the
// directory (rank 0 reports, the others get LR_ERR_PEER), LR_ERR_NOMEM.
// Write errors are reported by commit.
int ckpt_writer_start(ckpt_writer *w, const ckpt_point *pt, const ckpt_source *src,
                      int background);

// 1 if a checkpoint was started and not committed yet (the same on every
// rank). Local; cannot fail.
int ckpt_writer_pending(const ckpt_writer *w);
// 1 while this rank's writer thread is still writing. Local; cannot fail.
int ckpt_writer_busy(const ckpt_writer *w);

// Commit the pending checkpoint (see above) and fill *st (zeroed on
// failure). Collective. The first failing rank returns its status (a write:
// LR_ERR_IO naming the file and the call, with a HINT on a full disk), the
// others LR_ERR_PEER; the checkpoint is then not committed and nothing is
// pending any more. A failed prune is only a warning on stderr.
int ckpt_writer_commit(ckpt_writer *w, ckpt_stats *st);

#endif
