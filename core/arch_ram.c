// arch_ram.c: RAM, the recursive attentive method with reused item
// representations (Peng, Parthasarathy, Ning; released code BoPeng112/RAM,
// models/RAM.py RAM.log2feats) as an architecture of the model engine
// (model_arch.h). The item representations E are the keys and values of
// every block; only a query stream is refined, pre-LN; a user row is added
// to the final state:
//   E   = Dropout(s * ItemEmb[s_t] + PosEmb[p(t)])       (valid rows t < n only)
//   Q^0 = E
//   per block l:
//     X~ = LN1(Q);  q = X~ Wq^T + bq;  [k|v] = E Wkv^T + bkv  (the same E in every block)
//     Q' = Q + Dropout(Attention(q, k, v) Wo^T + bo)          (the configured kind)
//     F~ = LN2(Q');  Q = F~ + Dropout(W2 Dropout(GELU(W1 F~ + b1)) + b2)
//   out = LNf(Q^L) + U[user]                                 (paper Eq. 5: score = out . ItemEmb[v])
// s = cfg.emb_scale (the released sqrt(D)); p(t) = N - n + t with
// cfg.pos_from_end (the released left padding puts the last item at N - 1),
// else t. The FFN's residual adds F~, not Q': the released
// PointWiseFeedForward adds its (normalised) input. U is the `users` row
// group (one row per sequence, keyed by its user, core/model.h), absent
// with cfg.no_user_table (RAM-u).
//
// Rows: a sequence's valid rows 0..n-1 are computed, its padded rows never
// (their activations are left as they are; nothing reads them). With
// cfg.last_only the query stream is row n-1 alone (the released isEval
// path): only E and the K/V projections touch rows 0..n-1; the attention
// kind runs over n rows with the other query rows zero, and its output row
// n-1 is the full path's (rows of the canonical GEMM do not depend on one
// another), so the fast path's output row and every gradient are bitwise
// the full path's when only row n-1 carries a gradient (tests/test_ram.c).
//
// Backward (per sequence, the engine's): E receives gradient from every
// block's K/V projection and from Q^0; the blocks add theirs into the
// activation buffer dE as the engine walks them (l = L-1 .. 0), and the
// embedding stage (l = -1) adds Q^0's and takes the result back through the
// dropout, the scale and the position table. The final LayerNorm's
// parameters are embedding-stage tensors, so their gradient is taken at
// l = -1 too, from the output gradient kept by layer L-1.
//
// Deliberate differences from the released code (README "RAM"): dropout
// drops the attention block's output (before the residual), not the
// attention probabilities (every attention kind, linear ones included,
// takes part; they have no probabilities); right padding with padded keys
// masked (the released left padding lets padded keys' biases into the
// softmax); the users table starts at zero (a user without a training
// example keeps u = 0).
#include <math.h>   // sqrt
#include <string.h> // memset, memcpy

#include "gemm.h"       // lr_matmul (column slices of the fused Q|K|V)
#include "grela.h"      // grela_colsum
#include "lr.h"         // LR_ASSERT
#include "model_arch.h" // lr_arch, lr_lane_job, model_act, model_site, the layers

// ---- tables ---------------------------------------------------------------------------------

// Parameter tensors in arena order: the embedding stage (with the final
// LayerNorm), then per block. Init keys 300 + index (results depend on them).
enum {
  T_POS,
  T_LNF_W,
  T_LNF_B, // the embedding stage and the final LayerNorm
  T_LN1_W,
  T_LN1_B,
  T_Q_W,
  T_Q_B,
  T_KV_W,
  T_KV_B,
  T_O_W,
  T_O_B, // attention
  T_LN2_W,
  T_LN2_B,
  T_FC1_W,
  T_FC1_B,
  T_FC2_W,
  T_FC2_B,  // FFN
  T_ATTN_P, // the attention kind's own
  N_TENSORS
};
#define KEY(t) (300u + (uint32_t)(t))

