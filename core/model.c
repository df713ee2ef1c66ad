// model.c: the encoder of model.h, assembled from layers.h and attention.h.
// Forward keeps every activation backward needs; backward walks the layers in
// reverse with one set of gradient temporaries, a sequence at a time, and
// adds exactly (xsum.h) into the dense gradient and into the batch's
// item-row gradients.
#include "model.h"

#include <math.h>   // sqrt
#include <string.h> // memset, memcpy
#include <time.h>   // clock_gettime

#include "lr.h"
#include "par.h" // lr_par_threads
#include "rng.h"

const char *const LR_PARAM_NAMES[LR_N_PARAM_TENSORS] = {
    "pos",   "ln0_w", "ln0_b", "qkv_w", "qkv_b", "o_w",   "o_b",  "ln1_w",
    "ln1_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b", "ln2_w", "ln2_b", "attn_p"};

#define INIT_STD 0.02
#define ITEM_TENSOR_ID 100u // init key of the item table (not in the arena)

// Dropout sites (rng keys): the embedding, then two per layer.
#define SITE_EMB 1u
#define SITE_ATTN(l) (8u * (uint32_t)((l) + 1))
#define SITE_FFN(l) (8u * (uint32_t)((l) + 1) + 1u)

size_t model_param_sizes(const lr_model_cfg *c, size_t s[LR_N_PARAM_TENSORS]) {
  size_t N = (size_t)c->max_len, D = (size_t)c->d, L = (size_t)c->layers, F = (size_t)c->inner;
  size_t A = attn_param_elems(c->attn, c->d, c->heads);
  size_t v[LR_N_PARAM_TENSORS] = {N * D,     D,     D,         L * 3 * D * D, L * 3 * D,
                                  L * D * D, L * D, L * D,     L * D,         L * F * D,
                                  L * F,     L * D * F, L * D, L * D,         L * D,
                                  L * A};
  size_t total = 0;
  for (int i = 0; i < LR_N_PARAM_TENSORS; i++) s[i] = v[i], total += v[i];
  return total;
}

void model_point_params(lr_params *p, float *mem, const lr_model_cfg *cfg) {
  size_t s[LR_N_PARAM_TENSORS];
  model_param_sizes(cfg, s);
  float **ptrs[LR_N_PARAM_TENSORS] = {&p->pos,   &p->ln0_w, &p->ln0_b, &p->qkv_w, &p->qkv_b,
                                      &p->o_w,   &p->o_b,   &p->ln1_w, &p->ln1_b, &p->fc1_w,
                                      &p->fc1_b, &p->fc2_w, &p->fc2_b, &p->ln2_w, &p->ln2_b,
                                      &p->attn_p};
  for (int i = 0; i < LR_N_PARAM_TENSORS; i++) {
    *ptrs[i] = mem;
    mem += s[i];
  }
}

// Sizes of the activation tensors in lr_acts order (one table so that the
// pointer set-up and the total cannot disagree).
#define N_ACTS 25

int64_t model_chunk_seqs(const lr_model_cfg *c) {
  return LR_CHUNK_ROWS / c->max_len < 1 ? 1 : LR_CHUNK_ROWS / c->max_len;
}

// Sequences per chunk (lr_model.chunk) for a capacity of max_B.
static int64_t chunk_seqs(const lr_model_cfg *c, int64_t max_B) {
  int64_t k = model_chunk_seqs(c);
  return k > max_B ? max_B : k;
}

static size_t acts_sizes(const lr_model_cfg *c, int64_t B, size_t s[N_ACTS]) {
  size_t R = (size_t)B * (size_t)c->max_len, D = (size_t)c->d, L = (size_t)c->layers,
         F = (size_t)c->inner;
  // the backward's chunk temporaries: one chunk's rows per lane
  size_t T = (size_t)lr_par_threads() * (size_t)chunk_seqs(c, B) * (size_t)c->max_len;
  size_t ac = attn_cache_elems(c->attn, B, c->max_len, c->d, c->heads);
  // one attention scratch per thread of the team (core/par.h)
  size_t as = attn_scratch_elems(c->attn, c->max_len, c->d, c->heads) * (size_t)lr_par_threads();
  size_t v[N_ACTS] = {R * D,         R * D,     R,         R,         R * D,     // emb..h0
                      L * R * 3 * D, L * ac,    L * R * D, L * R * D,            // qkv..res1
                      L * R * D,     L * R,     L * R,                           // s, ln1
                      L * R * F,     L * R * F, L * R * D,                       // fc1, gelu, res2
                      L * R * D,     L * R,     L * R,                           // h, ln2
                      R * D,         R * D,                                      // d_b, d_c
                      T * D,         T * D,     T * F,     T * 3 * D,            // d_a..d_qkv
                      as};
  size_t total = 0;
  for (int i = 0; i < N_ACTS; i++) s[i] = v[i], total += v[i];
  return total;
}

