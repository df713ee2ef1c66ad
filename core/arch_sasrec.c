// arch_sasrec.c: the SASRec/LinRec encoder (post-LN, as RecBole) as an
// architecture of the model engine (model_arch.h):
//   E   = ItemEmb[s_t] + PosEmb[t]
//   H^0 = Dropout(LayerNorm(E))
//   per layer l:
//     S = LayerNorm(H + Dropout(MultiHead(H) W_O + b_O))
//     H = LayerNorm(S + Dropout(W2 gelu(W1 S + b1) + b2))
// MultiHead is the configured attention kind (attention.h) over the fused
// Q/K/V projection.
#include <string.h> // memset, memcpy

#include "lr.h"
#include "model_arch.h"

// ---- tables ---------------------------------------------------------------------------------

// Parameter tensors in arena order. The init keys are the tensors' indices
// of the first layout (results depend on them: keep them).
enum {
  T_POS,
  T_LN0_W,
  T_LN0_B, // the embedding stage
  T_QKV_W,
  T_QKV_B,
  T_O_W,
  T_O_B,
  T_LN1_W,
  T_LN1_B, // per layer: attention block
  T_FC1_W,
  T_FC1_B,
  T_FC2_W,
  T_FC2_B,
  T_LN2_W,
  T_LN2_B,  // FFN block
  T_ATTN_P, // the attention kind's own
  N_TENSORS
};

static int sasrec_tensors(const lr_model_cfg *c, lr_tensor t[LR_MAX_TENSORS]) {
  const size_t N = (size_t)c->max_len, D = (size_t)c->d, L = (size_t)c->layers,
               F = (size_t)c->inner, A = attn_param_elems(c->attn, c->d, c->heads);
  const lr_tensor v[N_TENSORS] = {
      [T_POS] = {"pos", N * D, 0, LR_INIT_NORMAL, 0},
      [T_LN0_W] = {"ln0_w", D, 0, LR_INIT_ONE, 0},
      [T_LN0_B] = {"ln0_b", D, 0, LR_INIT_ZERO, 0},
      [T_QKV_W] = {"qkv_w", L * 3 * D * D, 1, LR_INIT_NORMAL, 3},
      [T_QKV_B] = {"qkv_b", L * 3 * D, 1, LR_INIT_ZERO, 0},
      [T_O_W] = {"o_w", L * D * D, 1, LR_INIT_NORMAL, 5},
      [T_O_B] = {"o_b", L * D, 1, LR_INIT_ZERO, 0},
      [T_LN1_W] = {"ln1_w", L * D, 1, LR_INIT_ONE, 0},
      [T_LN1_B] = {"ln1_b", L * D, 1, LR_INIT_ZERO, 0},
      [T_FC1_W] = {"fc1_w", L * F * D, 1, LR_INIT_NORMAL, 9},
      [T_FC1_B] = {"fc1_b", L * F, 1, LR_INIT_ZERO, 0},
      [T_FC2_W] = {"fc2_w", L * D * F, 1, LR_INIT_NORMAL, 11},
      [T_FC2_B] = {"fc2_b", L * D, 1, LR_INIT_ZERO, 0},
      [T_LN2_W] = {"ln2_w", L * D, 1, LR_INIT_ONE, 0},
      [T_LN2_B] = {"ln2_b", L * D, 1, LR_INIT_ZERO, 0},
      [T_ATTN_P] = {"attn_p", L * A, 1, LR_INIT_ATTN, 0},
  };
  memcpy(t, v, sizeof v);
  return N_TENSORS;
}

// Activation buffers: what the backward reads, then the backward's chunk
// temporaries.
enum {
  A_EMB,
  A_LN0,
  A_LN0_MEAN,
  A_LN0_RSTD,
  A_H0, // embedding stage
  A_QKV,
  A_CTX,
  A_RES1,
  A_S,
  A_LN1_MEAN,
  A_LN1_RSTD, // per layer
  A_FC1,
  A_GELU,
  A_RES2,
  A_H,
  A_LN2_MEAN,
  A_LN2_RSTD,
  A_D_A,
  A_D_S,
  A_D_F2,
  A_D_QKV, // backward temporaries
  N_ACTS
};

