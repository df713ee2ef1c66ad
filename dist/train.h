// train.h: the training driver (dist/README.md, "One training step" and "The
// run"): epochs of shuffled examples, the global batch split across ranks,
// forward/backward in micro-batches, gradients summed over ranks, Adam,
// per-epoch validation with early stopping and best-model tracking, test
// metrics of the best model, metrics.jsonl and the progress line;
// checkpoints (dist/README.md, "Checkpoints"): periodic ones written in the
// background, one on a stop request (SIGTERM/SIGUSR1, caught in launch/),
// and resuming from one.
#ifndef LR_TRAIN_H
#define LR_TRAIN_H

#include <signal.h> // sig_atomic_t

#include "config.h"
#include "metrics.h"

// How to run beyond the config.
typedef struct {
  // NULL: a fresh run (refused if the checkpoint directory already holds
  // checkpoints). "latest": the newest valid checkpoint under
  // train.checkpoint.dir (none: a fresh start). Else a checkpoint directory,
  // which must verify.
  const char *resume;
  // NULL, or a flag an asynchronous signal handler sets to its signal number:
  // at the next step boundary all ranks agree on it, write a checkpoint and
  // return with lr_train_result.stop_signal set.
  const volatile sig_atomic_t *stop;
  // Resuming onto training data whose fingerprint differs from the one the
  // checkpoint records is a configuration error unless this is set
  // (`--allow-data-change`): then training continues on the new data.
  int allow_data_change;
} lr_train_opts;

typedef struct {
  lr_metrics valid; // best validation metrics
  lr_metrics test;  // test metrics of the best model
  int best_epoch;   // 0 when no epoch ran
  int64_t steps;    // optimizer steps done in all (resumed ones included)
  double seconds;   // of this process
  int64_t resumed_step; // the step resumed from (0: a fresh run)
  int stop_signal;  // != 0: stopped on this signal after a checkpoint; no
                    // test metrics, no model file
  char checkpoint[LR_PATH_MAX + 128]; // the last committed checkpoint ("" none)
  uint64_t state_hash; // of the final training state (parameters and Adam moments, dense and
                       // item rows), independent of the number of ranks: equal hashes mean
                       // bitwise-equal states
} lr_train_result;

// The checks of a config that need the attention registry (io/ does not
// know it): the kind exists, train.positions=all needs a causal kind.
// LR_ERR_CONFIG naming the key. Local.
int train_check_config(const lr_config *c);

// Train as c says, writing out_dir/metrics.jsonl (appended to when
// resuming) and out_dir/model.lrm (the best model). opts may be NULL.
// Collective: every rank calls it with the same config and opts.
// Errors: data/config/IO/NOMEM/MPI/CORRUPT statuses with messages.
int train_run(const lr_config *c, const char *out_dir, const lr_train_opts *opts,
              lr_train_result *res);

// `linrec bench`: the phases of bench.phase_s, in this order.
#define LR_BENCH_PHASES 8
extern const char *const LR_BENCH_PHASE_NAMES[LR_BENCH_PHASES];

typedef struct {
  int64_t steps, warmup, batch; // timed steps, untimed ones before, global batch
  int64_t full_examples;        // training examples with all N positions real
  double step_s;                // wall seconds per timed step (slowest rank)
  double seq_per_s;             // batch / step_s
  double flops_per_seq;         // model_train_flops of the config
  double gflops;                // flops_per_seq * seq_per_s / 1e9
  double sgemm_peak_gflops;     // lr_sgemm's (the kernel the model runs), measured in this
                                // run, summed over ranks
  double blas_peak_gflops;      // OpenBLAS's sgemm on the same ranks and threads, for comparison
  double bf16_peak_gflops;      // the bf16 dot-product loop on the same ranks and threads (the
                                // physical limit of bf16 products; 0 without AVX512-BF16)
  int bf16;                     // the products ran with bf16 operands (train.precision)
  double peak_rss_mib;          // largest rank's peak resident set
  double phase_s[LR_BENCH_PHASES]; // seconds per step, mean over ranks
  int table_sharded;            // the item table layout used
  int blas_threads;             // threads per rank (core/par.h team)
} lr_bench_result;

// Train c's model on c's data for bench.warmup + bench.steps optimizer steps
// without evaluation, checkpoints or files, on examples whose N positions
// are all real (so the FLOP count is exact; LR_ERR_DATA when fewer than one
// batch exist), then measure the sgemm peak of the same ranks and threads.
// Collective.
int train_bench(const lr_config *c, lr_bench_result *r);

#endif
