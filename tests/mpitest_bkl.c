// mpitest_bkl.c: Blin's two-view loss (mean CE + lambda * bidirectional KL)
// over the row-sharded catalog (dist/vocab_ce.h, vocab_bkl_forward_backward)
// equals the whole catalog in one slice on one process (core/loss.h bkl_*),
// bitwise: the loss, both views' hidden-state gradients and every rank's
// item-row gradients, at any number of ranks (run at np 1..4), with the
// loss rows cut unevenly over the ranks (at example boundaries, as the
// trainer cuts them) and examples of several rows.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "loss.h"
#include "lr.h"
#include "mpi_harness.h"
#include "shard.h"
#include "test_util.h"
#include "vocab_ce.h"
#include "xsum.h"

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz);
  if (!p) abort();
  return p;
}

static void run_case(const char *name, int64_t I, int64_t D, int64_t Mg, int64_t tile,
                     int64_t rchunk, double lambda) {
  const int P = dist_size(), me = dist_rank();
  const int64_t n_rows = I + 1;
  float *tab = xcalloc(n_rows * D, 4), *ha = xcalloc(Mg * D, 4), *hb = xcalloc(Mg * D, 4);
  int32_t *tgt = xcalloc(Mg, 4), *grp = xcalloc(Mg, 4);
  t_fill_f(tab, n_rows * D, 91, 1.0f);
  t_fill_f(ha, Mg * D, 92, 1.5f);
  t_fill_f(hb, Mg * D, 93, 1.5f);
  for (int64_t d = 0; d < D; d++)
    tab[d] = 0;
  for (int64_t m = 0; m < Mg; m++)
    tgt[m] = (int32_t)(1 + (m * 7919) % I), grp[m] = (int32_t)(m / 3);
  // the reference: all pairs, the whole catalog, one slice
  const float coef = 1.0f / (float)Mg;
  float *scr = xcalloc(bkl_scratch_elems(rchunk, tile, D), 4), *g1 = xcalloc(Mg, 4);
  float *gm = xcalloc(2 * Mg, 4), *tl = xcalloc(2 * Mg, 4), *st = xcalloc(4 * Mg, 4);
  lr_xs *sx = xcalloc(4 * Mg, sizeof(lr_xs)), *rda = xcalloc(Mg * D, sizeof(lr_xs)),
        *rdb = xcalloc(Mg * D, sizeof(lr_xs)), *rdr = xcalloc(n_rows * D, sizeof(lr_xs));
  const int64_t tl_items = ce_tile_items(tile < n_rows ? tile : n_rows, n_rows);
  for (int v = 0; v < 2; v++) {
    ce_rowmax(g1, v ? hb : ha, tab, 0, n_rows, n_rows, Mg, D, tl_items, rchunk, scr);
    for (int64_t m = 0; m < Mg; m++)
      gm[2 * m + v] = g1[m];
  }
  bkl_sumexp(sx, tl, ha, hb, tgt, tab, gm, 0, n_rows, n_rows, Mg, D, tl_items, rchunk, scr);
  bkl_stats(st, gm, sx, Mg);
  lr_xs rloss = {0, 0, 0};
  for (int64_t m = 0; m < Mg; m++)
    xsum_add_d(&rloss, bkl_row_loss(st + 4 * m, tl + 2 * m, lambda, NULL, NULL));
  bkl_backward(rda, rdb, rdr, ha, hb, tgt, grp, tab, st, lambda, 0, n_rows, n_rows, Mg, D, tl_items,
               rchunk, coef, scr);
  // this rank's pairs: an uneven cut (rank r gets a share growing with r)
  int64_t lo = 0, hi = 0;
  for (int q = 0; q <= me; q++) {
    lo = hi;
    hi = q == P - 1 ? Mg : lo + (Mg * (q + 1)) / (P * (P + 1) / 2);
    if (q < P - 1) hi = hi / 3 * 3; // whole examples (3 rows), as the trainer cuts; may be empty
  }
  const int64_t M = hi - lo, maxM = Mg;
  vocab_ce_plan p;
  int rc = vocab_ce_init(&p, n_rows, D, 2 * maxM, tile, rchunk);
  if (rc == LR_OK) rc = vocab_ce_enable_bkl(&p);
  mt_check(rc == LR_OK, "%s: plan (rows [%lld, %lld) here, pairs [%lld, %lld))", name,
           (long long)p.lo, (long long)p.hi, (long long)lo, (long long)hi);
  float *dha = xcalloc(M * D, 4), *dhb = xcalloc(M * D, 4);
  lr_xs *dr = xcalloc((p.hi - p.lo) * D, sizeof(lr_xs)), loss = {0, 0, 0};
  uint32_t bad = 0;
  if (rc == LR_OK)
    rc = vocab_bkl_forward_backward(&p, &loss, &bad, dha, dhb, dr, ha + lo * D, hb + lo * D,
                                    tgt + lo, grp + lo, tab + p.lo * D, M, lambda, coef);
  mt_check(rc == LR_OK && !bad, "%s: vocab_bkl_forward_backward", name);
  lr_xs tot[1] = {loss};
  rc = dist_allreduce_xs(tot, 1);
  mt_check(rc == LR_OK && xsum_eq(tot[0], rloss), "%s: the loss over ranks = one slice (bitwise)",
           name);
  int same = 1;
  for (int64_t i = 0; i < M * D; i++)
    same &= dha[i] == (float)xsum_value(rda[lo * D + i]) &&
            dhb[i] == (float)xsum_value(rdb[lo * D + i]);
  mt_check(same, "%s: both views' hidden-state gradients = one slice (bitwise)", name);
  same = 1;
  for (int64_t i = 0; i < (p.hi - p.lo) * D; i++)
    same &= xsum_eq(dr[i], rdr[p.lo * D + i]);
  mt_check(same, "%s: own item rows' gradients = one slice (bitwise)", name);
  vocab_ce_free(&p);
  free(tab), free(ha), free(hb), free(tgt), free(grp), free(scr), free(g1), free(gm), free(tl);
  free(st), free(sx), free(rda), free(rdb), free(rdr), free(dha), free(dhb), free(dr);
}

int main(int argc, char **argv) {
  if (mt_init(&argc, &argv)) return 1;
  run_case("small catalog, one tile", 300, 8, 13, 1024, 4, 2.0);
  run_case("several tiles and chunks", 2000, 16, 37, 256, 7, 2.0);
  run_case("lambda 0", 700, 8, 10, 128, 3, 0.0);
  return mt_done("mpitest_bkl");
}