static int sasrec_acts(const lr_model_cfg *c, lr_act a[LR_MAX_ACTS]) {
  const size_t D = (size_t)c->d, F = (size_t)c->inner;
  const lr_act v[N_ACTS] = {
      [A_EMB] = {"emb", D, 0, 0},
      [A_LN0] = {"ln0", D, 0, 0},
      [A_LN0_MEAN] = {"ln0_mean", 1, 0, 0},
      [A_LN0_RSTD] = {"ln0_rstd", 1, 0, 0},
      [A_H0] = {"h0", D, 0, 0},
      [A_QKV] = {"qkv", 3 * D, 1, 0},
      [A_CTX] = {"ctx", D, 1, 0},
      [A_RES1] = {"res1", D, 1, 0},
      [A_S] = {"s", D, 1, 0},
      [A_LN1_MEAN] = {"ln1_mean", 1, 1, 0},
      [A_LN1_RSTD] = {"ln1_rstd", 1, 1, 0},
      [A_FC1] = {"fc1", F, 1, 0},
      [A_GELU] = {"gelu", F, 1, 0},
      [A_RES2] = {"res2", D, 1, 0},
      [A_H] = {"h", D, 1, 0},
      [A_LN2_MEAN] = {"ln2_mean", 1, 1, 0},
      [A_LN2_RSTD] = {"ln2_rstd", 1, 1, 0},
      [A_D_A] = {"d_a", 0, 0, D},
      [A_D_S] = {"d_s", 0, 0, D},
      [A_D_F2] = {"d_f2", 0, 0, F},
      [A_D_QKV] = {"d_qkv", 0, 0, 3 * D},
  };
  memcpy(a, v, sizeof v);
  return N_ACTS;
}

// Dropout sites (RNG keys) and the keep blocks of their masks: the
// embedding, then the attention and the FFN output of each layer.
#define SITE_EMB 1u
#define SITE_ATTN(l) (8u * (uint32_t)((l) + 1))
#define SITE_FFN(l) (8u * (uint32_t)((l) + 1) + 1u)
#define KEEP_EMB 0
#define KEEP_ATTN(l) (1 + 2 * (l))
#define KEEP_FFN(l) (2 + 2 * (l))

static int64_t sasrec_keep_blocks(const lr_model_cfg *c) { return 1 + 2 * c->layers; }

// ---- forward --------------------------------------------------------------------------------

