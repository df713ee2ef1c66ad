// train.h: the training driver (DESIGN §2 data flow): epochs of shuffled
// examples, the global batch split across ranks, forward/backward in
// micro-batches, gradients summed over ranks, Adam, per-epoch validation
// with early stopping and best-model tracking, test metrics of the best
// model, metrics.jsonl and the progress line.
#ifndef LR_TRAIN_H
#define LR_TRAIN_H

#include "config.h"
#include "metrics.h"

typedef struct {
  lr_metrics valid; // best validation metrics
  lr_metrics test;  // test metrics of the best model
  int best_epoch;   // 0 when no epoch ran
  int64_t steps;
  double seconds;
} lr_train_result;

// Train as c says, writing out_dir/metrics.jsonl and out_dir/model.lrm (the
// best model). Collective: every rank calls it with the same config.
// Errors: data/config/IO/NOMEM/MPI statuses with messages.
int train_run(const lr_config *c, const char *out_dir, lr_train_result *res);

#endif
