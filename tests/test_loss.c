// test_loss.c: the losses of loss.h.
// Full-catalog CE (three passes over fixed item blocks):
//   - the passes against an untiled naive double reference, for several
//     tiles (one block, several, past the catalog) and row chunks, in double
//     and in float;
//   - reproducibility, in float and bitwise: the catalog cut into slices at
//     block boundaries (as ranks hold it), the rows cut into calls at
//     example boundaries (as micro-batches and ranks cut them), row chunks
//     of any size and 1 or 3 threads all give the same loss, hidden-state
//     and item-row gradients as one call over the whole catalog;
//   - gradients against central finite differences in double (< 1e-6
//     relative) and in float (looser); padding row 0 never a candidate;
//     large logits; a pass-1 logits tile reused = recomputed.
// Sampled softmax and BCE: naive reference, finite differences, collision
// masking, extreme scores, and bitwise reproducibility of the exact
// item-row gradient under any cut of the rows.
#include <stdlib.h> // free
#include <string.h> // memcpy, memset

#include "loss.h"
#include "lr.h"         // LR_OK
#include "par.h"        // lr_par_set_threads
#include "ref_layers.h" // t_fd_grad, t_alloc, conversions
#include "test_util.h"

#define TOL_FD64 1e-6
#define TOL_FD32 1e-4
#define FD_H 1e-3

// ---- naive references (double, untiled) -----------------------------------------------

// Full-catalog CE over table rows 1..n_rows-1: returns coef * sum_m loss_m
// and accumulates its gradients (dhs, drows may be NULL). The M x I logits
// are materialised: fine for the small catalogs of a test.
static double ref_ce(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                     const double *table, int64_t n_rows, int64_t M, int64_t D, double coef) {
  double *lg = t_alloc(n_rows, 8);
  double total = 0;
  for (int64_t m = 0; m < M; m++) {
    double mx = -INFINITY;
    for (int64_t v = 1; v < n_rows; v++) {
      double s = 0;
      for (int64_t i = 0; i < D; i++)
        s += hs[m * D + i] * table[v * D + i];
      lg[v] = s;
      if (s > mx) mx = s;
    }
    double sum = 0;
    for (int64_t v = 1; v < n_rows; v++)
      sum += exp(lg[v] - mx);
    const double lse = mx + log(sum);
    total += lse - lg[tgt[m]];
    for (int64_t v = 1; v < n_rows; v++) {
      const double g = coef * (exp(lg[v] - lse) - (v == tgt[m] ? 1.0 : 0.0));
      for (int64_t i = 0; i < D; i++) {
        if (dhs) dhs[m * D + i] += g * table[v * D + i];
        if (drows) drows[v * D + i] += g * hs[m * D + i];
      }
    }
  }
  free(lg);
  return coef * total;
}

// Sampled softmax / BCE with the collision rule written out directly:
// returns sum_m loss_m, gradients of coef * that.
static double ref_sampled(double *dhs, double *drows, const double *hs, const int32_t *cand,
                          const int32_t *ids, const double *rows, int64_t M, int64_t C, int64_t D,
                          lr_sampled_kind kind, double coef) {
  double total = 0;
  double *s = t_alloc(C, 8), *g = t_alloc(C, 8);
  int *use = t_alloc(C, sizeof(int));
  for (int64_t m = 0; m < M; m++) {
    for (int64_t j = 0; j < C; j++) {
      use[j] = j == 0 || ids[m * C + j] != ids[m * C];
      s[j] = 0;
      for (int64_t i = 0; i < D; i++)
        s[j] += hs[m * D + i] * rows[cand[m * C + j] * D + i];
    }
    if (kind == LR_SAMPLED_SOFTMAX) {
      double z = 0;
      for (int64_t j = 0; j < C; j++)
        z += use[j] ? exp(s[j]) : 0.0;
      total += log(z) - s[0];
      for (int64_t j = 0; j < C; j++)
        g[j] = use[j] ? exp(s[j]) / z - (j == 0) : 0.0;
    } else {
      total += -log(1.0 / (1.0 + exp(-s[0])));
      g[0] = 1.0 / (1.0 + exp(-s[0])) - 1.0;
      for (int64_t j = 1; j < C; j++) {
        g[j] = 0;
        if (!use[j]) continue;
        total += -log(1.0 - 1.0 / (1.0 + exp(-s[j])));
        g[j] = 1.0 / (1.0 + exp(-s[j]));
      }
    }
    for (int64_t j = 0; j < C; j++)
      for (int64_t i = 0; i < D; i++) {
        const double gj = coef * g[j];
        if (dhs) dhs[m * D + i] += gj * rows[cand[m * C + j] * D + i];
        if (drows) drows[cand[m * C + j] * D + i] += gj * hs[m * D + i];
      }
  }
  free(s), free(g), free(use);
  return total;
}

