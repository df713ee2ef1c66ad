// test_torch_ref.c: replays the recorded PyTorch references of the whole model.
// tests/ref/make_ref.py builds the sasrec encoder of core/model.c in
// PyTorch (float64) and dumps, per attention kind (softmax, linrec_code) and
// init scale (the paper's std 0.02, and 0.2 where attention is far from
// uniform), the parameters, item table, a right-padded batch, the final
// hidden states, the positions=last full-catalog CE loss, every gradient and
// 10 Adam step losses; tests/ref/make_recgrela_ref.py does the same for the
// recgrela architecture, a port of the released RecGRELA, with the rela kinds
// (rela_released: the released padding semantics, registered here; rela:
// padded rows excluded; rela_causal); tests/ref/make_ram_ref.py for the ram
// architecture, a port of the released RAM (a users row per sequence, BCE
// with fixed negatives at every valid position or at the last one, Adam
// betas (0.9, 0.98); the last-position dumps replay through the fast path
// cfg.last_only). This test
// loads each dump into an lr_model and an lr_itemtab, runs the production
// float path (model_forward, ce_forward_backward, model_backward, adam_update
// as dist/train.c calls them) and compares every tensor with a relative
// tolerance (max|c - ref| / max|ref|, per tensor).
//
// Any mismatch, a missing dump or a malformed one makes the binary exit 1.
// The loader itself is checked on damaged copies (truncated, bad magic, bad
// ids): each must be rejected with a message.
// The format is documented in tests/ref/make_ref.py (writer) and below (reader).
#include <stdio.h>  // fopen, fread, printf
#include <stdlib.h> // malloc, free, mkstemp
#include <string.h> // memcpy, memset, strcmp
#include <unistd.h> // close, unlink

#include "itemtab.h"    // lr_itemtab
#include "le.h"         // le_get_u32, le_get_f32
#include "loss.h"       // ce_forward_backward, ce_scratch_elems
#include "lr.h"         // LR_CORRUPT, lr_error_msg
#include "model.h"      // lr_model, model_*
#include "optim.h"      // adam_update
#include "ref_layers.h" // t_alloc
#include "test_util.h"

#define TOL 1e-4 // relative error of every compared tensor
#define REF_VERSION 1u
#define REF_HEADER_BYTES 128
#define REF_MAX_DIM 4096 // sanity bound on every header dimension
#define REF_MAX_BYTES (1 << 24)
#define CE_TILE 8 // small, so the CE runs over several item tiles
static const char REF_MAGIC[8] = {'L', 'R', 'T', 'R', 'E', 'F', 0, 0};
static const char REF_TRAILER[8] = {'L', 'R', 'T', 'R', 'E', 'N', 'D', 0};

// ---- the dump --------------------------------------------------------------------
// Header (128 bytes): magic[8], u32 version, i32 attention kind, i32 I N D H L
// F B S, f32 ln_eps lr beta1 beta2 adam_eps, char name[16], f32 init std, char
// arch[16] at 88 (the architecture's name; zeros: sasrec), u32 flags at 104
// (REF_ALL, REF_BCE, REF_USERS; 0: CE at the last position, no users), f32
// embedding scale at 108 and u32 positions-from-the-end at 112 (ram; zeros:
// the plain form), zero padding.
// Payload: params (arena order), table (I+1,D), [users (B,D)], i32 ids (B,N),
// lens (B), tgt (B, or (B,N) with REF_ALL), [negatives, as tgt], hidden
// (B,N,D), loss (1), grads (arena order), table grad (I+1,D), [users grad
// (B,D)], Adam losses (S); trailer[8].
#define REF_ALL 1u   // a loss row at every valid position
#define REF_BCE 2u   // BCE with one negative per loss row (else full-catalog CE)
#define REF_USERS 4u // a users row per sequence (the ram users table)
#define REF_BLIN 8u  // Blin: B = 2P sequences (view v of example p at v*P + p), ids 0 inside
                     // the valid length are RandomPad's delimiters (masked keys), P targets;
                     // loss = mean CE of the views + 2 * bidirectional KL (make_blin_ref.py)
