// mpitest_emb.c: dist/emb_shard.h on every world size. Each rank draws its
// own batch of ids (skewed, so with duplicates, plus padding 0, a different
// length per rank, one rank sometimes empty) and a second array of
// "negatives"; every rank can regenerate every other rank's batch from the
// shared seeds, so every rank computes the dense reference of the whole step.
// Catalogs: I+1 = 61 rows (not divisible by 2, 3, 4), 3 items (P = 4: rank 0
// owns only the padding row), 2 items (P = 4: rank 3 owns no row at all),
// and 5000 items with 3000 ids per rank (hash and counting sort under load).
// Checked: lookup rows equal the dense table bitwise, idx/idx2 point at
// them, U is the number of distinct ids; push_grad over two micro-batches
// gives the owners' gradient rows of the dense reference (sum over all
// ranks, in double) within 1e-6 relative; the touched-row list is exactly
// the owned ids seen; zero_grad clears; an invalid id on one rank fails
// every rank with LR_ERR_ARG and the plan stays usable; byte counts
// balance across ranks.
#include <math.h>   // fabs
#include <stdio.h>  // printf
#include <stdlib.h> // calloc, free
#include <string.h> // memcmp, memset

#include "comm.h"
#include "emb_shard.h"
#include "itemtab.h"
#include "layers.h" // embedding_backward
#include "lr.h"
#include "mpi_harness.h" // mt_init, mt_check, mt_done
#include "rng.h"

// ---- deterministic batches ------------------------------------------------------------

#define SEED 20240527u

// Ids of rank q, micro-batch `step`: n_q ids, ~15% padding, skewed towards
// small ids (duplicates); which = 0 batch, 1 negatives (uniform, no padding).
static int64_t batch_len(int q, int step, int which, int64_t nmax) {
  if (which == 1) return nmax / 4 + q;
  if (q == 1 && step == 1) return 0; // an empty micro-batch on one rank
  return nmax / 2 + (q * 7 + step * 3) % (nmax / 2 + 1);
}

static void batch_ids(int32_t *ids, int64_t n, int q, int step, int which, int64_t I) {
  for (int64_t i = 0; i < n; i++) {
    lr_rng4 r = lr_philox(SEED, 100 + which, (uint32_t)q, (uint32_t)step, (uint32_t)i, 0);
    if (which == 0 && lr_u01(r.v[0]) < 0.15f) {
      ids[i] = 0;
      continue;
    }
    const double u = lr_u01d(r.v[1], r.v[2]);
    ids[i] = which == 0 ? (int32_t)(1 + (int64_t)(u * u * (double)I))
                        : (int32_t)(1 + lr_below(r.v[2], r.v[3], (uint64_t)I));
    if (ids[i] > I) ids[i] = (int32_t)I;
  }
}

// Output gradient of position i of (q, step, which): (n, D).
static void batch_dout(float *dout, int64_t n, int64_t D, int q, int step, int which) {
  for (int64_t i = 0; i < n * D; i++) {
    lr_rng4 r = lr_philox(SEED, 200 + which, (uint32_t)q, (uint32_t)step, (uint32_t)i, 0);
    dout[i] = 2.0f * lr_u01(r.v[0]) - 1.0f;
  }
}

// ---- one catalog ------------------------------------------------------------------------

typedef struct {
  int64_t I, D, nmax; // nmax: ids per array at most (batch), lookups take n + n2
  const char *name;
} cat_cfg;