// ---- CE fixture --------------------------------------------------------------------

typedef struct {
  int64_t M, D, I; // I real items: the table has I+1 rows
  int32_t *tgt, *grp;
  double *hs, *table;
  float *hs_f, *table_f;
} ce_fix;

// grp: rows in examples of 1, 2 and 3 rows in turn.
static void ce_fix_init(ce_fix *f, int64_t M, int64_t D, int64_t I, double hs_scale,
                        uint64_t seed) {
  f->M = M, f->D = D, f->I = I;
  f->tgt = t_alloc(M, 4), f->grp = t_alloc(M, 4);
  for (int64_t m = 0, g = 0, k = 0; m < M; m++) {
    f->tgt[m] = (int32_t)(1 + (m * 37 + 3) % I);
    f->grp[m] = (int32_t)g;
    if (++k == 1 + g % 3) g++, k = 0;
  }
  f->tgt[M - 1] = (int32_t)I; // the last item, at the end of the last tile
  f->hs = t_alloc(M * D, 8), f->table = t_alloc((I + 1) * D, 8);
  t_fill_d(f->hs, M * D, seed, hs_scale);
  t_fill_d(f->table, (I + 1) * D, seed + 1, 1.0);
  // padding row 0 would win every softmax if it were a candidate
  for (int64_t i = 0; i < D; i++)
    f->table[i] = 40.0 * f->hs[i];
  f->hs_f = t_alloc(M * D, 4), f->table_f = t_alloc((I + 1) * D, 4);
  t_to_f(f->hs_f, f->hs, M * D), t_to_f(f->table_f, f->table, (I + 1) * D);
}

static void ce_fix_free(ce_fix *f) {
  free(f->tgt), free(f->grp), free(f->hs), free(f->table), free(f->hs_f), free(f->table_f);
}

// ---- running the passes (float, exact accumulators) --------------------------------------

// The float outputs of one CE over rows [m0, m1) of f against slices of the
// catalog: loss, dhs (M,D) and drows (I+1,D) accumulators.
typedef struct {
  lr_xs loss;
  lr_xs *dhs, *drows;
} ce_out;

static void ce_out_init(ce_out *o, const ce_fix *f) {
  o->loss = (lr_xs){0, 0, 0};
  o->dhs = t_alloc(f->M * f->D, sizeof(lr_xs));
  o->drows = t_alloc((f->I + 1) * f->D, sizeof(lr_xs));
}

static void ce_out_free(ce_out *o) { free(o->dhs), free(o->drows); }

static int ce_out_same(const ce_out *a, const ce_out *b, const ce_fix *f) {
  return xsum_eq(a->loss, b->loss) &&
         !memcmp(a->dhs, b->dhs, (size_t)(f->M * f->D) * sizeof(lr_xs)) &&
         !memcmp(a->drows, b->drows, (size_t)((f->I + 1) * f->D) * sizeof(lr_xs));
}