// Initialisation as released: embeddings N(0, 0.02); MultiheadAttention's
// in_proj xavier_uniform over its (3D, D) whole (q and kv share its bound),
// zero biases, out_proj N(0, 0.02) (RAM.init_weights); the FFN's Conv1d
// weights xavier_uniform, biases PyTorch's default U(+-1/sqrt(fan_in)).
static int ram_tensors(const lr_model_cfg *c, lr_tensor t[LR_MAX_TENSORS]) {
  const size_t N = (size_t)c->max_len, D = (size_t)c->d, L = (size_t)c->layers,
               F = (size_t)c->inner, A = attn_param_elems(c->attn, c->d, c->heads);
  const int64_t d = c->d, f = c->inner;
  const lr_tensor v[N_TENSORS] = {
      [T_POS] = {"pos", N * D, 0, LR_INIT_NORMAL, KEY(T_POS), 0, 0},
      [T_LNF_W] = {"lnf_w", D, 0, LR_INIT_ONE, 0, 0, 0},
      [T_LNF_B] = {"lnf_b", D, 0, LR_INIT_ZERO, 0, 0, 0},
      [T_LN1_W] = {"ln1_w", L * D, 1, LR_INIT_ONE, 0, 0, 0},
      [T_LN1_B] = {"ln1_b", L * D, 1, LR_INIT_ZERO, 0, 0, 0},
      [T_Q_W] = {"q_w", L * D * D, 1, LR_INIT_XAVIER, KEY(T_Q_W), d, 3 * d},
      [T_Q_B] = {"q_b", L * D, 1, LR_INIT_ZERO, 0, 0, 0},
      [T_KV_W] = {"kv_w", L * 2 * D * D, 1, LR_INIT_XAVIER, KEY(T_KV_W), d, 3 * d},
      [T_KV_B] = {"kv_b", L * 2 * D, 1, LR_INIT_ZERO, 0, 0, 0},
      [T_O_W] = {"o_w", L * D * D, 1, LR_INIT_NORMAL, KEY(T_O_W), 0, 0},
      [T_O_B] = {"o_b", L * D, 1, LR_INIT_ZERO, 0, 0, 0},
      [T_LN2_W] = {"ln2_w", L * D, 1, LR_INIT_ONE, 0, 0, 0},
      [T_LN2_B] = {"ln2_b", L * D, 1, LR_INIT_ZERO, 0, 0, 0},
      [T_FC1_W] = {"fc1_w", L * F * D, 1, LR_INIT_XAVIER, KEY(T_FC1_W), d, f},
      [T_FC1_B] = {"fc1_b", L * F, 1, LR_INIT_UNIFORM, KEY(T_FC1_B), d, 0},
      [T_FC2_W] = {"fc2_w", L * D * F, 1, LR_INIT_XAVIER, KEY(T_FC2_W), f, d},
      [T_FC2_B] = {"fc2_b", L * D, 1, LR_INIT_UNIFORM, KEY(T_FC2_B), f, 0},
      [T_ATTN_P] = {"attn_p", L * A, 1, LR_INIT_ATTN, 0, 0, 0},
  };
  memcpy(t, v, sizeof v);
  return N_TENSORS;
}

// Activation buffers: what the backward reads, then its chunk temporaries.
enum {
  A_E, // E after its dropout (keys and values of every block, Q^0)
  A_LNF,
  A_LNF_MEAN,
  A_LNF_RSTD,
  A_OUT,  // LNf(Q^L) + U (with the users table)
  A_DOUT, // backward: the output gradient, for the final LayerNorm's parameters at l = -1
  A_DE,   // backward: E's gradient from the blocks' K/V, summed over blocks
  A_XA,   // per block: LN1(Q)
  A_LN1_MEAN,
  A_LN1_RSTD,
  A_QKV, // q | k | v (the kind's fused input)
  A_CTX, // the attention's output
  A_RES1,
  A_XF, // LN2(Q')
  A_LN2_MEAN,
  A_LN2_RSTD,
  A_FC1,  // W1 x + b1's GELU derivative (gelu_forward_train)
  A_GELU, // GELU output, dropped
  A_H,    // the block's output
  A_D_Y,  // backward temporaries (one sequence's rows)
  A_D_X,
  A_D_XF,
  A_D_XA,
  A_D_G,
  A_D_CTX,
  A_D_QKV,
  N_ACTS
};