static void test_catalog(cat_cfg c) {
  const int P = dist_size(), me = dist_rank();
  const int64_t n_rows = c.I + 1, D = c.D, cap = c.nmax + c.nmax / 4 + P;
  emb_shard_plan p;
  lr_itemtab tab, full;
  memset(&tab, 0, sizeof tab);
  memset(&full, 0, sizeof full);
  int rc = emb_shard_init(&p, n_rows, D, cap);
  mt_check(rc == LR_OK, "%s: emb_shard_init (rows [%lld, %lld) here)", c.name, (long long)p.lo,
           (long long)p.hi);
  if (rc != LR_OK) return;
  rc = itemtab_init(&tab, p.lo, p.hi, D, SEED);
  rc |= itemtab_init(&full, 0, n_rows, D, SEED);
  LR_ASSERT(rc == LR_OK);
  int32_t *ids = calloc((size_t)cap, 4), *ids2 = calloc((size_t)cap, 4);
  int32_t *idx = calloc((size_t)cap, 4), *idx2 = calloc((size_t)cap, 4);
  float *rows = calloc((size_t)(cap * D), 4);
  lr_xs *drows = calloc((size_t)(cap * D), sizeof(lr_xs));
  float *dout = calloc((size_t)(cap * D), 4);
  lr_xs *ref_g = calloc((size_t)(n_rows * D), sizeof(lr_xs));
  uint8_t *seen = calloc((size_t)n_rows, 1), *seen_any = calloc((size_t)n_rows, 1);

  int ok_rows = 1, ok_idx = 1, ok_U = 1;
  for (int step = 0; step < 2; step++) {
    const int64_t n = batch_len(me, step, 0, c.nmax), n2 = batch_len(me, step, 1, c.nmax);
    batch_ids(ids, n, me, step, 0, c.I);
    batch_ids(ids2, n2, me, step, 1, c.I);
    int64_t U = -1;
    rc = emb_shard_lookup(&p, rows, idx, idx2, &U, ids, n, ids2, n2, &tab);
    if (rc != LR_OK) {
      printf("[rank %d] lookup: %s\n", me, lr_error_msg());
      ok_rows = 0;
      break;
    }
    // rows bitwise equal the dense table; idx -1 exactly at padding
    memset(seen, 0, (size_t)n_rows);
    int64_t distinct = 0;
    for (int a = 0; a < 2; a++) {
      const int32_t *id = a ? ids2 : ids, *ix = a ? idx2 : idx;
      for (int64_t i = 0; i < (a ? n2 : n); i++) {
        if (id[i] == 0) {
          ok_idx &= ix[i] == -1;
          continue;
        }
        if (!seen[id[i]]) seen[id[i]] = 1, distinct++;
        if (ix[i] < 0 || ix[i] >= U) {
          ok_idx = 0;
          continue;
        }
        ok_idx &= p.uniq[ix[i]] == id[i];
        ok_rows &= memcmp(rows + (size_t)ix[i] * (size_t)D, full.w + (size_t)id[i] * (size_t)D,
                          (size_t)D * sizeof(float)) == 0;
      }
    }
    ok_U &= U == distinct && p.n_distinct == U;
    // gradient: embedding_backward of a random dout into drows, for both arrays
    memset(drows, 0, (size_t)(U * D) * sizeof(lr_xs));
    batch_dout(dout, n, D, me, step, 0);
    for (int64_t i = 0; i < n; i++)
      if (idx[i] >= 0) xsum_add(drows + (size_t)idx[i] * (size_t)D, dout + i * D, D);
    batch_dout(dout, n2, D, me, step, 1);
    for (int64_t i = 0; i < n2; i++)
      if (idx2[i] >= 0) xsum_add(drows + (size_t)idx2[i] * (size_t)D, dout + i * D, D);
    rc = emb_shard_push_grad(&p, &tab, drows);
    if (rc != LR_OK) {
      printf("[rank %d] push_grad: %s\n", me, lr_error_msg());
      ok_rows = 0;
      break;
    }
    // dense reference of every rank's contribution, from the shared seeds
    for (int q = 0; q < P; q++)
      for (int a = 0; a < 2; a++) {
        const int64_t nq = batch_len(q, step, a, c.nmax);
        batch_ids(ids, nq, q, step, a, c.I);
        batch_dout(dout, nq, D, q, step, a);
        for (int64_t i = 0; i < nq; i++) {
          if (!ids[i]) continue;
          seen_any[ids[i]] = 1;
          xsum_add(ref_g + ids[i] * D, dout + i * D, D);
        }
      }
  }
  mt_check(ok_rows, "%s: lookup rows == dense table (bitwise), two micro-batches", c.name);
  mt_check(ok_idx, "%s: idx/idx2 point at the right rows, -1 at padding", c.name);
  mt_check(ok_U, "%s: U = number of distinct nonzero ids", c.name);

  // owners' gradient rows against the dense reference: exact sums, so bitwise
  const int64_t lo = p.lo, nr = p.hi - p.lo;
  int same = memcmp(tab.gx, ref_g + lo * D, (size_t)(nr * D) * sizeof(lr_xs)) == 0;
  mt_check(same, "%s: push_grad: owners' rows == sum over ranks (dense ref), bitwise", c.name);
  int pad_zero = 1;
  if (lo == 0)
    for (int64_t j = 0; j < D; j++)
      pad_zero &= xsum_is_zero(tab.gx[j]) && tab.w[j] == 0.0f;
  mt_check(pad_zero, "%s: padding row 0 gets no gradient and stays zero", c.name);

  // touched rows == owned ids seen by any rank, distinct
  int64_t nt = 0;
  const int64_t *t = emb_shard_touched(&p, &nt);
  int ok_t = 1;
  uint8_t *hit = calloc((size_t)nr + 1, 1);
  for (int64_t i = 0; i < nt; i++) {
    if (t[i] < 0 || t[i] >= nr || hit[t[i]] || !seen_any[lo + t[i]])
      ok_t = 0;
    else
      hit[t[i]] = 1;
  }
  for (int64_t l = 0; l < nr; l++)
    ok_t &= hit[l] == seen_any[lo + l];
  free(hit);
  mt_check(ok_t, "%s: touched rows = distinct owned ids of all ranks (%lld here)", c.name,
           (long long)nt);
  emb_shard_zero_grad(&p, &tab);
  int ok_z = emb_shard_touched(&p, &nt) != NULL && nt == 0;
  for (int64_t i = 0; i < nr * D; i++)
    ok_z &= tab.g[i] == 0.0f && xsum_is_zero(tab.gx[i]);
  mt_check(ok_z, "%s: zero_grad clears the gradient and the list", c.name);

  // an invalid id on the last rank: every rank fails with LR_ERR_ARG, no hang
  ids[0] = me == P - 1 ? (int32_t)n_rows : 1;
  rc = emb_shard_lookup(&p, rows, idx, NULL, NULL, ids, 1, NULL, 0, &tab);
  int ok_e = rc == LR_ERR_ARG && p.n_distinct == 0;
  if (me == P - 1) ok_e &= strstr(lr_error_msg(), "outside") != NULL;
  lr_error_clear();
  // then the plan still works (one id per rank, rank-dependent)
  ids[0] = (int32_t)(1 + me % c.I);
  rc = emb_shard_lookup(&p, rows, idx, NULL, NULL, ids, 1, NULL, 0, &tab);
  ok_e &= rc == LR_OK && idx[0] == 0 && memcmp(rows, full.w + ids[0] * D, (size_t)D * 4) == 0;
  mt_check(ok_e, "%s: an invalid id on rank %d fails every rank (LR_ERR_ARG), plan reusable",
           c.name, P - 1);

  // bytes: what the ranks send equals what they receive
  int64_t b[4] = {p.lookup_stats.bytes_sent, p.lookup_stats.bytes_recv, p.push_stats.bytes_sent,
                  p.push_stats.bytes_recv};
  rc = dist_allreduce_sum_i64(b, 4);
  mt_check(rc == LR_OK && b[0] == b[1] && b[2] == b[3] && (P > 1 || b[0] == 0),
           "%s: bytes sent == bytes received over all ranks (lookup %lld, push %lld)", c.name,
           (long long)b[0], (long long)b[2]);

  free(ids), free(ids2), free(idx), free(idx2), free(rows), free(drows), free(dout);
  free(ref_g), free(seen), free(seen_any);
  itemtab_free(&tab);
  itemtab_free(&full);
  emb_shard_free(&p);
}

