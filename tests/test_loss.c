// test_loss.c: the losses of loss.h. Full-catalog CE: the tiled kernels
// against an untiled naive double reference for several tile sizes (dividing
// the catalog or not, larger than it), a catalog split in two slices combined
// through ce_stats / ce_stats_merge against the whole, gradients against
// central finite differences in double (< 1e-6 relative) and in float (looser),
// padding row 0 never a candidate, large logits. Sampled softmax and BCE:
// naive reference, finite differences, collision masking.
#include <stdlib.h> // free
#include <string.h> // memcpy, memset

#include "loss.h"
#include "lr.h"  // LR_OK
#include "par.h" // lr_par_set_threads
#include "ref_layers.h" // t_fd_grad, t_alloc, conversions
#include "test_util.h"

#define TOL_FD64 1e-6
#define TOL_FD32 1e-4
#define FD_H 1e-3

// ---- naive references (double, untiled) -----------------------------------------------

// Full-catalog CE over table rows 1..n_rows-1: returns scale/M_total * sum_m
// loss_m and accumulates its gradients (dhs, drows may be NULL). The M x I
// logits are materialised: fine for the small catalogs of a test.
static double ref_ce(double *dhs, double *drows, const double *hs, const int32_t *tgt,
                     const double *table, int64_t n_rows, int64_t M, int64_t M_total, int64_t D,
                     double scale) {
  double *lg = t_alloc(n_rows, 8);
  double total = 0;
  const double coef = scale / (double)M_total;
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

// Sampled softmax / BCE with the collision rule written out directly.
static double ref_sampled(double *dhs, double *drows, const double *hs, const int32_t *cand,
                          const int32_t *ids, const double *rows, int64_t M, int64_t C, int64_t D,
                          lr_sampled_kind kind, double scale) {
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
        const double gj = scale / (double)M * g[j];
        if (dhs) dhs[m * D + i] += gj * rows[cand[m * C + j] * D + i];
        if (drows) drows[cand[m * C + j] * D + i] += gj * hs[m * D + i];
      }
  }
  free(s), free(g), free(use);
  return total / (double)M;
}

// ---- CE fixtures ---------------------------------------------------------------------

typedef struct {
  int64_t M, D, I, tile; // I real items: the table has I+1 rows
  int32_t *tgt;
  double *hs, *table, *scratch;
  float *hs_f, *table_f, *scratch_f;
} ce_fix;

static void ce_fix_init(ce_fix *f, int64_t M, int64_t D, int64_t I, double hs_scale,
                        uint64_t seed) {
  f->M = M, f->D = D, f->I = I, f->tile = I + 8;
  f->tgt = t_alloc(M, 4);
  for (int64_t m = 0; m < M; m++)
    f->tgt[m] = (int32_t)(1 + (m * 7 + 3) % I);
  f->tgt[M - 1] = (int32_t)I; // the last item, at the end of the last tile
  f->hs = t_alloc(M * D, 8), f->table = t_alloc((I + 1) * D, 8);
  t_fill_d(f->hs, M * D, seed, hs_scale);
  t_fill_d(f->table, (I + 1) * D, seed + 1, 1.0);
  // padding row 0 would win every softmax if it were a candidate
  for (int64_t i = 0; i < D; i++)
    f->table[i] = 40.0 * f->hs[i];
  f->scratch = t_alloc((int64_t)ce_scratch_elems(M, f->tile), 8);
  f->hs_f = t_alloc(M * D, 4), f->table_f = t_alloc((I + 1) * D, 4);
  f->scratch_f = t_alloc((int64_t)ce_scratch_elems(M, f->tile), 4);
  t_to_f(f->hs_f, f->hs, M * D), t_to_f(f->table_f, f->table, (I + 1) * D);
}

static void ce_fix_free(ce_fix *f) {
  free(f->tgt), free(f->hs), free(f->table), free(f->scratch), free(f->hs_f), free(f->table_f);
  free(f->scratch_f);
}

// ---- CE: tiled = naive ------------------------------------------------------------------