// Rows [m0, m1) through the three passes, the catalog cut at the (block
// aligned) boundaries cuts[0..ncut) into slices whose statistics are merged
// as dist/ merges them: max over slices, exact sums.
static void ce_run(ce_out *o, const ce_fix *f, int64_t m0, int64_t m1, const int64_t *cuts,
                   int ncut, int64_t tile, int64_t rchunk, float coef) {
  const int64_t D = f->D, n = f->I + 1, M = m1 - m0;
  if (M == 0) return;
  float *scratch = t_alloc((int64_t)ce_scratch_elems(rchunk, tile, D), 4);
  float *gmax = t_alloc(M, 4), *sl = t_alloc(M, 4), *tl = t_alloc(M, 4), *lse = t_alloc(M, 4);
  lr_xs *sx = t_alloc(M, sizeof(lr_xs));
  int64_t b[8] = {0};
  int nb = 0;
  for (int k = 0; k < ncut; k++) b[++nb] = cuts[k];
  b[++nb] = n;
  const float *hs = f->hs_f + m0 * D;
  const int32_t *tgt = f->tgt + m0, *grp = f->grp + m0;
  for (int64_t m = 0; m < M; m++) gmax[m] = -INFINITY;
  for (int s = 0; s < nb; s++) {
    ce_rowmax(sl, hs, f->table_f + b[s] * D, b[s], b[s + 1], n, M, D, tile, rchunk, scratch);
    for (int64_t m = 0; m < M; m++) gmax[m] = sl[m] > gmax[m] ? sl[m] : gmax[m];
  }
  for (int s = 0; s < nb; s++)
    ce_sumexp(sx, tl, hs, tgt, f->table_f + b[s] * D, gmax, b[s], b[s + 1], n, M, D, tile, rchunk,
              scratch, 0);
  ce_lse(lse, gmax, sx, M);
  for (int64_t m = 0; m < M; m++)
    xsum_add_d(&o->loss, ((double)lse[m] - (double)tl[m]));
  for (int s = 0; s < nb; s++)
    ce_backward(o->dhs + m0 * D, o->drows + b[s] * D, hs, tgt, grp, f->table_f + b[s] * D, lse,
                b[s], b[s + 1], n, M, D, tile, rchunk, coef, scratch, 0);
  free(scratch), free(gmax), free(sl), free(tl), free(lse), free(sx);
}

// The same passes in double (plain sums) over the whole catalog: returns
// coef * sum of the losses; dhs, drows += the gradients.
static double ce_run_f64(double *dhs, double *drows, const ce_fix *f, int64_t tile, int64_t rchunk,
                         double coef) {
  const int64_t D = f->D, n = f->I + 1, M = f->M;
  double *scratch = t_alloc((int64_t)ce_scratch_elems(rchunk, tile, D), 8);
  double *gmax = t_alloc(M, 8), *tl = t_alloc(M, 8), *lse = t_alloc(M, 8), *sx = t_alloc(M, 8);
  ce_rowmax_f64(gmax, f->hs, f->table, 0, n, n, M, D, tile, rchunk, scratch);
  ce_sumexp_f64(sx, tl, f->hs, f->tgt, f->table, gmax, 0, n, n, M, D, tile, rchunk, scratch, 1);
  ce_lse_f64(lse, gmax, sx, M);
  double loss = 0;
  for (int64_t m = 0; m < M; m++) loss += lse[m] - tl[m];
  if (dhs || drows)
    ce_backward_f64(dhs, drows, f->hs, f->tgt, f->grp, f->table, lse, 0, n, n, M, D, tile, rchunk,
                    coef, scratch, 1);
  free(scratch), free(gmax), free(tl), free(lse), free(sx);
  return coef * loss;
}

static void to_d(double *out, const lr_xs *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = xsum_value(x[i]);
}

// ---- CE: passes = naive -----------------------------------------------------------------

