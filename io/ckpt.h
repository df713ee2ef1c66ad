// ckpt.h: sharded training checkpoints on disk (io/README.md, "Checkpoints";
// the ranks' protocol: dist/README.md, "Checkpoints").
//
// 1. Layout. A checkpoint is a directory ROOT/step-NNNNNNNN/ (step, 8+ digits)
//    holding the training state as named groups (dist/state.h), each a
//    global table of rows x width floats with a few arrays per row
//    (weights, Adam moments, the best model's weights), cut into shards:
//      dense.zst        the "dense" group (the encoder's arena as rows of
//                       width 1), written by rank 0; aux = Adam step t
//      GROUP-rRRRR.zst  rows [lo,hi) of a row group ("items", "users", ...)
//                       written by rank R (items-r0000.zst, ...)
//      manifest.json    written last: the commit point. A directory without a
//                       valid manifest is not a checkpoint.
//    ROOT/latest is a small text file, "step-NNNNNNNN\n", replaced atomically
//    (written to latest.tmp, fsync, rename, fsync of ROOT): a plain file rather
//    than a symlink so it reads the same on every file system and through
//    copies. It is a convenience for humans and scripts: resume picks the
//    highest step that verifies (ckpt_find_latest_valid), `latest` or not.
//
// 2. Shard file (.zst), all integers little-endian:
//      0  char[8] magic "LRCKPT01"     8  u32 version (2)
//     12  u32 header bytes (128)       16  u32 kind (1 rows, 2 dense)
//     20  u32 n_arrays (1..8)          24  i64 lo   32  i64 hi (rows [lo,hi))
//     40  i64 D (floats per row)       48  i64 aux (dense: Adam step)
//     56  u64 raw bytes = n_arrays*(hi-lo)*D*4
//     64  u64 compressed bytes = file bytes - 128
//     72  u32 crc32 of the compressed bytes
//     76  u32 zstd level (informational)
//     80  char[16] group name, NUL-padded (version 1: zero; the group is
//         "items" for kind 1, "dense" for kind 2)
//     96  28 reserved bytes, zero     124  u32 crc32 of bytes 0..123
//    then at byte 128 one zstd frame (content size recorded, XXH64 content
//    checksum on) whose content is array 0 ((hi-lo, D) f32, row-major), then
//    array 1, ... The manifest records the file's size and the crc32 (zlib) of
//    all its bytes. A reader checks: size >= 128, magic, header crc, version,
//    header fields and their consistency, actual size against the header,
//    the header against the manifest's entry, then while streaming: zstd
//    frame validity, content size, XXH64, no bytes after the frame, crc32 of
//    the payload and of the whole file. Every failure is LR_ERR_CORRUPT with
//    the path, byte offset, expected vs found and a HINT; so is a shard path
//    that is not a regular file (a FIFO, a directory: refused before reading).
//
// 3. Manifest (manifest.json, cJSON): an object with exactly the members
//      format "linrec-checkpoint", version 3, step, epoch, cursor,
//      rng_seed "16 hex", rng_counters ["16 hex" x4], world_size, time_unix,
//      config_hash "16 hex", config "<config JSON text>",
//      loop {epoch_loss, best_score, since_best, best_epoch}: the training
//               loop's state (ckpt_loop; doubles printed to round-trip),
//      groups [{name, kind "rows"|"dense", rows, width, arrays}...],
//      shards [{file, group, lo, hi, D, arrays, aux, bytes, crc32 "8 hex"}...],
//      data {users, items, interactions, hash "16 hex"}: optional, the
//               training data's fingerprint (dataset.h),
//      checksum "crc32:8 hex", the last member: the file is cJSON_Print of
//               the other members with `,\n\t"checksum":\t"crc32:` + 8 hex +
//               `"\n}\n` in place of its closing `\n}`, and the 8 hex digits
//               are the crc32 of every byte of the file before them: no byte
//               of the file, whitespace included, can change unnoticed.
//    Versions 1 and 2 (still read) had two fixed groups: members n_rows, D
//    (the "items" group), n_dense (the "dense" group, its last
//    CKPT_LOOP_FLOATS floats of array 0 holding the loop state, see
//    ckpt_loop_from_words), shards with kind "items"|"dense" instead of a
//    group, and one items shard per rank of world_size; no loop or groups.
//    Version 1's checksum was the crc32 of cJSON_PrintUnformatted of the
//    object without it (whitespace not covered; it changes nothing).
//    Integers are JSON numbers within +-2^53; 64-bit hashes are hex strings.
//    Reading refuses a manifest.json that is not a regular file (a FIFO is
//    never opened for a blocking read) and checks every member's presence,
//    type and range (names compared case-sensitively; no unknown or
//    duplicate members), the checksum, the config text against its FNV-1a 64
//    hash, safe file names (no '/', no "..": files live in the directory),
//    group names (1..15 of [A-Za-z0-9_], unique), each shard's group, kind,
//    width and arrays against its group's, and that the shards of each group
//    cover its rows 0..rows exactly once.
//    A checkpoint directory named step-N must hold the manifest of step N
//    (ckpt_verify): a renamed copy of another step is damaged.
//
// 4. Collective protocol (dist/ drives it; nothing in io/ talks to other ranks):
//      rank 0:    ckpt_dir_create(root, step, dir); broadcast status; barrier
//      each rank: ckpt_shard_write(dir, ckpt_items_name(rank), ...) -> info
//      rank 0:    also ckpt_shard_write(dir, "dense.zst", ...)
//      gather every rank's status and info.entry (plain bytes) to rank 0
//      rank 0:    if all succeeded: ckpt_manifest_add_shard for each entry,
//                 ckpt_manifest_write (the commit), ckpt_update_latest,
//                 ckpt_prune; broadcast status
//    Resume: rank 0 runs ckpt_find_latest_valid, dist/ckpt_resume.c checks
//    the manifest's config against the run's and broadcasts the directory; every rank then
//    ckpt_manifest_read and ckpt_load_rows for its own (possibly re-cut) row range.
//
// Durability: each file is written through io/afile.h: to NAME.tmp,
// fsync'ed, closed, renamed to NAME and the directory fsync'ed. A shard or manifest write that fails
// removes NAME.tmp and, if only the directory fsync failed, NAME too (best
// effort): after an error no file of that name is left to be trusted, and a
// failed manifest write means "not committed". (`latest` is the exception:
// once renamed it stays, since it names a committed checkpoint either way.)
//
// Every function is Local; writers go through the io/fault.h hooks.
// Not here: MPI, what the arrays mean (dist/ and core/ decide), the model file
// for eval/recommend (io/modelfile.h).
#ifndef LR_CKPT_H
#define LR_CKPT_H