// M <= 8 rows take the loss's own loops (core/loss_impl.inc, CE_SMALL_M),
// more rows BLAS; D = 70 has whole vectors and a tail in the former.
static void test_ce_tiles(int64_t M, int64_t D) {
  ce_fix f;
  const int64_t I = 23, n = I + 1;
  printf("-- ce tiles, %lld rows, D %lld\n", (long long)M, (long long)D);
  ce_fix_init(&f, M, D, I, 1.0, 101);
  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(n * D, 8);
  const double rloss = ref_ce(rdh, rdr, f.hs, f.tgt, f.table, n, M, M, D, 1.0);
  const int64_t tiles[] = {1, 3, 4, 7, I, I + 1, I + 8};
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(n * D, 8);
  float *dh_f = t_alloc(M * D, 4), *dr_f = t_alloc(n * D, 4);
  for (size_t k = 0; k < sizeof tiles / sizeof *tiles; k++) {
    const int64_t tile = tiles[k];
    memset(dh, 0, M * D * 8), memset(dr, 0, n * D * 8);
    double loss = ce_forward_backward_f64(dh, dr, f.hs, f.tgt, f.table, n, M, D, tile, f.scratch);
    char name[120];
    snprintf(name, sizeof name, "ce tile=%lld (I=%lld) f64: loss = naive", (long long)tile,
             (long long)I);
    t_close_d(&loss, &rloss, 1, 1e-13, name);
    snprintf(name, sizeof name, "ce tile=%lld f64: dhs = naive", (long long)tile);
    t_close_d(dh, rdh, M * D, 1e-12, name);
    snprintf(name, sizeof name, "ce tile=%lld f64: drows = naive", (long long)tile);
    t_close_d(dr, rdr, n * D, 1e-12, name);

    memset(dh_f, 0, M * D * 4), memset(dr_f, 0, n * D * 4);
    double loss_f =
        ce_forward_backward(dh_f, dr_f, f.hs_f, f.tgt, f.table_f, n, M, D, tile, f.scratch_f);
    snprintf(name, sizeof name, "ce tile=%lld f32: loss vs naive f64", (long long)tile);
    t_close_d(&loss_f, &rloss, 1, 1e-5, name);
    snprintf(name, sizeof name, "ce tile=%lld f32: dhs vs naive f64", (long long)tile);
    t_close_f(dh_f, rdh, M * D, 1e-4, name);
    snprintf(name, sizeof name, "ce tile=%lld f32: drows vs naive f64", (long long)tile);
    t_close_f(dr_f, rdr, n * D, 1e-4, name);
    t_check(dr[0 * D] == 0.0 && dr[D - 1] == 0.0 && dr_f[0] == 0.0f && dr_f[D - 1] == 0.0f,
            "ce tile=%lld: padding row 0 gradient untouched", (long long)tile);
  }
  // Evaluation: NULL gradients, same loss.
  double loss = ce_forward_backward_f64(NULL, NULL, f.hs, f.tgt, f.table, n, M, D, 5, f.scratch);
  t_close_d(&loss, &rloss, 1, 1e-13, "ce: dhs = drows = NULL (evaluation) loss");
  // Backward twice = 2x.
  memset(dh, 0, M * D * 8), memset(dr, 0, n * D * 8);
  ce_forward_backward_f64(dh, dr, f.hs, f.tgt, f.table, n, M, D, 7, f.scratch);
  ce_forward_backward_f64(dh, dr, f.hs, f.tgt, f.table, n, M, D, 7, f.scratch);
  for (int64_t i = 0; i < M * D; i++)
    rdh[i] *= 2;
  for (int64_t i = 0; i < n * D; i++)
    rdr[i] *= 2;
  t_close_d(dh, rdh, M * D, 1e-12, "ce: backward twice = 2x (dhs)");
  t_close_d(dr, rdr, n * D, 1e-12, "ce: backward twice = 2x (drows)");
  free(rdh), free(rdr), free(dh), free(dr), free(dh_f), free(dr_f);
  ce_fix_free(&f);
}

// ---- CE: two slices combined = whole ---------------------------------------------------

