// test_ram.c: the ram architecture (core/arch_ram.c) beyond test_model's
// generic checks (which run every architecture x kind in float):
//   1. finite differences in double: the recursive encoder (3 blocks, the
//      users term, the released options sqrt(D) and positions from the end,
//      and the plain ones) is run in double by tests/ref_ram.c; the float
//      model's analytic gradient of L = sum <dout, out> over the loss rows
//      (positions all: every valid row; last: row n-1, through the fast
//      path) is compared with the 4-point central differences of that
//      reference for every parameter tensor, the users rows and E itself;
//      E's gradient is also taken per path (Q^0 and each block's K/V, E fed
//      separately to each), every path must carry a share of it and the
//      model's dE their sum; softmax, linrec and linrec_causal, RAM and RAM-u;
//   2. the positions=last fast path (cfg.last_only) equals the full path
//      bitwise: output row n-1 and every gradient (dense, item rows, users
//      rows) when only row n-1 carries a gradient, dropout on, for every
//      attention kind; and it is itself bitwise the same with 2 lanes and
//      chunks of one sequence;
//   3. initialisation: the released code's bounds (xavier in_proj and FFN
//      weights, U(+-1/sqrt(fan_in)) FFN biases), users rows at zero.
#include <math.h>   // sqrt, fabs
#include <stdlib.h> // free
#include <string.h> // memcpy, memset, memcmp

#include "lr.h"         // lr_error_msg
#include "model.h"      // lr_model, model_*
#include "par.h"        // lr_par_set_threads
#include "ref_layers.h" // t_alloc, t_fd_grad
#include "ref_ram.h"
#include "rng.h" // lr_philox, lr_below
#include "test_util.h"

// Shapes: three blocks, two heads, an inner size other than D, sequences of
// length N, partial and 1; every position a distinct item, so that an item
// row's gradient is s * dE of its one position.
#define I 24
#define N 6
#define D 8
#define H 2
#define L 3
#define F 12
#define B 3
static const int32_t LENS[B] = {N, 4, 1};
#define EPS 1e-8f
#define FD_H 1e-4      // parameters ~0.1-1: truncation O(h^4), rounding ~1e-12
#define FD_SAMPLES 6   // elements per parameter tensor
#define TOL_FD 1e-5    // float analytic gradient vs double differences (measured <= 9e-7)
#define TOL_FWD 1e-5   // float forward vs double reference
#define SHARE_MIN 1e-2 // every path's part of dE, relative to the total's largest

typedef struct {
  lr_model_cfg c;
  lr_model m;
  float *table, *users; // (I+1,D), (B,D)
  int32_t ids[B * N], idx[B * N];
  uint64_t rid[B * N];
  float dout[B * N * D]; // nonzero at the loss rows
  // the double side
  double *arena, *tab_d, *users_d; // the model's parameters, table and users in double
  double *eq0, *ekv[L];            // (B*N, D): E fed to Q^0 and to block l's K/V
  int path;                        // -1: every path from tab_d (embedding); else E arrays
} fx;

static uint64_t rnd(uint64_t key, uint64_t i, uint64_t n) {
  lr_rng4 r = lr_philox(key, 91, (uint32_t)i, (uint32_t)(i >> 32), 0, 0);
  return lr_below(r.v[0], r.v[1], n);
}

static int last_mode(const fx *f) { return f->c.last_only; }

// Is (b, t) a loss row?
static int loss_row(const fx *f, int64_t b, int64_t t, int last) {
  return t < LENS[b] && (!last || t == LENS[b] - 1);
}

// Parameters drawn larger than the init (as test_model) so every gradient
// stands well above float noise.
static void randomise(fx *f) {
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(&f->c, t);
  size_t off = 0;
  for (int i = 0; i < nt; off += t[i].elems, i++) {
    const char *nm = t[i].name;
    const int ln = nm[0] == 'l' && nm[1] == 'n', w = nm[strlen(nm) - 1] == 'w';
    const float sc = i == 0 ? 0.5f : ln ? (w ? 0.2f : 0.1f) : (w ? 0.3f : 0.1f);
    t_fill_f(f->m.params_mem + off, (int64_t)t[i].elems, 500 + (uint64_t)i, sc);
    if (ln && w)
      for (size_t j = 0; j < t[i].elems; j++) f->m.params_mem[off + j] += 1.0f;
  }
}