static void sasrec_fwd(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, L = c->layers;
  const uint64_t *rid = j->row_ids ? j->row_ids + z->r0 : NULL;
  float *P = m->params_mem;
  const lr_dropout dp = j->dp;
  double t0 = model_now();

  float *emb = model_act(m, A_EMB) + z->oD, *ln0 = model_act(m, A_LN0) + z->oD;
  float *h0 = model_act(m, A_H0);
  embedding_forward(emb, j->idx + z->r0, j->rows, model_tensor_in(m, P, T_POS), z->b1 - z->b0, N,
                    D);
  layernorm_forward(ln0, model_act(m, A_LN0_MEAN) + z->r0, model_act(m, A_LN0_RSTD) + z->r0, emb,
                    model_tensor_in(m, P, T_LN0_W), model_tensor_in(m, P, T_LN0_B), z->nr, D,
                    c->ln_eps);
  dropout_forward(h0 + z->oD, ln0, rid, z->nr, D, model_site(m, dp, SITE_EMB, KEEP_EMB, z->r0));
  model_lap(m, LR_PHASE_EMBED, &t0);
  const float *h = h0;
  for (int64_t l = 0; l < L; l++) {
    float *qkv = model_act(m, A_QKV) + (size_t)l * z->RD * 3;
    float *ctx = model_act(m, A_CTX) + (size_t)l * z->RD;
    float *res1 = model_act(m, A_RES1) + (size_t)l * z->RD + z->oD;
    float *s = model_act(m, A_S) + (size_t)l * z->RD + z->oD;
    float *fc1 = model_act(m, A_FC1) + (size_t)l * z->RF + z->oF;
    float *gelu = model_act(m, A_GELU) + (size_t)l * z->RF + z->oF;
    float *res2 = model_act(m, A_RES2) + (size_t)l * z->RD + z->oD;
    float *hout = model_act(m, A_H) + (size_t)l * z->RD;
    float *cache = m->attn_cache + (size_t)l * m->attn_cache_elems;
    const size_t lR = (size_t)l * (size_t)z->R + (size_t)z->r0; // per-row statistics
    // S = LayerNorm(H + Dropout(MultiHead(H) W_O + b_O))
    linear_forward(qkv + 3 * z->oD, h + z->oD, model_tensor_layer(m, P, T_QKV_W, l), model_tensor_layer(m, P, T_QKV_B, l),
                   z->nr, D, 3 * D);
    model_lap(m, LR_PHASE_PROJ, &t0);
    attn_forward_range_km(ctx + z->oD, cache, qkv, m->lens, m->kmask, c->attn,
                          model_tensor_layer(m, P, T_ATTN_P, l), B, z->b0, z->b1, N, D, H,
                          model_lane_attn_scratch(m));
    model_lap(m, LR_PHASE_ATTN, &t0);
    // the biases of W_O, W1 and W2 ride in the pass after their GEMM
    linear_forward(res1, ctx + z->oD, model_tensor_layer(m, P, T_O_W, l), NULL, z->nr, D, D);
    dropout_residual_forward(res1, res1, model_tensor_layer(m, P, T_O_B, l), h + z->oD, rid, z->nr, D,
                             model_site(m, dp, SITE_ATTN(l), KEEP_ATTN(l), z->r0));
    layernorm_forward(s, model_act(m, A_LN1_MEAN) + lR, model_act(m, A_LN1_RSTD) + lR, res1,
                      model_tensor_layer(m, P, T_LN1_W, l), model_tensor_layer(m, P, T_LN1_B, l), z->nr, D, c->ln_eps);
    model_lap(m, LR_PHASE_PROJ, &t0);
    // H = LayerNorm(S + Dropout(W2 gelu(W1 S + b1) + b2))
    linear_forward(fc1, s, model_tensor_layer(m, P, T_FC1_W, l), NULL, z->nr, D, F);
    if (c->ffn_relu) // fc1 := relu'
      relu_forward_train(gelu, fc1, model_tensor_layer(m, P, T_FC1_B, l), z->nr, F);
    else // fc1 := gelu'
      gelu_forward_train(gelu, fc1, model_tensor_layer(m, P, T_FC1_B, l), z->nr, F);
    linear_forward(res2, gelu, model_tensor_layer(m, P, T_FC2_W, l), NULL, z->nr, F, D);
    dropout_residual_forward(res2, res2, model_tensor_layer(m, P, T_FC2_B, l), s, rid, z->nr, D,
                             model_site(m, dp, SITE_FFN(l), KEEP_FFN(l), z->r0));
    layernorm_forward(hout + z->oD, model_act(m, A_LN2_MEAN) + lR, model_act(m, A_LN2_RSTD) + lR,
                      res2, model_tensor_layer(m, P, T_LN2_W, l), model_tensor_layer(m, P, T_LN2_B, l), z->nr, D,
                      c->ln_eps);
    model_lap(m, LR_PHASE_FFN, &t0);
    h = hout;
  }
}

static const float *sasrec_output(const lr_model *m) {
  return model_act_layer(m, A_H, m->cfg.layers - 1);
}