static void test_ce_split(void) {
  ce_fix f;
  const int64_t M = 5, D = 4, I = 17, n = I + 1, tile = 4, M_total = M + 3;
  const double scale = 0.6;
  ce_fix_init(&f, M, D, I, 1.5, 202);
  double *whole = t_alloc(3 * M, 8), *a = t_alloc(3 * M, 8), *b = t_alloc(3 * M, 8);
  double *lse = t_alloc(M, 8), *lse_ab = t_alloc(M, 8);
  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(n * D, 8);
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(n * D, 8);
  ce_stats_f64(whole, whole + M, whole + 2 * M, f.hs, f.tgt, f.table, 0, n, M, D, tile, f.scratch);
  ce_lse_f64(lse, whole, whole + M, M);
  ref_ce(rdh, rdr, f.hs, f.tgt, f.table, n, M, M_total, D, scale);
  const int64_t ks[] = {1, 2, 5, 9, n - 1, n}; // k = 1 and k = n: one slice holds no candidate
  for (size_t q = 0; q < sizeof ks / sizeof *ks; q++) {
    const int64_t k = ks[q];
    for (int64_t i = 0; i < 3 * M; i++)
      a[i] = b[i] = 12345.0; // tlogit: untouched unless owned
    ce_stats_f64(a, a + M, a + 2 * M, f.hs, f.tgt, f.table, 0, k, M, D, tile, f.scratch);
    ce_stats_f64(b, b + M, b + 2 * M, f.hs, f.tgt, f.table + k * D, k, n, M, D, tile, f.scratch);
    int owned = 1;
    for (int64_t m = 0; m < M; m++) {
      const double *own = f.tgt[m] < k ? a : b, *other = f.tgt[m] < k ? b : a;
      owned &= own[2 * M + m] == whole[2 * M + m] && other[2 * M + m] == 12345.0;
    }
    t_check(owned, "ce split k=%lld: target logit set by the owning slice only", (long long)k);
    ce_stats_merge_f64(a, a + M, b, b + M, M);
    ce_lse_f64(lse_ab, a, a + M, M);
    char name[120];
    snprintf(name, sizeof name, "ce split k=%lld: merged lse = whole", (long long)k);
    t_close_d(lse_ab, lse, M, 1e-14, name);
    // backward per slice with the global lse sums to the whole gradient
    memset(dh, 0, M * D * 8), memset(dr, 0, n * D * 8);
    ce_backward_f64(dh, dr, f.hs, f.tgt, f.table, lse_ab, 0, k, M, M_total, D, tile, scale,
                    f.scratch, 0);
    ce_backward_f64(dh, dr + k * D, f.hs, f.tgt, f.table + k * D, lse_ab, k, n, M, M_total, D, tile,
                    scale, f.scratch, 0);
    snprintf(name, sizeof name, "ce split k=%lld: dhs (scale, M_total) = naive", (long long)k);
    t_close_d(dh, rdh, M * D, 1e-12, name);
    snprintf(name, sizeof name, "ce split k=%lld: drows = naive", (long long)k);
    t_close_d(dr, rdr, n * D, 1e-12, name);
  }
  // empty slice statistics
  ce_stats_f64(a, a + M, a + 2 * M, f.hs, f.tgt, f.table, 0, 1, M, D, tile, f.scratch);
  t_check(isinf(a[0]) && a[0] < 0 && a[M] == 0.0, "ce: slice [0,1) has no candidate (-inf, 0)");

  // float: two slices merged = whole in float
  float *af = t_alloc(3 * M, 4), *bf = t_alloc(3 * M, 4);
  float *lf = t_alloc(M, 4);
  const int64_t k = 7;
  ce_stats(af, af + M, af + 2 * M, f.hs_f, f.tgt, f.table_f, 0, k, M, D, tile, f.scratch_f);
  ce_stats(bf, bf + M, bf + 2 * M, f.hs_f, f.tgt, f.table_f + k * D, k, n, M, D, tile, f.scratch_f);
  ce_stats_merge(af, af + M, bf, bf + M, M);
  ce_lse(lf, af, af + M, M);
  t_close_f(lf, lse, M, 1e-6, "ce split k=7 f32: merged lse vs f64 whole");
  free(whole), free(a), free(b), free(lse), free(lse_ab), free(rdh), free(rdr), free(dh), free(dr);
  free(af), free(bf), free(lf);
  ce_fix_free(&f);
}

// ---- CE: finite differences -------------------------------------------------------------

typedef struct {
  ce_fix *f;
  int64_t tile, M_total;
  double scale;
} ce_fd_ctx;

// scale/M_total * sum_m loss_m through the tiled f64 kernels (stats, lse).
static double ce_fd_f(void *p) {
  ce_fd_ctx *c = p;
  ce_fix *f = c->f;
  const int64_t M = f->M;
  double *st = f->scratch + M * c->tile; // after the tile, as ce_forward_backward does
  ce_stats_f64(st, st + M, st + 2 * M, f->hs, f->tgt, f->table, 0, f->I + 1, M, f->D, c->tile,
               f->scratch);
  double s = 0;
  for (int64_t m = 0; m < M; m++)
    s += st[m] + log(st[M + m]) - st[2 * M + m];
  return c->scale / (double)c->M_total * s;
}