static int fx_init(fx *f, const lr_attn_ops *kind, int last, int released, int users, float p) {
  memset(f, 0, sizeof *f);
  f->c = (lr_model_cfg){.n_items = I,
                        .max_len = N,
                        .d = D,
                        .heads = H,
                        .layers = L,
                        .inner = F,
                        .dropout = p,
                        .ln_eps = EPS,
                        .attn = kind,
                        .arch = model_arch_find("ram"),
                        .last_only = last,
                        .emb_scale = released ? (float)sqrt((double)D) : 0.0f,
                        .pos_from_end = released,
                        .no_user_table = !users};
  if (model_init(&f->m, &f->c, B, 9) != LR_OK) {
    t_check(0, "%s: model_init: %s", kind->name, lr_error_msg());
    lr_error_clear();
    return -1;
  }
  randomise(f);
  f->table = t_alloc((I + 1) * D, sizeof(float));
  t_fill_f(f->table + D, I * D, 700, 0.5f); // row 0 (padding) stays 0
  f->users = t_alloc(B * D, sizeof(float));
  t_fill_f(f->users, B * D, 800, 0.3f);
  int32_t next = 1;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++) {
      const int64_t r = b * N + t;
      f->ids[r] = t < LENS[b] ? next++ : 0;
      f->idx[r] = f->ids[r] ? f->ids[r] : -1;
      f->rid[r] = (uint64_t)r;
    }
  t_fill_f(f->dout, B * N * D, 900, 1.0f);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++)
      if (!loss_row(f, b, t, last)) memset(f->dout + (b * N + t) * D, 0, D * sizeof(float));
  return 0;
}

static void fx_free(fx *f) {
  free(f->table), free(f->users), free(f->arena), free(f->tab_d), free(f->users_d), free(f->eq0);
  for (int l = 0; l < L; l++) free(f->ekv[l]);
  model_free(&f->m);
}

// The float model's forward and backward of L = sum <dout, out>: the output
// (B,N,D) into h, the dense gradient into g (n_params), the item rows' into
// gt ((I+1),D), the users rows' into gu (B,D).
static void fx_run(fx *f, lr_dropout dp, float *h, float *g, float *gt, float *gu) {
  lr_model *m = &f->m;
  lr_xs *dt = t_alloc((I + 1) * D, sizeof(lr_xs)), *du = t_alloc(B * D, sizeof(lr_xs));
  float *dout = t_alloc(B * N * D, sizeof(float));
  const float *seq[1] = {f->users};
  lr_xs *dseq[1] = {du};
  const int users = !f->c.no_user_table;
  model_zero_grad(m);
  const float *o =
      model_forward(m, f->idx, f->table, LENS, f->rid, B, dp, users ? seq : NULL);
  memcpy(h, o, (size_t)(B * N * D) * sizeof(float));
  memcpy(dout, f->dout, sizeof f->dout);
  model_backward(m, dt, dout, f->idx, f->rid, dp, users ? dseq : NULL);
  model_grads_to_float(m);
  memcpy(g, m->grads_mem, m->n_params * sizeof(float));
  for (int64_t i = 0; i < (I + 1) * D; i++) gt[i] = (float)xsum_value(dt[i]);
  for (int64_t i = 0; i < B * D; i++) gu[i] = users ? (float)xsum_value(du[i]) : 0.0f;
  free(dt), free(du), free(dout);
}

// ---- 1. finite differences in double --------------------------------------------------------

// The double side from the float model's current values.
static void fx_double(fx *f) {
  const size_t P = f->m.n_params;
  f->arena = t_alloc((int64_t)P, sizeof(double));
  f->tab_d = t_alloc((I + 1) * D, sizeof(double));
  f->users_d = t_alloc(B * D, sizeof(double));
  t_to_d(f->arena, f->m.params_mem, (int64_t)P);
  t_to_d(f->tab_d, f->table, (I + 1) * D);
  t_to_d(f->users_d, f->users, B * D);
  f->eq0 = t_alloc(B * N * D, sizeof(double));
  for (int l = 0; l < L; l++) f->ekv[l] = t_alloc(B * N * D, sizeof(double));
  for (int64_t b = 0; b < B; b++) ram_ref_embed(f->eq0 + b * N * D, &f->c, f->arena, f->tab_d,
                                                f->ids + b * N, LENS[b]);
  for (int l = 0; l < L; l++) memcpy(f->ekv[l], f->eq0, (size_t)(B * N * D) * sizeof(double));
  f->path = -1;
}