#include <stddef.h> // size_t
#include <stdint.h> // int64_t, uint64_t
#include <stdio.h>  // FILE

#include "dataset.h" // lr_data_fp

#define CKPT_VERSION 3       // of the manifest (versions 1 and 2 are still read)
#define CKPT_MAX_GROUPS 8    // groups of a checkpoint
#define CKPT_GROUP_MAX 16    // bytes of a group name, with NUL
#define CKPT_LOOP_FLOATS 16  // versions 1-2: the loop state's floats in the dense group
#define CKPT_NAME_MAX 64     // bytes of a file name inside a checkpoint, with NUL
#define CKPT_MAX_ARRAYS 8    // arrays per shard
#define CKPT_RNG_COUNTERS 4  // RNG counters saved beside the seed
#define CKPT_REPORT_LINES 32 // lines a ckpt_report keeps
#define CKPT_DENSE_NAME "dense.zst"
#define CKPT_MANIFEST_NAME "manifest.json"
#define CKPT_LATEST_NAME "latest"

// A group's kind: a row table, or the dense arena (rows of width 1). The
// values are those of shard version 1's kinds "items" and "dense".
typedef enum { CKPT_KIND_ROWS = 1, CKPT_KIND_DENSE = 2 } ckpt_kind;

// A group as the manifest records it.
typedef struct {
  char name[CKPT_GROUP_MAX];
  int kind;     // ckpt_kind
  int n_arrays; // arrays per row (1..CKPT_MAX_ARRAYS)
  int64_t n_rows, width;
} ckpt_group;