size_t model_acts_elems(const lr_model_cfg *cfg, int64_t max_B) {
  size_t s[N_ACTS];
  return acts_sizes(cfg, max_B, s);
}

static void point_acts(lr_acts *a, float *mem, const lr_model_cfg *c, int64_t B) {
  size_t s[N_ACTS];
  acts_sizes(c, B, s);
  float **ptrs[N_ACTS] = {&a->emb,  &a->ln0,      &a->ln0_mean, &a->ln0_rstd, &a->h0,
                          &a->qkv,  &a->attn_cache, &a->ctx,    &a->res1,     &a->s,
                          &a->ln1_mean, &a->ln1_rstd, &a->fc1,  &a->gelu,     &a->res2,
                          &a->h,    &a->ln2_mean, &a->ln2_rstd, &a->d_b,      &a->d_c,
                          &a->d_a,  &a->d_s,      &a->d_f2,     &a->d_qkv,    &a->attn_scratch};
  for (int i = 0; i < N_ACTS; i++) {
    *ptrs[i] = mem;
    mem += s[i];
  }
}

static void init_normal(float *x, size_t n, uint64_t seed, uint32_t tensor) {
  for (size_t e = 0; e < n; e++) {
    lr_rng4 r = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)(e >> 32), tensor, 0);
    x[e] = (float)(INIT_STD * lr_normal(r));
  }
}

static void init_const(float *x, size_t n, float v) {
  for (size_t i = 0; i < n; i++) x[i] = v;
}

void model_init_item_rows(float *rows, int64_t lo, int64_t hi, int64_t D, uint64_t seed) {
  for (int64_t r = lo; r < hi; r++) {
    float *row = rows + (size_t)(r - lo) * (size_t)D;
    if (r == 0) {
      memset(row, 0, (size_t)D * sizeof *row);
      continue;
    }
    for (int64_t j = 0; j < D; j++) {
      uint64_t e = (uint64_t)r * (uint64_t)D + (uint64_t)j;
      lr_rng4 q = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)(e >> 32),
                            ITEM_TENSOR_ID, 0);
      row[j] = (float)(INIT_STD * lr_normal(q));
    }
  }
}

void model_free(lr_model *m) {
  lr_free(m->params_mem);
  lr_free(m->grads_mem);
  lr_free(m->m_mem);
  lr_free(m->v_mem);
  lr_free(m->acts_mem);
  lr_free(m->keep_bits);
  lr_free(m->gx);
  lr_free(m->lane_gx_mem);
  lr_free(m->stage_mem);
  lr_free(m->lane_g);
  lr_free(m->lane_bad);
  memset(m, 0, sizeof *m);
}

