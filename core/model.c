// model.c: the model engine of model.h: arenas laid out from the
// architecture's tables, lanes and forward chunks, the per-sequence backward
// with exact gradient sums (xsum.h), dropout masks and the backward hook.
// What a layer computes is the architecture's (core/arch_*.c, model_arch.h).
#include "model.h"

#include <math.h>   // sqrt
#include <string.h> // memset, strcmp
#include <time.h>   // clock_gettime

#include "lr.h"
#include "model_arch.h"
#include "par.h" // lr_par_threads, lr_par_for, lr_par_part
#include "rng.h"

#define INIT_STD 0.02
#define ITEM_TENSOR_ID 100u // init key of the item table (not in the arena)

// ---- architectures -----------------------------------------------------------------------

// The built-in architectures, in the order of their ids.
// recgrela_nogate, _noconv, _norope: RecGRELA's ablations (core/arch_recgrela.c).
extern const lr_arch lr_arch_sasrec, lr_arch_recgrela, lr_arch_recgrela_nogate,
    lr_arch_recgrela_noconv, lr_arch_recgrela_norope, lr_arch_ram;

#define ARCH_MAX 16
static const lr_arch *g_archs[ARCH_MAX] = {&lr_arch_sasrec,          &lr_arch_recgrela,
                                           &lr_arch_recgrela_nogate, &lr_arch_recgrela_noconv,
                                           &lr_arch_recgrela_norope, &lr_arch_ram};
static int g_n_archs = 6;
static const char *g_arch_names[ARCH_MAX + 1];

int model_arch_count(void) { return g_n_archs; }

const lr_arch *model_arch_get(int id) { return id >= 0 && id < g_n_archs ? g_archs[id] : NULL; }

const lr_arch *model_arch_find(const char *name) {
  for (int i = 0; name && i < g_n_archs; i++)
    if (!strcmp(g_archs[i]->name, name)) return g_archs[i];
  return NULL;
}

const char *model_arch_name(const lr_arch *a) { return (a ? a : &lr_arch_sasrec)->name; }

const char *const *model_arch_names(void) {
  for (int i = 0; i < g_n_archs; i++)
    g_arch_names[i] = g_archs[i]->name;
  g_arch_names[g_n_archs] = NULL;
  return g_arch_names;
}

int model_arch_register(const lr_arch *a) {
  LR_CHECK(a && a->name && a->tensors && a->acts && a->keep_blocks && a->fwd && a->bwd &&
               a->output && a->layer_flops,
           LR_ERR_ARG, "architecture %s: a required function is missing",
           a && a->name ? a->name : "(unnamed)");
  LR_CHECK(!model_arch_find(a->name), LR_ERR_ARG, "architecture %s: the name is in use", a->name);
  LR_CHECK(g_n_archs < ARCH_MAX, LR_ERR_ARG, "architecture %s: the registry is full (%d)", a->name,
           ARCH_MAX);
  g_archs[g_n_archs] = a;
  return g_n_archs++;
}

static const lr_arch *arch_of(const lr_model_cfg *c) { return c->arch ? c->arch : &lr_arch_sasrec; }

// ---- tensors -----------------------------------------------------------------------------

int model_tensors(const lr_model_cfg *cfg, lr_tensor t[LR_MAX_TENSORS]) {
  return arch_of(cfg)->tensors(cfg, t);
}

int model_seq_groups(const lr_model_cfg *cfg, lr_seq_group g[LR_MAX_SEQ_GROUPS]) {
  const lr_arch *a = arch_of(cfg);
  const int n = a->seq_groups ? a->seq_groups(cfg, g) : 0;
  LR_ASSERT(n >= 0 && n <= LR_MAX_SEQ_GROUPS);
  return n;
}

size_t model_param_elems(const lr_model_cfg *cfg) {
  lr_tensor t[LR_MAX_TENSORS];
  const int n = model_tensors(cfg, t);
  size_t total = 0;
  for (int i = 0; i < n; i++)
    total += t[i].elems;
  return total;
}

