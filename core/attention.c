// attention.c: the registry of the attention kinds and the loops that run a
// kind over a batch (attention.h). The kinds themselves are core/attn_*.c.
#include "attention.h"

#include <string.h> // memset, strcmp

#include "lr.h"  // LR_ASSERT, lr_error
#include "par.h" // lr_par_for, lr_par_part, lr_par_threads

// ---- the registry ------------------------------------------------------------------------

// The built-in kinds, in the order of their ids (the config's and --help's order).
extern const lr_attn_ops lr_attn_softmax, lr_attn_linrec, lr_attn_linrec_code,
    lr_attn_linrec_causal, lr_attn_elu1, lr_attn_efficient, lr_attn_rela, lr_attn_rela_causal,
    lr_attn_blin, lr_attn_blin_left;

#define ATTN_MAX 32
static const lr_attn_ops *g_kinds[ATTN_MAX] = {
    &lr_attn_softmax, &lr_attn_linrec, &lr_attn_linrec_code,
    &lr_attn_linrec_causal, &lr_attn_elu1, &lr_attn_efficient, &lr_attn_rela, &lr_attn_rela_causal,
    &lr_attn_blin, &lr_attn_blin_left,
};
static int g_count = 10;
static const char *g_names[ATTN_MAX + 1];

int attn_count(void) { return g_count; }

const lr_attn_ops *attn_get(int id) { return id >= 0 && id < g_count ? g_kinds[id] : NULL; }

const lr_attn_ops *attn_find(const char *name) {
  for (int i = 0; name && i < g_count; i++)
    if (!strcmp(g_kinds[i]->name, name)) return g_kinds[i];
  return NULL;
}

int attn_id(const lr_attn_ops *ops) {
  for (int i = 0; i < g_count; i++)
    if (g_kinds[i] == ops) return i;
  return -1;
}

const char *const *attn_names(void) {
  for (int i = 0; i < g_count; i++) g_names[i] = g_kinds[i]->name;
  g_names[g_count] = NULL;
  return g_names;
}

int attn_register(const lr_attn_ops *ops) {
  LR_CHECK(ops && ops->name && ops->cache_elems && ops->scratch_elems && ops->fwd && ops->bwd &&
               ops->fwd_f64 && ops->bwd_f64 && ops->flops,
           LR_ERR_ARG, "attention kind %s: a required function is missing",
           ops && ops->name ? ops->name : "(unnamed)");
  LR_CHECK(!attn_find(ops->name), LR_ERR_ARG, "attention kind %s: the name is in use", ops->name);
  LR_CHECK(g_count < ATTN_MAX, LR_ERR_ARG, "attention kind %s: the registry is full (%d kinds)",
           ops->name, ATTN_MAX);
  g_kinds[g_count] = ops;
  return g_count++;
}

// ---- sizes -------------------------------------------------------------------------------

size_t attn_cache_elems(const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H) {
  LR_ASSERT(B >= 0 && N >= 1 && H >= 1 && D >= H && D % H == 0);
  return (size_t)B * k->cache_elems(N, D, H);
}

size_t attn_scratch_elems(const lr_attn_ops *k, int64_t N, int64_t D, int64_t H) {
  LR_ASSERT(N >= 1 && H >= 1 && D >= H && D % H == 0);
  return k->scratch_elems(N, D, H);
}

size_t attn_param_elems(const lr_attn_ops *k, int64_t D, int64_t H) {
  return k->param_elems ? k->param_elems(D, H) : 0;
}

// ---- running over a batch -------------------------------------------------------------------
// Sequence b's cache is the b-th block of cache_elems(N, D, H); its rows of
// qkv (N,3D) at b*N*3D; out and dout rows start at sequence `base`.

typedef struct {
  const lr_attn_ops *k;
  float *out;        // forward: out; backward: dqkv
  float *dprm;       // backward: the parameters' gradient (NULL: none)
  float *cache;      // forward fills, backward reads
  const float *qkv, *dout, *prm;
  const int32_t *lens;
  const uint8_t *km; // key mask (B,N) or NULL
  int64_t N, D, H, base;
  float *scratch;    // parts copies of scratch_elems
  size_t scratch_elems, cache_per_seq;
} attn_job;

