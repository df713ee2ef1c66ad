// modelfile.h: a trained model on disk (out_dir/model.lrm), for `eval
// --model` and `recommend`. Single file, written atomically:
//   1. header, 64 bytes little-endian: 0 magic "LRMODEL1", 8 u32 version
//      (2), 12 u32 CRC32 of section 2, 16 u64 config JSON bytes, 24 u64 dense
//      floats, 32 u64 item rows, 40 u64 D, 48 u64 payload (compressed)
//      bytes, 56 u32 CRC32 of section 3, 60 u32 CRC32 of bytes 0..59;
//   2. the config JSON text (its bytes as counted; no NUL);
//   3. one zstd frame (with content checksum) of the dense parameters
//      followed by the item rows ((rows, D) floats, row 0 = padding).
// Every byte of the file is under a CRC32 checked on load (the config, which
// sets the model's shape and the evaluation, included), so a damaged byte
// anywhere is LR_ERR_CORRUPT naming the file, the byte offset and the
// section, never a silently different result. Version 1 files (same layout,
// bytes 12 and 56 reserved: their config was under no checksum) are refused
// with a HINT to re-train: nothing could tell a damaged config from the one
// the model was trained with.
// Sharded training checkpoints (with optimizer state) are a separate format.
#ifndef LR_MODELFILE_H
#define LR_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

// Streaming writer through io/afile.h: begin creates path.tmp with the
// header and config; append takes the payload in order (the n_dense dense
// floats, then the n_rows x D item rows), compressing as it goes, so no
// whole-table buffer is needed; commit checks the count, fills in the
// header, fsyncs, renames to path and fsyncs its directory (w freed either
// way); abandon removes path.tmp and frees w (accepts NULL). A failure
// leaves no path.tmp and nothing partial under path. LR_ERR_IO naming the
// failed operation and the path, LR_ERR_NOMEM, LR_ERR_ARG. Local.
typedef struct lr_modelfile_writer lr_modelfile_writer;
int modelfile_begin(lr_modelfile_writer **w, const char *path, const char *config_json,
                    size_t n_dense, int64_t n_rows, int64_t D);
int modelfile_append(lr_modelfile_writer *w, const float *x, size_t n);
int modelfile_commit(lr_modelfile_writer *w);
void modelfile_abandon(lr_modelfile_writer *w);

// Read the header and config JSON (caller frees *config_json with free()),
// checking both CRCs. LR_ERR_IO (also: path is not a regular file) /
// LR_ERR_CORRUPT with the path, byte offset and reason.
int modelfile_read_config(const char *path, char **config_json);

// Read the dense parameters (n_dense floats) and item rows
// [row_lo, row_lo + row_count) (into items, (row_count, D)) of a file whose
// shape must be n_dense, n_rows x D (LR_ERR_CORRUPT naming expected vs found
// otherwise). Streams the payload: memory beyond the caller's buffers is a
// few hundred KiB. The payload's CRC32 and the frame's checksum are
// verified (the destinations must not be used after a failure). Local.
int modelfile_read(const char *path, float *dense, size_t n_dense, float *items, int64_t row_lo,
                   int64_t row_count, int64_t n_rows, int64_t D);

#endif