// I = 150 spans three blocks of 64 (1..63, 64..127, 128..150).
static void test_ce_naive(int64_t M, int64_t D) {
  ce_fix f;
  const int64_t I = 150, n = I + 1;
  const double coef = 0.37;
  printf("-- ce passes, %lld rows, D %lld, blocks of %lld\n", (long long)M, (long long)D,
         (long long)ce_block_items(n));
  ce_fix_init(&f, M, D, I, 1.0, 101);
  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(n * D, 8);
  const double rloss = ref_ce(rdh, rdr, f.hs, f.tgt, f.table, n, M, D, coef);
  const int64_t tiles[] = {ce_tile_items(1, n), ce_tile_items(100, n), ce_tile_items(n, n)};
  const int64_t chunks[] = {3, M}; // 3 rows: whole examples of up to 3 rows
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(n * D, 8);
  for (size_t k = 0; k < sizeof tiles / sizeof *tiles; k++)
    for (size_t q = 0; q < 2; q++) {
      const int64_t tile = tiles[k], rc = chunks[q];
      memset(dh, 0, M * D * 8), memset(dr, 0, n * D * 8);
      double loss = ce_run_f64(dh, dr, &f, tile, rc, coef);
      char name[120];
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f64: loss = naive", (long long)tile,
               (long long)rc);
      t_close_d(&loss, &rloss, 1, 1e-13, name);
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f64: dhs = naive", (long long)tile,
               (long long)rc);
      t_close_d(dh, rdh, M * D, 1e-12, name);
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f64: drows = naive", (long long)tile,
               (long long)rc);
      t_close_d(dr, rdr, n * D, 1e-12, name);

      ce_out o;
      ce_out_init(&o, &f);
      ce_run(&o, &f, 0, M, NULL, 0, tile, rc, (float)coef);
      double lf = coef * xsum_value(o.loss);
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f32: loss vs naive", (long long)tile,
               (long long)rc);
      t_close_d(&lf, &rloss, 1, 1e-5, name);
      to_d(dh, o.dhs, M * D), to_d(dr, o.drows, n * D);
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f32: dhs vs naive", (long long)tile,
               (long long)rc);
      t_close_d(dh, rdh, M * D, 1e-4, name);
      snprintf(name, sizeof name, "ce tile %lld rchunk %lld f32: drows vs naive", (long long)tile,
               (long long)rc);
      t_close_d(dr, rdr, n * D, 1e-4, name);
      int zero = 1;
      for (int64_t i = 0; i < D; i++) zero &= xsum_is_zero(o.drows[i]);
      t_check(zero, "ce tile %lld: padding row 0 gradient untouched", (long long)tile);
      ce_out_free(&o);
    }
  // Evaluation convenience: NULL gradients, same loss; float outputs.
  double *sc = t_alloc((int64_t)ce_fb_scratch_elems(M, 64, D, n), 8);
  double loss = ce_forward_backward_f64(NULL, NULL, f.hs, f.tgt, f.table, n, M, D, 64, sc);
  double want = rloss / coef / (double)M;
  t_close_d(&loss, &want, 1, 1e-13, "ce_forward_backward f64: evaluation (NULL gradients) loss");
  free(sc);
  free(rdh), free(rdr), free(dh), free(dr);
  ce_fix_free(&f);
}

// ---- CE: reproducibility ------------------------------------------------------------------

// The reference is one call over all rows and the whole catalog; every other
// cut must give the same limbs.
static void test_ce_cuts(void) {
  ce_fix f;
  const int64_t M = 13, D = 20, I = 200, n = I + 1;
  const int64_t B = ce_block_items(n), tile = ce_tile_items(64, n);
  const float coef = 1.0f / 29.0f;
  ce_fix_init(&f, M, D, I, 1.3, 202);
  ce_out ref, o;
  ce_out_init(&ref, &f);
  ce_run(&ref, &f, 0, M, NULL, 0, tile, M, coef);
  // catalog slices at block boundaries (one slice may hold only padding)
  const int64_t cuts[][3] = {{B}, {2 * B}, {B, 2 * B}, {B, 2 * B, 3 * B}};
  const int ncuts[] = {1, 1, 2, 3};
  for (int k = 0; k < 4; k++) {
    ce_out_init(&o, &f);
    ce_run(&o, &f, 0, M, cuts[k], ncuts[k], tile, M, coef);
    t_check(ce_out_same(&o, &ref, &f), "ce: catalog in %d slices at blocks (first %lld): bitwise",
            ncuts[k] + 1, (long long)cuts[k][0]);
    ce_out_free(&o);
  }
  // rows cut into calls at example boundaries, chunks of 3 rows, tiles of 1 block
  const int64_t calls[][3] = {{1, 3, 6}, {3, 7, 9}, {6, 9, 12}}; // example boundaries
  for (int k = 0; k < 3; k++) {
    ce_out_init(&o, &f);
    int64_t m0 = 0;
    for (int q = 0; q <= 3; q++) {
      const int64_t m1 = q < 3 ? calls[k][q] : M;
      ce_run(&o, &f, m0, m1, cuts[2], 2, k == 1 ? B : tile, 3, coef);
      m0 = m1;
    }
    t_check(ce_out_same(&o, &ref, &f),
            "ce: rows in 4 calls (cuts %lld,%lld,%lld), 3 slices, chunks of 3: bitwise",
            (long long)calls[k][0], (long long)calls[k][1], (long long)calls[k][2]);
    ce_out_free(&o);
  }
  // 3 threads
  if (lr_par_set_threads(3) == LR_OK) {
    ce_out_init(&o, &f);
    ce_run(&o, &f, 0, M, cuts[3], 3, tile, 4, coef);
    t_check(ce_out_same(&o, &ref, &f), "ce: 3 threads, 4 slices, chunks of 4: bitwise");
    ce_out_free(&o);
  }
  lr_par_set_threads(1);
  // the convenience path (coef 1/M, every row its own example): the exact
  // sums' float values
  for (int64_t m = 0; m < M; m++) f.grp[m] = (int32_t)m;
  ce_out r2;
  ce_out_init(&r2, &f);
  ce_run(&r2, &f, 0, M, NULL, 0, tile, M, (float)(1.0 / (double)M));
  float *dh = t_alloc(M * D, 4), *dr = t_alloc(n * D, 4);
  float *sc = t_alloc((int64_t)ce_fb_scratch_elems(M, tile, D, n), 4);
  ce_forward_backward(dh, dr, f.hs_f, f.tgt, f.table_f, n, M, D, tile, sc);
  int same = 1;
  for (int64_t i = 0; i < M * D; i++) same &= dh[i] == (float)xsum_value(r2.dhs[i]);
  for (int64_t i = 0; i < n * D; i++) same &= dr[i] == (float)xsum_value(r2.drows[i]);
  t_check(same, "ce_forward_backward f32: gradients = the passes' exact sums, bitwise");
  free(dh), free(dr), free(sc);
  ce_out_free(&r2);
  ce_out_free(&ref);
  ce_fix_free(&f);
}