int model_init(lr_model *m, const lr_model_cfg *cfg, int64_t max_B, uint64_t seed) {
  memset(m, 0, sizeof *m);
  LR_CHECK(cfg->d > 0 && cfg->heads > 0 && cfg->d % cfg->heads == 0, LR_ERR_ARG,
           "model: heads (%lld) must divide d (%lld)", (long long)cfg->heads, (long long)cfg->d);
  LR_CHECK(cfg->layers >= 1 && cfg->max_len >= 1 && cfg->inner >= 1 && max_B >= 1, LR_ERR_ARG,
           "model: layers, max_len, inner and batch must be positive");
  m->cfg = *cfg;
  m->max_B = max_B;
  m->lanes = lr_par_threads(); // as acts_sizes counts the attention scratch
  m->chunk = chunk_seqs(cfg, max_B);
  size_t s[LR_N_PARAM_TENSORS];
  m->n_params = model_param_sizes(cfg, s);
  m->attn_cache_elems = attn_cache_elems(cfg->attn, max_B, cfg->max_len, cfg->d, cfg->heads);
  m->attn_scratch_elems = attn_scratch_elems(cfg->attn, cfg->max_len, cfg->d, cfg->heads);
  m->acts_elems = model_acts_elems(cfg, max_B);
  m->params_mem = lr_calloc(m->n_params, sizeof(float), "model parameters");
  m->grads_mem = lr_calloc(m->n_params, sizeof(float), "model gradients");
  m->m_mem = lr_calloc(m->n_params, sizeof(float), "Adam first moments");
  m->v_mem = lr_calloc(m->n_params, sizeof(float), "Adam second moments");
  m->acts_mem = lr_calloc(m->acts_elems, sizeof(float), "activations");
  m->keep_bits = lr_calloc((size_t)(1 + 2 * cfg->layers) * (size_t)max_B * (size_t)cfg->max_len *
                               (size_t)lr_dropout_words(cfg->d),
                           sizeof(uint32_t), "dropout masks");
  m->lane_g = lr_calloc((size_t)m->lanes, sizeof(lr_params), "lane gradient views");
  m->lane_bad = lr_calloc((size_t)m->lanes, sizeof(uint32_t), "lane gradient flags");
  m->gx = lr_calloc(m->n_params, sizeof(lr_xs), "exact gradients");
  m->stage_mem = lr_calloc((size_t)m->lanes * m->n_params, sizeof(float), "gradient staging");
  if (m->lanes > 1)
    m->lane_gx_mem =
        lr_calloc((size_t)(m->lanes - 1) * m->n_params, sizeof(lr_xs), "lane gradients");
  if (!m->params_mem || !m->grads_mem || !m->m_mem || !m->v_mem || !m->acts_mem ||
      !m->keep_bits || !m->lane_g || !m->lane_bad || !m->gx || !m->stage_mem ||
      (m->lanes > 1 && !m->lane_gx_mem)) {
    model_free(m);
    lr_error_trace(__FILE__, __LINE__, __func__);
    return LR_ERR_NOMEM;
  }
  model_point_params(&m->p, m->params_mem, cfg);
  model_point_params(&m->g, m->grads_mem, cfg);
  for (int64_t k = 0; k < m->lanes; k++)
    model_point_params(&m->lane_g[k], m->stage_mem + (size_t)k * m->n_params, cfg);
  point_acts(&m->a, m->acts_mem, cfg, max_B);
  // Initialisation as the paper: Linear and embedding weights N(0, 0.02),
  // biases 0, LayerNorm (1, 0).
  lr_params *p = &m->p;
  init_normal(p->pos, s[0], seed, 0);
  init_const(p->ln0_w, s[1], 1.0f);
  init_normal(p->qkv_w, s[3], seed, 3);
  init_normal(p->o_w, s[5], seed, 5);
  init_const(p->ln1_w, s[7], 1.0f);
  init_normal(p->fc1_w, s[9], seed, 9);
  init_normal(p->fc2_w, s[11], seed, 11);
  init_const(p->ln2_w, s[13], 1.0f);
  // the attention kind's own parameters, layer by layer (zeros without an init)
  const size_t A = attn_param_elems(cfg->attn, cfg->d, cfg->heads);
  if (A && cfg->attn->param_init)
    for (int64_t l = 0; l < cfg->layers; l++)
      cfg->attn->param_init(p->attn_p + (size_t)l * A, cfg->d, cfg->heads, l, seed);
  return LR_OK;
}

void model_set_chunk(lr_model *m, int64_t seqs) {
  LR_ASSERT(seqs >= 1 && seqs <= chunk_seqs(&m->cfg, m->max_B));
  m->chunk = seqs;
}

void model_set_backward_hook(lr_model *m, lr_backward_hook fn, void *ctx) {
  m->hook = fn;
  m->hook_ctx = ctx;
}

int model_layer_slices(const lr_model_cfg *cfg, int64_t l, size_t *off, size_t *cnt) {
  size_t s[LR_N_PARAM_TENSORS], base = 0;
  model_param_sizes(cfg, s);
  int n = 0;
  for (int i = 0; i < LR_N_PARAM_TENSORS; i++) {
    int per_layer = i >= 3; // pos, ln0_w, ln0_b are the embedding part
    if (l < 0 && !per_layer) off[n] = base, cnt[n++] = s[i];
    if (l >= 0 && per_layer) {
      size_t each = s[i] / (size_t)cfg->layers;
      off[n] = base + (size_t)l * each, cnt[n++] = each;
    }
    base += s[i];
  }
  return n;
}

void model_zero_grad(lr_model *m) {
  memset(m->gx, 0, m->n_params * sizeof(lr_xs));
  m->grad_bad = 0;
}

