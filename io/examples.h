// examples.h: training examples and evaluation inputs cut from a dataset
// (io/README.md, "Examples"), and their counter-based shuffling.
//
// positions=last: every prefix of a user's training sequence is an example:
//   input = the (up to N) items before position t, target = item t, t >= 1.
// positions=all: one window per user (SASRec): input = the last N training
//   items but one, targets = the same window shifted by one; with
//   train.windows=all (positions_all = 2) the user's training targets are cut
//   into consecutive windows of N from the end (the last one as above, each
//   other ending N items before the next), so every training item is a
//   target once per epoch; examples of a user in sequence order.
// Inputs are right-padded: ids[b, 0..len-1] real, ids[b, len..N-1] = 0.
// An example id is its index in the unshuffled enumeration (user-major).
#ifndef LR_EXAMPLES_H
#define LR_EXAMPLES_H

#include <stdint.h>

#include "dataset.h"

typedef struct {
  const lr_dataset *ds; // borrowed
  int64_t N;
  int all;              // positions=all: 1 (the last window), 2 (every window)
  int64_t n_examples;
  int64_t *cum;         // (n_users+1) examples before user u
  int64_t *perm;        // (n_examples) order of the current epoch
} lr_examples;

// Number of training items of user u (leave-one-out: n-2 when n >= 3).
int64_t examples_train_len(const lr_dataset *ds, int64_t u);

// Enumerate the examples of ds (positions_all: 0 last, 1 all, 2 all with
// every window). LR_ERR_NOMEM on failure (ex zeroed).
int examples_init(lr_examples *ex, const lr_dataset *ds, int64_t N, int positions_all);
void examples_free(lr_examples *ex);

// perm = a permutation of 0..n_examples-1 that is a pure function of
// (seed, epoch) (Fisher-Yates driven by Philox). Cannot fail.
void examples_shuffle(lr_examples *ex, uint64_t seed, uint32_t epoch);

// Fill B examples perm[start .. start+B): ids (B,N), lens (B), tgt ((B) for
// last, (B,N) for all with 0 at padding), ex_ids (B). Cannot fail.
void examples_batch(const lr_examples *ex, int64_t start, int64_t B, int32_t *ids,
                    int32_t *lens, int32_t *tgt, uint64_t *ex_ids);

// The same for the B example ids exs (B) (any order). Cannot fail.
void examples_fill(const lr_examples *ex, const int64_t *exs, int64_t B, int32_t *ids,
                   int32_t *lens, int32_t *tgt, uint64_t *ex_ids);

// Input length of example e (1..N: its real positions). Cannot fail.
int64_t examples_input_len(const lr_examples *ex, int64_t e);
// The user of example e (0 <= e < n_examples). Cannot fail.
int64_t examples_user(const lr_examples *ex, int64_t e);

typedef enum { LR_SPLIT_VALID = 0, LR_SPLIT_TEST = 1 } lr_split;

// 1 if user u is evaluated (n >= 3). Cannot fail.
int examples_has_eval(const lr_dataset *ds, int64_t u);
// Evaluation input of user u for split: ids (N) right-padded with the last N
// items of the history, *len, *target; the full history is
// items[offsets[u] .. offsets[u] + hist_len). Returns hist_len.
int64_t examples_eval_input(const lr_dataset *ds, int64_t u, lr_split split, int64_t N,
                            int32_t *ids, int32_t *len, int32_t *target);

// Loss rows of examples perm[start .. start+n): n for positions=last, the sum
// of input lengths for positions=all. Cannot fail.
int64_t examples_loss_rows(const lr_examples *ex, int64_t start, int64_t n);
#endif
