// ref_ram.c: the double-precision RAM encoder of ref_ram.h. Per block l,
// as core/arch_ram.c's file comment:
//   X~ = LN1(Q); q = X~ Wq^T + bq; [k|v] = E_l Wkv^T + bkv
//   Q' = Q + Attention(q, k, v) Wo^T + bo
//   F~ = LN2(Q'); Q = F~ + W2 GELU(W1 F~ + b1) + b2
// out = LNf(Q^L) + u.
#include "ref_ram.h"

#include <math.h>   // sqrt
#include <stdlib.h> // free
#include <string.h> // strcmp, memcpy

#include "attention.h"  // attn_forward_f64, attn_cache_elems, attn_scratch_elems
#include "layers.h"     // *_f64
#include "lr.h"         // LR_ASSERT
#include "ref_layers.h" // t_alloc

// Tensor `name` of c's table in arena (layer l's slice of a per-layer one).
static const double *tensor(const lr_model_cfg *c, const double *arena, const char *name,
                            int64_t l) {
  lr_tensor t[LR_MAX_TENSORS];
  const int n = model_tensors(c, t);
  size_t off = 0;
  for (int i = 0; i < n; off += t[i].elems, i++)
    if (!strcmp(t[i].name, name))
      return arena + off + (t[i].per_layer ? (size_t)l * (t[i].elems / (size_t)c->layers) : 0);
  LR_ASSERT(!"tensor in the table");
  return NULL;
}

void ram_ref_embed(double *e, const lr_model_cfg *c, const double *arena, const double *table,
                   const int32_t *ids, int64_t n) {
  const int64_t D = c->d;
  const double s = c->emb_scale > 0.0f ? (double)c->emb_scale : 1.0;
  const double *pos = tensor(c, arena, "pos", 0);
  for (int64_t t = 0; t < n; t++) {
    const int64_t p = c->pos_from_end ? c->max_len - n + t : t;
    for (int64_t i = 0; i < D; i++) e[t * D + i] = s * table[ids[t] * D + i] + pos[p * D + i];
  }
}

void ram_ref_forward(double *out, const lr_model_cfg *c, const double *arena, const double *e_q0,
                     const double *const *e_kv, const double *u, int64_t n) {
  const int64_t N = c->max_len, D = c->d, H = c->heads, F = c->inner;
  const double eps = (double)c->ln_eps;
  double *q = t_alloc(n * D, sizeof(double)), *xa = t_alloc(n * D, sizeof(double));
  double *qx = t_alloc(n * D, sizeof(double)), *kv = t_alloc(n * 2 * D, sizeof(double));
  double *qkv = t_alloc(N * 3 * D, sizeof(double)), *ctx = t_alloc(N * D, sizeof(double));
  double *res = t_alloc(n * D, sizeof(double)), *f1 = t_alloc(n * F, sizeof(double));
  double *mean = t_alloc(n, sizeof(double)), *rstd = t_alloc(n, sizeof(double));
  double *cache = t_alloc((int64_t)attn_cache_elems(c->attn, 1, N, D, H) + 1, sizeof(double));
  double *scr = t_alloc((int64_t)attn_scratch_elems(c->attn, N, D, H) + 1, sizeof(double));
  const int32_t lens[1] = {(int32_t)n};
  memcpy(q, e_q0, (size_t)(n * D) * sizeof(double));
  for (int64_t l = 0; l < c->layers; l++) {
    const double *p = NULL; // the kind's own parameters: none for the kinds tested here
    layernorm_forward_f64(xa, mean, rstd, q, tensor(c, arena, "ln1_w", l),
                          tensor(c, arena, "ln1_b", l), n, D, eps);
    linear_forward_f64(qx, xa, tensor(c, arena, "q_w", l), tensor(c, arena, "q_b", l), n, D, D);
    linear_forward_f64(kv, e_kv[l], tensor(c, arena, "kv_w", l), tensor(c, arena, "kv_b", l), n, D,
                       2 * D);
    for (int64_t t = 0; t < n; t++) {
      memcpy(qkv + t * 3 * D, qx + t * D, (size_t)D * sizeof(double));
      memcpy(qkv + t * 3 * D + D, kv + t * 2 * D, (size_t)(2 * D) * sizeof(double));
    }
    attn_forward_f64(ctx, cache, qkv, lens, c->attn, p, 1, N, D, H, scr);
    linear_forward_f64(res, ctx, tensor(c, arena, "o_w", l), tensor(c, arena, "o_b", l), n, D, D);
    for (int64_t i = 0; i < n * D; i++) res[i] += q[i];
    layernorm_forward_f64(xa, mean, rstd, res, tensor(c, arena, "ln2_w", l),
                          tensor(c, arena, "ln2_b", l), n, D, eps);
    linear_forward_f64(f1, xa, tensor(c, arena, "fc1_w", l), tensor(c, arena, "fc1_b", l), n, D,
                       F);
    gelu_forward_f64(f1, f1, n * F);
    linear_forward_f64(q, f1, tensor(c, arena, "fc2_w", l), tensor(c, arena, "fc2_b", l), n, F, D);
    for (int64_t i = 0; i < n * D; i++) q[i] += xa[i];
  }
  layernorm_forward_f64(out, mean, rstd, q, tensor(c, arena, "lnf_w", 0),
                        tensor(c, arena, "lnf_b", 0), n, D, eps);
  if (u)
    for (int64_t t = 0; t < n; t++)
      for (int64_t i = 0; i < D; i++) out[t * D + i] += u[i];
  void *bufs[] = {q, xa, qx, kv, qkv, ctx, res, f1, mean, rstd, cache, scr};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