int model_layer_slices(const lr_model_cfg *cfg, int64_t l, size_t *off, size_t *cnt) {
  lr_tensor t[LR_MAX_TENSORS];
  const int nt = model_tensors(cfg, t);
  size_t base = 0;
  int n = 0;
  for (int i = 0; i < nt; i++) {
    if (l < 0 && !t[i].per_layer) off[n] = base, cnt[n++] = t[i].elems;
    if (l >= 0 && t[i].per_layer) {
      const size_t each = t[i].elems / (size_t)cfg->layers;
      off[n] = base + (size_t)l * each, cnt[n++] = each;
    }
    base += t[i].elems;
  }
  return n;
}

float *model_tensor_in(const lr_model *m, float *arena, int i) {
  LR_ASSERT(i >= 0 && i < m->n_tensors);
  return arena + m->tensor_off[i];
}

float *model_tensor_layer(const lr_model *m, float *arena, int i, int64_t l) {
  LR_ASSERT(m->tensors[i].per_layer && l >= 0 && l < m->cfg.layers);
  const size_t each = m->tensors[i].elems / (size_t)m->cfg.layers;
  return each ? model_tensor_in(m, arena, i) + (size_t)l * each : NULL;
}

static void init_normal(float *x, size_t n, uint64_t seed, uint32_t tensor) {
  for (size_t e = 0; e < n; e++) {
    lr_rng4 r = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)(e >> 32), tensor, 0);
    x[e] = (float)(INIT_STD * lr_normal(r));
  }
}

// U(-bound, bound): 1/sqrt(fan_in) is the bound of PyTorch's default
// kaiming_uniform_(a = sqrt(5)) weight init and of its bias init,
// sqrt(6/(fan_in+fan_out)) xavier_uniform_'s.
static void init_uniform(float *x, size_t n, uint64_t seed, uint32_t tensor, double bound) {
  for (size_t e = 0; e < n; e++) {
    lr_rng4 r = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)(e >> 32), tensor, 1);
    x[e] = (float)(bound * (2.0 * lr_u01d(r.v[0], r.v[1]) - 1.0));
  }
}

// Initialisation as the papers: Linear and embedding weights N(0, 0.02),
// biases 0, LayerNorm (1, 0); the attention kind's own parameters by its init.
static void init_params(lr_model *m, uint64_t seed) {
  const lr_model_cfg *c = &m->cfg;
  for (int i = 0; i < m->n_tensors; i++) {
    const lr_tensor *t = &m->tensors[i];
    float *x = m->params_mem + m->tensor_off[i];
    if (t->init == LR_INIT_NORMAL) init_normal(x, t->elems, seed, t->key);
    if (t->init == LR_INIT_UNIFORM) {
      LR_ASSERT(t->fan_in >= 1);
      init_uniform(x, t->elems, seed, t->key, 1.0 / sqrt((double)t->fan_in));
    }
    if (t->init == LR_INIT_XAVIER) {
      LR_ASSERT(t->fan_in >= 1 && t->fan_out >= 1);
      init_uniform(x, t->elems, seed, t->key, sqrt(6.0 / (double)(t->fan_in + t->fan_out)));
    }
    if (t->init == LR_INIT_ONE)
      for (size_t e = 0; e < t->elems; e++)
        x[e] = 1.0f;
    if (t->init == LR_INIT_ATTN && t->elems && c->attn->param_init) {
      const size_t each = t->elems / (size_t)c->layers;
      for (int64_t l = 0; l < c->layers; l++)
        c->attn->param_init(x + (size_t)l * each, c->d, c->heads, l, seed);
    }
  }
}

void model_init_rows(float *rows, int64_t lo, int64_t hi, int64_t width, uint32_t key,
                     uint64_t seed) {
  for (int64_t r = lo; r < hi; r++) {
    float *row = rows + (size_t)(r - lo) * (size_t)width;
    for (int64_t j = 0; j < width; j++) {
      const uint64_t e = (uint64_t)r * (uint64_t)width + (uint64_t)j;
      const lr_rng4 q = lr_philox(seed, LR_STREAM_INIT, (uint32_t)e, (uint32_t)(e >> 32), key, 0);
      row[j] = key ? (float)(INIT_STD * lr_normal(q)) : 0.0f;
    }
  }
}