static void test_ce_fd(void) {
  ce_fix f;
  const int64_t M = 4, D = 6, I = 13, n = I + 1, tile = 5, M_total = 9;
  const double scale = 1.7;
  ce_fix_init(&f, M, D, I, 0.8, 303);
  ce_fd_ctx c = {&f, tile, M_total, scale};
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(n * D, 8), *lse = t_alloc(M, 8);
  double *st = t_alloc(3 * M, 8);
  ce_stats_f64(st, st + M, st + 2 * M, f.hs, f.tgt, f.table, 0, n, M, D, tile, f.scratch);
  ce_lse_f64(lse, st, st + M, M);
  ce_backward_f64(dh, dr, f.hs, f.tgt, f.table, lse, 0, n, M, M_total, D, tile, scale, f.scratch,
                  0);
  float *dh_f = t_alloc(M * D, 4), *dr_f = t_alloc(n * D, 4), *lse_f = t_alloc(M, 4);
  float *st_f = t_alloc(3 * M, 4);
  ce_stats(st_f, st_f + M, st_f + 2 * M, f.hs_f, f.tgt, f.table_f, 0, n, M, D, tile, f.scratch_f);
  ce_lse(lse_f, st_f, st_f + M, M);
  ce_backward(dh_f, dr_f, f.hs_f, f.tgt, f.table_f, lse_f, 0, n, M, M_total, D, tile, (float)scale,
              f.scratch_f, 0);
  // One tile (tile >= I): backward may take ce_stats's logits from scratch.
  {
    float *a = t_alloc(M * D, 4), *ar = t_alloc(n * D, 4), *b = t_alloc(M * D, 4);
    float *br = t_alloc(n * D, 4);
    ce_stats(st_f, st_f + M, st_f + 2 * M, f.hs_f, f.tgt, f.table_f, 0, n, M, D, n, f.scratch_f);
    ce_lse(lse_f, st_f, st_f + M, M);
    ce_backward(a, ar, f.hs_f, f.tgt, f.table_f, lse_f, 0, n, M, M_total, D, n, (float)scale,
                f.scratch_f, 0);
    ce_stats(st_f, st_f + M, st_f + 2 * M, f.hs_f, f.tgt, f.table_f, 0, n, M, D, n, f.scratch_f);
    ce_backward(b, br, f.hs_f, f.tgt, f.table_f, lse_f, 0, n, M, M_total, D, n, (float)scale,
                f.scratch_f, 1);
    t_check(!memcmp(a, b, M * D * 4) && !memcmp(ar, br, n * D * 4),
            "ce: one tile, backward on ce_stats's logits = recomputed (bitwise)");
    free(a), free(ar), free(b), free(br);
  }

  double *fd = t_alloc(n * D, 8);
  t_fd_grad(fd, ce_fd_f, &c, f.hs, M * D, FD_H);
  t_close_d(dh, fd, M * D, TOL_FD64, "ce: dhs f64 vs finite differences");
  t_close_f(dh_f, fd, M * D, TOL_FD32, "ce: dhs f32 vs finite differences");
  t_fd_grad(fd, ce_fd_f, &c, f.table, n * D, FD_H);
  t_close_d(dr, fd, n * D, TOL_FD64, "ce: drows f64 vs finite differences");
  t_close_f(dr_f, fd, n * D, TOL_FD32, "ce: drows f32 vs finite differences");
  int zero = 1;
  for (int64_t i = 0; i < D; i++)
    zero &= fd[i] == 0.0 && dr[i] == 0.0 && dr_f[i] == 0.0f;
  t_check(zero, "ce: row 0 is no candidate (finite differences and gradient are 0)");
  free(dh), free(dr), free(lse), free(st), free(dh_f), free(dr_f), free(lse_f), free(st_f);
  free(fd);
  ce_fix_free(&f);
}