// Traffic of one lookup + push for a sample configuration (printed for the record).
static void sample_traffic(void) {
  const int P = dist_size(), me = dist_rank();
  const int64_t I = 3706, D = 64, n = 64 * 200; // ML-1M items, micro-batch 64 x N 200
  emb_shard_plan p;
  lr_itemtab tab;
  int rc = emb_shard_init(&p, I + 1, D, n);
  rc |= itemtab_init(&tab, p.lo, p.hi, D, SEED);
  int32_t *ids = calloc((size_t)n, 4), *idx = calloc((size_t)n, 4);
  float *rows = calloc((size_t)(n * D), 4);
  batch_ids(ids, n, me, 0, 0, I);
  int64_t U = 0;
  rc |= emb_shard_lookup(&p, rows, idx, NULL, &U, ids, n, NULL, 0, &tab);
  lr_xs *xrows = calloc((size_t)(n * D), sizeof(lr_xs));
  rc |= emb_shard_push_grad(&p, &tab, xrows);
  free(xrows);
  double v[5] = {(double)U, (double)p.lookup_stats.bytes_sent, (double)p.lookup_stats.bytes_recv,
                 (double)p.push_stats.bytes_sent, p.lookup_stats.seconds + p.push_stats.seconds};
  rc |= dist_allreduce_max_d(v, 5);
  dist_log0("sample I=%lld D=%lld, %lld ids/rank, P=%d: max over ranks U=%.0f, lookup sent %.0f "
            "recv %.0f bytes, push sent %.0f bytes, %.2f ms\n",
            (long long)I, (long long)D, (long long)n, P, v[0], v[1], v[2], v[3], v[4] * 1e3);
  mt_check(rc == LR_OK, "sample traffic run");
  free(ids), free(idx), free(rows);
  itemtab_free(&tab);
  emb_shard_free(&p);
}

int main(int argc, char **argv) {
  if (mt_init(&argc, &argv)) return 1;
  test_catalog((cat_cfg){60, 7, 40, "I=60 D=7"});
  test_catalog((cat_cfg){3, 4, 12, "I=3 D=4"});
  test_catalog((cat_cfg){2, 5, 9, "I=2 D=5"});
  test_catalog((cat_cfg){5000, 16, 3000, "I=5000 D=16"});
  sample_traffic();
  return mt_done("mpitest_emb");
}