void model_init_item_rows(float *rows, int64_t lo, int64_t hi, int64_t D, uint64_t seed) {
  model_init_rows(rows, lo, hi, D, ITEM_TENSOR_ID, seed);
  if (lo == 0 && hi > 0) memset(rows, 0, (size_t)D * sizeof *rows); // padding
}

// ---- activations --------------------------------------------------------------------------

int64_t model_chunk_seqs(const lr_model_cfg *c) {
  return LR_CHUNK_ROWS / c->max_len < 1 ? 1 : LR_CHUNK_ROWS / c->max_len;
}

// Sequences per chunk (lr_model.chunk) for a capacity of max_B.
static int64_t chunk_seqs(const lr_model_cfg *c, int64_t max_B) {
  int64_t k = model_chunk_seqs(c);
  return k > max_B ? max_B : k;
}

// The activation arena for max_B sequences: the engine's buffers (the
// attention cache and one scratch per thread, the backward's ping-pong),
// then the architecture's in table order. slots (LR_MAX_ACTS) receive the
// architecture's buffers' offsets and sizes; returns the total floats.
static size_t acts_layout(const lr_model_cfg *c, int64_t max_B, struct lr_act_slot *slots,
                          int *n_acts, size_t *cache_off, size_t *scratch_off, size_t *dh_off) {
  const size_t R = (size_t)max_B * (size_t)c->max_len, D = (size_t)c->d, L = (size_t)c->layers;
  // the backward's chunk temporaries: one chunk's rows per lane
  const size_t T = (size_t)lr_par_threads() * (size_t)chunk_seqs(c, max_B) * (size_t)c->max_len;
  size_t total = 0;
  *cache_off = total;
  total += L * attn_cache_elems(c->attn, max_B, c->max_len, c->d, c->heads);
  *scratch_off = total; // one attention scratch per thread of the team (core/par.h)
  total += attn_scratch_elems(c->attn, c->max_len, c->d, c->heads) * (size_t)lr_par_threads();
  *dh_off = total;
  total += 2 * R * D;
  lr_act a[LR_MAX_ACTS];
  const int n = arch_of(c)->acts(c, a);
  LR_ASSERT(n <= LR_MAX_ACTS);
  for (int i = 0; i < n; i++) {
    const size_t e =
        a[i].per_tmp_row ? a[i].per_tmp_row * T : a[i].per_row * R * (a[i].per_layer ? L : 1);
    slots[i].off = total, slots[i].elems = e;
    total += e;
  }
  *n_acts = n;
  return total;
}

size_t model_acts_elems(const lr_model_cfg *cfg, int64_t max_B) {
  struct lr_act_slot slots[LR_MAX_ACTS];
  int n;
  size_t a, b, d;
  return acts_layout(cfg, max_B, slots, &n, &a, &b, &d);
}

float *model_act(const lr_model *m, int i) {
  LR_ASSERT(i >= 0 && i < m->n_acts);
  return m->acts_mem + m->acts[i].off;
}

float *model_act_layer(const lr_model *m, int i, int64_t l) {
  LR_ASSERT(l >= 0 && l < m->cfg.layers);
  const size_t per_row = m->acts[i].elems / ((size_t)m->max_B * (size_t)m->cfg.max_len *
                                             (size_t)m->cfg.layers);
  return model_act(m, i) + (size_t)l * (size_t)m->B * (size_t)m->cfg.max_len * per_row;
}

// ---- set-up ---------------------------------------------------------------------------------

#define STAGE_SLOTS_MAX 4
#define STAGE_SLOTS_BYTES ((size_t)8 << 20) // per lane

