// modelfile.h: a trained model on disk (out_dir/model.lrm), for `eval
// --model` and `recommend`. Single file, written atomically:
//   1. header, 64 bytes little-endian: magic "LRMODEL1", u32 version (1),
//      u32 reserved, u64 config JSON bytes, u64 dense floats, u64 item rows,
//      u64 D, u64 payload (compressed) bytes, u32 reserved, u32 CRC32 of
//      bytes 0..59;
//   2. the config JSON text (its bytes as counted);
//   3. one zstd frame (with content checksum) of the dense parameters
//      followed by the item rows ((rows, D) floats, row 0 = padding).
// Sharded training checkpoints (with optimizer state) are a separate format.
#ifndef LR_MODELFILE_H
#define LR_MODELFILE_H

#include <stddef.h>
#include <stdint.h>

int modelfile_write(const char *path, const char *config_json, const float *dense,
                    size_t n_dense, const float *items, int64_t n_rows, int64_t D);

// Read the header and config JSON (caller frees *config_json with free()).
// LR_ERR_IO / LR_ERR_CORRUPT with the path and reason.
int modelfile_read_config(const char *path, char **config_json);

// Read the parameters into caller buffers whose sizes must match the file's
// (LR_ERR_CORRUPT naming expected vs found otherwise).
int modelfile_read(const char *path, float *dense, size_t n_dense, float *items, int64_t n_rows,
                   int64_t D);

#endif
