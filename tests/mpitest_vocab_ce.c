// mpitest_vocab_ce.c: dist/vocab_ce.h on every world size against two
// single-process references of the gathered problem: the float passes of
// core/loss.h over the whole catalog (the result must be BITWISE the same
// at every P: loss limbs, dhs, item-row limbs) and the naive double
// ce_forward_backward_f64 (to 1e-5 relative). Every rank regenerates every
// rank's loss rows and the whole table from the shared seeds, so every rank
// computes the references of the whole problem and checks its own part.
// Cases: uneven M_r including 0; every M_r = 0; catalogs of one block (some
// ranks own no row) and of many; examples of several rows; a logits tile of
// one block and row chunks smaller than M_all; large logits; evaluation
// (dhs NULL). Bad arguments on one rank (target out of range, differing
// coef, mixed dhs NULL) fail every rank with LR_ERR_ARG. Byte counts
// balance across ranks.
#include <math.h>   // fabs
#include <stdio.h>  // printf
#include <stdlib.h> // calloc, free
#include <string.h> // memset

#include "comm.h"
#include "loss.h" // ce_forward_backward_f64, ce_scratch_elems
#include "lr.h"
#include "mpi_harness.h" // mt_init, mt_check, mt_close, mt_done
#include "rng.h"
#include "shard.h"
#include "test_util.h" // t_fill_f
#include "vocab_ce.h"
#include "xsum.h"

// max |a - b| over n, divided by max |ref| over the whole reference (nref).
static double rel_err(const float *a, const double *b, int64_t n, const double *ref, int64_t nref) {
  double md = 0, mr = 0;
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)a[i] - b[i]);
    if (!(d <= md)) md = d;
  }
  for (int64_t i = 0; i < nref; i++)
    if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
  return mr > 0 ? md / mr : md;
}

// ---- the problem of every rank, from shared seeds ----------------------------------------

#define SEED 777u
// Gradients are added onto this value and it is subtracted before the
// comparison with the double reference (the bitwise checks use a zero start).
#define PREFILL 1e-4f

typedef struct {
  const char *name;
  int64_t I, D, tile, rchunk;
  int64_t m[4]; // M_q = m[q % 4]
  int64_t rows_per_example;
  float coef;     // gradient weight of a row
  float hs_scale; // hidden-state magnitude (logit size)
} ce_case;

static int64_t rows_of(const ce_case *c, int q) { return c->m[q % 4]; }

// Rank q's rows: hidden states, targets, and examples of rows_per_example
// rows (ids distinct across ranks).
static void gen_rows(float *hs, int32_t *tgt, int32_t *grp, const ce_case *c, int q) {
  const int64_t M = rows_of(c, q);
  t_fill_f(hs, M * c->D, SEED * 1000u + (uint64_t)q, c->hs_scale);
  for (int64_t m = 0; m < M; m++) {
    lr_rng4 r = lr_philox(SEED, 300, (uint32_t)q, (uint32_t)m, 0, 0);
    tgt[m] = (int32_t)(1 + lr_below(r.v[0], r.v[1], (uint64_t)c->I));
    grp[m] = (int32_t)(q * 100000 + m / c->rows_per_example);
  }
}

// The single-process float passes over the whole catalog and all rows.
static void float_ref(lr_xs *loss, lr_xs *dhs, lr_xs *drows, const float *hs, const int32_t *tgt,
                      const int32_t *grp, const float *table, int64_t n_rows, int64_t M, int64_t D,
                      int64_t tile, int64_t rchunk, float coef) {
  tile = ce_tile_items(tile, n_rows);
  float *sc = calloc(ce_scratch_elems(rchunk, tile, D), 4);
  float *gm = calloc((size_t)M + 1, 4), *tl = calloc((size_t)M + 1, 4),
        *lse = calloc((size_t)M + 1, 4);
  lr_xs *sx = calloc((size_t)M + 1, sizeof(lr_xs));
  ce_rowmax(gm, hs, table, 0, n_rows, n_rows, M, D, tile, rchunk, sc);
  ce_sumexp(sx, tl, hs, tgt, table, gm, 0, n_rows, n_rows, M, D, tile, rchunk, sc, 0);
  ce_lse(lse, gm, sx, M);
  for (int64_t m = 0; m < M; m++)
    xsum_add_d(loss, ((double)lse[m] - (double)tl[m]));
  ce_backward(dhs, drows, hs, tgt, grp, table, lse, 0, n_rows, n_rows, M, D, tile, rchunk, coef, sc,
              0);
  free(sc), free(gm), free(tl), free(lse), free(sx);
}