// The training loop's state a checkpoint carries (dist/ decides its meaning).
typedef struct {
  double epoch_loss;  // sum of the step losses of the current epoch so far
  double best_score;  // best validation score so far (-1: none yet)
  int64_t since_best; // evaluations since the best one
  int64_t best_epoch; // epoch of the best model (0: none yet)
} ckpt_loop;

// What one shard file holds: n_arrays arrays of (hi-lo, D) floats each, for
// global rows lo..hi-1 of the group named `group`.
typedef struct {
  int kind;     // ckpt_kind (the group's)
  int n_arrays; // 1..CKPT_MAX_ARRAYS
  int64_t lo, hi, D;
  int64_t aux; // dense: the Adam step counter; free for row groups (0)
  char group[CKPT_GROUP_MAX];
} ckpt_shard_desc;

// One shard as the manifest records it. Plain bytes: gather it with MPI_BYTE.
typedef struct {
  char file[CKPT_NAME_MAX]; // name inside the checkpoint directory
  ckpt_shard_desc desc;
  uint64_t bytes; // file size
  uint32_t crc32; // zlib crc32 of the whole file
} ckpt_shard_entry;

// What ckpt_shard_write reports.
typedef struct {
  ckpt_shard_entry entry;
  uint64_t raw_bytes;      // uncompressed payload
  double seconds;          // wall time from open to the directory fsync
  double compress_seconds; // of which in zstd
} ckpt_file_info;

typedef struct {
  int version; // CKPT_VERSION (set by ckpt_manifest_read; the writer writes its own)
  int64_t step, epoch, cursor; // cursor: step index within the epoch
  uint64_t rng_seed;
  uint64_t rng_counter[CKPT_RNG_COUNTERS];
  int world_size;           // ranks that wrote it
  int n_groups;             // groups[0..n_groups)
  ckpt_group groups[CKPT_MAX_GROUPS];
  ckpt_loop loop;           // version 3; versions 1-2: in the dense group (ckpt_loop_read)
  int64_t time_unix;        // when written (0: the writer fills it in)
  uint64_t config_hash;     // config_hash() of the config that wrote it
  char *config_json;        // owned: config_to_json() text
  lr_data_fp data;          // the training data's fingerprint; n_inter < 0: not recorded
  int n_shards, cap_shards; // shards[0..n_shards)
  ckpt_shard_entry *shards; // owned
} ckpt_manifest;

// Problems or actions found by verify / find / prune, one line each.
typedef struct {
  int n;         // lines kept
  int n_dropped; // lines beyond CKPT_REPORT_LINES
  char line[CKPT_REPORT_LINES][512];
} ckpt_report;

// ---------------------------------------------------------------------------
// names and directories

// "step-NNNNNNNN" into buf (>= 24 bytes). step >= 0. Cannot fail.
void ckpt_step_name(char *buf, size_t size, int64_t step);
// "GROUP-rRRRR.zst" (a row group's shard of a rank: items-r0000.zst) into buf
// (CKPT_NAME_MAX bytes). rank >= 0, group a valid group name. Cannot fail.
void ckpt_shard_name(char *buf, const char *group, int rank);
// 1 if name is a valid group name (1..15 of [A-Za-z0-9_]). Cannot fail.
int ckpt_group_name_ok(const char *name);
// The group of m named `name`, or NULL. Cannot fail.
const ckpt_group *ckpt_manifest_group(const ckpt_manifest *m, const char *name);
// Append a group to m (LR_ERR_ARG: too many). m's shards refer to groups by name.
int ckpt_manifest_add_group(ckpt_manifest *m, const ckpt_group *g);

