// eval.h: evaluation of a scorer (the trained encoder or the popularity
// baseline) on the leave-one-out splits (dist/README.md, "Evaluation"), and top-K
// recommendation.
//
// Full mode ranks the target against every item 1..I (optionally skipping the
// user's history items other than the target); uni100/pop100 rank it against
// 100 sampled items the user never interacted with (uniform, or by training
// popularity), drawn from a counter-based stream keyed by (seed, user, split)
// so every evaluation of a run uses the same negatives. Ranks count ties
// against the model (metrics.h).
#ifndef LR_EVAL_H
#define LR_EVAL_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "examples.h"
#include "metrics.h"
#include "model.h"
#include "state.h"
#include "table.h"

typedef struct {
  lr_state *st;            // the model's state (state.h), or NULL for the popularity baseline
  lr_model *model;         // &st->model (NULL: popularity)
  lr_table *table;         // &st->table: item rows, sharded or replicated
  const float *pop;        // (I+1) training interaction counts (always set)
  int64_t user_lo, user_hi; // users this rank evaluates (user_hi clamped to n_users);
                            // all ranks together: every user once
} lr_scorer;

// The scorer of state s (NULL: the popularity baseline) with popularity pop:
// this rank evaluates the users state.h's split gives it (with s = NULL,
// shard_range's cut of n_users). Cannot fail.
lr_scorer eval_scorer(lr_state *s, const float *pop, int64_t n_users);

// Training interaction counts per item (I+1 floats, [0] = 0) for the pop
// baseline and pop100 sampling; caller frees with lr_free. NULL on OOM.
float *eval_popularity(const lr_dataset *ds);

// Metrics of split over all evaluable users of ds; each rank ranks its users
// [user_lo, user_hi) and the sums are reduced. With a sharded table the
// hidden states of every rank's batch are gathered, each rank scores them
// against its own rows, and the counts of better-scored items are summed, so
// the result equals the single-rank one. Collective. LR_ERR_NOMEM/LR_ERR_MPI.
int eval_split(lr_metrics *out, const lr_scorer *sc, const lr_dataset *ds, lr_split split,
               const lr_config *c);

// Top-K items for each of n users given their whole history (predicting the
// next interaction): items (n,K) remapped ids best first, scores (n,K).
// History items are skipped when exclude_history. Needs a replicated (or
// single-rank) table. LR_ERR_NOMEM on failure. Local.
int eval_topk(int32_t *items, float *scores, const lr_scorer *sc, const lr_dataset *ds,
              const int64_t *users, int64_t n, int K, int exclude_history, const lr_config *c);
// The same, also copying each user's hidden state (the final layer's output
// at the last position, whose dot product with an item row is the item's
// score) into hidden (n, model.d) when not NULL (a model scorer only).
// row_users (NULL: users) gives the state's user index of each input for
// the architecture's per-user rows (model.arch=ram's users table): ad-hoc
// histories in a dataset of their own use a known user's row.
int eval_topk_hidden(int32_t *items, float *scores, float *hidden, const lr_scorer *sc,
                     const lr_dataset *ds, const int64_t *users, const int64_t *row_users,
                     int64_t n, int K, int exclude_history, const lr_config *c);

// Top-K of one hidden state h (D) over a whole item table (rows, D) (row 0
// the padding, never ranked), as eval_topk_hidden ranks (the same scores,
// bits and order): items (K) best first, scores (K); items v with skip[v]
// != 0 are left out (skip (rows) may be NULL). tile: EVAL_ONE_TILE floats of
// scratch. Local, cannot fail.
#define EVAL_ONE_TILE 4096
void eval_topk_one(int32_t *items, float *scores, const float *table, int64_t rows, int64_t D,
                   const float *h, const uint8_t *skip, int K, float *tile);

#endif