// Staging slots per lane: as many sequences' gradients (up to
// STAGE_SLOTS_MAX) as fit STAGE_SLOTS_BYTES, at least one.
static int64_t stage_slots(size_t n_params) {
  const size_t fit = STAGE_SLOTS_BYTES / (n_params * sizeof(float) + 1);
  return fit < 1 ? 1 : fit > STAGE_SLOTS_MAX ? STAGE_SLOTS_MAX : (int64_t)fit;
}

void model_free(lr_model *m) {
  void *bufs[] = {m->params_mem, m->grads_mem, m->m_mem,        m->v_mem,
                  m->acts_mem,   m->keep_bits, m->gx,           m->lane_gx_mem,
                  m->stage_mem,  m->lane_bad,  m->seq_stage_mem, m->stream_ws,
                  m->lane_slot};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lr_free(bufs[i]);
  memset(m, 0, sizeof *m);
}

int model_init(lr_model *m, const lr_model_cfg *cfg, int64_t max_B, uint64_t seed) {
  memset(m, 0, sizeof *m);
  LR_CHECK(cfg->d > 0 && cfg->heads > 0 && cfg->d % cfg->heads == 0, LR_ERR_ARG,
           "model: heads (%lld) must divide d (%lld)", (long long)cfg->heads, (long long)cfg->d);
  LR_CHECK(cfg->layers >= 1 && cfg->max_len >= 1 && cfg->inner >= 1 && max_B >= 1, LR_ERR_ARG,
           "model: layers, max_len, inner and batch must be positive");
  LR_CHECK(cfg->attn, LR_ERR_ARG, "model: no attention kind");
  m->cfg = *cfg;
  m->arch = arch_of(cfg);
  m->max_B = max_B;
  m->lanes = lr_par_threads(); // as acts_layout counts the attention scratch
  m->chunk = chunk_seqs(cfg, max_B);
  m->n_tensors = model_tensors(cfg, m->tensors);
  LR_ASSERT(m->n_tensors <= LR_MAX_TENSORS);
  for (int i = 0; i < m->n_tensors; i++) {
    m->tensor_off[i] = m->n_params;
    m->n_params += m->tensors[i].elems;
  }
  m->n_seq_groups = model_seq_groups(cfg, m->seq_groups);
  for (int g = 0; g < m->n_seq_groups; g++) {
    LR_CHECK(m->seq_groups[g].width >= 1, LR_ERR_ARG, "model: row group %s has no width",
             m->seq_groups[g].name);
    m->seq_stage_off[g] = m->seq_stage_elems;
    m->seq_stage_elems += (size_t)m->seq_groups[g].width;
  }
  m->attn_cache_elems = attn_cache_elems(cfg->attn, max_B, cfg->max_len, cfg->d, cfg->heads);
  m->attn_scratch_elems = attn_scratch_elems(cfg->attn, cfg->max_len, cfg->d, cfg->heads);
  size_t cache_off, scratch_off, dh_off;
  m->acts_elems = acts_layout(cfg, max_B, m->acts, &m->n_acts, &cache_off, &scratch_off, &dh_off);
  m->params_mem = lr_calloc(m->n_params, sizeof(float), "model parameters");
  m->grads_mem = lr_calloc(m->n_params, sizeof(float), "model gradients");
  m->m_mem = lr_calloc(m->n_params, sizeof(float), "Adam first moments");
  m->v_mem = lr_calloc(m->n_params, sizeof(float), "Adam second moments");
  m->acts_mem = lr_calloc(m->acts_elems, sizeof(float), "activations");
  m->keep_bits = lr_calloc((size_t)m->arch->keep_blocks(cfg) * (size_t)max_B *
                               (size_t)cfg->max_len * (size_t)lr_dropout_words(cfg->d),
                           sizeof(uint32_t), "dropout masks");
  m->lane_bad = lr_calloc((size_t)m->lanes, sizeof(uint32_t), "lane gradient flags");
  m->gx = lr_calloc(m->n_params, sizeof(lr_xs), "exact gradients");
  m->stage_slots = stage_slots(m->n_params);
  m->stage_mem = lr_calloc((size_t)(m->lanes * m->stage_slots) * m->n_params, sizeof(float),
                           "gradient staging");
  m->lane_slot = lr_calloc((size_t)m->lanes, sizeof(int), "gradient staging slots");
  if (m->seq_stage_elems)
    m->seq_stage_mem =
        lr_calloc((size_t)m->lanes * m->seq_stage_elems, sizeof(float), "row group staging");
  if (m->lanes > 1)
    m->lane_gx_mem =
        lr_calloc((size_t)(m->lanes - 1) * m->n_params, sizeof(lr_xs), "lane gradients");
  if (!m->params_mem || !m->grads_mem || !m->m_mem || !m->v_mem || !m->acts_mem || !m->keep_bits ||
      !m->lane_bad || !m->gx || !m->stage_mem || !m->lane_slot ||
      (m->lanes > 1 && !m->lane_gx_mem) ||
      (m->seq_stage_elems && !m->seq_stage_mem)) {
    model_free(m);
    lr_error_trace(__FILE__, __LINE__, __func__);
    return LR_ERR_NOMEM;
  }
  m->attn_cache = m->acts_mem + cache_off;
  m->attn_scratch = m->acts_mem + scratch_off;
  m->dh_a = m->acts_mem + dh_off;
  m->dh_b = m->dh_a + (size_t)max_B * (size_t)cfg->max_len * (size_t)cfg->d;
  init_params(m, seed);
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

void model_zero_grad(lr_model *m) {
  memset(m->gx, 0, m->n_params * sizeof(lr_xs));
  m->grad_bad = 0;
}

void model_grads_to_float(lr_model *m) { xsum_to_float(m->grads_mem, m->gx, (int64_t)m->n_params); }

double model_train_flops(const lr_model_cfg *c, int64_t loss_rows, int64_t cands) {
  // forward multiply-adds of a layer (the architecture's products and the
  // attention kind's), of the loss rows' scores; backward = 2 x forward
  const double layer = arch_of(c)->layer_flops(c) + c->attn->flops(c->max_len, c->d, c->heads);
  const double fwd = (double)c->layers * layer + (double)loss_rows * (double)cands * (double)c->d;
  return 2.0 * 3.0 * fwd;
}

// ---- helpers for the architectures ------------------------------------------------------------

double model_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Charge the time since *t0 to phase ph and restart the clock. Lane 0 (the
// calling thread) keeps the books; the other lanes do the same work.
void model_lap(lr_model *m, lr_model_phase ph, double *t0) {
  if (lr_par_part() != 0) return;
  double t = model_now();
  m->phase_s[ph] += t - *t0;
  *t0 = t;
}

// With p > 0 the mask bits of site s are kept between forward and backward
// in keep_bits block k.
lr_dropout model_site(const lr_model *m, lr_dropout dp, uint32_t s, int64_t k, int64_t r0) {
  dp.site = s;
  const size_t rows = (size_t)m->max_B * (size_t)m->cfg.max_len;
  dp.bits = dp.p > 0.0f ? m->keep_bits +
                              ((size_t)k * rows + (size_t)r0) * (size_t)lr_dropout_words(m->cfg.d)
                        : NULL;
  return dp;
}

float *model_lane_attn_scratch(const lr_model *m) {
  return m->attn_scratch + (size_t)lr_par_part() * m->attn_scratch_elems;
}

size_t model_lane_tmp_row(const lr_model *m) {
  return (size_t)lr_par_part() * (size_t)m->chunk * (size_t)m->cfg.max_len;
}

float *model_lane_seq_stage(const lr_model *m, int g) {
  const int k = lr_par_part();
  LR_ASSERT(k < m->lanes && g >= 0 && g < m->n_seq_groups);
  return m->seq_stage_mem + (size_t)k * m->seq_stage_elems + m->seq_stage_off[g];
}

float *model_lane_stage(const lr_model *m) {
  const int k = lr_par_part();
  LR_ASSERT(k < m->lanes);
  return m->stage_mem + (size_t)(k * m->stage_slots + m->lane_slot[k]) * m->n_params;
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

static lr_lane_rows lane_at(const lr_model *m, int64_t b0, int64_t b1) {
  const size_t N = (size_t)m->cfg.max_len, D = (size_t)m->cfg.d, F = (size_t)m->cfg.inner;
  const size_t R = (size_t)m->B * N, r0 = (size_t)b0 * N, nr = (size_t)(b1 - b0) * N;
  return (lr_lane_rows){b0,    b1,     (int64_t)R, (int64_t)r0, (int64_t)nr, R * D,
                        R * F, r0 * D, r0 * F,     nr * D,      nr * F};
}

// The exact accumulator of lane k (lane 0's is gx itself).
static lr_xs *lane_gx(const lr_model *m, int64_t k) {
  return k == 0 ? m->gx : m->lane_gx_mem + (size_t)(k - 1) * m->n_params;
}

// The slices of layer l (-1: the embedding part) in the arena layout.
typedef struct {
  int n;
  size_t off[LR_MAX_TENSORS], cnt[LR_MAX_TENSORS];
} slices;

static slices layer_slices(const lr_model *m, int64_t l) {
  slices sl;
  sl.n = model_layer_slices(&m->cfg, l, sl.off, sl.cnt);
  return sl;
}

// Before a sequence: zero the calling lane's staging slices of layer l.
static void stage_zero(const lr_model *m, const slices *sl) {
  float *st = model_lane_stage(m);
  for (int i = 0; i < sl->n; i++)
    memset(st + sl->off[i], 0, sl->cnt[i] * sizeof(float));
}

// After ns sequences: add the calling lane's staging slots 0..ns-1 of
// layer l's slices into its exact accumulator, in one pass.
static void stage_take(lr_model *m, const slices *sl, int64_t ns) {
  const int k = lr_par_part();
  lr_xs *acc = lane_gx(m, k);
  const float *st[STAGE_SLOTS_MAX];
  uint32_t bad = 0;
  for (int i = 0; i < sl->n; i++) {
    for (int64_t s = 0; s < ns; s++)
      st[s] = m->stage_mem + (size_t)(k * m->stage_slots + s) * m->n_params + sl->off[i];
    bad |= xsum_add_many(acc + sl->off[i], st, (int)ns, (int64_t)sl->cnt[i]);
  }
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

// ---- forward --------------------------------------------------------------------------

// A lane's sequences in chunks of m->chunk, each through the whole stack
// while its rows are in cache.
static void forward_seqs(void *vj, int64_t b0, int64_t b1) {
  const lr_lane_job *j = vj;
  for (int64_t b = b0; b < b1; b += j->m->chunk) {
    const lr_lane_rows z = lane_at(j->m, b, b1 - b > j->m->chunk ? b + j->m->chunk : b1);
    j->m->arch->fwd(j, &z);
  }
}

const float *model_forward(lr_model *m, const int32_t *idx, const float *rows, const int32_t *lens,
                           const uint64_t *row_ids, int64_t B, lr_dropout dp,
                           const float *const *seq_rows) {
  const lr_model_cfg *c = &m->cfg;
  LR_ASSERT(B >= 1 && B <= m->max_B);
  for (int64_t b = 0; b < B; b++)
    LR_ASSERT(lens[b] >= 1 && lens[b] <= c->max_len);
  m->B = B;
  m->lens = lens;
  LR_ASSERT(seq_rows || m->n_seq_groups == 0);
  m->seq_rows = seq_rows;
  lr_lane_job j = {
      .m = m, .idx = idx, .rows = rows, .row_ids = row_ids, .dp = dp, .seq_rows = seq_rows};
  run_lanes(m, B, forward_seqs, &j);
  return m->arch->output(m);
}

// ---- backward -------------------------------------------------------------------------

// A lane's sequences one at a time through layer j->l (-1: the embedding
// stage): each one's parameter gradients are staged in float, then added
// exactly, so no float sum ever runs over two sequences.
static void backward_seqs(void *vj, int64_t b0, int64_t b1) {
  const lr_lane_job *j = vj;
  lr_model *m = j->m;
  const slices sl = layer_slices(m, j->l);
  float *seq_st = m->n_seq_groups ? model_lane_seq_stage(m, 0) : NULL; // all groups' rows
  const int k = lr_par_part();
  for (int64_t b = b0; b < b1;) {
    const int64_t ns = b1 - b < m->stage_slots ? b1 - b : m->stage_slots;
    for (int64_t s = 0; s < ns; s++, b++) {
      const lr_lane_rows z = lane_at(m, b, b + 1);
      m->lane_slot[k] = (int)s;
      stage_zero(m, &sl);
      if (seq_st) memset(seq_st, 0, m->seq_stage_elems * sizeof *seq_st);
      m->arch->bwd(j, &z);
      uint32_t bad = 0; // the sequence's own rows: one writer per row, exact adds
      for (int g = 0; g < m->n_seq_groups; g++) {
        const int64_t w = m->seq_groups[g].width;
        bad |= xsum_add(j->dseq[g] + b * w, seq_st + m->seq_stage_off[g], w);
      }
      m->lane_bad[k] |= bad;
    }
    m->lane_slot[k] = 0;
    stage_take(m, &sl, ns);
  }
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
                    const uint64_t *row_ids, lr_dropout dp, lr_xs *const *dseq) {
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d;
  LR_ASSERT(dseq || m->n_seq_groups == 0);
  float *dh = dout; // gradient w.r.t. the current layer's output
  for (int64_t l = c->layers - 1; l >= -1; l--) {
    // dh is dout or a ping-pong buffer; the input gradient goes to another
    // (after the embedding stage: dE, the item rows' gradient per position)
    float *dhin = dh == m->dh_a ? m->dh_b : m->dh_a;
    lr_lane_job j = {.m = m,
                     .row_ids = row_ids,
                     .dp = dp,
                     .seq_rows = m->seq_rows,
                     .l = l,
                     .dh = dh,
                     .dhin = dhin,
                     .dseq = dseq};
    run_lanes(m, B, backward_seqs, &j);
    reduce_lanes(m, l);
    dh = dhin;
    if (l >= 0 && m->hook) m->hook(m->hook_ctx, l); // its time (a reduction) is the caller's
  }
  double t0 = model_now();
  // rows repeat across lanes, so one thread adds the item rows' gradients
  uint32_t bad = drows ? drows_add(drows, dh, idx, B * N, D) : 0;
  for (int64_t k = 0; k < m->lanes; k++)
    bad |= m->lane_bad[k], m->lane_bad[k] = 0;
  m->grad_bad |= bad;
  model_lap(m, LR_PHASE_EMBED, &t0);
  if (m->hook) m->hook(m->hook_ctx, -1);
}

// ---- streaming ------------------------------------------------------------------------------

int model_stream_capable(const lr_model *m) {
  const lr_arch *a = m->arch;
  return a->step && a->step_elems && a->step_elems(m) > 0;
}

size_t model_stream_elems(const lr_model *m) {
  return model_stream_capable(m) ? m->arch->step_elems(m) : 0;
}

int model_stream_open(lr_model *m) {
  LR_CHECK(model_stream_capable(m), LR_ERR_ARG,
           "model: model.arch=%s with model.attention=%s cannot stream an item at a time",
           model_arch_name(m->arch), m->cfg.attn->name);
  if (m->stream_ws) return LR_OK;
  m->stream_ws = lr_calloc(m->arch->step_ws_elems(m), sizeof(float), "stream workspace");
  if (!m->stream_ws) return LR_ERR_NOMEM;
  if (m->arch->step_ws_init) m->arch->step_ws_init(m, m->stream_ws);
  return LR_OK;
}

void model_stream_step(lr_model *m, float *st, const float *row, int64_t t, float *h) {
  LR_ASSERT(m->stream_ws && t >= 0 && t < m->cfg.max_len);
  m->arch->step(m, st, m->stream_ws, row, t, h);
}