// The width of the temporary A_D_G: the FFN's inner gradient, and 2D
// floats of discarded LayerNorm parameter gradients.
static size_t dg_width(const lr_model_cfg *c) {
  return (size_t)(c->inner > 2 * c->d ? c->inner : 2 * c->d);
}

static int ram_acts(const lr_model_cfg *c, lr_act a[LR_MAX_ACTS]) {
  const size_t D = (size_t)c->d, F = (size_t)c->inner;
  const lr_act v[N_ACTS] = {
      [A_E] = {"e", D, 0, 0},
      [A_LNF] = {"lnf", D, 0, 0},
      [A_LNF_MEAN] = {"lnf_mean", 1, 0, 0},
      [A_LNF_RSTD] = {"lnf_rstd", 1, 0, 0},
      [A_OUT] = {"out", c->no_user_table ? 0 : D, 0, 0},
      [A_DOUT] = {"dout", D, 0, 0},
      [A_DE] = {"de", D, 0, 0},
      [A_XA] = {"xa", D, 1, 0},
      [A_LN1_MEAN] = {"ln1_mean", 1, 1, 0},
      [A_LN1_RSTD] = {"ln1_rstd", 1, 1, 0},
      [A_QKV] = {"qkv", 3 * D, 1, 0},
      [A_CTX] = {"ctx", D, 1, 0},
      [A_RES1] = {"res1", D, 1, 0},
      [A_XF] = {"xf", D, 1, 0},
      [A_LN2_MEAN] = {"ln2_mean", 1, 1, 0},
      [A_LN2_RSTD] = {"ln2_rstd", 1, 1, 0},
      [A_FC1] = {"fc1", F, 1, 0},
      [A_GELU] = {"gelu", F, 1, 0},
      [A_H] = {"h", D, 1, 0},
      [A_D_Y] = {"d_y", 0, 0, D},
      [A_D_X] = {"d_x", 0, 0, D},
      [A_D_XF] = {"d_xf", 0, 0, D},
      [A_D_XA] = {"d_xa", 0, 0, D},
      [A_D_G] = {"d_g", 0, 0, dg_width(c)},
      [A_D_CTX] = {"d_ctx", 0, 0, D},
      [A_D_QKV] = {"d_qkv", 0, 0, 3 * D},
  };
  memcpy(a, v, sizeof v);
  return N_ACTS;
}

#define USER_KEY 0u // the users rows start at zero (file comment)

static int ram_groups(const lr_model_cfg *c, lr_seq_group g[LR_MAX_SEQ_GROUPS]) {
  if (c->no_user_table) return 0;
  g[0] = (lr_seq_group){"users", c->d, USER_KEY};
  return 1;
}

// Dropout sites (RNG keys): the embedding, then per block the attention
// output, the FFN output and the FFN's inner (after GELU, F wide: its mask is
// regenerated, not kept). Keep blocks: the embedding's and each block's
// attention and FFN output masks.
#define SITE_EMB 1u
#define SITE_ATTN(l) (8u * (uint32_t)((l) + 1))
#define SITE_FFN(l) (8u * (uint32_t)((l) + 1) + 1u)
#define SITE_FFN_IN(l) (8u * (uint32_t)((l) + 1) + 2u)
#define KEEP_EMB 0
#define KEEP_ATTN(l) (1 + 2 * (l))
#define KEEP_FFN(l) (2 + 2 * (l))

static int64_t ram_keep_blocks(const lr_model_cfg *c) { return 1 + 2 * c->layers; }

// ---- helpers ---------------------------------------------------------------------------------

// Layer l's slice of per-layer tensor i (NULL for an empty tensor).
static float *layer_t(const lr_model *m, float *arena, int i, int64_t l) {
  const size_t each = m->tensors[i].elems / (size_t)m->cfg.layers;
  return each ? model_tensor_in(m, arena, i) + (size_t)l * each : NULL;
}

// Buffer i at batch row r (w floats per row; block l's copy for a per-block buffer).
static float *act_at(const lr_model *m, int i, int64_t l, int64_t r, size_t w) {
  const size_t R = (size_t)m->B * (size_t)m->cfg.max_len;
  return model_act(m, i) + ((size_t)l * R + (size_t)r) * w;
}