#define REF_RELU 16u // the FFN's activation is ReLU (model.ffn=relu; make_blin_ref.py)
#define BLIN_LAMBDA 2.0
typedef struct {
  lr_model_cfg cfg;
  int64_t B, S; // batch, Adam steps
  float lr, beta1, beta2, adam_eps, init_std;
  char name[17], arch[17];
  char label[80]; // "softmax (init std 0.02)", "recgrela/rela (init std 0.2)"
  uint32_t flags;  // REF_*
  size_t n_params, n_table, n_tgt; // n_tgt: B, or B*N with REF_ALL
  const float *params, *table, *users, *hidden, *grads, *tgrad, *ugrad, *losses;
  float loss;
  const int32_t *ids, *lens, *tgt, *neg; // neg: NULL without REF_BCE
  unsigned char *blob; // owns everything above
} ref_dump;

static void ref_free(ref_dump *r) {
  free(r->blob);
  memset(r, 0, sizeof *r);
}

// Read a whole file into a malloc'd buffer. LR_ERR_IO if it cannot be read,
// LR_ERR_CORRUPT if larger than REF_MAX_BYTES.
static int read_file(const char *path, unsigned char **buf, size_t *n) {
  *buf = NULL, *n = 0;
  FILE *f = fopen(path, "rb");
  LR_CHECK(f, LR_ERR_IO, "%s: cannot open (HINT: run /usr/bin/python3 tests/ref/make_ref.py)",
           path);
  unsigned char *b = malloc(REF_MAX_BYTES + 1);
  if (!b) {
    fclose(f);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: no memory", path);
  }
  size_t got = fread(b, 1, REF_MAX_BYTES + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || got > REF_MAX_BYTES) {
    free(b);
    if (bad) return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: read error", path);
    return LR_CORRUPT(path, REF_MAX_BYTES, "larger than %d bytes", REF_MAX_BYTES);
  }
  *buf = b, *n = got;
  return LR_OK;
}

