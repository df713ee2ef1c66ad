// fault.h: test-only fault injection for the write paths of io/
// (io/README.md, "Fault injection").
//
// The atomic file writer (io/afile.c: checkpoint shards, manifests and
// `latest`, binary datasets, model files) performs every write, fsync and
// rename, and those writers allocate their buffers, through the lr_fault_*
// wrappers below. Unarmed (the default, and always in production), a
// wrapper costs a counter increment and one predictable branch before
// calling the real function. Armed with
// lr_fault_set(kind, k), the k-th matching call after arming fails once:
//   LR_FAULT_WRITE   the k-th write/pwrite returns -1, errno EIO
//   LR_FAULT_FSYNC   the k-th fsync (of a file or a directory) returns -1, EIO
//   LR_FAULT_RENAME  the k-th rename returns -1, EIO (nothing renamed)
//   LR_FAULT_MALLOC  the k-th lr_fault_malloc returns NULL
//   LR_FAULT_IO      the k-th call of write, fsync or rename fails as above
//   LR_FAULT_CRASH   the process dies at the k-th write, fsync or rename, as a
//                    kill or power cut would leave the files: a write writes a
//                    random prefix of its buffer first; an fsync first truncates
//                    the file to a random length (its unsynced bytes are lost);
//                    a rename happens or not (coin flip). Then _exit(99).
// Calls after the one that failed succeed again (sqlite's "one-shot" mode).
//
// The environment variable LINREC_FAULT="kind:k" (kind one of write, fsync,
// rename, malloc, io, crash), optionally ":seed" for the crash coin flips,
// arms the same fault in any binary, read once at the first wrapped call;
// so an end-to-end test can run the real `linrec` with LINREC_FAULT=crash:7.
// A malformed value is reported once on stderr and ignored.
//
// Not thread-safe (one writer per process at a time). Not here: faults in
// MPI or in reads (damaged files are made by the tests directly).
#ifndef LR_FAULT_H
#define LR_FAULT_H

#include <stddef.h>    // size_t
#include <stdint.h>    // int64_t
#include <sys/types.h> // ssize_t, off_t

#define LR_FAULT_CRASH_EXIT 99 // the exit status of a simulated crash

typedef enum {
  LR_FAULT_NONE = 0,
  LR_FAULT_WRITE,
  LR_FAULT_FSYNC,
  LR_FAULT_RENAME,
  LR_FAULT_MALLOC,
  LR_FAULT_IO,
  LR_FAULT_CRASH,
  LR_FAULT_N_KINDS
} lr_fault_kind;

// Arm `kind` to fire at the k-th matching call from now (k >= 1), or disarm
// (LR_FAULT_NONE or k <= 0). Zeroes the call counters either way. Cannot fail.
void lr_fault_set(lr_fault_kind kind, int64_t k);

// Seed of the crash mode's random prefix lengths and coin flips. Cannot fail.
void lr_fault_seed(uint64_t seed);

// Calls of `kind` since the last lr_fault_set (LR_FAULT_IO and LR_FAULT_CRASH
// both count write + fsync + rename), armed or not: run an operation once
// unarmed to learn how many call sites a fault loop must cover. Cannot fail.
int64_t lr_fault_calls(lr_fault_kind kind);

// 1 if the armed fault has fired since the last lr_fault_set. Cannot fail.
int lr_fault_fired(void);

// (Re-)read LINREC_FAULT now (the wrappers do it once by themselves):
// 1 if it armed a fault, 0 if unset or malformed. Cannot fail.
int lr_fault_from_env(void);

// The wrappers: same contract as the libc call they stand for.
ssize_t lr_fault_write(int fd, const void *buf, size_t n);
ssize_t lr_fault_pwrite(int fd, const void *buf, size_t n, off_t off);
int lr_fault_fsync(int fd);
int lr_fault_rename(const char *from, const char *to);
void *lr_fault_malloc(size_t n);

#endif
