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

// dir + "/" + name into out[size]. LR_ERR_ARG if it does not fit.
int ckpt_path_(char *out, size_t size, const char *dir, const char *name);

// 1 if name is a plain file name we accept in a checkpoint directory:
// 1..CKPT_NAME_MAX-1 bytes of [A-Za-z0-9._-], not starting with '.'. Cannot fail.
int ckpt_name_ok_(const char *name);

// zlib crc32 continued from c over n bytes (any size). Cannot fail.
uint32_t ckpt_crc32_(uint32_t c, const void *p, size_t n);

// Seconds on a monotonic clock. Cannot fail.
double ckpt_now_(void);

#endif
