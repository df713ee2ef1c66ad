// test_fault.h: a fault sweep over one writer of io/ (io/fault.h, STYLE 23),
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

// Entries of directory dir whose names contain `part` (0 if dir cannot be
// listed). Cannot fail.
int t_count_names(const char *dir, const char *part);

#endif