// A per-row statistic (mean, rstd) of block l at batch row r.
static float *stat_at(const lr_model *m, int i, int64_t l, int64_t r) {
  return act_at(m, i, l, r, 1);
}

// Row t of the calling lane's temporary i (w floats per row).
static float *tmp_at(const lr_model *m, int i, int64_t t, size_t w) {
  return model_act(m, i) + (model_lane_tmp_row(m) + (size_t)t) * w;
}

// The FFN's inner dropout: its mask regenerated in backward.
static lr_dropout inner_site(const lr_model *m, lr_dropout dp, int64_t l) {
  lr_dropout s = model_site(m, dp, SITE_FFN_IN(l), 0, 0);
  s.bits = NULL;
  return s;
}

// out (nr, OC; ld ldo) = in (nr, C; ld ldi) W^T + b: a linear layer into a
// column slice of a wider buffer.
static void linear_into(float *out, int64_t ldo, const float *in, int64_t ldi, const float *w,
                        const float *b, int64_t nr, int64_t C, int64_t OC) {
  for (int64_t r = 0; r < nr; r++)
    memcpy(out + r * ldo, b, (size_t)OC * sizeof(float));
  lr_matmul(0, 1, nr, OC, C, 1.0f, in, ldi, w, C, 1.0f, out, ldo);
}

// The rows of sequence b: n valid, the query stream from row q0 (n - 1
// with last_only, else 0), rq = its first batch row.
typedef struct {
  int64_t b, n, q0, nq, base, rq;
} ram_seq;

static ram_seq rows_of(const lr_model *m, int64_t b) {
  const int64_t n = m->lens[b], N = m->cfg.max_len;
  const int64_t q0 = m->cfg.last_only ? n - 1 : 0;
  return (ram_seq){b, n, q0, n - q0, b * N, b * N + q0};
}

static float emb_scale(const lr_model_cfg *c) { return c->emb_scale > 0.0f ? c->emb_scale : 1.0f; }

// The position-table row of valid row t of a sequence of n rows.
static int64_t pos_row(const lr_model_cfg *c, int64_t n, int64_t t) {
  return c->pos_from_end ? c->max_len - n + t : t;
}

// ---- forward --------------------------------------------------------------------------------

// E rows 0..n-1 of sequence s: s * rows[idx] + pos[p(t)], dropped.
static void embed_forward(const lr_lane_job *j, const ram_seq *s) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t D = c->d;
  const float sc = emb_scale(c), *pos = model_tensor_in(m, m->params_mem, T_POS);
  float *e = act_at(m, A_E, 0, s->base, (size_t)D);
  for (int64_t t = 0; t < s->n; t++) {
    const int32_t u = j->idx[s->base + t];
    LR_ASSERT(u >= 0);
    const float *row = j->rows + (size_t)u * (size_t)D, *p = pos + pos_row(c, s->n, t) * D;
    float *o = e + t * D;
    if (sc == 1.0f)
      for (int64_t i = 0; i < D; i++) o[i] = row[i] + p[i];
    else
      for (int64_t i = 0; i < D; i++) o[i] = sc * row[i] + p[i];
  }
  dropout_forward(e, e, j->row_ids ? j->row_ids + s->base : NULL, s->n, D,
                  model_site(m, j->dp, SITE_EMB, KEEP_EMB, s->base));
}