// Load and validate a dump. On failure r is zeroed and the status (LR_ERR_IO,
// LR_ERR_CORRUPT) carries a message naming the file and byte offset.
static int ref_load(ref_dump *r, const char *path) {
  memset(r, 0, sizeof *r);
  const uint32_t one = 1;
  unsigned char endian;
  memcpy(&endian, &one, 1);
  LR_CHECK(endian == 1, LR_ERR_ARG, "the dumps are little-endian; this host is not");
  size_t size;
  LR_CALL(read_file(path, &r->blob, &size));
  const unsigned char *b = r->blob;
  int rc; // set by FAIL
#define FAIL(off, ...)                                                                             \
  do {                                                                                             \
    rc = LR_CORRUPT(path, (int64_t)(off), __VA_ARGS__);                                            \
    goto fail;                                                                                     \
  } while (0)
  if (size < REF_HEADER_BYTES) FAIL(size, "file of %zu bytes is shorter than the header", size);
  if (memcmp(b, REF_MAGIC, 8) != 0) FAIL(0, "bad magic (not a make_ref.py dump)");
  if (le_get_u32(b + 8) != REF_VERSION)
    FAIL(8, "version %u, expected %u", (unsigned)le_get_u32(b + 8), REF_VERSION);
  int32_t kind = (int32_t)le_get_u32(b + 12), dim[8];
  for (int i = 0; i < 8; i++) {
    dim[i] = (int32_t)le_get_u32(b + 16 + 4 * i);
    if (dim[i] < 1 || dim[i] > REF_MAX_DIM)
      FAIL(16 + 4 * i, "dimension %d out of range: %d", i, dim[i]);
  }
  memcpy(r->name, b + 68, 16);
  r->name[16] = 0;
  // the kind by name (the dump's number is its id at recording time, checked too)
  const lr_attn_ops *ops = attn_find(r->name);
  if (!ops) FAIL(68, "unknown attention kind '%s'", r->name);
  if (attn_id(ops) != kind)
    FAIL(12, "kind number %d does not match kind '%s' (id %d)", kind, r->name, attn_id(ops));
  memcpy(r->arch, b + 88, 16);
  r->arch[16] = 0;
  const lr_arch *arch = r->arch[0] ? model_arch_find(r->arch) : NULL;
  if (r->arch[0] && !arch) FAIL(88, "unknown architecture '%s'", r->arch);
  r->flags = le_get_u32(b + 104);
  if (r->flags & ~(REF_ALL | REF_BCE | REF_USERS | REF_BLIN | REF_RELU))
    FAIL(104, "unknown flags %#x", (unsigned)r->flags);
  const float scale = le_get_f32(b + 108);
  if (!(scale >= 0.0f && scale < 1e3f)) FAIL(108, "embedding scale %g", (double)scale);
  // a dump without REF_ALL has one loss row per sequence, its last: ram's fast path
  lr_model_cfg c = {dim[0], dim[1], dim[2], dim[3], dim[4], dim[5], 0.0f, le_get_f32(b + 48),
                    ops, arch, 0.0f, !(r->flags & REF_ALL), scale, le_get_u32(b + 112) != 0,
                    !(r->flags & REF_USERS), (r->flags & REF_RELU) != 0};
  lr_seq_group sg[LR_MAX_SEQ_GROUPS];
  if (model_seq_groups(&c, sg) != ((r->flags & REF_USERS) ? 1 : 0))
    FAIL(104, "the users flag does not match architecture '%s'", r->arch[0] ? r->arch : "sasrec");
  if (c.d % c.heads != 0)
    FAIL(28, "heads %lld do not divide d %lld", (long long)c.heads, (long long)c.d);
  r->cfg = c;
  r->B = dim[6], r->S = dim[7];
  r->lr = le_get_f32(b + 52), r->beta1 = le_get_f32(b + 56), r->beta2 = le_get_f32(b + 60);
  r->adam_eps = le_get_f32(b + 64);
  r->init_std = le_get_f32(b + 84);
  if (!(r->init_std > 0.0f && r->init_std < 10.0f)) FAIL(84, "init std %g", (double)r->init_std);
  snprintf(r->label, sizeof r->label, "%s%s%s%s (init std %g)", r->arch, r->arch[0] ? "/" : "",
           r->name,
           r->flags & REF_BCE    ? (r->flags & REF_ALL ? " BCE all" : " BCE last")
           : r->flags & REF_RELU ? " relu FFN"
                                 : "",
           (double)r->init_std);
  const size_t P = model_param_elems(&c), T = (size_t)(c.n_items + 1) * (size_t)c.d;
  const size_t B = (size_t)r->B, N = (size_t)c.max_len, D = (size_t)c.d;
  const size_t U = (r->flags & REF_USERS) ? B * D : 0, G = (r->flags & REF_ALL) ? B * N : (r->flags & REF_BLIN) ? B / 2 : B;
  r->n_params = P, r->n_table = T, r->n_tgt = G;
  const size_t want = REF_HEADER_BYTES +
                      4 * (P + T + U + B * N + B + G * ((r->flags & REF_BCE) ? 2 : 1) +
                           B * N * D + 1 + P + T + U + (size_t)r->S) +
                      8;
  if (size != want) FAIL(size, "file has %zu bytes, the header implies %zu", size, want);
  if (memcmp(b + size - 8, REF_TRAILER, 8) != 0) FAIL(size - 8, "bad trailer");
  // The payload is 4-byte aligned (header 128 bytes) and little-endian = host order.
  size_t off = REF_HEADER_BYTES;
#define TAKE(ptr, type, n)                                                                         \
  do {                                                                                             \
    (ptr) = (const type *)(const void *)(b + off);                                                 \
    off += 4 * (size_t)(n);                                                                        \
  } while (0)
  TAKE(r->params, float, P);
  TAKE(r->table, float, T);
  TAKE(r->users, float, U);
  size_t off_ids = off;
  TAKE(r->ids, int32_t, B * N);
  TAKE(r->lens, int32_t, B);
  TAKE(r->tgt, int32_t, G);
  if (r->flags & REF_BCE) TAKE(r->neg, int32_t, G);
  TAKE(r->hidden, float, B *N *D);
  r->loss = le_get_f32(b + off);
  off += 4;
  TAKE(r->grads, float, P);
  TAKE(r->tgrad, float, T);
  TAKE(r->ugrad, float, U);
  TAKE(r->losses, float, r->S);
#undef TAKE
  for (size_t i = 0; i < D; i++)
    if (r->table[i] != 0.0f) FAIL(REF_HEADER_BYTES + 4 * P, "item table row 0 is not zero");
  for (size_t bb = 0; bb < B; bb++) {
    const int32_t n = r->lens[bb];
    if (n < 1 || (size_t)n > N) FAIL(off_ids + 4 * (B * N + bb), "lens[%zu] = %d", bb, n);
    for (size_t p = 0; p < G / B; p++) { // targets (and negatives) of the sequence's loss rows
      const size_t k = bb * (G / B) + p;
      const int real = G == B || (int64_t)p < n;
      for (int w = 0; w < ((r->flags & REF_BCE) ? 2 : 1); w++) {
        const int32_t t = (w ? r->neg : r->tgt)[k];
        if (real ? t < 1 || t > c.n_items : t != 0)
          FAIL(off_ids + 4 * (B * N + B + w * G + k), "%s[%zu] = %d", w ? "negative" : "target",
               k, t);
      }
    }
    for (size_t p = 0; p < N; p++) {
      const int32_t id = r->ids[bb * N + p];
      const int delim = (r->flags & REF_BLIN) && id == 0 && (int64_t)p < n - 1;
      const int ok = (int64_t)p < n ? (id >= 1 && id <= c.n_items) || delim : id == 0;
      if (!ok) FAIL(off_ids + 4 * (bb * N + p), "ids[%zu,%zu] = %d with length %d", bb, p, id, n);
    }
  }
  return LR_OK;
fail:
  ref_free(r);
  return rc;
#undef FAIL
}