// ---- CE: finite differences -------------------------------------------------------------

typedef struct {
  ce_fix *f;
  int64_t tile, rchunk;
  double coef;
} ce_fd_ctx;

static double ce_fd_f(void *p) {
  ce_fd_ctx *c = p;
  return ce_run_f64(NULL, NULL, c->f, c->tile, c->rchunk, c->coef);
}

static void test_ce_fd(void) {
  ce_fix f;
  const int64_t M = 6, D = 6, I = 140, n = I + 1;
  const double coef = 1.7 / 9.0;
  ce_fix_init(&f, M, D, I, 0.8, 303);
  ce_fd_ctx c = {&f, ce_tile_items(1, n), 3, coef};
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(n * D, 8);
  ce_run_f64(dh, dr, &f, c.tile, c.rchunk, coef);
  ce_out o;
  ce_out_init(&o, &f);
  ce_run(&o, &f, 0, M, NULL, 0, c.tile, c.rchunk, (float)coef);
  double *dh_f = t_alloc(M * D, 8), *dr_f = t_alloc(n * D, 8);
  to_d(dh_f, o.dhs, M * D), to_d(dr_f, o.drows, n * D);
  double *fd = t_alloc(n * D, 8);
  t_fd_grad(fd, ce_fd_f, &c, f.hs, M * D, FD_H);
  t_close_d(dh, fd, M * D, TOL_FD64, "ce: dhs f64 vs finite differences");
  t_close_d(dh_f, fd, M * D, TOL_FD32, "ce: dhs f32 vs finite differences");
  t_fd_grad(fd, ce_fd_f, &c, f.table, n * D, FD_H);
  t_close_d(dr, fd, n * D, TOL_FD64, "ce: drows f64 vs finite differences");
  t_close_d(dr_f, fd, n * D, TOL_FD32, "ce: drows f32 vs finite differences");
  int zero = 1;
  for (int64_t i = 0; i < D; i++)
    zero &= fd[i] == 0.0 && dr[i] == 0.0 && dr_f[i] == 0.0;
  t_check(zero, "ce: row 0 is no candidate (finite differences and gradient are 0)");

  // One tile and one chunk: passes 2 and 3 may take pass 1's logits from scratch.
  {
    const int64_t tile = ce_tile_items(n, n);
    float *sc = t_alloc((int64_t)ce_scratch_elems(M, tile, D), 4);
    float *gm = t_alloc(M, 4), *tl = t_alloc(M, 4), *lse = t_alloc(M, 4);
    lr_xs *sx[2], *dhx[2], *drx[2];
    for (int k = 0; k < 2; k++) {
      sx[k] = t_alloc(M, sizeof(lr_xs)), dhx[k] = t_alloc(M * D, sizeof(lr_xs));
      drx[k] = t_alloc(n * D, sizeof(lr_xs));
      ce_rowmax(gm, f.hs_f, f.table_f, 0, n, n, M, D, tile, M, sc);
      ce_sumexp(sx[k], tl, f.hs_f, f.tgt, f.table_f, gm, 0, n, n, M, D, tile, M, sc, k);
      ce_lse(lse, gm, sx[k], M);
      ce_backward(dhx[k], drx[k], f.hs_f, f.tgt, f.grp, f.table_f, lse, 0, n, n, M, D, tile, M,
                  (float)coef, sc, k);
    }
    t_check(!memcmp(sx[0], sx[1], M * sizeof(lr_xs)) &&
                !memcmp(dhx[0], dhx[1], M * D * sizeof(lr_xs)) &&
                !memcmp(drx[0], drx[1], n * D * sizeof(lr_xs)),
            "ce: one tile, passes 2 and 3 on pass 1's logits = recomputed (bitwise)");
    for (int k = 0; k < 2; k++) free(sx[k]), free(dhx[k]), free(drx[k]);
    free(sc), free(gm), free(tl), free(lse);
  }
  free(dh), free(dr), free(dh_f), free(dr_f), free(fd);
  ce_out_free(&o);
  ce_fix_free(&f);
}

