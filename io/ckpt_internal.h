// ckpt_internal.h: helpers shared by io/ckpt*.c (names end in '_'; not an
// API for other folders).
#ifndef LR_CKPT_INTERNAL_H
#define LR_CKPT_INTERNAL_H

#include <stddef.h> // size_t
#include <stdint.h> // uint32_t

#include "ckpt.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint files store little-endian floats by memcpy: add byte swapping for this target"
#endif

#define CKPT_HINT_DAMAGED                                                                          \
  "\nHINT: this checkpoint is damaged or incomplete; resume falls back to an older one "           \
  "(`linrec ckpt verify` lists which), or start afresh"

#define CKPT_HINT_SPACE "\nHINT: free space (or quota) where checkpoints are written, or keep fewer"

// The HINT for a failed write with errno e: CKPT_HINT_SPACE when the disk
// or a quota or file-size limit is full, else "". Cannot fail.
const char *ckpt_write_hint_(int e);

// dir + "/" + name into out[size]. LR_ERR_ARG if it does not fit.
int ckpt_path_(char *out, size_t size, const char *dir, const char *name);

// 1 if name is a plain file name we accept in a checkpoint directory:
// 1..CKPT_NAME_MAX-1 bytes of [A-Za-z0-9._-], not starting with '.'. Cannot fail.
int ckpt_name_ok_(const char *name);

// zlib crc32 continued from c over n bytes (any size). Cannot fail.
uint32_t ckpt_crc32_(uint32_t c, const void *p, size_t n);

// fsync a directory (through the fault hooks); EINVAL (file systems that
// cannot) is not an error. LR_ERR_IO naming the directory.
int ckpt_fsync_dir_(const char *dir);

// Write buf[0..n) as dir/name durably and atomically: name.tmp, fsync,
// close, rename, fsync dir. On failure name.tmp is removed; so is name when
// only the final directory fsync failed and undo_rename is set (its
// durability is then unknown), else that complete new file stays.
// LR_ERR_IO naming the failed call, LR_ERR_ARG.
int ckpt_commit_file_(const char *dir, const char *name, const void *buf, size_t n,
                      int undo_rename);

// Seconds on a monotonic clock. Cannot fail.
double ckpt_now_(void);

#endif