// ---- the C side ------------------------------------------------------------------

typedef struct {
  lr_model m;
  lr_itemtab tab;
  int32_t *idx;      // (B,N)
  uint64_t *row_ids; // (B,N)
  int64_t M;         // loss rows
  int64_t *lrow;     // (M) b*N + t of each loss row
  int32_t *ltgt, *cand; // (M) targets; (M,2) target and negative (REF_BCE)
  float *hs, *dhs;   // (M,D) loss rows
  float *dout;       // (B,N,D)
  float *ce_scratch;
  float *users, *ug, *um, *uv; // REF_USERS: the rows (B,D), their gradient, Adam moments
  lr_xs *ugx;                  // (B,D) their exact gradient
  const float *h; // (B,N,D) final hidden states of the last forward
  uint8_t *km;    // REF_BLIN: (B,N) key mask (0 at delimiters and padding)
} runner;

// REF_BLIN: the two-view loss over the whole catalog in one slice (as
// dist/table.c's replicated table_bkl): the M/2 pairs are rows k and M/2 + k
// of hs; dhs += and tab.gx += the gradients of the mean. Returns the mean.
static double blin_loss(runner *x, const ref_dump *r) {
  const int64_t P = x->M / 2, D = r->cfg.d, n = r->cfg.n_items + 1;
  const int64_t tile = ce_tile_items(CE_TILE, n);
  float *scr = t_alloc((int64_t)bkl_scratch_elems(P, tile, D), sizeof(float));
  float *g1 = t_alloc(P, sizeof(float)), *gm = t_alloc(2 * P, sizeof(float));
  float *tl = t_alloc(2 * P, sizeof(float)), *st = t_alloc(4 * P, sizeof(float));
  lr_xs *sx = t_alloc(4 * P, sizeof(lr_xs)), *da = t_alloc(2 * P * D, sizeof(lr_xs));
  const float *ha = x->hs, *hb = x->hs + P * D;
  for (int v = 0; v < 2; v++) {
    ce_rowmax(g1, v ? hb : ha, x->tab.w, 0, n, n, P, D, tile, P, scr);
    for (int64_t k = 0; k < P; k++) gm[2 * k + v] = g1[k];
  }
  bkl_sumexp(sx, tl, ha, hb, x->ltgt, x->tab.w, gm, 0, n, n, P, D, tile, P, scr);
  bkl_stats(st, gm, sx, P);
  double loss = 0;
  for (int64_t k = 0; k < P; k++) loss += bkl_row_loss(st + 4 * k, tl + 2 * k, BLIN_LAMBDA, NULL, NULL);
  bkl_backward(da, da + P * D, x->tab.gx, ha, hb, x->ltgt, NULL, x->tab.w, st, BLIN_LAMBDA, 0, n,
               n, P, D, tile, P, (float)(1.0 / (double)P), scr);
  for (int64_t i = 0; i < 2 * P * D; i++) x->dhs[i] += (float)xsum_value(da[i]);
  free(scr), free(g1), free(gm), free(tl), free(st), free(sx), free(da);
  return loss / (double)P;
}