// Block l of sequence s: the query rows q0..n-1 from qin to A_H.
static void block_forward(const lr_lane_job *j, const ram_seq *s, int64_t l, const float *qin) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t N = c->max_len, D = c->d, F = c->inner, H = c->heads, nq = s->nq, rq = s->rq;
  const uint64_t *rid = j->row_ids ? j->row_ids + rq : NULL;
  float *P = m->params_mem;
  const size_t d = (size_t)D, f = (size_t)F;
  float *xa = act_at(m, A_XA, l, rq, d), *qkv = act_at(m, A_QKV, l, s->base, 3 * d);
  float *ctx = act_at(m, A_CTX, l, s->base, d), *res1 = act_at(m, A_RES1, l, rq, d);
  float *xf = act_at(m, A_XF, l, rq, d), *fc1 = act_at(m, A_FC1, l, rq, f);
  float *gelu = act_at(m, A_GELU, l, rq, f), *h = act_at(m, A_H, l, rq, d);
  const float *e = act_at(m, A_E, 0, s->base, d);
  double t0 = model_now();
  // X~ = LN1(Q); q = X~ Wq^T + bq (query rows; the others zero); [k|v] = E Wkv^T + bkv
  layernorm_forward(xa, stat_at(m, A_LN1_MEAN, l, rq), stat_at(m, A_LN1_RSTD, l, rq), qin,
                    layer_t(m, P, T_LN1_W, l), layer_t(m, P, T_LN1_B, l), nq, D, c->ln_eps);
  for (int64_t t = 0; t < s->q0; t++) memset(qkv + t * 3 * D, 0, d * sizeof(float));
  linear_into(qkv + s->q0 * 3 * D, 3 * D, xa, D, layer_t(m, P, T_Q_W, l), layer_t(m, P, T_Q_B, l),
              nq, D, D);
  linear_into(qkv + D, 3 * D, e, D, layer_t(m, P, T_KV_W, l), layer_t(m, P, T_KV_B, l), s->n, D,
              2 * D);
  model_lap(m, LR_PHASE_PROJ, &t0);
  attn_forward_range(ctx, m->attn_cache + (size_t)l * m->attn_cache_elems,
                     act_at(m, A_QKV, l, 0, 3 * d), m->lens, c->attn, layer_t(m, P, T_ATTN_P, l),
                     m->B, s->b, s->b + 1, N, D, H, model_lane_attn_scratch(m));
  model_lap(m, LR_PHASE_ATTN, &t0);
  // Q' = Q + Dropout(ctx Wo^T + bo)
  linear_forward(res1, ctx + s->q0 * D, layer_t(m, P, T_O_W, l), NULL, nq, D, D);
  dropout_residual_forward(res1, res1, layer_t(m, P, T_O_B, l), qin, rid, nq, D,
                           model_site(m, j->dp, SITE_ATTN(l), KEEP_ATTN(l), rq));
  model_lap(m, LR_PHASE_PROJ, &t0);
  // F~ = LN2(Q'); Q = F~ + Dropout(W2 Dropout(GELU(W1 F~ + b1)) + b2)
  layernorm_forward(xf, stat_at(m, A_LN2_MEAN, l, rq), stat_at(m, A_LN2_RSTD, l, rq), res1,
                    layer_t(m, P, T_LN2_W, l), layer_t(m, P, T_LN2_B, l), nq, D, c->ln_eps);
  linear_forward(fc1, xf, layer_t(m, P, T_FC1_W, l), NULL, nq, D, F);
  gelu_forward_train(gelu, fc1, layer_t(m, P, T_FC1_B, l), nq, F); // fc1 := gelu'
  dropout_forward(gelu, gelu, rid, nq, F, inner_site(m, j->dp, l));
  linear_forward(h, gelu, layer_t(m, P, T_FC2_W, l), NULL, nq, F, D);
  dropout_residual_forward(h, h, layer_t(m, P, T_FC2_B, l), xf, rid, nq, D,
                           model_site(m, j->dp, SITE_FFN(l), KEEP_FFN(l), rq));
  model_lap(m, LR_PHASE_FFN, &t0);
}

static void ram_fwd(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t D = c->d, L = c->layers;
  const size_t d = (size_t)D;
  for (int64_t b = z->b0; b < z->b1; b++) {
    const ram_seq s = rows_of(m, b);
    double t0 = model_now();
    embed_forward(j, &s);
    model_lap(m, LR_PHASE_EMBED, &t0);
    const float *q = act_at(m, A_E, 0, s.rq, d);
    for (int64_t l = 0; l < L; l++) {
      block_forward(j, &s, l, q);
      q = act_at(m, A_H, l, s.rq, d);
    }
    // out = LNf(Q^L) + U[user]
    t0 = model_now();
    float *y = act_at(m, A_LNF, 0, s.rq, d);
    layernorm_forward(y, stat_at(m, A_LNF_MEAN, 0, s.rq), stat_at(m, A_LNF_RSTD, 0, s.rq), q,
                      model_tensor_in(m, m->params_mem, T_LNF_W),
                      model_tensor_in(m, m->params_mem, T_LNF_B), s.nq, D, c->ln_eps);
    if (!c->no_user_table) {
      const float *u = j->seq_rows[0] + b * D;
      float *o = act_at(m, A_OUT, 0, s.rq, d);
      for (int64_t t = 0; t < s.nq; t++)
        for (int64_t i = 0; i < D; i++) o[t * D + i] = y[t * D + i] + u[i];
    }
    model_lap(m, LR_PHASE_FFN, &t0);
  }
}