// Create ROOT (with parents) and ROOT/step-NNNNNNNN, fsync'ing the parents;
// write the step directory's path to dir[dir_size]. An existing incomplete
// directory of that step (left by a crash) is emptied of its *.zst and *.tmp
// files. Call on one rank, then barrier. LR_ERR_STATE if that step already
// holds a manifest (a complete checkpoint is never overwritten), LR_ERR_IO
// naming the failed call, LR_ERR_ARG if a path is too long. dir is "" on failure.
int ckpt_dir_create(const char *root, int64_t step, char *dir, size_t dir_size);

// ---------------------------------------------------------------------------
// shard files (ckpt_shard.c)

// Write the shard `name` (a plain file name: letters, digits, '.', '_', '-')
// in the existing directory `dir`: arrays[0..desc->n_arrays) each hold
// (hi-lo)*D floats (NULL allowed when hi == lo). zstd_level: 1..19, or 0 for 3.
// Durable and atomic as described above. Fills *out (zeroed on failure).
// LR_ERR_ARG (bad desc/name/level), LR_ERR_NOMEM, LR_ERR_IO naming the path
// and the failed call (create, write, fsync, close, rename, fsync of the
// directory) with strerror.
int ckpt_shard_write(const char *dir, const char *name, const ckpt_shard_desc *desc,
                     const float *const arrays[], int zstd_level, ckpt_file_info *out);

// Read the shard e->file of `dir`, checking it against the manifest entry e
// (header fields, size, whole-file crc32) and itself (section 2 above), and
// copy its rows within [lo, hi) (global rows; any range, the overlap with
// [e->desc.lo, e->desc.hi) is copied, possibly none) into arrays: row g of
// array a goes to arrays[a] + (g - lo) * D. arrays == NULL or arrays[a] ==
// NULL skips copying (the file is still fully checked: that is the verify).
// The whole frame is decoded in 1 MiB pieces; memory use does not grow with
// the shard. LR_ERR_CORRUPT (the destination may then hold partial data and
// must not be used), LR_ERR_IO, LR_ERR_NOMEM.
int ckpt_shard_read(const char *dir, const ckpt_shard_entry *e, int64_t lo, int64_t hi,
                    float *const arrays[]);

// ---------------------------------------------------------------------------
// manifest (ckpt_manifest.c)

// Release what a manifest owns and zero it. Accepts a zeroed or
// half-filled manifest. Cannot fail.
void ckpt_manifest_free(ckpt_manifest *m);
// Copy the config text (and record its hash) into m. LR_ERR_NOMEM.
int ckpt_manifest_set_config(ckpt_manifest *m, const char *config_json, uint64_t config_hash);
// Append a copy of *e to m->shards (order is free). LR_ERR_NOMEM.
int ckpt_manifest_add_shard(ckpt_manifest *m, const ckpt_shard_entry *e);
// The Adam step counter stored with the dense shards (aux of the first one),
// 0 if there are none. Cannot fail.
int64_t ckpt_manifest_dense_step(const ckpt_manifest *m);

// Write DIR/manifest.json atomically and durably: this commits the
// checkpoint. The manifest is checked as a reader would check it first
// (LR_ERR_ARG naming the problem; nothing written), then LR_ERR_NOMEM or
// LR_ERR_IO naming the failed call. It does not read the shard files: the
// caller passes the entries ckpt_shard_write returned.
int ckpt_manifest_write(const char *dir, const ckpt_manifest *m);