// One training step's forward and backward on the dump's batch: zeroes the
// gradients, then leaves them in m.grads_mem and tab.g; returns the loss.
static double run_step(runner *x, const ref_dump *r) {
  const int64_t B = r->B, N = r->cfg.max_len, D = r->cfg.d, M = x->M;
  lr_dropout dp = {1, 0, 0, 0.0f, NULL};
  const float *seq[1] = {x->users};
  lr_xs *dseq[1] = {x->ugx};
  const int users = (r->flags & REF_USERS) != 0;
  model_zero_grad(&x->m);
  memset(x->tab.g, 0, r->n_table * sizeof(float));
  model_set_keymask(&x->m, x->km);
  const float *h = x->h =
      model_forward(&x->m, x->idx, x->tab.w, r->lens, x->row_ids, B, dp, users ? seq : NULL);
  for (int64_t k = 0; k < M; k++)
    memcpy(x->hs + k * D, h + x->lrow[k] * D, (size_t)D * sizeof(float));
  memset(x->dhs, 0, (size_t)(M * D) * sizeof(float));
  double loss;
  if (r->flags & REF_BLIN) {
    loss = blin_loss(x, r);
  } else if (r->flags & REF_BCE) { // main.py's loss: the mean over the loss rows (coef 1/M)
    lr_xs lx = {0, 0, 0};
    sampled_forward_backward(&lx, x->dhs, x->tab.gx, x->hs, x->cand, x->cand, x->tab.w, M, 2, D,
                             LR_SAMPLED_BCE, (float)(1.0 / (double)M), x->ce_scratch);
    loss = xsum_value(lx) / (double)M;
  } else {
    loss = ce_forward_backward(x->dhs, x->tab.g, x->hs, x->ltgt, x->tab.w, r->cfg.n_items + 1, M,
                               D, CE_TILE, x->ce_scratch);
  }
  memset(x->dout, 0, (size_t)(B * N * D) * sizeof(float));
  for (int64_t k = 0; k < M; k++)
    memcpy(x->dout + x->lrow[k] * D, x->dhs + k * D, (size_t)D * sizeof(float));
  if (users) memset(x->ugx, 0, (size_t)(B * D) * sizeof(lr_xs));
  model_backward(&x->m, x->tab.gx, x->dout, x->idx, x->row_ids, dp, users ? dseq : NULL);
  model_grads_to_float(&x->m);
  for (size_t i = 0; i < r->n_table; i++) {
    x->tab.g[i] += (float)xsum_value(x->tab.gx[i]);
    x->tab.gx[i] = (lr_xs){0, 0, 0};
  }
  for (int64_t i = 0; users && i < B * D; i++) x->ug[i] = (float)xsum_value(x->ugx[i]);
  return loss;
}