// ---- backward -------------------------------------------------------------------------------

// Layer l: j->dh (B*N,D), the gradient w.r.t. its output, is overwritten as
// scratch; j->dhin receives the gradient w.r.t. its input.
static void backward_layer(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, l = j->l;
  const size_t lR = (size_t)l * (size_t)z->R + (size_t)z->r0;
  const uint64_t *rid = j->row_ids ? j->row_ids + z->r0 : NULL;
  float *P = m->params_mem, *G = model_lane_stage(m);
  const float *hin = (l ? model_act(m, A_H) + (size_t)(l - 1) * z->RD : model_act(m, A_H0)) + z->oD;
  const float *qkv = model_act(m, A_QKV) + (size_t)l * z->RD * 3;
  const float *ctx = model_act(m, A_CTX) + (size_t)l * z->RD + z->oD;
  const float *res1 = model_act(m, A_RES1) + (size_t)l * z->RD + z->oD;
  const float *s = model_act(m, A_S) + (size_t)l * z->RD + z->oD;
  const float *fc1 = model_act(m, A_FC1) + (size_t)l * z->RF + z->oF;
  const float *gelu = model_act(m, A_GELU) + (size_t)l * z->RF + z->oF;
  const float *res2 = model_act(m, A_RES2) + (size_t)l * z->RD + z->oD;
  const float *cache = m->attn_cache + (size_t)l * m->attn_cache_elems;
  float *dh = j->dh + z->oD, *dhin = j->dhin + z->oD;
  const size_t t = model_lane_tmp_row(m);
  float *ds = model_act(m, A_D_S) + t * (size_t)D;
  float *dx = model_act(m, A_D_A) + t * (size_t)D; // a dropout's input = a linear's output gradient
  float *d_f2 = model_act(m, A_D_F2) + t * (size_t)F;
  float *d_qkv = model_act(m, A_D_QKV) + t * 3 * (size_t)D;
  double t0 = model_now();
  // H = LN2(res2), res2 = S + Dropout(FFN(S) + b2): in one pass dS's residual
  // part and, through the dropout, the FFN output's gradient dx (b2's sum)
  ln_dropout_backward(ds, dx, model_tensor_layer(m, G, T_LN2_W, l), model_tensor_layer(m, G, T_LN2_B, l),
                      model_tensor_layer(m, G, T_FC2_B, l), dh, res2, model_tensor_layer(m, P, T_LN2_W, l),
                      model_act(m, A_LN2_MEAN) + lR, model_act(m, A_LN2_RSTD) + lR, rid, z->nr, D,
                      model_site(m, j->dp, SITE_FFN(l), KEEP_FFN(l), z->r0));
  linear_backward_to(d_f2, model_tensor_layer(m, G, T_FC2_W, l), NULL, dx, gelu, model_tensor_layer(m, P, T_FC2_W, l),
                     z->nr, F, D);
  gelu_backward_stored(d_f2, fc1, (int64_t)z->nF); // d_f2 is now the gradient of fc1's output
  linear_backward(ds, model_tensor_layer(m, G, T_FC1_W, l), model_tensor_layer(m, G, T_FC1_B, l), d_f2, s,
                  model_tensor_layer(m, P, T_FC1_W, l), z->nr, D, F);
  model_lap(m, LR_PHASE_FFN, &t0);
  // S = LN1(res1), res1 = H_in + Dropout(ctx W_O^T + b_O): likewise, dhin
  // the residual part, dx the projection's output gradient
  ln_dropout_backward(dhin, dx, model_tensor_layer(m, G, T_LN1_W, l), model_tensor_layer(m, G, T_LN1_B, l),
                      model_tensor_layer(m, G, T_O_B, l), ds, res1, model_tensor_layer(m, P, T_LN1_W, l),
                      model_act(m, A_LN1_MEAN) + lR, model_act(m, A_LN1_RSTD) + lR, rid, z->nr, D,
                      model_site(m, j->dp, SITE_ATTN(l), KEEP_ATTN(l), z->r0));
  // dh is free: reuse for dctx
  linear_backward_to(dh, model_tensor_layer(m, G, T_O_W, l), NULL, dx, ctx, model_tensor_layer(m, P, T_O_W, l), z->nr, D,
                     D);
  memset(d_qkv, 0, z->nD * 3 * sizeof(float));
  model_lap(m, LR_PHASE_PROJ, &t0);
  attn_backward_range_km(d_qkv, model_tensor_layer(m, G, T_ATTN_P, l), dh, qkv,
                         model_tensor_layer(m, P, T_ATTN_P, l), cache, m->lens, m->kmask, c->attn, B,
                         z->b0, z->b1, N, D, H, model_lane_attn_scratch(m));
  model_lap(m, LR_PHASE_ATTN, &t0);
  linear_backward(dhin, model_tensor_layer(m, G, T_QKV_W, l), model_tensor_layer(m, G, T_QKV_B, l), d_qkv, hin,
                  model_tensor_layer(m, P, T_QKV_W, l), z->nr, D, 3 * D);
  model_lap(m, LR_PHASE_PROJ, &t0);
}

