// metrics.h: ranking metrics at a list of cutoffs K (core/README.md, "Losses,
// optimizer, metrics"; the protocol: dist/README.md, "Evaluation").
// rank is 0-based: the number of candidates scored strictly above the target
// plus those tied with it (ties count against the model, so a constant scorer
// is not rewarded). Recall@K (= hit rate for one target), MRR@K and NDCG@K.
#ifndef LR_METRICS_H
#define LR_METRICS_H

#include <stdint.h>

#include "xsum.h"

#define LR_MAX_K 8

typedef struct {
  int nk;
  int k[LR_MAX_K];
  double recall[LR_MAX_K], mrr[LR_MAX_K], ndcg[LR_MAX_K]; // means, after metrics_finish
  lr_xs sum[3 * LR_MAX_K]; // exact sums of recall, mrr, ndcg of cutoff i at 3i, 3i+1, 3i+2
  int64_t n;               // users counted
} lr_metrics;

// Zero the sums for the cutoffs k[0..nk-1] (1 <= nk <= LR_MAX_K, k >= 1:
// asserted, the config validates them).
void metrics_init(lr_metrics *m, const int *k, int nk);
// Count one user whose target has 0-based rank `rank`: for each K,
// Recall += [rank < K], MRR += [rank < K]/(rank+1), NDCG += [rank < K]/log2(rank+2),
// into exact sums (xsum.h), so sums over users split any way (ranks) agree bitwise.
void metrics_add(lr_metrics *m, int64_t rank);
// The exact sums -> the means recall, mrr, ndcg (0 when n == 0). Call once.
void metrics_finish(lr_metrics *m);

// Rank of the target among n scores: count of j != target with
// s[j] > s[target] or (s[j] == s[target]), skipping j where skip[j] != 0
// (skip may be NULL). A NaN on either side also counts against the target,
// so a diverged model ranks last instead of first. Cannot fail.
int64_t metrics_rank(const float *s, int64_t n, int64_t target, const uint8_t *skip);

#endif
