// test_metrics.c: ranks with ties, skip masks and NaN scores; Recall, MRR and
// NDCG at several cutoffs on hand-computed cases.
#include "metrics.h"
#include "test_util.h"

static void test_rank(void) {
  const float s[6] = {0.5f, 0.9f, 0.5f, 0.1f, 0.5f, -2.0f};
  // target 0: one above (0.9), two tied (0.5): ties count against -> 3
  t_check(metrics_rank(s, 6, 0, NULL) == 3, "rank: ties count against the target (3)");
  t_check(metrics_rank(s, 6, 1, NULL) == 0, "rank: best score -> 0");
  t_check(metrics_rank(s, 6, 5, NULL) == 5, "rank: worst score -> n-1");
  t_check(metrics_rank(s, 6, 3, NULL) == 4, "rank: 4 above");
  const uint8_t skip[6] = {0, 1, 0, 0, 1, 0}; // skip the 0.9 and one tie
  t_check(metrics_rank(s, 6, 0, skip) == 1, "rank: skip mask removes candidates (1)");
  const uint8_t skip_t[6] = {1, 0, 0, 0, 0, 0}; // skipping the target itself changes nothing
  t_check(metrics_rank(s, 6, 0, skip_t) == 3, "rank: skip on the target is ignored");
  const uint8_t all[6] = {1, 1, 1, 1, 1, 1};
  t_check(metrics_rank(s, 6, 2, all) == 0, "rank: everything skipped -> 0");
  const float c[4] = {1, 1, 1, 1};
  t_check(metrics_rank(c, 4, 2, NULL) == 3, "rank: a constant scorer ranks last");
  const float nan_t[3] = {1.0f, NAN, 0.0f}, nan_o[3] = {NAN, 1.0f, 0.0f};
  t_check(metrics_rank(nan_t, 3, 1, NULL) == 2 && metrics_rank(nan_o, 3, 1, NULL) == 1,
          "rank: NaN scores count against the target");
  t_check(metrics_rank(s, 1, 0, NULL) == 0, "rank: single candidate -> 0");
}

static void test_values(void) {
  const int k[3] = {1, 5, 10};
  lr_metrics m;
  metrics_init(&m, k, 3);
  const int64_t ranks[5] = {0, 3, 9, 10, 1};
  for (int i = 0; i < 5; i++)
    metrics_add(&m, ranks[i]);
  metrics_finish(&m);
  // hand values: ranks < 1: {0}; < 5: {0,3,1}; < 10: {0,3,9,1}
  const double l3 = 1.0 / log2(3.0), l5 = 1.0 / log2(5.0), l11 = 1.0 / log2(11.0);
  const double recall[3] = {0.2, 0.6, 0.8};
  const double mrr[3] = {0.2, (1 + 0.25 + 0.5) / 5, (1 + 0.25 + 0.1 + 0.5) / 5};
  const double ndcg[3] = {0.2, (1 + l5 + l3) / 5, (1 + l5 + l11 + l3) / 5};
  t_check(m.n == 5 && m.nk == 3 && m.k[2] == 10, "metrics: counts and cutoffs kept");
  t_close_d(m.recall, recall, 3, 1e-15, "metrics: Recall@{1,5,10}");
  t_close_d(m.mrr, mrr, 3, 1e-15, "metrics: MRR@{1,5,10}");
  t_close_d(m.ndcg, ndcg, 3, 1e-15, "metrics: NDCG@{1,5,10}");
  // literal values: NDCG of rank 1 is 1/log2(3) = 0.6309..., of rank 9 is 1/log2(11)
  const double lit[2] = {0.63092975357145743, 0.28906482631788782};
  const double got[2] = {l3, l11};
  t_close_d(got, lit, 2, 1e-15, "metrics: 1/log2(3), 1/log2(11)");

  // single user at rank 0: all metrics 1; at rank K: all 0 at that K
  const int k10[1] = {10};
  metrics_init(&m, k10, 1);
  metrics_add(&m, 0);
  metrics_finish(&m);
  t_check(m.recall[0] == 1.0 && m.mrr[0] == 1.0 && m.ndcg[0] == 1.0, "metrics: rank 0 -> 1");
  metrics_init(&m, k10, 1);
  metrics_add(&m, 10);
  metrics_finish(&m);
  t_check(m.recall[0] == 0.0 && m.mrr[0] == 0.0 && m.ndcg[0] == 0.0, "metrics: rank K -> 0");

  // nobody counted: finish leaves zeros (no 0/0)
  metrics_init(&m, k, 3);
  metrics_finish(&m);
  t_check(m.n == 0 && m.recall[1] == 0.0 && m.ndcg[2] == 0.0, "metrics: n = 0 stays 0");
}

int main(void) {
  test_rank();
  test_values();
  return t_done();
}