static const float *ram_output(const lr_model *m) {
  return model_act(m, m->cfg.no_user_table ? A_LNF : A_OUT);
}

// ---- backward -------------------------------------------------------------------------------

// Block l of sequence s: dy (nq rows) the gradient of its output; dq_in
// (nq rows) receives its input's (written); E's gradient from the K/V
// projection is added to A_DE.
static void block_backward(const lr_lane_job *j, const ram_seq *s, int64_t l, const float *dy,
                           float *dq_in) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t N = c->max_len, D = c->d, F = c->inner, H = c->heads, nq = s->nq, rq = s->rq;
  const int64_t n = s->n, q0 = s->q0;
  const uint64_t *rid = j->row_ids ? j->row_ids + rq : NULL;
  float *P = m->params_mem, *G = model_lane_stage(m);
  const size_t d = (size_t)D, f = (size_t)F;
  const float *qin = l ? act_at(m, A_H, l - 1, rq, d) : act_at(m, A_E, 0, rq, d);
  const float *e = act_at(m, A_E, 0, s->base, d), *xa = act_at(m, A_XA, l, rq, d);
  const float *ctx = act_at(m, A_CTX, l, rq, d);
  const float *res1 = act_at(m, A_RES1, l, rq, d), *xf = act_at(m, A_XF, l, rq, d);
  const float *fc1 = act_at(m, A_FC1, l, rq, f), *gelu = act_at(m, A_GELU, l, rq, f);
  float *de = act_at(m, A_DE, 0, s->base, d);
  float *dx = tmp_at(m, A_D_X, 0, d), *dxf = tmp_at(m, A_D_XF, 0, d);
  float *dxa = tmp_at(m, A_D_XA, 0, d), *dg = tmp_at(m, A_D_G, 0, dg_width(c));
  float *dctx = tmp_at(m, A_D_CTX, 0, d), *dqkv = tmp_at(m, A_D_QKV, 0, 3 * d);
  double t0 = model_now();
  // Q = F~ + Dropout(fc2 + b2): dF~ = dQ + FFN'(Dropout'(dQ))
  memset(dx, 0, (size_t)nq * d * sizeof(float));
  dropout_backward(dx, dy, rid, nq, D, model_site(m, j->dp, SITE_FFN(l), KEEP_FFN(l), rq));
  linear_backward_to(dg, layer_t(m, G, T_FC2_W, l), layer_t(m, G, T_FC2_B, l), dx, gelu,
                     layer_t(m, P, T_FC2_W, l), nq, F, D);
  dropout_forward(dg, dg, rid, nq, F, inner_site(m, j->dp, l)); // the inner mask, again
  gelu_backward_stored(dg, fc1, nq * F);
  memcpy(dxf, dy, (size_t)nq * d * sizeof(float));
  linear_backward(dxf, layer_t(m, G, T_FC1_W, l), layer_t(m, G, T_FC1_B, l), dg, xf,
                  layer_t(m, P, T_FC1_W, l), nq, D, F);
  // F~ = LN2(Q'): dQ' (into dq_in: Q' = Q + ..., the residual carries it)
  memset(dq_in, 0, (size_t)nq * d * sizeof(float));
  layernorm_backward(dq_in, layer_t(m, G, T_LN2_W, l), layer_t(m, G, T_LN2_B, l), dxf, res1,
                     layer_t(m, P, T_LN2_W, l), stat_at(m, A_LN2_MEAN, l, rq),
                     stat_at(m, A_LN2_RSTD, l, rq), nq, D);
  model_lap(m, LR_PHASE_FFN, &t0);
  // Q' = Q + Dropout(ctx Wo^T + bo): dctx at the query rows, zero above them
  memset(dx, 0, (size_t)nq * d * sizeof(float));
  dropout_backward(dx, dq_in, rid, nq, D, model_site(m, j->dp, SITE_ATTN(l), KEEP_ATTN(l), rq));
  memset(dctx, 0, (size_t)q0 * d * sizeof(float));
  linear_backward_to(dctx + q0 * D, layer_t(m, G, T_O_W, l), layer_t(m, G, T_O_B, l), dx, ctx,
                     layer_t(m, P, T_O_W, l), nq, D, D);
  memset(dqkv, 0, (size_t)n * 3 * d * sizeof(float));
  model_lap(m, LR_PHASE_PROJ, &t0);
  attn_backward_range(dqkv, layer_t(m, G, T_ATTN_P, l), dctx, act_at(m, A_QKV, l, 0, 3 * d),
                      layer_t(m, P, T_ATTN_P, l), m->attn_cache + (size_t)l * m->attn_cache_elems,
                      m->lens, c->attn, m->B, s->b, s->b + 1, N, D, H, model_lane_attn_scratch(m));
  model_lap(m, LR_PHASE_ATTN, &t0);
  // q = X~ Wq^T + bq at the query rows: dWq += dq^T X~, dX~ = dq Wq, dQ += LN1'(dX~)
  const float *dq = dqkv + q0 * 3 * D;
  lr_matmul(1, 0, D, D, nq, 1.0f, dq, 3 * D, xa, D, 1.0f, layer_t(m, G, T_Q_W, l), D);
  grela_colsum(layer_t(m, G, T_Q_B, l), dq, 3 * D, nq, D);
  lr_matmul(0, 0, nq, D, D, 1.0f, dq, 3 * D, layer_t(m, P, T_Q_W, l), D, 0.0f, dxa, D);
  layernorm_backward(dq_in, layer_t(m, G, T_LN1_W, l), layer_t(m, G, T_LN1_B, l), dxa, qin,
                     layer_t(m, P, T_LN1_W, l), stat_at(m, A_LN1_MEAN, l, rq),
                     stat_at(m, A_LN1_RSTD, l, rq), nq, D);
  // [k|v] = E Wkv^T + bkv over rows 0..n-1: dWkv += dkv^T E, dE += dkv Wkv
  lr_matmul(1, 0, 2 * D, D, n, 1.0f, dqkv + D, 3 * D, e, D, 1.0f, layer_t(m, G, T_KV_W, l), D);
  grela_colsum(layer_t(m, G, T_KV_B, l), dqkv + D, 3 * D, n, 2 * D);
  lr_matmul(0, 0, n, D, 2 * D, 1.0f, dqkv + D, 3 * D, layer_t(m, P, T_KV_W, l), D, 1.0f, de, D);
  model_lap(m, LR_PHASE_PROJ, &t0);
}