// Relative comparison of a float tensor with the float dump of a reference.
static double cmp(const float *a, const float *ref, int64_t n, const char *kind, const char *what) {
  double *rd = t_alloc(n, sizeof(double));
  for (int64_t i = 0; i < n; i++)
    rd[i] = ref[i];
  char name[160];
  snprintf(name, sizeof name, "%s: %s vs PyTorch", kind, what);
  double e = t_close_f(a, rd, n, TOL, name);
  free(rd);
  return e;
}

static void check_dump(const char *path) {
  ref_dump r;
  int rc = ref_load(&r, path);
  t_check(rc == LR_OK, "%s: load%s%s", path, rc ? ": " : "", rc ? lr_error_msg() : "");
  lr_error_clear();
  if (rc != LR_OK) return;
  const char *kn = r.label;
  const int64_t B = r.B, N = r.cfg.max_len, D = r.cfg.d;
  runner x;
  memset(&x, 0, sizeof x);
  if (model_init(&x.m, &r.cfg, B, 7) != LR_OK || itemtab_init(&x.tab, 0, r.cfg.n_items + 1, D, 7)) {
    t_check(0, "%s: model_init/itemtab_init: %s", kn, lr_error_msg());
    lr_error_clear();
    goto done;
  }
  t_check(x.m.n_params == r.n_params, "%s: arena of %zu floats matches the dump's %zu", kn,
          x.m.n_params, r.n_params);
  memcpy(x.m.params_mem, r.params, r.n_params * sizeof(float));
  memcpy(x.tab.w, r.table, r.n_table * sizeof(float));
  x.idx = t_alloc(B * N, sizeof(int32_t));
  x.row_ids = t_alloc(B * N, sizeof(uint64_t));
  x.lrow = t_alloc(B * N, sizeof(int64_t));
  x.ltgt = t_alloc(B * N, sizeof(int32_t));
  x.cand = t_alloc(2 * B * N, sizeof(int32_t));
  x.hs = t_alloc(B * N * D, sizeof(float));
  x.dhs = t_alloc(B * N * D, sizeof(float));
  x.dout = t_alloc(B * N * D, sizeof(float));
  x.ce_scratch = t_alloc((int64_t)ce_fb_scratch_elems(B * N, CE_TILE, D, r.cfg.n_items + 1) + 2 * B * N,
                         sizeof(float));
  for (int64_t i = 0; i < B * N; i++) {
    x.idx[i] = r.ids[i] ? r.ids[i] : -1; // as dist/embed.c emb_lookup_local: table local
    x.row_ids[i] = (uint64_t)i;
  }
  // the loss rows: every valid position (REF_ALL) or each sequence's last
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = (r.flags & REF_ALL) ? 0 : r.lens[b] - 1; t < r.lens[b]; t++) {
      const size_t k = (r.flags & REF_ALL)    ? (size_t)(b * N + t)
                       : (r.flags & REF_BLIN) ? (size_t)(b % (B / 2))
                                              : (size_t)b;
      x.lrow[x.M] = b * N + t;
      x.ltgt[x.M] = r.tgt[k];
      x.cand[2 * x.M] = r.tgt[k];
      x.cand[2 * x.M + 1] = r.neg ? r.neg[k] : r.tgt[k];
      x.M++;
    }
  if (r.flags & REF_BLIN) {
    x.km = t_alloc(B * N, sizeof(uint8_t));
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < N; t++) x.km[b * N + t] = t < r.lens[b] && r.ids[b * N + t] != 0;
  }
  if (r.flags & REF_USERS) {
    x.users = t_alloc(B * D, sizeof(float));
    x.ug = t_alloc(B * D, sizeof(float));
    x.um = t_alloc(B * D, sizeof(float));
    x.uv = t_alloc(B * D, sizeof(float));
    x.ugx = t_alloc(B * D, sizeof(lr_xs));
    memcpy(x.users, r.users, (size_t)(B * D) * sizeof(float));
  }
  double loss = run_step(&x, &r);

  // hidden states at valid positions (padded outputs are unspecified); ram's
  // fast path computes each sequence's last row only
  const float *h = x.h;
  const int fast = r.cfg.last_only && !strcmp(r.arch, "ram");
  int64_t nv = 0;
  float *hv = t_alloc(B * N * D, sizeof(float)), *rv = t_alloc(B * N * D, sizeof(float));
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = fast ? (r.lens[b] - 1) * D : 0; i < r.lens[b] * D; i++, nv++) {
      hv[nv] = h[b * N * D + i];
      rv[nv] = r.hidden[b * N * D + i];
    }
  cmp(hv, rv, nv, kn, fast ? "hidden states (last rows: the fast path)" : "hidden states (valid positions)");
  free(hv);
  free(rv);
  float lf = (float)loss;
  cmp(&lf, &r.loss, 1, kn, "loss");

  lr_tensor tensors[LR_MAX_TENSORS];
  const int nt = model_tensors(&r.cfg, tensors);
  size_t off = 0;
  for (int i = 0; i < nt; i++) {
    char what[64];
    snprintf(what, sizeof what, "d%s", tensors[i].name);
    cmp(x.m.grads_mem + off, r.grads + off, (int64_t)tensors[i].elems, kn, what);
    off += tensors[i].elems;
  }
  cmp(x.tab.g, r.tgrad, (int64_t)r.n_table, kn, "ditem_table");
  if (r.flags & REF_USERS) cmp(x.ug, r.ugrad, B * D, kn, "dusers (the batch's rows)");

  // Adam on the same batch, as dist/train.c: dense arena, then item rows 1..I.
  if (r.S > 0) {
    lr_adam_cfg ac = {r.lr, r.beta1, r.beta2, r.adam_eps, 0.0f};
    float *losses = t_alloc(r.S, sizeof(float));
    losses[0] = (float)loss;
    for (int64_t s = 1; s <= r.S; s++) {
      if (s > 1) losses[s - 1] = (float)run_step(&x, &r);
      adam_update(x.m.params_mem, x.m.m_mem, x.m.v_mem, x.m.grads_mem, (int64_t)x.m.n_params, ac,
                  s);
      adam_update(x.tab.w + D, x.tab.m + D, x.tab.v + D, x.tab.g + D, (int64_t)r.n_table - D, ac,
                  s);
      if (r.flags & REF_USERS) adam_update(x.users, x.um, x.uv, x.ug, B * D, ac, s);
    }
    char what[64];
    snprintf(what, sizeof what, "%lld Adam step losses", (long long)r.S);
    cmp(losses, r.losses, r.S, kn, what);
    free(losses);
  }