static void forward_seqs(void *vj, int64_t b0, int64_t b1) {
  const attn_job *j = vj;
  const int64_t N = j->N, D = j->D, H = j->H;
  float *scratch = j->scratch + (size_t)lr_par_part() * j->scratch_elems;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t n = j->lens[b];
    LR_ASSERT(n >= 0 && n <= N);
    float *ob = j->out + (b - j->base) * N * D;
    memset(ob + n * D, 0, (size_t)((N - n) * D) * sizeof(float));
    if (n == 0) continue;
    if (j->km)
      j->k->fwd_km(ob, j->cache + (size_t)b * j->cache_per_seq, j->qkv + b * N * 3 * D, j->prm,
                   j->km + b * N, n, N, D, H, scratch);
    else
      j->k->fwd(ob, j->cache + (size_t)b * j->cache_per_seq, j->qkv + b * N * 3 * D, j->prm, n,
                N, D, H, scratch);
  }
}

static void backward_seqs(void *vj, int64_t b0, int64_t b1) {
  const attn_job *j = vj;
  const int64_t N = j->N, D = j->D, H = j->H;
  float *scratch = j->scratch + (size_t)lr_par_part() * j->scratch_elems;
  for (int64_t b = b0; b < b1; b++) {
    const int64_t n = j->lens[b];
    LR_ASSERT(n >= 0 && n <= N);
    if (n == 0) continue;
    if (j->km)
      j->k->bwd_km(j->out + (b - j->base) * N * 3 * D, j->dprm, j->dout + (b - j->base) * N * D,
                   j->qkv + b * N * 3 * D, j->prm, j->km + b * N,
                   j->cache + (size_t)b * j->cache_per_seq, n, N, D, H, scratch);
    else
      j->k->bwd(j->out + (b - j->base) * N * 3 * D, j->dprm, j->dout + (b - j->base) * N * D,
                j->qkv + b * N * 3 * D, j->prm, j->cache + (size_t)b * j->cache_per_seq, n, N, D,
                H, scratch);
  }
}

static attn_job job(const lr_attn_ops *k, float *out, float *dprm, float *cache,
                    const float *qkv, const float *dout, const float *prm, const int32_t *lens,
                    int64_t N, int64_t D, int64_t H, int64_t base, float *scratch) {
  attn_job j = {k, out, dprm, cache, qkv, dout, prm, lens, NULL, N, D, H, base, scratch,
                attn_scratch_elems(k, N, D, H), k->cache_elems(N, D, H)};
  return j;
}

// Over the B sequences: split over the thread team when the scratch has a
// copy for each of its threads, else on this thread.
static void run(attn_job *j, int64_t B, int64_t parts, lr_par_fn fn) {
  if (parts >= lr_par_threads()) lr_par_for(B, 1, fn, j);
  else fn(j, 0, B);
}

void attn_forward(float *out, float *cache, const float *qkv, const int32_t *lens,
                  const lr_attn_ops *k, const float *prm, int64_t B, int64_t N, int64_t D,
                  int64_t H, float *scratch, int64_t parts) {
  attn_job j = job(k, out, NULL, cache, qkv, NULL, prm, lens, N, D, H, 0, scratch);
  run(&j, B, parts, forward_seqs);
}

void attn_backward(float *dqkv, float *dprm, const float *dout, const float *qkv,
                   const float *prm, const float *cache, const int32_t *lens,
                   const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H,
                   float *scratch, int64_t parts) {
  LR_ASSERT(!dprm || parts <= 1);
  // The cache is read-only here; the job (shared with forward) holds it non-const.
  attn_job j = job(k, dqkv, dprm, (float *)cache, qkv, dout, prm, lens, N, D, H, 0, scratch);
  run(&j, B, dprm ? 1 : parts, backward_seqs);
}

void attn_forward_range(float *out, float *cache, const float *qkv, const int32_t *lens,
                        const lr_attn_ops *k, const float *prm, int64_t B, int64_t b0, int64_t b1,
                        int64_t N, int64_t D, int64_t H, float *scratch) {
  LR_ASSERT(0 <= b0 && b0 <= b1 && b1 <= B);
  attn_job j = job(k, out, NULL, cache, qkv, NULL, prm, lens, N, D, H, b0, scratch);
  j.scratch_elems = 0; // this thread's copy is `scratch` itself
  forward_seqs(&j, b0, b1);
}