// The embedding stage, H^0 = Dropout(LN0(E)), E = rows[idx] + pos: j->dh in,
// dE to j->dhin, the position rows' gradient (dE summed over the sequence)
// staged.
static void backward_embed(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const int64_t D = m->cfg.d;
  float *G = model_lane_stage(m);
  float *dln = model_act(m, A_D_A) + model_lane_tmp_row(m) * (size_t)D, *demb = j->dhin + z->oD;
  double t0 = model_now();
  memset(dln, 0, z->nD * sizeof(float));
  dropout_backward(dln, j->dh + z->oD, j->row_ids ? j->row_ids + z->r0 : NULL, z->nr, D,
                   model_site(m, j->dp, SITE_EMB, KEEP_EMB, z->r0));
  memset(demb, 0, z->nD * sizeof(float));
  layernorm_backward(demb, model_tensor_in(m, G, T_LN0_W), model_tensor_in(m, G, T_LN0_B), dln,
                     model_act(m, A_EMB) + z->oD, model_tensor_in(m, m->params_mem, T_LN0_W),
                     model_act(m, A_LN0_MEAN) + z->r0, model_act(m, A_LN0_RSTD) + z->r0, z->nr, D);
  embedding_backward(NULL, model_tensor_in(m, G, T_POS), demb, NULL, z->b1 - z->b0, m->cfg.max_len,
                     D);
  model_lap(m, LR_PHASE_EMBED, &t0);
}

static void sasrec_bwd(const lr_lane_job *j, const lr_lane_rows *z) {
  if (j->l < 0)
    backward_embed(j, z);
  else
    backward_layer(j, z);
}

static double sasrec_layer_flops(const lr_model_cfg *c) {
  const double N = (double)c->max_len, D = (double)c->d, F = (double)c->inner;
  return 3 * N * D * D + N * D * D + 2 * N * D * F; // QKV, output, FFN
}

// ---- streaming (model.h, model_stream_step) ----------------------------------------------

// State: per layer, the attention kind's. Workspace: the kind's, then the
// rows of one position: x (the layer's input and output), emb, qkv (3D),
// ctx, res, s, fc1 (F), act (F), LayerNorm mean and rstd.
static size_t sasrec_step_elems(const lr_model *m) {
  const lr_model_cfg *c = &m->cfg;
  if (!c->attn->step) return 0;
  return (size_t)c->layers * c->attn->step_elems(c->d, c->heads);
}

static size_t sasrec_step_ws_elems(const lr_model *m) {
  const lr_model_cfg *c = &m->cfg;
  return c->attn->step_ws_elems(c->max_len, c->d, c->heads) + (size_t)(8 * c->d + 2 * c->inner + 2);
}