// Read and validate DIR/manifest.json (section 3 above) into *m (caller frees
// with ckpt_manifest_free; zeroed on failure). LR_ERR_IO if it cannot be
// opened (errno ENOENT: the checkpoint is incomplete), LR_ERR_CORRUPT naming
// the byte offset and what is wrong, LR_ERR_NOMEM.
int ckpt_manifest_read(const char *dir, ckpt_manifest *m);

// Print a human-readable summary (step, config hash, shards, sizes). Cannot fail.
void ckpt_inspect_print(FILE *f, const ckpt_manifest *m);

// ---------------------------------------------------------------------------
// checkpoints as a whole (ckpt.c)

// Read the rows [lo, hi) of the group `group` from every shard of m that
// overlaps them (the re-cut on resume with another world size): arrays[a]
// receives (hi-lo) rows of the group's width; n_arrays must equal the
// group's (NULL entries are skipped). Checks as ckpt_shard_read. LR_ERR_ARG
// if there is no such group or [lo,hi) is outside it.
int ckpt_load_rows(const char *dir, const ckpt_manifest *m, const char *group, int64_t lo,
                   int64_t hi, float *const arrays[], int n_arrays);

// Versions 1-2: the loop state, kept as raw 32-bit words in the last
// CKPT_LOOP_FLOATS floats of the dense group's array 0 (word 0 magic
// 0x5354524c "LRTS", 1 version (1), 2-3 epoch_loss, 4-5 best_score, 6-7
// since_best, 8-9 best_epoch, low word first), read from dir's dense shard
// into m->loop. LR_ERR_CORRUPT naming dir if the block is not there or
// damaged; the statuses of ckpt_load_rows. Version 3: LR_OK, nothing read.
int ckpt_loop_read(const char *dir, ckpt_manifest *m);


// Point ROOT/latest at the checkpoint directory named step_name
// ("step-NNNNNNNN", which must exist under ROOT). Atomic and durable. A
// directory in the way named `latest` is first renamed to
// latest.not-a-file-<unix time> (kept). LR_ERR_ARG, LR_ERR_IO naming the
// failed call.
int ckpt_update_latest(const char *root, const char *step_name);
// The name ROOT/latest holds into name[size] ("" and LR_OK if there is no
// such file). LR_ERR_CORRUPT if it is not a regular file (a directory, a
// FIFO: never read) or its content is not a step name, LR_ERR_IO.
int ckpt_read_latest(const char *root, char *name, size_t size);

// Check the checkpoint in dir: the manifest (and, when dir is named like a
// step directory, that it is the manifest of that step), then every shard:
// a regular file of the recorded size; when deep, also every checksum and
// the decompression. All problems
// go to *report (if not NULL; it is reset first), one line each. Returns
// LR_OK, or the status of the first problem, whose message is then the
// pending error. Call with no error pending.
int ckpt_verify(const char *dir, int deep, ckpt_report *report);

// The newest checkpoint under root that verifies (deep): the step
// directories are tried from the highest step down, and each one skipped is
// explained in *skipped (if not NULL; reset first), as is a `latest` that
// names another one. Writes its path to dir[size]. LR_OK with dir = "" when
// root holds no complete checkpoint at all (a fresh start); LR_ERR_CORRUPT
// when complete ones exist but none verifies; LR_ERR_IO if root cannot be
// listed. Call with no error pending.
int ckpt_find_latest_valid(const char *root, char *dir, size_t size, ckpt_report *skipped);

// Delete, under root: complete checkpoints (those whose manifest reads and
// whose files have their recorded sizes) beyond the newest keep_last (>= 1);
// incomplete or damaged step directories older than the newest complete
// one; a stale latest.tmp. Never the checkpoint `latest` names, never
// anything not named like ours. A checkpoint is removed manifest first, so
// an interrupted prune leaves at worst an incomplete directory. Each removal
// is a line in *removed (if not NULL; reset first). LR_ERR_ARG, LR_ERR_IO.
int ckpt_prune(const char *root, int keep_last, ckpt_report *removed);

#endif