void model_grads_to_float(lr_model *m) { xsum_to_float(m->grads_mem, m->gx, (int64_t)m->n_params); }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Charge the time since *t0 to phase ph and restart the clock. Lane 0 (the
// calling thread) keeps the books; the other lanes do the same work.
static void lap(lr_model *m, lr_model_phase ph, double *t0) {
  if (lr_par_part() != 0) return;
  double t = now_s();
  m->phase_s[ph] += t - *t0;
  *t0 = t;
}

double model_train_flops(const lr_model_cfg *c, int64_t loss_rows, int64_t cands) {
  const double N = (double)c->max_len, D = (double)c->d, F = (double)c->inner;
  // forward multiply-adds of one layer: QKV 3 N D^2, output N D^2, FFN 2 N D F,
  // and the attention kind's own count
  double layer = 3 * N * D * D + N * D * D + 2 * N * D * F;
  layer += c->attn->flops(c->max_len, c->d, c->heads);
  double fwd = (double)c->layers * layer + (double)loss_rows * (double)cands * D;
  return 2.0 * 3.0 * fwd;
}

// Dropout site s (key) of a chunk starting at row r0 of the batch; with
// p > 0 its mask bits are kept between forward and backward in keep_bits
// block k (the embedding 0, layer l's attention 1 + 2l, its FFN 2 + 2l).
static lr_dropout site(const lr_model *m, lr_dropout dp, uint32_t s, int64_t k, int64_t r0) {
  dp.site = s;
  const size_t rows = (size_t)m->max_B * (size_t)m->cfg.max_len;
  dp.bits = dp.p > 0.0f ? m->keep_bits + ((size_t)k * rows + (size_t)r0) *
                                            (size_t)lr_dropout_words(m->cfg.d)
                        : NULL;
  return dp;
}

// The attention kind's own parameters (or their gradient) of layer l, from
// the tensor t = attn_p of an arena's views (NULL when the kind has none).
static float *attn_prm(const lr_model *m, float *t, int64_t l) {
  const size_t A = attn_param_elems(m->cfg.attn, m->cfg.d, m->cfg.heads);
  return A ? t + (size_t)l * A : NULL;
}

// The calling thread's copy of the attention scratch.
static float *lane_attn_scratch(const lr_model *m) {
  return m->a.attn_scratch + (size_t)lr_par_part() * m->attn_scratch_elems;
}

// ---- lanes ------------------------------------------------------------------------------
// A lane runs sequences b0..b1-1 of the batch: rows r0 = b0*N .. of every
// (B*N, ...) activation, at the same place in the arena as a one-lane run
// (each layer's block stays B*N rows), so lanes only differ in which rows
// they touch and which gradient arena they add to.

// Run fn over the B sequences, one contiguous range per lane; on this thread
// alone when the team has grown past the lanes sized at model_init.
static void run_lanes(const lr_model *m, int64_t B, lr_par_fn fn, void *job) {
  if (lr_par_threads() <= m->lanes)
    lr_par_for(B, 1, fn, job);
  else
    fn(job, 0, B);
}

// The staging arena of the calling lane.
static lr_params *lane_grads(const lr_model *m) {
  int k = lr_par_part();
  LR_ASSERT(k < m->lanes);
  return &m->lane_g[k];
}

// The exact accumulator of lane k (lane 0's is gx itself).
static lr_xs *lane_gx(const lr_model *m, int64_t k) {
  return k == 0 ? m->gx : m->lane_gx_mem + (size_t)(k - 1) * m->n_params;
}

// The slices of layer l (-1: the embedding part) in the arena layout.
typedef struct {
  int n;
  size_t off[LR_N_PARAM_TENSORS], cnt[LR_N_PARAM_TENSORS];
} slices;

static slices layer_slices(const lr_model *m, int64_t l) {
  slices sl;
  sl.n = model_layer_slices(&m->cfg, l, sl.off, sl.cnt);
  return sl;
}

// Before a sequence: zero the calling lane's staging slices of layer l.
static void stage_zero(const lr_model *m, const slices *sl) {
  float *st = m->stage_mem + (size_t)lr_par_part() * m->n_params;
  for (int i = 0; i < sl->n; i++) memset(st + sl->off[i], 0, sl->cnt[i] * sizeof(float));
}

// After a sequence: add the calling lane's staging slices of layer l into
// its exact accumulator.
static void stage_take(lr_model *m, const slices *sl) {
  const int k = lr_par_part();
  const float *st = m->stage_mem + (size_t)k * m->n_params;
  lr_xs *acc = lane_gx(m, k);
  uint32_t bad = 0;
  for (int i = 0; i < sl->n; i++)
    bad |= xsum_add(acc + sl->off[i], st + sl->off[i], (int64_t)sl->cnt[i]);
  m->lane_bad[k] |= bad;
}

// Merge the lane accumulators' slices of layer l (-1: embedding part) into
// gx and zero them again (integer adds: exact in any order).
typedef struct {
  lr_model *m;
  slices sl;
} reduce_job;

static void reduce_part(void *vj, int64_t lo, int64_t hi) {
  const reduce_job *j = vj;
  const lr_model *m = j->m;
  size_t base = 0; // index of slice i's first element in [0, total)
  for (int i = 0; i < j->sl.n; base += j->sl.cnt[i], i++) {
    size_t a = (size_t)lo > base ? (size_t)lo - base : 0;
    size_t b = (size_t)hi - base < j->sl.cnt[i] ? (size_t)hi - base : j->sl.cnt[i];
    if ((size_t)hi <= base || a >= b) continue;
    for (int64_t k = 1; k < m->lanes; k++) {
      lr_xs *src = lane_gx(m, k) + j->sl.off[i] + a;
      xsum_merge(m->gx + j->sl.off[i] + a, src, (int64_t)(b - a));
      memset(src, 0, (b - a) * sizeof *src);
    }
  }
}

static void reduce_lanes(lr_model *m, int64_t l) {
  if (m->lanes < 2) return;
  reduce_job j = {.m = m, .sl = layer_slices(m, l)};
  size_t total = 0;
  for (int i = 0; i < j.sl.n; i++)
    total += j.sl.cnt[i];
  lr_par_for((int64_t)total, 1024, reduce_part, &j);
}

// Rows of a lane: sequences b0..b1-1 of the batch of m->B are rows
// r0 .. r0+nr-1 of each (R = B*N)-row block; RD, RF the block sizes (D and
// F columns), oD, oF the lane's offsets in them, nD, nF its element counts.
typedef struct {
  int64_t R, r0, nr;
  size_t RD, RF, oD, oF, nD, nF;
} lane_rows;

// First row of the calling lane's chunk temporaries (d_a, d_s, d_f2, d_qkv).
static size_t lane_tmp_row(const lr_model *m) {
  return (size_t)lr_par_part() * (size_t)m->chunk * (size_t)m->cfg.max_len;
}

static lane_rows lane_at(const lr_model *m, int64_t b0, int64_t b1) {
  const size_t N = (size_t)m->cfg.max_len, D = (size_t)m->cfg.d, F = (size_t)m->cfg.inner;
  const size_t R = (size_t)m->B * N, r0 = (size_t)b0 * N, nr = (size_t)(b1 - b0) * N;
  return (lane_rows){(int64_t)R, (int64_t)r0, (int64_t)nr, R * D, R * F,
                     r0 * D,     r0 * F,      nr * D,      nr * F};
}

// What the lanes of one forward or backward pass share: forward reads idx,
// rows; backward layer l reads dh and writes dhin (whole-batch buffers).
typedef struct {
  lr_model *m;
  const int32_t *idx;
  const float *rows;
  const uint64_t *row_ids;
  lr_dropout dp;
  int64_t l;
  float *dh, *dhin;
} lane_job;

// ---- forward --------------------------------------------------------------------------

static void forward_chunk(const lane_job *j, int64_t b0, int64_t b1) {
  lr_model *m = j->m;
  const lane_rows z = lane_at(m, b0, b1);
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, L = c->layers;
  const uint64_t *rid = j->row_ids ? j->row_ids + z.r0 : NULL;
  lr_acts *a = &m->a;
  const lr_params *p = &m->p;
  const lr_dropout dp = j->dp;
  double t0 = now_s();

  embedding_forward(a->emb + z.oD, j->idx + z.r0, j->rows, p->pos, b1 - b0, N, D);
  layernorm_forward(a->ln0 + z.oD, a->ln0_mean + z.r0, a->ln0_rstd + z.r0, a->emb + z.oD, p->ln0_w,
                    p->ln0_b, z.nr, D, c->ln_eps);
  dropout_forward(a->h0 + z.oD, a->ln0 + z.oD, rid, z.nr, D, site(m, dp, SITE_EMB, 0, z.r0));
  lap(m, LR_PHASE_EMBED, &t0);
  const float *h = a->h0;
  for (int64_t l = 0; l < L; l++) {
    float *qkv = a->qkv + (size_t)l * z.RD * 3, *ctx = a->ctx + (size_t)l * z.RD;
    float *res1 = a->res1 + (size_t)l * z.RD + z.oD, *s = a->s + (size_t)l * z.RD + z.oD;
    float *fc1 = a->fc1 + (size_t)l * z.RF + z.oF, *gelu = a->gelu + (size_t)l * z.RF + z.oF;
    float *res2 = a->res2 + (size_t)l * z.RD + z.oD, *hout = a->h + (size_t)l * z.RD;
    float *cache = a->attn_cache + (size_t)l * m->attn_cache_elems;
    const size_t lR = (size_t)l * (size_t)z.R + (size_t)z.r0; // per-row statistics
    // S = LayerNorm(H + Dropout(MultiHead(H) W_O + b_O))
    linear_forward(qkv + 3 * z.oD, h + z.oD, p->qkv_w + (size_t)l * 3 * D * D,
                   p->qkv_b + (size_t)l * 3 * D, z.nr, D, 3 * D);
    lap(m, LR_PHASE_PROJ, &t0);
    attn_forward_range(ctx + z.oD, cache, qkv, m->lens, c->attn, attn_prm(m, m->p.attn_p, l), B, b0, b1,
                       N, D, H, lane_attn_scratch(m));
    lap(m, LR_PHASE_ATTN, &t0);
    // the biases of W_O, W1 and W2 ride in the pass after their GEMM
    linear_forward(res1, ctx + z.oD, p->o_w + (size_t)l * D * D, NULL, z.nr, D, D);
    dropout_residual_forward(res1, res1, p->o_b + (size_t)l * D, h + z.oD, rid, z.nr, D,
                             site(m, dp, SITE_ATTN(l), 1 + 2 * l, z.r0));
    layernorm_forward(s, a->ln1_mean + lR, a->ln1_rstd + lR, res1, p->ln1_w + (size_t)l * D,
                      p->ln1_b + (size_t)l * D, z.nr, D, c->ln_eps);
    lap(m, LR_PHASE_PROJ, &t0);
    // H = LayerNorm(S + Dropout(W2 gelu(W1 S + b1) + b2))
    linear_forward(fc1, s, p->fc1_w + (size_t)l * F * D, NULL, z.nr, D, F);
    gelu_forward_train(gelu, fc1, p->fc1_b + (size_t)l * F, z.nr, F); // fc1 := gelu'
    linear_forward(res2, gelu, p->fc2_w + (size_t)l * D * F, NULL, z.nr, F, D);
    dropout_residual_forward(res2, res2, p->fc2_b + (size_t)l * D, s, rid, z.nr, D,
                             site(m, dp, SITE_FFN(l), 2 + 2 * l, z.r0));
    layernorm_forward(hout + z.oD, a->ln2_mean + lR, a->ln2_rstd + lR, res2,
                      p->ln2_w + (size_t)l * D, p->ln2_b + (size_t)l * D, z.nr, D, c->ln_eps);
    lap(m, LR_PHASE_FFN, &t0);
    h = hout;
  }
}

// A lane's sequences in chunks of m->chunk: each chunk runs the whole stack
// (forward) or the whole layer (backward) while its rows are in cache.
static void for_chunks(const lane_job *j, int64_t b0, int64_t b1,
                       void (*fn)(const lane_job *, int64_t, int64_t)) {
  for (int64_t b = b0; b < b1; b += j->m->chunk)
    fn(j, b, b1 - b > j->m->chunk ? b + j->m->chunk : b1);
}

static void forward_seqs(void *vj, int64_t b0, int64_t b1) { for_chunks(vj, b0, b1, forward_chunk); }

const float *model_forward(lr_model *m, const int32_t *idx, const float *rows, const int32_t *lens,
                           const uint64_t *row_ids, int64_t B, lr_dropout dp) {
  const lr_model_cfg *c = &m->cfg;
  LR_ASSERT(B >= 1 && B <= m->max_B);
  for (int64_t b = 0; b < B; b++)
    LR_ASSERT(lens[b] >= 1 && lens[b] <= c->max_len);
  m->B = B;
  m->lens = lens;
  lane_job j = {.m = m, .idx = idx, .rows = rows, .row_ids = row_ids, .dp = dp};
  run_lanes(m, B, forward_seqs, &j);
  return m->a.h + (size_t)(c->layers - 1) * (size_t)(B * c->max_len) * (size_t)c->d;
}

// ---- backward -------------------------------------------------------------------------

// Layer l of the backward: dh (B*N,D) is the gradient w.r.t. its output
// (overwritten as scratch), dhin receives the gradient w.r.t. its input.
static void backward_layer_chunk(const lane_job *j, int64_t b0, int64_t b1) {
  lr_model *m = j->m;
  const lane_rows z = lane_at(m, b0, b1);
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, l = j->l;
  const size_t lR = (size_t)l * (size_t)z.R + (size_t)z.r0;
  const uint64_t *rid = j->row_ids ? j->row_ids + z.r0 : NULL;
  const lr_acts *a = &m->a;
  const lr_params *p = &m->p;
  lr_params *g = lane_grads(m);
  const float *hin = (l ? a->h + (size_t)(l - 1) * z.RD : a->h0) + z.oD;
  const float *qkv = a->qkv + (size_t)l * z.RD * 3, *ctx = a->ctx + (size_t)l * z.RD + z.oD;
  const float *res1 = a->res1 + (size_t)l * z.RD + z.oD, *s = a->s + (size_t)l * z.RD + z.oD;
  const float *fc1 = a->fc1 + (size_t)l * z.RF + z.oF, *gelu = a->gelu + (size_t)l * z.RF + z.oF;
  const float *res2 = a->res2 + (size_t)l * z.RD + z.oD;
  const float *cache = a->attn_cache + (size_t)l * m->attn_cache_elems;
  float *dh = j->dh + z.oD, *dhin = j->dhin + z.oD;
  const size_t t = lane_tmp_row(m);
  float *ds = a->d_s + t * (size_t)D;
  float *dx = a->d_a + t * (size_t)D; // a dropout's input gradient (= a linear's output gradient)
  float *d_f2 = a->d_f2 + t * (size_t)F, *d_qkv = a->d_qkv + t * 3 * (size_t)D;
  double t0 = now_s();
  // H = LN2(res2), res2 = S + Dropout(FFN(S) + b2): in one pass dS's residual
  // part and, through the dropout, the FFN output's gradient dx (b2's sum)
  ln_dropout_backward(ds, dx, g->ln2_w + (size_t)l * D, g->ln2_b + (size_t)l * D,
                      g->fc2_b + (size_t)l * D, dh, res2, p->ln2_w + (size_t)l * D,
                      a->ln2_mean + lR, a->ln2_rstd + lR, rid, z.nr, D,
                      site(m, j->dp, SITE_FFN(l), 2 + 2 * l, z.r0));
  linear_backward_to(d_f2, g->fc2_w + (size_t)l * D * F, NULL, dx, gelu,
                     p->fc2_w + (size_t)l * D * F, z.nr, F, D);
  gelu_backward_stored(d_f2, fc1, (int64_t)z.nF); // d_f2 is now the gradient of fc1's output
  linear_backward(ds, g->fc1_w + (size_t)l * F * D, g->fc1_b + (size_t)l * F, d_f2, s,
                  p->fc1_w + (size_t)l * F * D, z.nr, D, F);
  lap(m, LR_PHASE_FFN, &t0);
  // S = LN1(res1), res1 = H_in + Dropout(ctx W_O^T + b_O): likewise, dhin
  // the residual part, dx the projection's output gradient
  ln_dropout_backward(dhin, dx, g->ln1_w + (size_t)l * D, g->ln1_b + (size_t)l * D,
                      g->o_b + (size_t)l * D, ds, res1, p->ln1_w + (size_t)l * D,
                      a->ln1_mean + lR, a->ln1_rstd + lR, rid, z.nr, D,
                      site(m, j->dp, SITE_ATTN(l), 1 + 2 * l, z.r0));
  // dh is free: reuse for dctx
  linear_backward_to(dh, g->o_w + (size_t)l * D * D, NULL, dx, ctx, p->o_w + (size_t)l * D * D,
                     z.nr, D, D);
  memset(d_qkv, 0, z.nD * 3 * sizeof(float));
  lap(m, LR_PHASE_PROJ, &t0);
  attn_backward_range(d_qkv, attn_prm(m, g->attn_p, l), dh, qkv, attn_prm(m, p->attn_p, l), cache, m->lens,
                      c->attn, B, b0, b1, N, D, H, lane_attn_scratch(m));
  lap(m, LR_PHASE_ATTN, &t0);
  linear_backward(dhin, g->qkv_w + (size_t)l * 3 * D * D, g->qkv_b + (size_t)l * 3 * D, d_qkv, hin,
                  p->qkv_w + (size_t)l * 3 * D * D, z.nr, D, 3 * D);
  lap(m, LR_PHASE_PROJ, &t0);
}

// A lane's sequences one at a time through layer j->l (-1: the embedding
// part): each one's parameter gradients are staged in float, then added
// exactly, so no float sum ever runs over two sequences.
static void backward_seqs(const lane_job *j, int64_t b0, int64_t b1,
                          void (*fn)(const lane_job *, int64_t, int64_t)) {
  const slices sl = layer_slices(j->m, j->l);
  for (int64_t b = b0; b < b1; b++) {
    stage_zero(j->m, &sl);
    fn(j, b, b + 1);
    stage_take(j->m, &sl);
  }
}

static void backward_layer_seqs(void *vj, int64_t b0, int64_t b1) {
  backward_seqs(vj, b0, b1, backward_layer_chunk);
}

// H^0 = Dropout(LN0(E)), E = rows[idx] + pos: dh (B*N,D) in, dE to d_b, the
// position rows' gradient (dE summed over the sequences) staged.
static void backward_embed_chunk(const lane_job *j, int64_t b0, int64_t b1) {
  lr_model *m = j->m;
  const lane_rows z = lane_at(m, b0, b1);
  const int64_t D = m->cfg.d;
  const lr_acts *a = &m->a;
  lr_params *g = lane_grads(m);
  float *dln = a->d_a + lane_tmp_row(m) * (size_t)D, *demb = a->d_b + z.oD;
  double t0 = now_s();
  memset(dln, 0, z.nD * sizeof(float));
  dropout_backward(dln, j->dh + z.oD, j->row_ids ? j->row_ids + z.r0 : NULL, z.nr, D,
                   site(m, j->dp, SITE_EMB, 0, z.r0));
  memset(demb, 0, z.nD * sizeof(float));
  layernorm_backward(demb, g->ln0_w, g->ln0_b, dln, a->emb + z.oD, m->p.ln0_w, a->ln0_mean + z.r0,
                     a->ln0_rstd + z.r0, z.nr, D);
  embedding_backward(NULL, g->pos, demb, NULL, b1 - b0, m->cfg.max_len, D);
  lap(m, LR_PHASE_EMBED, &t0);
}

static void backward_embed_seqs(void *vj, int64_t b0, int64_t b1) {
  backward_seqs(vj, b0, b1, backward_embed_chunk);
}

// drows (U,D) += dE summed over the positions of each distinct row, one
// position at a time (exact).
static uint32_t drows_add(lr_xs *drows, const float *demb, const int32_t *idx, int64_t R,
                          int64_t D) {
  uint32_t bad = 0;
  for (int64_t r = 0; r < R; r++)
    if (idx[r] >= 0)
      bad |= xsum_add(drows + (size_t)idx[r] * (size_t)D, demb + (size_t)r * (size_t)D, D);
  return bad;
}

void model_backward(lr_model *m, lr_xs *drows, float *dout, const int32_t *idx,
                    const uint64_t *row_ids, lr_dropout dp) {
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d;
  lr_acts *a = &m->a;
  float *dh = dout; // gradient w.r.t. the current layer's output
  for (int64_t l = c->layers - 1; l >= 0; l--) {
    // dh is dout or the previous d_c; the input gradient goes to the other
    lane_job j = {.m = m,
                  .row_ids = row_ids,
                  .dp = dp,
                  .l = l,
                  .dh = dh,
                  .dhin = dh == a->d_c ? dout : a->d_c};
    run_lanes(m, B, backward_layer_seqs, &j);
    reduce_lanes(m, l);
    dh = j.dhin;
    if (m->hook) m->hook(m->hook_ctx, l); // its time (starting a reduction) is the caller's
  }
  lane_job j = {.m = m, .row_ids = row_ids, .dp = dp, .l = -1, .dh = dh};
  run_lanes(m, B, backward_embed_seqs, &j);
  reduce_lanes(m, -1);
  double t0 = now_s();
  // rows repeat across lanes, so one thread adds the item rows' gradients
  uint32_t bad = drows ? drows_add(drows, a->d_b, idx, B * N, D) : 0;
  for (int64_t k = 0; k < m->lanes; k++) bad |= m->lane_bad[k], m->lane_bad[k] = 0;
  m->grad_bad |= bad;
  lap(m, LR_PHASE_EMBED, &t0);
  if (m->hook) m->hook(m->hook_ctx, -1);
}