// The output of sequence s: out = LNf(Q^L) + U. From the output gradient
// (j->dh, rows q0..n-1) the users row's (summed over the rows) into the
// lane's row staging, the input's into A_D_Y; the output gradient is kept
// in A_DOUT for the final LayerNorm's parameters (taken at l = -1), and
// E's gradient buffer starts at zero.
static const float *output_backward(const lr_lane_job *j, const ram_seq *s) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t D = c->d, nq = s->nq;
  const size_t d = (size_t)D;
  const float *dout = j->dh + (size_t)s->rq * d;
  if (!c->no_user_table) {
    float *du = model_lane_seq_stage(m, 0);
    for (int64_t t = 0; t < nq; t++)
      for (int64_t i = 0; i < D; i++) du[i] += dout[t * D + i];
  }
  memcpy(act_at(m, A_DOUT, 0, s->rq, d), dout, (size_t)nq * d * sizeof(float));
  memset(act_at(m, A_DE, 0, s->base, d), 0, (size_t)s->n * d * sizeof(float));
  float *dy = tmp_at(m, A_D_Y, 0, d), *junk = tmp_at(m, A_D_G, 0, dg_width(c)); // 2D floats
  memset(dy, 0, (size_t)nq * d * sizeof(float));
  memset(junk, 0, 2 * d * sizeof(float));
  layernorm_backward(dy, junk, junk + D, dout, act_at(m, A_H, c->layers - 1, s->rq, d),
                     model_tensor_in(m, m->params_mem, T_LNF_W),
                     stat_at(m, A_LNF_MEAN, 0, s->rq), stat_at(m, A_LNF_RSTD, 0, s->rq), nq, D);
  return dy;
}