// The reference's outputs (B,N,D) at the valid rows (padded rows 0).
static void ref_out(fx *f, double *out) {
  double *e = t_alloc(N * D, sizeof(double));
  memset(out, 0, (size_t)(B * N * D) * sizeof(double));
  for (int64_t b = 0; b < B; b++) {
    const double *q0 = f->eq0 + b * N * D, *kv[L];
    if (f->path < 0) { // E from the table and positions (every path)
      ram_ref_embed(e, &f->c, f->arena, f->tab_d, f->ids + b * N, LENS[b]);
      q0 = e;
    }
    for (int l = 0; l < L; l++) kv[l] = f->path < 0 ? e : f->ekv[l] + b * N * D;
    ram_ref_forward(out + b * N * D, &f->c, f->arena, q0, kv,
                    f->c.no_user_table ? NULL : f->users_d + b * D, LENS[b]);
  }
  free(e);
}

static double ref_loss(void *v) {
  fx *f = v;
  double *out = t_alloc(B * N * D, sizeof(double)), s = 0;
  ref_out(f, out);
  for (int64_t i = 0; i < B * N * D; i++) s += (double)f->dout[i] * out[i];
  free(out);
  return s;
}

// max |g - fd| / max |fd| over n elements (float analytic vs double fd).
static double rel_err(const float *g, const double *fd, int64_t n) {
  double md = 0, mr = 0;
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)g[i] - fd[i]);
    md = d > md || d != d ? d : md;
    mr = fabs(fd[i]) > mr ? fabs(fd[i]) : mr;
  }
  return mr > 0 ? md / mr : md;
}

static double g_worst; // the largest FD error seen (reported at the end)

static void report(const char *name, const char *what, double e) {
  g_worst = e > g_worst ? e : g_worst;
  t_check(e <= TOL_FD && e == e, "%s: d%s vs double finite differences (rel err %.3g, tol %.0e)",
          name, what, e, TOL_FD);
}

static void check_fd(const lr_attn_ops *kind, int last, int released, int users) {
  fx f;
  if (fx_init(&f, kind, last, released, users, 0.0f)) return;
  char name[128];
  snprintf(name, sizeof name, "%s, positions %s%s, %s", kind->name, last ? "last (fast path)" : "all",
           users ? ", users" : ", RAM-u", released ? "sqrt(D), positions from the end" : "plain");
  const size_t P = f.m.n_params;
  float *h = t_alloc(B * N * D, sizeof(float)), *g = t_alloc((int64_t)P, sizeof(float));
  float *gt = t_alloc((I + 1) * D, sizeof(float)), *gu = t_alloc(B * D, sizeof(float));
  fx_run(&f, (lr_dropout){1, 0, 0, 0.0f, NULL}, h, g, gt, gu);
  fx_double(&f);
  // the forward at the loss rows
  double *out = t_alloc(B * N * D, sizeof(double));
  ref_out(&f, out);
  int64_t k = 0;
  float *hv = t_alloc(B * N * D, sizeof(float));
  double *rv = t_alloc(B * N * D, sizeof(double));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < N; t++)
      if (loss_row(&f, b, t, last))
        for (int64_t i = 0; i < D; i++, k++) hv[k] = h[(b * N + t) * D + i], rv[k] = out[(b * N + t) * D + i];
  char what[300];
  snprintf(what, sizeof what, "%s: output (loss rows) vs the double reference", name);
  t_close_f(hv, rv, k, TOL_FWD, what);
  // every parameter tensor, FD_SAMPLES elements each
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(&f.c, t);
  size_t off = 0;
  for (int i = 0; i < nt; off += t[i].elems, i++) {
    if (!t[i].elems) continue;
    float ga[FD_SAMPLES];
    double fd[FD_SAMPLES];
    for (int s = 0; s < FD_SAMPLES; s++) {
      const size_t j = off + (size_t)rnd(17 + (uint64_t)i, (uint64_t)s, t[i].elems);
      ga[s] = g[j];
      t_fd_grad(&fd[s], ref_loss, &f, f.arena + j, 1, FD_H);
    }
    report(name, t[i].name, rel_err(ga, fd, FD_SAMPLES));
  }
  if (users) { // every users element
    double *fd = t_alloc(B * D, sizeof(double));
    t_fd_grad(fd, ref_loss, &f, f.users_d, B * D, FD_H);
    report(name, "users rows", rel_err(gu, fd, B * D));
    free(fd);
  }
  // E: per path (Q^0, block l's K/V), each fed its own copy; their sum is
  // dE, which the item rows' gradient is s times (one position per row)
  const int64_t ne = B * N * D;
  double *fd_path[L + 1], *total = t_alloc(ne, sizeof(double));
  f.path = 0;
  for (int p = 0; p <= L; p++) {
    double *x = p == 0 ? f.eq0 : f.ekv[p - 1];
    fd_path[p] = t_alloc(ne, sizeof(double));
    for (int64_t b = 0; b < B; b++) t_fd_grad(fd_path[p] + b * N * D, ref_loss, &f, x + b * N * D, LENS[b] * D, FD_H);
    for (int64_t i = 0; i < ne; i++) total[i] += fd_path[p][i];
  }
  const double sc = released ? sqrt((double)D) : 1.0;
  float *de = t_alloc(ne, sizeof(float));
  for (int64_t r = 0; r < B * N; r++)
    if (f.ids[r])
      for (int64_t i = 0; i < D; i++) de[r * D + i] = (float)(gt[f.ids[r] * D + i] / sc);
  report(name, "E (= item rows / s; Q^0 + every block's K/V)", rel_err(de, total, ne));
  double tmax = 0;
  for (int64_t i = 0; i < ne; i++) tmax = fabs(total[i]) > tmax ? fabs(total[i]) : tmax;
  for (int p = 0; p <= L; p++) {
    double pm = 0;
    for (int64_t i = 0; i < ne; i++) pm = fabs(fd_path[p][i]) > pm ? fabs(fd_path[p][i]) : pm;
    char pn[32];
    snprintf(pn, sizeof pn, p ? "block %d's K/V" : "Q^0", p - 1);
    t_check(pm >= SHARE_MIN * tmax, "%s: dE through %s carries a share (%.3g of the total's max)",
            name, pn, tmax > 0 ? pm / tmax : 0.0);
    free(fd_path[p]);
  }
  // and E through the embedding: the position table's rows (sampled above
  // as tensor pos) and the item rows of the batch, from the table itself
  f.path = -1;
  {
    double fd[2 * D];
    float ga[2 * D];
    for (int s = 0; s < 2; s++) {
      const int32_t row = f.ids[s ? N + 1 : N - 1]; // two rows of two sequences
      t_fd_grad(fd + s * D, ref_loss, &f, f.tab_d + row * D, D, FD_H);
      memcpy(ga + s * D, gt + row * D, D * sizeof(float));
    }
    report(name, "item rows (table)", rel_err(ga, fd, 2 * D));
  }
  free(total), free(de), free(out), free(hv), free(rv), free(h), free(g), free(gt), free(gu);
  fx_free(&f);
  (void)last_mode;
}