static void test_case(const ce_case *c) {
  const int P = dist_size(), me = dist_rank();
  const int64_t n_rows = c->I + 1, D = c->D;
  int64_t M_all = 0, off_me = 0, max_rows = 0;
  for (int q = 0; q < P; q++) {
    if (q == me) off_me = M_all;
    M_all += rows_of(c, q);
    if (rows_of(c, q) > max_rows) max_rows = rows_of(c, q);
  }
  const int64_t M = rows_of(c, me);
  // the whole problem, on every rank
  float *table = calloc((size_t)(n_rows * D), 4);
  t_fill_f(table, n_rows * D, SEED + 1, 0.5f);
  memset(table, 0, (size_t)D * 4); // padding row
  float *hs_all = calloc((size_t)(M_all * D + 1), 4);
  int32_t *tgt_all = calloc((size_t)M_all + 1, 4), *grp_all = calloc((size_t)M_all + 1, 4);
  for (int q = 0, o = 0; q < P; o += (int)rows_of(c, q), q++)
    gen_rows(hs_all + o * D, tgt_all + o, grp_all + o, c, q);
  // reference 1: the float passes, exact sums
  lr_xs ref_loss = {0, 0, 0};
  lr_xs *ref_dhs = calloc((size_t)(M_all * D + 1), sizeof(lr_xs));
  lr_xs *ref_drows = calloc((size_t)(n_rows * D), sizeof(lr_xs));
  if (M_all > 0)
    float_ref(&ref_loss, ref_dhs, ref_drows, hs_all, tgt_all, grp_all, table, n_rows, M_all, D,
              c->tile, c->rchunk, c->coef);
  // reference 2: one process, double, mean over M_all, rescaled to coef
  double *dt = calloc((size_t)(n_rows * D), 8), *dh = calloc((size_t)(M_all * D + 1), 8);
  double *rdhs = calloc((size_t)(M_all * D + 1), 8), *rdrows = calloc((size_t)(n_rows * D), 8);
  double *scr = calloc(ce_fb_scratch_elems(M_all > 0 ? M_all : 1, c->tile, D, n_rows) + 1, 8);
  for (int64_t i = 0; i < n_rows * D; i++)
    dt[i] = table[i];
  for (int64_t i = 0; i < M_all * D; i++)
    dh[i] = hs_all[i];
  double ref_sum = 0;
  if (M_all > 0) {
    ref_sum = (double)M_all * ce_forward_backward_f64(rdhs, rdrows, dh, tgt_all, dt, n_rows, M_all,
                                                      D, c->tile, scr);
    const double k = (double)M_all * (double)c->coef;
    for (int64_t i = 0; i < M_all * D; i++)
      rdhs[i] *= k;
    for (int64_t i = 0; i < n_rows * D; i++)
      rdrows[i] *= k;
  }

  vocab_ce_plan p;
  int rc = vocab_ce_init(&p, n_rows, D, max_rows, c->tile, c->rchunk);
  mt_check(rc == LR_OK, "%s: vocab_ce_init (M=%lld here, M_all=%lld, rows [%lld, %lld))", c->name,
           (long long)M, (long long)M_all, (long long)p.lo, (long long)p.hi);
  if (rc != LR_OK) goto out;
  {
    const int64_t nr = p.hi - p.lo;
    const float *hs = hs_all + off_me * D, *rows = table + p.lo * D;
    const int32_t *tgt = tgt_all + off_me, *grp = grp_all + off_me;
    float *dhs = calloc((size_t)(M * D + 1), 4);
    lr_xs *drows = calloc((size_t)(nr * D + 1), sizeof(lr_xs)), loss = {0, 0, 0};
    uint32_t bad = 0;
    rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, M ? hs : NULL, M ? tgt : NULL,
                                   M ? grp : NULL, rows, M, c->coef);
    if (rc != LR_OK) printf("[rank %d] vocab_ce: %s\n", me, lr_error_msg());
    mt_check(rc == LR_OK && bad == 0, "%s: vocab_ce_forward_backward returns LR_OK", c->name);
    // bitwise: the single-process float passes
    lr_xs tot = loss;
    rc = dist_allreduce_xs(&tot, 1);
    int same = rc == LR_OK && xsum_eq(tot, ref_loss);
    for (int64_t i = 0; i < M * D; i++)
      same &= dhs[i] == (float)xsum_value(ref_dhs[off_me * D + i]);
    same &= !memcmp(drows, ref_drows + p.lo * D, (size_t)(nr * D) * sizeof(lr_xs));
    mt_check(same, "%s: loss, dhs and item-row gradients = one process, bitwise", c->name);
    // close to the naive double reference
    const double lsum = xsum_value(tot);
    double lerr = fabs(lsum - ref_sum) / (fabs(ref_sum) > 1e-30 ? fabs(ref_sum) : 1.0);
    mt_close(lerr, 1e-5, "%s: loss sum %.6f vs double reference %.6f", c->name, lsum, ref_sum);
    float *drf = calloc((size_t)(nr * D + 1), 4);
    for (int64_t i = 0; i < nr * D; i++)
      drf[i] = (float)xsum_value(drows[i]);
    mt_close(rel_err(dhs, rdhs + off_me * D, M * D, rdhs, M_all * D), 1e-5,
             "%s: dhs of own loss rows vs double", c->name);
    mt_close(rel_err(drf, rdrows + p.lo * D, nr * D, rdrows, n_rows * D), 1e-5,
             "%s: gradient of own item rows vs double", c->name);
    int pad = 1;
    if (p.lo == 0 && nr > 0)
      for (int64_t j = 0; j < D; j++)
        pad &= xsum_is_zero(drows[j]);
    mt_check(pad, "%s: padding row gets no gradient", c->name);
    // accumulation: dhs += onto a prefilled buffer
    for (int64_t i = 0; i < M * D; i++)
      dhs[i] = PREFILL;
    lr_xs l2 = {0, 0, 0};
    rc = vocab_ce_forward_backward(&p, &l2, &bad, dhs, drows, M ? hs : NULL, M ? tgt : NULL,
                                   M ? grp : NULL, rows, M, c->coef);
    int acc = rc == LR_OK && xsum_eq(l2, loss);
    for (int64_t i = 0; i < M * D; i++)
      acc &= dhs[i] == PREFILL + (float)xsum_value(ref_dhs[off_me * D + i]);
    for (int64_t i = 0; i < nr * D; i++) {
      lr_xs two = ref_drows[p.lo * D + i];
      xsum_merge(&two, &ref_drows[p.lo * D + i], 1);
      acc &= xsum_eq(drows[i], two);
    }
    mt_check(acc, "%s: a second call adds: dhs +=, item rows twice the limbs", c->name);

    // evaluation: dhs NULL, same loss, drows ignored
    lr_xs eloss = {0, 0, 0};
    memset(drows, 0, (size_t)(nr * D) * sizeof(lr_xs));
    rc = vocab_ce_forward_backward(&p, &eloss, &bad, NULL, drows, M ? hs : NULL, M ? tgt : NULL,
                                   NULL, rows, M, c->coef);
    same = rc == LR_OK && xsum_eq(eloss, loss);
    for (int64_t i = 0; i < nr * D; i++)
      same &= xsum_is_zero(drows[i]);
    mt_check(same, "%s: evaluation (dhs NULL): same loss, no gradient", c->name);

    // bytes balance over ranks
    int64_t b[2] = {p.stats.bytes_sent, p.stats.bytes_recv};
    rc = dist_allreduce_sum_i64(b, 2);
    mt_check(rc == LR_OK && b[0] == b[1] && p.stats.calls == 3 && (P > 1 || b[0] == 0),
             "%s: bytes sent == received over all ranks (%lld)", c->name, (long long)b[0]);
    free(dhs), free(drows), free(drf);
  }
  vocab_ce_free(&p);
