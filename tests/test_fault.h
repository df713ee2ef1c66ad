// test_fault.h: a fault sweep over one writer of io/ (io/fault.h; io/README.md),
// shared by the tests of the checkpoint, binary-dataset and model-file
// writers. The writer runs once unarmed to count its wrapped calls, then
// once for every call it makes with that call failing, and once for every
// write/fsync/rename in a child process that crashes there; after each run
// the test's own check says whether the files are as the writer promises.
#ifndef LR_TEST_FAULT_H
#define LR_TEST_FAULT_H

#include <stdint.h> // int64_t

#include "fault.h" // LR_FAULT_N_KINDS

typedef struct {
  const char *name; // what is written ("binary dataset"), for the check names
  // The directory the write ends in: every failed call's message names a
  // path under it, and the writer's last fsync must be of it (the rename is
  // made durable).
  const char *dir;
  int (*write)(void *arg); // write the files; a status
  // 1 if the files a failed (crashed = 0) or crashed (1) write left are as
  // promised: the old ones, or complete new ones; no temp file unless it
  // crashed. Prints why not.
  int (*after)(void *arg, int crashed);
  void (*reset)(void *arg); // put the files back as they were before the write
  void *arg;
} t_fault_target;

// Run t->write unarmed (it must succeed; calls[kind] receives the count of
// each kind of wrapped call, LR_FAULT_N_KINDS entries), then check, one
// t_check each, with t->reset after every run:
//  - failing the k-th write/fsync/rename, k = 1..calls[LR_FAULT_IO]: a clean
//    LR_ERR_IO naming the operation ("write ", "fsync ", "rename "), a path
//    under t->dir and strerror(EIO); t->after(0);
//  - failing the k-th lr_fault_malloc: LR_ERR_NOMEM "out of memory"; t->after(0);
//  - failing the last fsync: "fsync directory <t->dir>"; t->after(0);
//  - a crash (io/fault.h's LR_FAULT_CRASH, in a child) at each
//    write/fsync/rename: the child dies there; t->after(1).
void t_fault_sweep(const t_fault_target *t, int64_t calls[LR_FAULT_N_KINDS]);

// The files of a writer that replaces one file: `path`, in a directory of
// its own, holds `old` before the write and `new` after a clean one. A test
// puts it first in its target's arg and passes t_replace_after and
// t_replace_reset as the target's after and reset.
typedef struct {
  char dir[512], path[600];
  unsigned char *old, *new; // (n_old), (n_new) bytes; owned
  size_t n_old, n_new;
} t_replace;

// Create the directory dir and set r->path = dir/name (old, new: NULL).
// 1 if the directory was made. Cannot fail otherwise.
int t_replace_init(t_replace *r, const char *dir, const char *name);
// Read r->path into r->old (which = 0) or r->new (1); 1 if it could be read.
int t_replace_take(t_replace *r, int which);
// after: r->path holds exactly old or new; no temp file (a name with
// ".tmp") in the directory unless crashed. Prints why not.
int t_replace_after(void *r, int crashed);
// reset: the directory emptied, r->path := old.
void t_replace_reset(void *r);
// Free old and new. Cannot fail.
void t_replace_free(t_replace *r);

// Entries of directory dir whose names contain `part` (0 if dir cannot be
// listed). Cannot fail.
int t_count_names(const char *dir, const char *part);

#endif