// ---- 2. the fast path -------------------------------------------------------------------------

typedef struct {
  float *h, *g, *gt, *gu;
} run_out;

static run_out run_mode(const lr_attn_ops *kind, int last, int threads, int64_t chunk, int users) {
  run_out r = {0};
  fx f;
  lr_par_set_threads(threads);
  if (fx_init(&f, kind, last, 1, users, 0.2f)) return r;
  // dout at the last rows only, in both modes
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < LENS[b] - 1; t++) memset(f.dout + (b * N + t) * D, 0, D * sizeof(float));
  if (chunk) model_set_chunk(&f.m, chunk);
  r.h = t_alloc(B * N * D, sizeof(float));
  r.g = t_alloc((int64_t)f.m.n_params, sizeof(float));
  r.gt = t_alloc((I + 1) * D, sizeof(float));
  r.gu = t_alloc(B * D, sizeof(float));
  fx_run(&f, (lr_dropout){5, 2, 0, 0.2f, NULL}, r.h, r.g, r.gt, r.gu);
  r.gt[0] = (float)f.m.n_params; // carry the size (row 0 has no gradient)
  fx_free(&f);
  lr_par_set_threads(1);
  return r;
}

static void run_free(run_out *r) { free(r->h), free(r->g), free(r->gt), free(r->gu); }

static int same_last_rows(const float *a, const float *b) {
  int same = 1;
  for (int64_t s = 0; s < B; s++)
    same &= !memcmp(a + (s * N + LENS[s] - 1) * D, b + (s * N + LENS[s] - 1) * D, D * sizeof(float));
  return same;
}