out:
  free(table), free(hs_all), free(tgt_all), free(grp_all), free(dt), free(dh), free(rdhs);
  free(rdrows), free(scr), free(ref_dhs), free(ref_drows);
}

// ---- bad arguments on one rank ---------------------------------------------------------------

static void test_errors(void) {
  const int P = dist_size(), me = dist_rank();
  const int64_t I = 10, D = 4, M = 3;
  vocab_ce_plan p;
  int rc = vocab_ce_init(&p, I + 1, D, M, 4, 8);
  mt_check(rc == LR_OK, "errors: vocab_ce_init");
  if (rc != LR_OK) return;
  float hs[12], dhs[12], table[(I + 1) * 4];
  lr_xs drows[(I + 1) * 4], loss = {0, 0, 0};
  uint32_t bad = 0;
  t_fill_f(hs, 12, 5, 1.0f);
  t_fill_f(table, (I + 1) * D, 6, 1.0f);
  const float *rows = table + p.lo * D;
  int32_t tgt[3] = {1, 2, 3};
  const float coef = 1.0f / (float)(P * M);
  // a target out of range on the last rank
  if (me == P - 1) tgt[1] = (int32_t)(I + 1);
  rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, hs, tgt, NULL, rows, M, coef);
  int ok = rc == LR_ERR_ARG && xsum_is_zero(loss);
  if (me == P - 1) ok &= strstr(lr_error_msg(), "target[1]") != NULL;
  lr_error_clear();
  mt_check(ok, "errors: a bad target on rank %d fails every rank with LR_ERR_ARG", P - 1);
  tgt[1] = 2;
  // M above max_rows on rank 0
  rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, hs, tgt, NULL, rows,
                                 me == 0 ? M + 1 : M, coef);
  lr_error_clear();
  mt_check(rc == LR_ERR_ARG, "errors: M > max_rows on rank 0 fails every rank");
  if (P > 1) {
    rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, hs, tgt, NULL, rows, M,
                                   me == 0 ? coef * 2 : coef);
    lr_error_clear();
    mt_check(rc == LR_ERR_ARG, "errors: coef differing on rank 0 fails every rank");
    rc = vocab_ce_forward_backward(&p, &loss, &bad, me == 0 ? NULL : dhs, drows, hs, tgt, NULL,
                                   rows, M, coef);
    lr_error_clear();
    mt_check(rc == LR_ERR_ARG, "errors: dhs NULL on rank 0 only fails every rank");
  }
  rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, hs, tgt, NULL, rows, M, coef);
  mt_check(rc == LR_OK && xsum_value(loss) > 0, "errors: the plan works after the failures");
  vocab_ce_free(&p);
  // differing plan arguments
  rc = vocab_ce_init(&p, I + 1, D, M + (P > 1 && me == 1), 4, 8);
  lr_error_clear();
  mt_check(P == 1 ? rc == LR_OK : rc == LR_ERR_ARG,
           "errors: vocab_ce_init with max_rows differing on rank 1 fails every rank");
  vocab_ce_free(&p);
}