done:
  free(x.idx);
  free(x.row_ids);
  free(x.lrow), free(x.ltgt), free(x.cand);
  free(x.users), free(x.ug), free(x.um), free(x.uv), free(x.ugx), free(x.km);
  free(x.hs);
  free(x.dhs);
  free(x.dout);
  free(x.ce_scratch);
  itemtab_free(&x.tab);
  model_free(&x.m);
  ref_free(&r);
}

// ---- the loader rejects damaged dumps ------------------------------------------------

// Write n bytes of buf to a fresh temporary file, with one byte optionally
// changed (at >= 0); returns its path in tmpl (caller unlinks) or 0 on failure.
static int write_tmp(char tmpl[32], const unsigned char *buf, size_t n, long at, int val) {
  strcpy(tmpl, "/tmp/lr_ref_XXXXXX");
  int fd = mkstemp(tmpl);
  if (fd < 0) return 0;
  close(fd);
  FILE *f = fopen(tmpl, "wb");
  if (!f) return 0;
  int ok = fwrite(buf, 1, n, f) == n;
  if (ok && at >= 0) ok = fseek(f, at, SEEK_SET) == 0 && fputc(val, f) == val;
  return fclose(f) == 0 && ok;
}

static void check_damaged(const char *path) {
  unsigned char *buf;
  size_t n;
  if (read_file(path, &buf, &n) != LR_OK) {
    lr_error_clear();
    return; // the missing file is reported by check_dump
  }
  struct {
    const char *what;
    size_t len;
    long at;
    int val;
  } cases[] = {
      {"truncated by 4 bytes", n - 4, -1, 0},
      {"bad magic", n, 0, 'X'},
      {"bad version", n, 8, 9},
      {"kind out of range", n, 12, 99},
      {"padding id in a valid position", n, REF_HEADER_BYTES + 4 * 0, 0}, // patched below
      {"empty file", 0, -1, 0},
      {"unknown flags", n, 104, 0x40},
  };
  // the first id of the dump: after params and table
  {
    ref_dump r;
    if (ref_load(&r, path) == LR_OK) {
      cases[4].at = (long)((const unsigned char *)r.ids - r.blob);
      ref_free(&r);
    }
    lr_error_clear();
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char tmp[32];
    if (!write_tmp(tmp, buf, cases[i].len, cases[i].at, cases[i].val)) {
      t_check(0, "loader: cannot write a temporary file");
      continue;
    }
    ref_dump r;
    int rc = ref_load(&r, tmp);
    t_check(rc == LR_ERR_CORRUPT && r.blob == NULL, "loader rejects a dump with %s (%s)",
            cases[i].what, rc ? lr_error_msg() : "accepted");
    lr_error_clear();
    if (rc == LR_OK) ref_free(&r);
    unlink(tmp);
  }
  free(buf);
}