// The embedding stage of sequence s: j->dh (rows q0..n-1) is Q^0's
// gradient; dE = it + the blocks' (A_DE), through the dropout; the item
// rows' gradient s * dE to j->dhin (rows 0..n-1), the position rows' and
// the final LayerNorm's parameters' to the staging.
static void embed_backward(const lr_lane_job *j, const ram_seq *s) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t D = c->d, n = s->n;
  const size_t d = (size_t)D;
  float *G = model_lane_stage(m);
  double t0 = model_now();
  float *de = act_at(m, A_DE, 0, s->base, d), *dq0 = j->dh + (size_t)s->rq * d;
  for (int64_t t = 0; t < s->nq; t++)
    for (int64_t i = 0; i < D; i++) de[(s->q0 + t) * D + i] += dq0[t * D + i];
  float *dx = tmp_at(m, A_D_X, 0, d), *demb = j->dhin + (size_t)s->base * d;
  memset(dx, 0, (size_t)n * d * sizeof(float));
  dropout_backward(dx, de, j->row_ids ? j->row_ids + s->base : NULL, n, D,
                   model_site(m, j->dp, SITE_EMB, KEEP_EMB, s->base));
  const float sc = emb_scale(c);
  float *dpos = model_tensor_in(m, G, T_POS);
  for (int64_t t = 0; t < n; t++) {
    float *dp = dpos + pos_row(c, n, t) * D;
    for (int64_t i = 0; i < D; i++) {
      dp[i] += dx[t * D + i];
      demb[t * D + i] = sc * dx[t * D + i];
    }
  }
  // the final LayerNorm's parameters, from the output gradient layer L-1 kept
  float *junk = tmp_at(m, A_D_XF, 0, d);
  memset(junk, 0, (size_t)s->nq * d * sizeof(float));
  layernorm_backward(junk, model_tensor_in(m, G, T_LNF_W), model_tensor_in(m, G, T_LNF_B),
                     act_at(m, A_DOUT, 0, s->rq, d), act_at(m, A_H, c->layers - 1, s->rq, d),
                     model_tensor_in(m, m->params_mem, T_LNF_W), stat_at(m, A_LNF_MEAN, 0, s->rq),
                     stat_at(m, A_LNF_RSTD, 0, s->rq), s->nq, D);
  model_lap(m, LR_PHASE_EMBED, &t0);
}

static void ram_bwd(const lr_lane_job *j, const lr_lane_rows *z) {
  const lr_model *m = j->m;
  for (int64_t b = z->b0; b < z->b1; b++) {
    const ram_seq s = rows_of(m, b);
    if (j->l < 0) {
      embed_backward(j, &s);
      continue;
    }
    const float *dy = j->l == m->cfg.layers - 1 ? output_backward(j, &s)
                                                : j->dh + (size_t)s.rq * (size_t)m->cfg.d;
    block_backward(j, &s, j->l, dy, j->dhin + (size_t)s.rq * (size_t)m->cfg.d);
  }
}

static double ram_layer_flops(const lr_model_cfg *c) {
  const double N = (double)c->max_len, D = (double)c->d, F = (double)c->inner;
  return N * (4 * D * D + 2 * D * F); // q, k|v, output, FFN (every row: the full path)
}

const lr_arch lr_arch_ram = {
    .name = "ram",
    .tensors = ram_tensors,
    .acts = ram_acts,
    .keep_blocks = ram_keep_blocks,
    .fwd = ram_fwd,
    .bwd = ram_bwd,
    .output = ram_output,
    .seq_groups = ram_groups,
    .layer_flops = ram_layer_flops,
};
