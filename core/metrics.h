// metrics.h: ranking metrics at a list of cutoffs K (DESIGN §1 Evaluation).
// rank is 0-based: the number of candidates scored strictly above the target
// plus those tied with it (ties count against the model, so a constant scorer
// is not rewarded). Recall@K (= hit rate for one target), MRR@K and NDCG@K.
#ifndef LR_METRICS_H
#define LR_METRICS_H

#include <stdint.h>

#define LR_MAX_K 8

typedef struct {
  int nk;
  int k[LR_MAX_K];
  double recall[LR_MAX_K], mrr[LR_MAX_K], ndcg[LR_MAX_K]; // sums until metrics_finish
  int64_t n;                                              // users counted
} lr_metrics;

void metrics_init(lr_metrics *m, const int *k, int nk);
void metrics_add(lr_metrics *m, int64_t rank);
// Sums -> means (no-op when n == 0).
void metrics_finish(lr_metrics *m);

// Rank of the target among n scores: count of j != target with
// s[j] > s[target] or (s[j] == s[target]), skipping j where skip[j] != 0
// (skip may be NULL). Cannot fail.
int64_t metrics_rank(const float *s, int64_t n, int64_t target, const uint8_t *skip);

#endif
