// metrics.c: Recall@K, MRR@K and NDCG@K from 0-based ranks (metrics.h):
//   Recall@K = [rank < K],  MRR@K = [rank < K] / (rank + 1),
//   NDCG@K   = [rank < K] / log2(rank + 2)   (one relevant item: IDCG = 1).
#include "metrics.h"

#include <math.h>   // log2

#include "lr.h" // LR_ASSERT

void metrics_init(lr_metrics *m, const int *k, int nk) {
  LR_ASSERT(nk >= 1 && nk <= LR_MAX_K);
  *m = (lr_metrics){0};
  m->nk = nk;
  for (int i = 0; i < nk; i++) {
    LR_ASSERT(k[i] >= 1);
    m->k[i] = k[i];
  }
}

void metrics_add(lr_metrics *m, int64_t rank) {
  LR_ASSERT(rank >= 0);
  for (int i = 0; i < m->nk; i++) {
    if (rank >= m->k[i]) continue;
    (void)xsum_add_d(&m->sum[3 * i], 1.0);
    (void)xsum_add_d(&m->sum[3 * i + 1], 1.0 / (double)(rank + 1));
    (void)xsum_add_d(&m->sum[3 * i + 2], 1.0 / log2((double)rank + 2.0));
  }
  m->n++;
}

void metrics_finish(lr_metrics *m) {
  const double inv = m->n > 0 ? 1.0 / (double)m->n : 0.0;
  for (int i = 0; i < m->nk; i++) {
    m->recall[i] = xsum_value(m->sum[3 * i]) * inv;
    m->mrr[i] = xsum_value(m->sum[3 * i + 1]) * inv;
    m->ndcg[i] = xsum_value(m->sum[3 * i + 2]) * inv;
  }
}

int64_t metrics_rank(const float *s, int64_t n, int64_t target, const uint8_t *skip) {
  LR_ASSERT(target >= 0 && target < n);
  const float st = s[target];
  int64_t r = 0;
  // !(s_j < s_t): above, tied, or a NaN on either side counts against the target
  if (!skip) {
    for (int64_t j = 0; j < n; j++)
      r += !(s[j] < st);
    return r - 1; // the target itself always counted (tied with itself, or NaN)
  }
  for (int64_t j = 0; j < n; j++)
    r += !skip[j] && j != target && !(s[j] < st);
  return r;
}