static void check_fast(const lr_attn_ops *kind, int users) {
  run_out full = run_mode(kind, 0, 1, 0, users), fast = run_mode(kind, 1, 1, 0, users);
  run_out lanes = run_mode(kind, 1, 2, 1, users);
  if (!full.h || !fast.h || !lanes.h) goto out;
  const size_t P = (size_t)full.gt[0];
  const char *u = users ? "" : " (RAM-u)";
  t_check(same_last_rows(full.h, fast.h), "%s%s: fast path output row n-1 = full path's, bitwise",
          kind->name, u);
  t_check(!memcmp(full.g, fast.g, P * sizeof(float)) &&
              !memcmp(full.gt, fast.gt, (size_t)((I + 1) * D) * sizeof(float)) &&
              !memcmp(full.gu, fast.gu, (size_t)(B * D) * sizeof(float)),
          "%s%s: fast path gradients (dense, item rows, users rows) = full path's, bitwise",
          kind->name, u);
  t_check(same_last_rows(fast.h, lanes.h) && !memcmp(fast.g, lanes.g, P * sizeof(float)) &&
              !memcmp(fast.gt, lanes.gt, (size_t)((I + 1) * D) * sizeof(float)) &&
              !memcmp(fast.gu, lanes.gu, (size_t)(B * D) * sizeof(float)),
          "%s%s: fast path with 2 lanes and chunks of 1 = 1 lane, bitwise", kind->name, u);
out:
  run_free(&full), run_free(&fast), run_free(&lanes);
}

// ---- 3. initialisation -----------------------------------------------------------------------

static void check_init(void) {
  const int64_t d = 64, f = 32;
  lr_model_cfg c = {.n_items = 10, .max_len = 5, .d = d, .heads = 2, .layers = 2, .inner = f,
                    .ln_eps = EPS, .attn = attn_find("softmax"), .arch = model_arch_find("ram")};
  lr_model m;
  if (model_init(&m, &c, 1, 3) != LR_OK) {
    t_check(0, "init: model_init: %s", lr_error_msg());
    lr_error_clear();
    return;
  }
  struct {
    const char *name;
    double bound; // uniform in (-bound, bound), or 0: N(0, 0.02)
  } want[] = {{"q_w", sqrt(6.0 / (4 * d))},  {"kv_w", sqrt(6.0 / (4 * d))},
              {"fc1_w", sqrt(6.0 / (d + f))}, {"fc2_w", sqrt(6.0 / (d + f))},
              {"fc1_b", 1 / sqrt((double)d)}, {"fc2_b", 1 / sqrt((double)f)},
              {"o_w", 0},                     {"pos", 0}};
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(&c, t);
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    size_t off = 0;
    int i = 0;
    while (i < nt && strcmp(t[i].name, want[w].name)) off += t[i++].elems;
    if (i == nt) {
      t_check(0, "init: tensor %s", want[w].name);
      continue;
    }
    double mx = 0, s2 = 0;
    for (size_t e = 0; e < t[i].elems; e++) {
      const double x = m.params_mem[off + e];
      mx = fabs(x) > mx ? fabs(x) : mx;
      s2 += x * x;
    }
    const double sd = sqrt(s2 / (double)t[i].elems);
    if (want[w].bound > 0)
      t_check(mx <= want[w].bound && mx > 0.9 * want[w].bound &&
                  fabs(sd - want[w].bound / sqrt(3.0)) < 0.1 * want[w].bound,
              "init: %s uniform in +-%.4f (max %.4f, std %.4f)", want[w].name, want[w].bound, mx,
              sd);
    else
      t_check(fabs(sd - 0.02) < 0.004, "init: %s N(0, 0.02) (std %.4f)", want[w].name, sd);
  }
  lr_seq_group g[LR_MAX_SEQ_GROUPS];
  const int ng = model_seq_groups(&c, g);
  float row[64];
  model_init_rows(row, 5, 6, g[0].width, g[0].key, 3);
  int zero = 1;
  for (int i = 0; i < 64; i++) zero &= row[i] == 0.0f;
  t_check(ng == 1 && !strcmp(g[0].name, "users") && g[0].width == d && zero,
          "init: one users row group of width d, rows initialised to zero");
  c.no_user_table = 1;
  t_check(model_seq_groups(&c, g) == 0, "init: RAM-u has no row group");
  model_free(&m);
}

int main(void) {
  const char *kinds[] = {"softmax", "linrec", "linrec_causal"};
  for (int k = 0; k < 3; k++) {
    const lr_attn_ops *kind = attn_find(kinds[k]);
    check_fd(kind, 0, 1, 1);
    check_fd(kind, 1, 1, 1);
    check_fd(kind, k == 1, 0, k != 2);
  }
  printf("largest finite-difference error: %.3g (tol %.0e)\n", g_worst, TOL_FD);
  for (int k = 0; k < attn_count(); k++) check_fast(attn_get(k), 1);
  check_fast(attn_find("softmax"), 0);
  check_init();
  return t_done();
}