// Large logits (|logit| ~ 1e3): the global max keeps exp from overflowing,
// with the largest logit in the last block.
static void test_ce_large(void) {
  ce_fix f;
  const int64_t M = 3, D = 4, I = 140, n = I + 1;
  ce_fix_init(&f, M, D, I, 300.0, 404);
  for (int64_t i = 0; i < D; i++)
    f.table[(I - 1) * D + i] = f.hs[i] / 150.0;
  t_to_f(f.table_f, f.table, n * D);
  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(n * D, 8);
  const double rloss = ref_ce(rdh, rdr, f.hs, f.tgt, f.table, n, M, D, 1.0 / (double)M);
  float *dh_f = t_alloc(M * D, 4), *dr_f = t_alloc(n * D, 4);
  float *sc = t_alloc((int64_t)ce_fb_scratch_elems(M, 64, D, n), 4);
  double loss_f = ce_forward_backward(dh_f, dr_f, f.hs_f, f.tgt, f.table_f, n, M, D, 64, sc);
  t_check(isfinite(loss_f) && rloss > 100, "ce: large logits finite (loss %.3f)", loss_f);
  t_close_d(&loss_f, &rloss, 1, 1e-5, "ce: large logits f32 loss vs naive f64");
  t_close_f(dh_f, rdh, M * D, 1e-4, "ce: large logits f32 dhs vs naive f64");
  t_close_f(dr_f, rdr, n * D, 1e-4, "ce: large logits f32 drows vs naive f64");
  free(rdh), free(rdr), free(dh_f), free(dr_f), free(sc);
  ce_fix_free(&f);
}

// ---- sampled ---------------------------------------------------------------------------

typedef struct {
  int64_t M, C, D, U;
  int32_t *cand, *ids;
  double *hs, *rows, *scratch;
  lr_sampled_kind kind;
  double coef;
} smp_ctx;

static double smp_f(void *p) {
  smp_ctx *c = p;
  double loss = 0;
  sampled_forward_backward_f64(&loss, NULL, NULL, c->hs, c->cand, c->ids, c->rows, c->M, c->C,
                               c->D, c->kind, c->coef, c->scratch);
  return c->coef * loss;
}