void attn_backward_range(float *dqkv, float *dprm, const float *dout, const float *qkv,
                         const float *prm, const float *cache, const int32_t *lens,
                         const lr_attn_ops *k, int64_t B, int64_t b0, int64_t b1, int64_t N,
                         int64_t D, int64_t H, float *scratch) {
  LR_ASSERT(0 <= b0 && b0 <= b1 && b1 <= B);
  attn_job j = job(k, dqkv, dprm, (float *)cache, qkv, dout, prm, lens, N, D, H, b0, scratch);
  j.scratch_elems = 0;
  backward_seqs(&j, b0, b1);
}

void attn_forward_range_km(float *out, float *cache, const float *qkv, const int32_t *lens,
                           const uint8_t *km, const lr_attn_ops *k, const float *prm, int64_t B,
                           int64_t b0, int64_t b1, int64_t N, int64_t D, int64_t H,
                           float *scratch) {
  LR_ASSERT(0 <= b0 && b0 <= b1 && b1 <= B && (!km || k->fwd_km));
  attn_job j = job(k, out, NULL, cache, qkv, NULL, prm, lens, N, D, H, b0, scratch);
  j.scratch_elems = 0, j.km = km;
  forward_seqs(&j, b0, b1);
}

void attn_backward_range_km(float *dqkv, float *dprm, const float *dout, const float *qkv,
                            const float *prm, const float *cache, const int32_t *lens,
                            const uint8_t *km, const lr_attn_ops *k, int64_t B, int64_t b0,
                            int64_t b1, int64_t N, int64_t D, int64_t H, float *scratch) {
  LR_ASSERT(0 <= b0 && b0 <= b1 && b1 <= B && (!km || k->bwd_km));
  attn_job j = job(k, dqkv, dprm, (float *)cache, qkv, dout, prm, lens, N, D, H, b0, scratch);
  j.scratch_elems = 0, j.km = km;
  backward_seqs(&j, b0, b1);
}

// ---- double ------------------------------------------------------------------------------

void attn_forward_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                      const lr_attn_ops *k, const double *prm, int64_t B, int64_t N, int64_t D,
                      int64_t H, double *scratch) {
  attn_forward_km_f64(out, cache, qkv, lens, NULL, k, prm, B, N, D, H, scratch);
}

void attn_forward_km_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                         const uint8_t *km, const lr_attn_ops *k, const double *prm, int64_t B,
                         int64_t N, int64_t D, int64_t H, double *scratch) {
  LR_ASSERT(!km || k->fwd_km_f64);
  const size_t per = k->cache_elems(N, D, H);
  for (int64_t b = 0; b < B; b++) {
    const int64_t n = lens[b];
    LR_ASSERT(n >= 0 && n <= N);
    double *ob = out + b * N * D;
    memset(ob + n * D, 0, (size_t)((N - n) * D) * sizeof(double));
    if (n && km)
      k->fwd_km_f64(ob, cache + (size_t)b * per, qkv + b * N * 3 * D, prm, km + b * N, n, N, D, H,
                    scratch);
    else if (n)
      k->fwd_f64(ob, cache + (size_t)b * per, qkv + b * N * 3 * D, prm, n, N, D, H, scratch);
  }
}

void attn_backward_f64(double *dqkv, double *dprm, const double *dout, const double *qkv,
                       const double *prm, const double *cache, const int32_t *lens,
                       const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H,
                       double *scratch) {
  attn_backward_km_f64(dqkv, dprm, dout, qkv, prm, cache, lens, NULL, k, B, N, D, H, scratch);
}

void attn_backward_km_f64(double *dqkv, double *dprm, const double *dout, const double *qkv,
                          const double *prm, const double *cache, const int32_t *lens,
                          const uint8_t *km, const lr_attn_ops *k, int64_t B, int64_t N,
                          int64_t D, int64_t H, double *scratch) {
  LR_ASSERT(!km || k->bwd_km_f64);
  const size_t per = k->cache_elems(N, D, H);
  for (int64_t b = 0; b < B; b++)
    if (lens[b] && km)
      k->bwd_km_f64(dqkv + b * N * 3 * D, dprm, dout + b * N * D, qkv + b * N * 3 * D, prm,
                    km + b * N, cache + (size_t)b * per, lens[b], N, D, H, scratch);
    else if (lens[b])
      k->bwd_f64(dqkv + b * N * 3 * D, dprm, dout + b * N * D, qkv + b * N * 3 * D, prm,
                 cache + (size_t)b * per, lens[b], N, D, H, scratch);
}