static void sasrec_step_ws_init(const lr_model *m, float *ws) {
  const lr_model_cfg *c = &m->cfg;
  if (c->attn->step_ws_init) c->attn->step_ws_init(ws, c->max_len, c->d, c->heads);
}

// sasrec_fwd's calls for one row (evaluation: the dropouts are the identity).
static void sasrec_step(const lr_model *m, float *st, float *ws, const float *row, int64_t t,
                        float *h) {
  const lr_model_cfg *c = &m->cfg;
  const int64_t N = c->max_len, D = c->d, F = c->inner, H = c->heads, L = c->layers;
  const size_t ke = c->attn->step_elems(D, H);
  float *P = m->params_mem, *kws = ws;
  float *x = ws + c->attn->step_ws_elems(N, D, H), *emb = x + D, *qkv = emb + D;
  float *ctx = qkv + 3 * D, *res = ctx + D, *s = res + D, *fc1 = s + D, *act = fc1 + F;
  float *mean = act + F, *rstd = mean + 1;
  const int32_t idx0 = 0;
  const lr_dropout off = {0};
  embedding_forward(emb, &idx0, row, model_tensor_in(m, P, T_POS) + t * D, 1, 1, D);
  layernorm_forward(x, mean, rstd, emb, model_tensor_in(m, P, T_LN0_W),
                    model_tensor_in(m, P, T_LN0_B), 1, D, c->ln_eps);
  dropout_forward(x, x, NULL, 1, D, off);
  for (int64_t l = 0; l < L; l++) {
    linear_forward(qkv, x, model_tensor_layer(m, P, T_QKV_W, l),
                   model_tensor_layer(m, P, T_QKV_B, l), 1, D, 3 * D);
    c->attn->step(ctx, st + (size_t)l * ke, kws, qkv, model_tensor_layer(m, P, T_ATTN_P, l), t,
                  D, H);
    linear_forward(res, ctx, model_tensor_layer(m, P, T_O_W, l), NULL, 1, D, D);
    dropout_residual_forward(res, res, model_tensor_layer(m, P, T_O_B, l), x, NULL, 1, D, off);
    layernorm_forward(s, mean, rstd, res, model_tensor_layer(m, P, T_LN1_W, l),
                      model_tensor_layer(m, P, T_LN1_B, l), 1, D, c->ln_eps);
    linear_forward(fc1, s, model_tensor_layer(m, P, T_FC1_W, l), NULL, 1, D, F);
    if (c->ffn_relu)
      relu_forward_train(act, fc1, model_tensor_layer(m, P, T_FC1_B, l), 1, F);
    else
      gelu_forward_train(act, fc1, model_tensor_layer(m, P, T_FC1_B, l), 1, F);
    linear_forward(res, act, model_tensor_layer(m, P, T_FC2_W, l), NULL, 1, F, D);
    dropout_residual_forward(res, res, model_tensor_layer(m, P, T_FC2_B, l), s, NULL, 1, D, off);
    layernorm_forward(x, mean, rstd, res, model_tensor_layer(m, P, T_LN2_W, l),
                      model_tensor_layer(m, P, T_LN2_B, l), 1, D, c->ln_eps);
  }
  memcpy(h, x, (size_t)D * sizeof(float));
}

const lr_arch lr_arch_sasrec = {
    .name = "sasrec",
    .tensors = sasrec_tensors,
    .acts = sasrec_acts,
    .keep_blocks = sasrec_keep_blocks,
    .fwd = sasrec_fwd,
    .bwd = sasrec_bwd,
    .output = sasrec_output,
    .layer_flops = sasrec_layer_flops,
    .step_elems = sasrec_step_elems,
    .step_ws_elems = sasrec_step_ws_elems,
    .step_ws_init = sasrec_step_ws_init,
    .step = sasrec_step,
};