// Large logits (|logit| ~ 1e3): the online max keeps exp from overflowing, and
// the running maximum moves between tiles.
static void test_ce_large(void) {
  ce_fix f;
  const int64_t M = 3, D = 4, I = 40, n = I + 1;
  ce_fix_init(&f, M, D, I, 300.0, 404);
  // make the largest logit of row 0 sit in the last tile
  for (int64_t i = 0; i < D; i++)
    f.table[(I - 1) * D + i] = f.hs[i] / 150.0;
  t_to_f(f.table_f, f.table, n * D);
  double *rdh = t_alloc(M * D, 8), *rdr = t_alloc(n * D, 8);
  const double rloss = ref_ce(rdh, rdr, f.hs, f.tgt, f.table, n, M, M, D, 1.0);
  float *dh_f = t_alloc(M * D, 4), *dr_f = t_alloc(n * D, 4);
  double loss_f =
      ce_forward_backward(dh_f, dr_f, f.hs_f, f.tgt, f.table_f, n, M, D, 6, f.scratch_f);
  t_check(isfinite(loss_f) && rloss > 100, "ce: large logits finite (loss %.3f)", loss_f);
  t_close_d(&loss_f, &rloss, 1, 1e-5, "ce: large logits f32 loss vs naive f64");
  t_close_f(dh_f, rdh, M * D, 1e-4, "ce: large logits f32 dhs vs naive f64");
  t_close_f(dr_f, rdr, n * D, 1e-4, "ce: large logits f32 drows vs naive f64");
  free(rdh), free(rdr), free(dh_f), free(dr_f);
  ce_fix_free(&f);
}

// ---- sampled ---------------------------------------------------------------------------

typedef struct {
  int64_t M, C, D, U;
  int32_t *cand, *ids;
  double *hs, *rows, *scratch;
  lr_sampled_kind kind;
  double scale;
} smp_ctx;

static double smp_f(void *p) {
  smp_ctx *c = p;
  return c->scale * sampled_forward_backward_f64(NULL, NULL, c->hs, c->cand, c->ids, c->rows, c->M,
                                                 c->C, c->D, c->kind, c->scale, c->scratch);
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
               0.75};
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
  double rloss = ref_sampled(rdh, rdr, c.hs, c.cand, c.ids, c.rows, M, C, D, kind, c.scale);
  double *dh = t_alloc(M * D, 8), *dr = t_alloc(U * D, 8);
  double loss = sampled_forward_backward_f64(dh, dr, c.hs, c.cand, c.ids, c.rows, M, C, D, kind,
                                             c.scale, c.scratch);
  char name[120];
  snprintf(name, sizeof name, "%s: loss (unscaled mean) = naive", kn);
  t_close_d(&loss, &rloss, 1, 1e-14, name);
  snprintf(name, sizeof name, "%s: dhs = naive", kn);
  t_close_d(dh, rdh, M * D, 1e-13, name);
  snprintf(name, sizeof name, "%s: drows = naive", kn);
  t_close_d(dr, rdr, U * D, 1e-13, name);

  float *hs_f = t_alloc(M * D, 4), *rows_f = t_alloc(U * D, 4), *sc_f = t_alloc(M * C, 4);
  float *dh_f = t_alloc(M * D, 4), *dr_f = t_alloc(U * D, 4);
  t_to_f(hs_f, c.hs, M * D), t_to_f(rows_f, c.rows, U * D);
  double loss_f = sampled_forward_backward(dh_f, dr_f, hs_f, c.cand, c.ids, rows_f, M, C, D, kind,
                                           (float)c.scale, sc_f);
  snprintf(name, sizeof name, "%s: f32 loss vs f64", kn);
  t_close_d(&loss_f, &loss, 1, 1e-6, name);

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
  t_close_f(dr_f, fd, U * D, TOL_FD32, name);

  // accumulation
  sampled_forward_backward_f64(dh, dr, c.hs, c.cand, c.ids, c.rows, M, C, D, kind, c.scale,
                               c.scratch);
  for (int64_t i = 0; i < M * D; i++)
    rdh[i] *= 2;
  for (int64_t i = 0; i < U * D; i++)
    rdr[i] *= 2;
  snprintf(name, sizeof name, "%s: backward twice = 2x (dhs)", kn);
  t_close_d(dh, rdh, M * D, 1e-13, name);
  snprintf(name, sizeof name, "%s: backward twice = 2x (drows)", kn);
  t_close_d(dr, rdr, U * D, 1e-13, name);

  // Collision masking, one row: candidates (t, t, n, t) act as (t, n); ids NULL
  // falls back to comparing the row indices.
  {
    const int32_t c4[4] = {2, 2, 5, 2}, c2[2] = {2, 5};
    const int32_t i4[4] = {7, 7, 8, 7};
    double s4[4], s2[2];
    double dh4[4] = {0}, dh2[4] = {0}, dr4[36] = {0}, dr2[36] = {0}, dr4n[36] = {0};
    double l4 =
        sampled_forward_backward_f64(dh4, dr4, c.hs, c4, i4, c.rows, 1, 4, D, kind, 1.0, s4);
    double l2 =
        sampled_forward_backward_f64(dh2, dr2, c.hs, c2, NULL, c.rows, 1, 2, D, kind, 1.0, s2);
    double l4n =
        sampled_forward_backward_f64(NULL, dr4n, c.hs, c4, NULL, c.rows, 1, 4, D, kind, 1.0, s4);
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
  free(dh), free(dr), free(hs_f), free(rows_f), free(sc_f), free(dh_f), free(dr_f), free(fd);
}

