// eval.h: evaluation of a scorer (the trained encoder or the popularity
// baseline) on the leave-one-out splits (DESIGN §1 Evaluation), and top-K
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
#include "itemtab.h"
#include "metrics.h"
#include "model.h"

typedef struct {
  lr_model *model;       // the encoder, or NULL for the popularity baseline
  const lr_itemtab *tab; // item rows (with model)
  const float *pop;      // (I+1) training interaction counts (always set)
} lr_scorer;

// Training interaction counts per item (I+1 floats, [0] = 0) for the pop
// baseline and pop100 sampling; caller frees with lr_free. NULL on OOM.
float *eval_popularity(const lr_dataset *ds);

// Metrics of split over all evaluable users of ds; each rank ranks a share
// of the users and the sums are reduced. Collective. LR_ERR_NOMEM/LR_ERR_MPI.
int eval_split(lr_metrics *out, const lr_scorer *sc, const lr_dataset *ds, lr_split split,
               const lr_config *c);

// Top-K items for each of n users given their whole history (predicting the
// next interaction): items (n,K) remapped ids best first, scores (n,K).
// History items are skipped when exclude_history. LR_ERR_NOMEM on failure.
int eval_topk(int32_t *items, float *scores, const lr_scorer *sc, const lr_dataset *ds,
              const int64_t *users, int64_t n, int K, int exclude_history, const lr_config *c);

#endif