// ---- traffic of a sample configuration ----------------------------------------------------------

static void sample_traffic(void) {
  const int P = dist_size(), me = dist_rank();
  const int64_t I = 3706, D = 64, M = 512; // ML-1M items, 512 loss rows per rank
  vocab_ce_plan p;
  int rc = vocab_ce_init(&p, I + 1, D, M, 1024, 512);
  const lr_shard s = shard_items(I + 1, me, P);
  float *hs = calloc((size_t)(M * D), 4), *dhs = calloc((size_t)(M * D), 4);
  float *rows = calloc((size_t)(s.count * D + 1), 4);
  lr_xs *drows = calloc((size_t)(s.count * D + 1), sizeof(lr_xs)), loss = {0, 0, 0};
  int32_t *tgt = calloc((size_t)M, 4);
  t_fill_f(hs, M * D, 11 + (uint64_t)me, 1.0f);
  t_fill_f(rows, s.count * D, 12 + (uint64_t)me, 0.1f);
  for (int64_t m = 0; m < M; m++)
    tgt[m] = (int32_t)(1 + (m * 37 + me) % I);
  uint32_t bad = 0;
  if (rc == LR_OK)
    rc = vocab_ce_forward_backward(&p, &loss, &bad, dhs, drows, hs, tgt, NULL, rows, M,
                                   1.0f / (float)(M * P));
  double v[3] = {(double)p.stats.bytes_sent, (double)p.stats.bytes_recv, p.stats.seconds};
  rc |= dist_allreduce_max_d(v, 3);
  dist_log0("sample I=%lld D=%lld, %lld loss rows/rank, P=%d: max over ranks sent %.0f recv %.0f "
            "bytes, %.1f ms\n",
            (long long)I, (long long)D, (long long)M, P, v[0], v[1], v[2] * 1e3);
  mt_check(rc == LR_OK, "sample traffic run");
  free(hs), free(dhs), free(rows), free(drows), free(tgt);
  vocab_ce_free(&p);
}

int main(int argc, char **argv) {
  if (mt_init(&argc, &argv)) return 1;
  const ce_case cases[] = {
      // name, I, D, tile, rchunk, M per rank, rows per example, coef, hs scale
      {"I=1000 uneven M (5,0,9,3), tile 1 block, chunks of 4",
       1000,
       16,
       1,
       4,
       {5, 0, 9, 3},
       2,
       1.0f / 17.0f,
       1.0f},
      {"I=1000 examples of 3 rows, one tile", 1000, 16, 4096, 6, {4, 6, 0, 2}, 3, 0.05f, 1.0f},
      {"I=1000 large logits", 1000, 8, 64, 3, {3, 3, 3, 3}, 1, 0.1f, 12.0f},
      {"I=60 (one block: one rank owns every row)", 60, 8, 1, 8, {2, 3, 1, 4}, 2, 0.1f, 1.0f},
      {"I=2 (one block)", 2, 5, 2, 2, {1, 0, 2, 3}, 1, 0.2f, 1.0f},
      {"every M_r = 0", 1000, 8, 7, 4, {0, 0, 0, 0}, 1, 0.1f, 1.0f},
      {"I=3000 D=32 M=40..70, tile 2 blocks", 3000, 32, 256, 64, {40, 70, 55, 61}, 4, 0.004f, 1.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    test_case(&cases[i]);
  test_errors();
  sample_traffic();
  return mt_done("mpitest_vocab_ce");
}
