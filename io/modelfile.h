// modelfile.h: a trained model on disk (out_dir/model.lrm), for `eval
// --model` and `recommend`: the config it was trained with and the weights
// of its parameter groups (dist/state.h: "dense", "items", and any row table
// its architecture declares, e.g. "users"). Single file, written atomically
// (io/afile.h). Version 4 (README.md, "The model file", has it byte by byte):
//   1. header, 64 bytes little-endian: 0 magic "LRMODEL1", 8 u32 version
//      (4), 12 u32 CRC32 of section 2, 16 u64 config JSON bytes, 24 u64
//      groups (1..LR_MF_MAX_GROUPS), 32 u64 id-map section (compressed)
//      bytes (0: none), 40 u32 CRC32 of section 4, 44 u32 reserved (zero),
//      48 u64 payload (compressed) bytes, 56 u32 CRC32 of section 3, 60 u32
//      CRC32 of bytes 0..59;
//   2. the config JSON text (its bytes as counted; no NUL), then the group
//      table: per group 32 bytes, its name (16 bytes, NUL-padded), u64 rows,
//      u64 width (floats per row);
//   3. one zstd frame (with content checksum) of every group's rows in
//      table order, each (rows, width) floats, row-major;
//   4. the id maps (internal -> original), one zstd frame (content size and
//      checksum): u64 users U, u64 items I, then the original id of user
//      0..U-1, then of item 1..I, each u32 length (1..256) and its bytes
//      (numeric ids in decimal).
// Version 3 is version 4 without section 4 (bytes 32..47 zero): it loads,
// without id maps (the data must be loaded to map ids).
// Every byte of the file is under a CRC32 checked on load (the config, which
// sets the model's shape and the evaluation, and the group table included),
// so a damaged byte anywhere is LR_ERR_CORRUPT naming the file, the byte
// offset and the section, never a silently different result.
// Version 2 (written before groups had names) still loads: its bytes 24..47
// were u64 dense floats, item rows, D, section 2 the config alone, and the
// payload the groups "dense" (n_dense x 1) and "items" (rows x D). Version 1
// files (bytes 12 and 56 reserved: their config was under no checksum) are
// refused with a HINT to re-train: nothing could tell a damaged config from
// the one the model was trained with.
// Sharded training checkpoints (with optimizer state) are a separate format.
#ifndef LR_MODELFILE_H
#define LR_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h" // lr_names

#define LR_MF_MAX_GROUPS 8
#define LR_MF_NAME_MAX 16 // bytes of a group name, with its NUL

// A parameter group's global shape.
typedef struct {
  char name[LR_MF_NAME_MAX];
  int64_t n_rows, width;
} lr_mf_group;

// Streaming writer through io/afile.h: begin creates path.tmp with the
// header, config and group table; append takes the payload in order (each
// group's rows x width floats, groups in table order), compressing as it
// goes, so no whole-table buffer is needed; commit checks the count, fills
// in the header, fsyncs, renames to path and fsyncs its directory (w freed
// either way); abandon removes path.tmp and frees w (accepts NULL). A
// failure leaves no path.tmp and nothing partial under path. LR_ERR_IO
// naming the failed operation and the path, LR_ERR_NOMEM, LR_ERR_ARG. Local.
typedef struct lr_modelfile_writer lr_modelfile_writer;
int modelfile_begin(lr_modelfile_writer **w, const char *path, const char *config_json,
                    const lr_mf_group *groups, int n_groups);
int modelfile_append(lr_modelfile_writer *w, const float *x, size_t n);
int modelfile_commit(lr_modelfile_writer *w);
// Give the id maps (section 4) before commit: users (U names), items (I+1
// names, [0] = "" for the padding item). LR_ERR_ARG (a name of 0 or more
// than 256 bytes), LR_ERR_NOMEM; w is abandoned on failure.
int modelfile_set_ids(lr_modelfile_writer *w, const lr_names *users, const lr_names *items);
void modelfile_abandon(lr_modelfile_writer *w);

// Read the header and config JSON (caller frees *config_json with free()),
// checking both CRCs; groups (LR_MF_MAX_GROUPS) and *n_groups receive the
// group table when not NULL. LR_ERR_IO (also: path is not a regular file) /
// LR_ERR_CORRUPT with the path, byte offset and reason.
int modelfile_read_config(const char *path, char **config_json, lr_mf_group *groups,
                          int *n_groups);

// Where rows lo..hi-1 of the group `name` go: dst ((hi-lo), width floats).
typedef struct {
  const char *name;
  int64_t lo, hi;
  float *dst;
} lr_mf_dest;

// Read the payload of a file whose group table must be exactly want[0..n_want)
// (names, rows, widths, order; LR_ERR_CORRUPT naming the first difference,
// expected vs found, otherwise), copying the rows each dest asks for.
// Streams the payload: memory beyond the caller's buffers is a few hundred
// KiB. The payload's CRC32 and the frame's checksum are verified, and the
// id-map section's CRC32 (the destinations must not be used after a
// failure). Local.
int modelfile_read(const char *path, const lr_mf_group *want, int n_want, const lr_mf_dest *dest,
                   int n_dest);

// The id maps of section 4 into users (U names) and items (I+1 names, [0] =
// ""); both left empty (n = 0) for a file without them (version 2 or 3).
// Checksums verified; LR_ERR_CORRUPT / LR_ERR_IO / LR_ERR_NOMEM. Local.
int modelfile_read_ids(const char *path, lr_names *users, lr_names *items);

#endif