static void test_sampled_kind(lr_sampled_kind kind) {
  const char *kn = kind == LR_SAMPLED_SOFTMAX ? "sampled softmax" : "sampled bce";
  const int64_t M = 5, C = 37, D = 4, U = 9; // C: two 16-lane blocks and a tail
  smp_ctx c = {M,
               C,
               D,
               U,
               t_alloc(M * C, 4),
               t_alloc(M * C, 4),
               t_alloc(M * D, 8),
               t_alloc(U * D, 8),
               t_alloc(M * C, 8),
               kind,
               0.15};
  t_fill_d(c.hs, M * D, 501, 1.0);
  t_fill_d(c.rows, U * D, 502, 1.0);
  // cand: target first; global id = 1000 + row. Collisions: row 1 has one
  // negative equal to its target, row 3 two; row 4 repeats a negative.
  for (int64_t m = 0; m < M; m++)
    for (int64_t j = 0; j < C; j++)
      c.cand[m * C + j] = (int32_t)((m * 5 + j * 3 + 1) % U);
  c.cand[1 * C + 2] = c.cand[1 * C];
  c.cand[3 * C + 1] = c.cand[3 * C], c.cand[3 * C + 5] = c.cand[3 * C];
  c.cand[4 * C + 4] = c.cand[4 * C + 3];
  for (int64_t i = 0; i < M * C; i++)
    c.ids[i] = 1000 + c.cand[i];

  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(U * D, 8);
  double rloss = ref_sampled(rdh, rdr, c.hs, c.cand, c.ids, c.rows, M, C, D, kind, c.coef);
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(U * D, 8), loss = 0;
  sampled_forward_backward_f64(&loss, dh, dr, c.hs, c.cand, c.ids, c.rows, M, C, D, kind, c.coef,
                               c.scratch);
  char name[120];
  snprintf(name, sizeof name, "%s: loss (sum over rows) = naive", kn);
  t_close_d(&loss, &rloss, 1, 1e-14, name);
  snprintf(name, sizeof name, "%s: dhs = naive", kn);
  t_close_d(dh, rdh, M * D, 1e-13, name);
  snprintf(name, sizeof name, "%s: drows = naive", kn);
  t_close_d(dr, rdr, U * D, 1e-13, name);

  float *hs_f = t_alloc(M * D, 4), *rows_f = t_alloc(U * D, 4), *sc_f = t_alloc(M * C, 4);
  float *dh_f = t_alloc(M * D, 4);
  lr_xs *dr_x = t_alloc(U * D, sizeof(lr_xs)), loss_x = {0, 0, 0};
  t_to_f(hs_f, c.hs, M * D), t_to_f(rows_f, c.rows, U * D);
  sampled_forward_backward(&loss_x, dh_f, dr_x, hs_f, c.cand, c.ids, rows_f, M, C, D, kind,
                           (float)c.coef, sc_f);
  double loss_f = xsum_value(loss_x);
  snprintf(name, sizeof name, "%s: f32 loss vs f64", kn);
  t_close_d(&loss_f, &loss, 1, 1e-6, name);
  double *dr_f = t_alloc(U * D, 8);
  to_d(dr_f, dr_x, U * D);

  double *fd = t_alloc(U * D, 8);
  t_fd_grad(fd, smp_f, &c, c.hs, M * D, FD_H);
  snprintf(name, sizeof name, "%s: dhs f64 vs finite differences", kn);
  t_close_d(dh, fd, M * D, TOL_FD64, name);
  snprintf(name, sizeof name, "%s: dhs f32 vs finite differences", kn);
  t_close_f(dh_f, fd, M * D, TOL_FD32, name);
  t_fd_grad(fd, smp_f, &c, c.rows, U * D, FD_H);
  snprintf(name, sizeof name, "%s: drows f64 vs finite differences", kn);
  t_close_d(dr, fd, U * D, TOL_FD64, name);
  snprintf(name, sizeof name, "%s: drows f32 vs finite differences", kn);
  t_close_d(dr_f, fd, U * D, TOL_FD32, name);

  // the rows cut into calls in another order: the same exact limbs
  {
    lr_xs *dr2 = t_alloc(U * D, sizeof(lr_xs)), l2 = {0, 0, 0};
    float *dh2 = t_alloc(M * D, 4);
    const int64_t order[][2] = {{3, 2}, {0, 3}}; // rows 3..4, then 0..2
    for (int k = 0; k < 2; k++)
      sampled_forward_backward(&l2, dh2 + order[k][0] * D, dr2, hs_f + order[k][0] * D,
                               c.cand + order[k][0] * C, c.ids + order[k][0] * C, rows_f,
                               order[k][1], C, D, kind, (float)c.coef, sc_f);
    snprintf(name, sizeof name, "%s: rows in two calls, reversed: bitwise", kn);
    t_check(!memcmp(dr2, dr_x, U * D * sizeof(lr_xs)) && !memcmp(dh2, dh_f, M * D * 4) &&
                xsum_eq(l2, loss_x),
            "%s", name);
    free(dr2), free(dh2);
  }

  // Collision masking, one row: candidates (t, t, n, t) act as (t, n); ids NULL
  // falls back to comparing the row indices.
  {
    const int32_t c4[4] = {2, 2, 5, 2}, c2[2] = {2, 5};
    const int32_t i4[4] = {7, 7, 8, 7};
    double s4[4], s2[2], l4 = 0, l2 = 0, l4n = 0;
    double dh4[4] = {0}, dh2[4] = {0}, dr4[36] = {0}, dr2[36] = {0}, dr4n[36] = {0};
    sampled_forward_backward_f64(&l4, dh4, dr4, c.hs, c4, i4, c.rows, 1, 4, D, kind, 1.0, s4);
    sampled_forward_backward_f64(&l2, dh2, dr2, c.hs, c2, NULL, c.rows, 1, 2, D, kind, 1.0, s2);
    sampled_forward_backward_f64(&l4n, NULL, dr4n, c.hs, c4, NULL, c.rows, 1, 4, D, kind, 1.0, s4);
    snprintf(name, sizeof name, "%s: collision masked (loss)", kn);
    t_close_d(&l4, &l2, 1, 1e-15, name);
    snprintf(name, sizeof name, "%s: collision masked (dhs)", kn);
    t_close_d(dh4, dh2, D, 1e-15, name);
    snprintf(name, sizeof name, "%s: collision masked (drows)", kn);
    t_close_d(dr4, dr2, U * D, 1e-15, name);
    snprintf(name, sizeof name, "%s: cand_ids = NULL compares rows", kn);
    t_close_d(&l4n, &l2, 1, 1e-15, name);
  }
  free(c.cand), free(c.ids), free(c.hs), free(c.rows), free(c.scratch), free(rdh), free(rdr);
  free(dh), free(dr), free(hs_f), free(rows_f), free(sc_f), free(dh_f), free(dr_x), free(dr_f);
  free(fd);
}