// Extreme scores stay finite (softplus / sigmoid written without overflow).
static void test_sampled_extreme(void) {
  const int64_t D = 2, C = 3;
  const float hs[2] = {100.0f, -80.0f}, rows[6] = {1, 0, -1, 0, 0, 1};
  // scores: row 0 -> 100, row 1 -> -100, row 2 -> -80; the target first, once
  // the best candidate (loss ~ 0) and once the worst (loss ~ 200).
  const int32_t cands[2][3] = {{0, 1, 2}, {1, 0, 2}};
  float dh[2] = {0, 0}, dr[6] = {0}, sc[3];
  for (int k = 0; k < 2; k++)
    for (int o = 0; o < 2; o++) {
      double l = sampled_forward_backward(dh, dr, hs, cands[o], NULL, rows, 1, C, D,
                                          (lr_sampled_kind)k, 1.0f, sc);
      int ok = isfinite(l) && (o == 0 ? l < 1e-6 : fabs(l - 200.0) < 1e-3);
      for (int i = 0; i < 2; i++)
        ok &= isfinite(dh[i]);
      for (int i = 0; i < 6; i++)
        ok &= isfinite(dr[i]);
      t_check(ok, "sampled %s: scores +-100, target %s: finite loss %.6g and gradients",
              k ? "bce" : "softmax", o ? "worst" : "best", l);
    }
}

// The threaded row passes of the cross-entropy give bitwise the serial loss
// and gradients: 37 rows (BLAS products; tiles of 50 over 300 items, uneven
// on 3 threads), and 3 rows of D = 70 (the small-M loops; columns past the
// vectors' end).
static void test_ce_threads(int64_t M, int64_t D) {
  ce_fix f;
  const int64_t I = 300, tile = 50;
  ce_fix_init(&f, M, D, I, 1.0, 909);
  float *dh[2], *dr[2];
  double loss[2];
  int ok = 1;
  for (int k = 0; k < 2; k++) {
    ok &= lr_par_set_threads(k ? 3 : 1) == LR_OK;
    dh[k] = t_alloc(M * D, 4), dr[k] = t_alloc((I + 1) * D, 4);
    loss[k] = ce_forward_backward(dh[k], dr[k], f.hs_f, f.tgt, f.table_f, I + 1, M, D, tile,
                                  f.scratch_f);
  }
  ok &= lr_par_set_threads(1) == LR_OK;
  ok &= loss[0] == loss[1] && !memcmp(dh[0], dh[1], M * D * 4) &&
        !memcmp(dr[0], dr[1], (I + 1) * D * 4);
  t_check(ok, "ce: %lld rows, D %lld: 3 threads give bitwise the 1-thread loss %.9g and gradients",
          (long long)M, (long long)D, loss[0]);
  for (int k = 0; k < 2; k++) free(dh[k]), free(dr[k]);
  ce_fix_free(&f);
}

int main(void) {
  test_ce_threads(37, 16);
  test_ce_threads(3, 70);
  test_ce_tiles(6, 5);
  test_ce_tiles(8, 70);
  test_ce_tiles(9, 70);
  test_ce_split();
  test_ce_fd();
  test_ce_large();
  test_sampled_kind(LR_SAMPLED_SOFTMAX);
  test_sampled_kind(LR_SAMPLED_BCE);
  test_sampled_extreme();
  return t_done();
}