extern const lr_attn_ops lr_attn_rela_released; // core/attn_rela.c: replay only

int main(void) {
  // the released RecGRELA's padding semantics, for its replay only (id 10, as
  // recorded: after the 10 built-in kinds)
  t_check(attn_register(&lr_attn_rela_released) == 10, "registry: rela_released registered");
  static const char *const dumps[] = {
      LR_TEST_DIR "/ref/model_softmax.bin",
      LR_TEST_DIR "/ref/model_softmax_wide.bin",
      LR_TEST_DIR "/ref/model_linrec_code.bin",
      LR_TEST_DIR "/ref/model_linrec_code_wide.bin",
      LR_TEST_DIR "/ref/recgrela_rela_released.bin",
      LR_TEST_DIR "/ref/recgrela_rela_released_wide.bin",
      LR_TEST_DIR "/ref/recgrela_rela.bin",
      LR_TEST_DIR "/ref/recgrela_rela_wide.bin",
      LR_TEST_DIR "/ref/recgrela_rela_causal.bin",
      LR_TEST_DIR "/ref/recgrela_rela_causal_wide.bin",
      LR_TEST_DIR "/ref/ram_softmax_all.bin",
      LR_TEST_DIR "/ref/ram_softmax_all_wide.bin",
      LR_TEST_DIR "/ref/ram_softmax_last.bin",
      LR_TEST_DIR "/ref/ram_softmax_last_wide.bin",
      LR_TEST_DIR "/ref/blin_blin.bin",
      LR_TEST_DIR "/ref/blin_blin_wide.bin",
      LR_TEST_DIR "/ref/blin_blin_relu.bin"};
  for (size_t i = 0; i < sizeof dumps / sizeof dumps[0]; i++)
    check_dump(dumps[i]);
  check_damaged(dumps[0]);
  return t_done();
}