// Extreme scores stay finite (softplus / sigmoid written without overflow).
static void test_sampled_extreme(void) {
  const int64_t D = 2, C = 3;
  const float hs[2] = {100.0f, -80.0f}, rows[6] = {1, 0, -1, 0, 0, 1};
  // scores: row 0 -> 100, row 1 -> -100, row 2 -> -80; the target first, once
  // the best candidate (loss ~ 0) and once the worst (loss ~ 200).
  const int32_t cands[2][3] = {{0, 1, 2}, {1, 0, 2}};
  float dh[2] = {0, 0}, sc[3];
  lr_xs dr[6] = {{0, 0, 0}};
  for (int k = 0; k < 2; k++)
    for (int o = 0; o < 2; o++) {
      lr_xs lx = {0, 0, 0};
      uint32_t bad = sampled_forward_backward(&lx, dh, dr, hs, cands[o], NULL, rows, 1, C, D,
                                              (lr_sampled_kind)k, 1.0f, sc);
      const double l = xsum_value(lx);
      int ok = !bad && isfinite(l) && (o == 0 ? l < 1e-6 : fabs(l - 200.0) < 1e-3);
      for (int i = 0; i < 2; i++)
        ok &= isfinite(dh[i]);
      t_check(ok, "sampled %s: scores +-100, target %s: finite loss %.6g and gradients",
              k ? "bce" : "softmax", o ? "worst" : "best", l);
    }
  // a non-finite score is flagged, not summed
  const float nanh[2] = {NAN, 0.0f};
  lr_xs lx = {0, 0, 0};
  uint32_t bad = sampled_forward_backward(&lx, dh, dr, nanh, cands[0], NULL, rows, 1, C, D,
                                          LR_SAMPLED_SOFTMAX, 1.0f, sc);
  t_check(bad != 0 && xsum_is_zero(lx), "sampled: a NaN hidden state is flagged");
}

int main(void) {
  test_ce_naive(6, 5);
  test_ce_naive(9, 70);
  test_ce_cuts();
  test_ce_fd();
  test_ce_large();
  test_sampled_kind(LR_SAMPLED_SOFTMAX);
  test_sampled_kind(LR_SAMPLED_BCE);
  test_sampled_extreme();
  return t_done();
}
