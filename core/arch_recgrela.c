// arch_recgrela.c: the RecGRELA encoder (Hu et al. 2025, released code
// TBI805/RecGRELA model/RecGRELA.py) as an architecture of the model engine
// (model_arch.h): pre-LN gated blocks, no position embedding (positions
// enter only through the rela kinds' RoPE), no final LayerNorm:
//   H^0 = LayerNorm(Dropout(ItemEmb[s_t]))
//   per layer l:
//     X~ = LN1(H);  G = SiLU(X~ Wg^T + bg);  V = X~ Win^T + bin;  [Q|K] = V Wqk^T + bqk
//     A  = Attention([Q|K|V])                          (the configured kind)
//     C  = SiLU(causal depthwise conv_4(V) + bc)        (grela.h)
//     X' = H + DropPath((A + C) * G Wout^T + bout)
//     H  = X' + Dropout(W2 Dropout(GELU(LN2(X') W1^T + b1)) + b2)
// Initialisation as released: Linear weights N(0, 0.02) with zero biases,
// LayerNorm (1, 0), the conv PyTorch's default U(+-1/sqrt(4)) (weight and
// bias). DropPath (rate cfg.drop_path, model_set_drop_path) drops a sequence's whole attention
// branch of a layer, keyed by (seed, epoch, example id, layer); it is on
// in training, i.e. when the engine's dropout p > 0 (evaluation passes p =
// 0; a run with model.dropout = 0 therefore has no DropPath either).
//
// Ablations, registered as architectures of their own (model.arch), for the
// README's ablation study only; each is recgrela with one part removed:
//   recgrela_nogate   no gate: Y = A + C (no Wg, bg)
//   recgrela_noconv   no local shortcut: Y = A * G (no conv weights, bias)
//   recgrela_norope   no RoPE: the rela kinds run with the identity in place
//                     of the rotation (lr_attn_rela_norope,
//                     lr_attn_rela_causal_norope: qr = qf, kr = kf); other
//                     kinds have no RoPE and run as they are
// Their removed tensors have no elements (the parameter count drops).
//
// Deliberately not here: the released block's num_layers == 1 branch (no
// residuals at all); every depth uses the residual form above.
#include <string.h> // memset, memcpy

#include "gemm.h"       // lr_matmul (Q|K|V written in place, column slices)
#include "grela.h"      // grela_silu_*, grela_conv_*, grela_gate_*, grela_path_*, grela_colsum
#include "model_arch.h" // lr_arch, lr_lane_job, model_act, model_site, the layers

// ---- the ablations ---------------------------------------------------------------------------

extern const lr_arch lr_arch_recgrela_nogate, lr_arch_recgrela_noconv, lr_arch_recgrela_norope;
extern const lr_attn_ops lr_attn_rela, lr_attn_rela_causal, lr_attn_rela_norope,
    lr_attn_rela_causal_norope; // core/attn_rela.c, core/attn_rela_causal.c

enum { NO_GATE = 1, NO_CONV = 2, NO_ROPE = 4 };

// What architecture a (a recgrela variant) leaves out. Cannot fail.
static unsigned ablated(const lr_arch *a) {
  return a == &lr_arch_recgrela_nogate   ? NO_GATE
         : a == &lr_arch_recgrela_noconv ? NO_CONV
         : a == &lr_arch_recgrela_norope ? NO_ROPE
                                         : 0;
}

// The attention kind m runs: cfg.attn, or its twin without RoPE.
static const lr_attn_ops *attn_kind(const lr_model *m) {
  const lr_attn_ops *k = m->cfg.attn;
  if (!(ablated(m->arch) & NO_ROPE)) return k;
  return k == &lr_attn_rela          ? &lr_attn_rela_norope
         : k == &lr_attn_rela_causal ? &lr_attn_rela_causal_norope
                                     : k;
}

// ---- tables ---------------------------------------------------------------------------------

// Parameter tensors in arena order: the embedding stage, then per layer.
// Each one's init key is 200 + its index (results depend on them: keep them).
enum {
  T_LN0_W,
  T_LN0_B, // the embedding stage
  T_LN1_W,
  T_LN1_B,
  T_G_W,
  T_G_B, // the gate (act_proj)
  T_IN_W,
  T_IN_B, // V (in_proj)
  T_QK_W,
  T_QK_B, // Q|K from V (attn.qk)
  T_CONV_W,
  T_CONV_B, // the local shortcut (attn.conv1d), (D,K) and (D)
  T_OUT_W,
  T_OUT_B, // out_proj
  T_LN2_W,
  T_LN2_B,
  T_FC1_W,
  T_FC1_B,
  T_FC2_W,
  T_FC2_B,  // the FFN (mlp)
  T_ATTN_P, // the attention kind's own
  N_TENSORS
};
#define KEY(t) (200u + (uint32_t)(t))

static int recgrela_tensors(const lr_model_cfg *c, lr_tensor t[LR_MAX_TENSORS]) {
  const size_t D = (size_t)c->d, L = (size_t)c->layers, F = (size_t)c->inner,
               A = attn_param_elems(c->attn, c->d, c->heads);
  const unsigned ab = ablated(c->arch);
  const size_t GD = ab & NO_GATE ? 0 : D, K = ab & NO_CONV ? 0 : GRELA_CONV_K,
               CD = ab & NO_CONV ? 0 : D;
  const lr_tensor v[N_TENSORS] = {
      [T_LN0_W] = {"ln0_w", D, 0, LR_INIT_ONE, 0, 0},
      [T_LN0_B] = {"ln0_b", D, 0, LR_INIT_ZERO, 0, 0},
      [T_LN1_W] = {"ln1_w", L * D, 1, LR_INIT_ONE, 0, 0},
      [T_LN1_B] = {"ln1_b", L * D, 1, LR_INIT_ZERO, 0, 0},
      [T_G_W] = {"g_w", L * GD * D, 1, LR_INIT_NORMAL, KEY(T_G_W), 0},
      [T_G_B] = {"g_b", L * GD, 1, LR_INIT_ZERO, 0, 0},
      [T_IN_W] = {"in_w", L * D * D, 1, LR_INIT_NORMAL, KEY(T_IN_W), 0},
      [T_IN_B] = {"in_b", L * D, 1, LR_INIT_ZERO, 0, 0},
      [T_QK_W] = {"qk_w", L * 2 * D * D, 1, LR_INIT_NORMAL, KEY(T_QK_W), 0},
      [T_QK_B] = {"qk_b", L * 2 * D, 1, LR_INIT_ZERO, 0, 0},
      [T_CONV_W] = {"conv_w", L * D * K, 1, LR_INIT_UNIFORM, KEY(T_CONV_W), GRELA_CONV_K},
      [T_CONV_B] = {"conv_b", L * CD, 1, LR_INIT_UNIFORM, KEY(T_CONV_B), GRELA_CONV_K},
      [T_OUT_W] = {"out_w", L * D * D, 1, LR_INIT_NORMAL, KEY(T_OUT_W), 0},
      [T_OUT_B] = {"out_b", L * D, 1, LR_INIT_ZERO, 0, 0},
      [T_LN2_W] = {"ln2_w", L * D, 1, LR_INIT_ONE, 0, 0},
      [T_LN2_B] = {"ln2_b", L * D, 1, LR_INIT_ZERO, 0, 0},
      [T_FC1_W] = {"fc1_w", L * F * D, 1, LR_INIT_NORMAL, KEY(T_FC1_W), 0},
      [T_FC1_B] = {"fc1_b", L * F, 1, LR_INIT_ZERO, 0, 0},
      [T_FC2_W] = {"fc2_w", L * D * F, 1, LR_INIT_NORMAL, KEY(T_FC2_W), 0},
      [T_FC2_B] = {"fc2_b", L * D, 1, LR_INIT_ZERO, 0, 0},
      [T_ATTN_P] = {"attn_p", L * A, 1, LR_INIT_ATTN, 0, 0},
  };
  memcpy(t, v, sizeof v);
  return N_TENSORS;
}

// Activation buffers: what the backward reads, then its chunk temporaries.
enum {
  A_EMB, // the dropped item rows (LN0's input)
  A_LN0_MEAN,
  A_LN0_RSTD,
  A_H0, // the embedding stage
  A_XT, // per layer: LN1's output
  A_LN1_MEAN,
  A_LN1_RSTD,
  A_GZ,  // the gate's pre-activation
  A_G,   // the gate
  A_QKV, // Q|K|V
  A_CZ,  // the conv's pre-activation
  A_AC,  // A + C
  A_Y,   // (A + C) * G
  A_RES1,
  A_XT2, // LN2's output
  A_LN2_MEAN,
  A_LN2_RSTD,
  A_FC1,  // W1 x + b1's GELU derivative (gelu_forward_train)
  A_GELU, // GELU output, dropped
  A_H,    // the layer's output
  A_D_X,  // backward temporaries
  A_D_Y,
  A_D_G,
  A_D_XT,
  A_D_F,
  A_D_QKV,
  N_ACTS
};

static int recgrela_acts(const lr_model_cfg *c, lr_act a[LR_MAX_ACTS]) {
  const size_t D = (size_t)c->d, F = (size_t)c->inner;
  const lr_act v[N_ACTS] = {
      [A_EMB] = {"emb", D, 0, 0},
      [A_LN0_MEAN] = {"ln0_mean", 1, 0, 0},
      [A_LN0_RSTD] = {"ln0_rstd", 1, 0, 0},
      [A_H0] = {"h0", D, 0, 0},
      [A_XT] = {"xt", D, 1, 0},
      [A_LN1_MEAN] = {"ln1_mean", 1, 1, 0},
      [A_LN1_RSTD] = {"ln1_rstd", 1, 1, 0},
      [A_GZ] = {"gz", D, 1, 0},
      [A_G] = {"g", D, 1, 0},
      [A_QKV] = {"qkv", 3 * D, 1, 0},
      [A_CZ] = {"cz", D, 1, 0},
      [A_AC] = {"ac", D, 1, 0},
      [A_Y] = {"y", D, 1, 0},
      [A_RES1] = {"res1", D, 1, 0},
      [A_XT2] = {"xt2", D, 1, 0},
      [A_LN2_MEAN] = {"ln2_mean", 1, 1, 0},
      [A_LN2_RSTD] = {"ln2_rstd", 1, 1, 0},
      [A_FC1] = {"fc1", F, 1, 0},
      [A_GELU] = {"gelu", F, 1, 0},
      [A_H] = {"h", D, 1, 0},
      [A_D_X] = {"d_x", 0, 0, D},
      [A_D_Y] = {"d_y", 0, 0, D},
      [A_D_G] = {"d_g", 0, 0, D},
      [A_D_XT] = {"d_xt", 0, 0, D},
      [A_D_F] = {"d_f", 0, 0, F},
      [A_D_QKV] = {"d_qkv", 0, 0, 3 * D},
  };
  memcpy(a, v, sizeof v);
  return N_ACTS;
}

// Dropout sites (RNG keys): the embedding, then per layer the FFN's inner
// (after GELU, F wide: its mask is regenerated, not kept) and output
// dropouts and DropPath. Keep blocks: the embedding's and each layer's FFN
// output mask.
#define SITE_EMB 1u
#define SITE_FFN_IN(l) (8u * (uint32_t)((l) + 1))
#define SITE_FFN_OUT(l) (8u * (uint32_t)((l) + 1) + 1u)
#define SITE_PATH(l) (8u * (uint32_t)((l) + 1) + 2u)
#define KEEP_EMB 0
#define KEEP_FFN_OUT(l) (1 + (l))

static int64_t recgrela_keep_blocks(const lr_model_cfg *c) { return 1 + c->layers; }

// Per layer buffer i of D-multiples `w` per row at the chunk's rows.
static float *act_l(const lr_model *m, int i, int64_t l, const lr_lane_rows *z, size_t w) {
  return model_act(m, i) + (size_t)l * z->RD * w + z->oD * w;
}

// The FFN's inner dropout: its mask regenerated in backward (F wide rows
// have no keep block).
static lr_dropout inner_site(const lr_model *m, lr_dropout dp, int64_t l) {
  lr_dropout s = model_site(m, dp, SITE_FFN_IN(l), 0, 0);
  s.bits = NULL;
  return s;
}

// DropPath's scale of sequence b of the batch in layer l (1 outside training).
static double path_scale(const lr_lane_job *j, int64_t b, int64_t l) {
  const int64_t N = j->m->cfg.max_len;
  const float p = j->m->cfg.drop_path;
  if (!(j->dp.p > 0.0f && p > 0.0f && j->row_ids)) return 1.0;
  const uint64_t ex = j->row_ids[b * N] / (uint64_t)N;
  return grela_droppath_scale(j->dp.seed, j->dp.epoch, SITE_PATH(l), ex, p);
}

// out (nr, OC; ld ldo) = in (nr, C; ld ldi) W^T + b: a linear layer into a
// column slice of a wider buffer.
static void linear_into(float *out, int64_t ldo, const float *in, int64_t ldi, const float *w,
                        const float *b, int64_t nr, int64_t C, int64_t OC) {
  for (int64_t r = 0; r < nr; r++)
    memcpy(out + r * ldo, b, (size_t)OC * sizeof(float));
  lr_matmul(0, 1, nr, OC, C, 1.0f, in, ldi, w, C, 1.0f, out, ldo);
}

// ---- forward --------------------------------------------------------------------------------

static void recgrela_fwd(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, L = c->layers;
  const int64_t nb = z->b1 - z->b0;
  const uint64_t *rid = j->row_ids ? j->row_ids + z->r0 : NULL;
  float *P = m->params_mem;
  const lr_dropout dp = j->dp;
  double t0 = model_now();

  float *emb = model_act(m, A_EMB) + z->oD, *h0 = model_act(m, A_H0) + z->oD;
  embedding_forward(emb, j->idx + z->r0, j->rows, NULL, nb, N, D);
  dropout_forward(emb, emb, rid, z->nr, D, model_site(m, dp, SITE_EMB, KEEP_EMB, z->r0));
  layernorm_forward(h0, model_act(m, A_LN0_MEAN) + z->r0, model_act(m, A_LN0_RSTD) + z->r0, emb,
                    model_tensor_in(m, P, T_LN0_W), model_tensor_in(m, P, T_LN0_B), z->nr, D,
                    c->ln_eps);
  model_lap(m, LR_PHASE_EMBED, &t0);
  const float *h = h0; // the chunk's rows of the layer's input
  const unsigned ab = ablated(m->arch);
  const lr_attn_ops *kind = attn_kind(m);
  for (int64_t l = 0; l < L; l++) {
    const size_t lR = (size_t)l * (size_t)z->R + (size_t)z->r0; // per-row statistics
    float *xt = act_l(m, A_XT, l, z, 1), *gz = act_l(m, A_GZ, l, z, 1), *g = act_l(m, A_G, l, z, 1);
    float *qkv = act_l(m, A_QKV, l, z, 3), *cz = act_l(m, A_CZ, l, z, 1);
    float *ac = act_l(m, A_AC, l, z, 1), *y = act_l(m, A_Y, l, z, 1);
    float *res1 = act_l(m, A_RES1, l, z, 1), *xt2 = act_l(m, A_XT2, l, z, 1);
    float *fc1 = model_act(m, A_FC1) + (size_t)l * z->RF + z->oF;
    float *gelu = model_act(m, A_GELU) + (size_t)l * z->RF + z->oF;
    float *hout = act_l(m, A_H, l, z, 1);
    // X~ = LN1(H); G = SiLU(X~ Wg^T + bg); V = X~ Win^T + bin; [Q|K] = V Wqk^T + bqk
    layernorm_forward(xt, model_act(m, A_LN1_MEAN) + lR, model_act(m, A_LN1_RSTD) + lR, h,
                      model_tensor_layer(m, P, T_LN1_W, l), model_tensor_layer(m, P, T_LN1_B, l),
                      z->nr, D, c->ln_eps);
    if (!(ab & NO_GATE)) {
      linear_forward(gz, xt, model_tensor_layer(m, P, T_G_W, l), NULL, z->nr, D, D);
      grela_silu_forward(g, gz, model_tensor_layer(m, P, T_G_B, l), z->nr, D);
    }
    linear_into(qkv + 2 * D, 3 * D, xt, D, model_tensor_layer(m, P, T_IN_W, l),
                model_tensor_layer(m, P, T_IN_B, l), z->nr, D, D);
    linear_into(qkv, 3 * D, qkv + 2 * D, 3 * D, model_tensor_layer(m, P, T_QK_W, l),
                model_tensor_layer(m, P, T_QK_B, l), z->nr, D, 2 * D);
    model_lap(m, LR_PHASE_PROJ, &t0);
    attn_forward_range(ac, m->attn_cache + (size_t)l * m->attn_cache_elems,
                       model_act(m, A_QKV) + (size_t)l * z->RD * 3, m->lens, kind,
                       model_tensor_layer(m, P, T_ATTN_P, l), B, z->b0, z->b1, N, D, H,
                       model_lane_attn_scratch(m));
    model_lap(m, LR_PHASE_ATTN, &t0);
    // C = SiLU(conv(V)) (into y), Y = (A + C) * G, X' = H + DropPath(Y Wout^T + bout)
    if (!(ab & NO_CONV))
      grela_conv_forward(y, cz, qkv + 2 * D, 3 * D, model_tensor_layer(m, P, T_CONV_W, l),
                         model_tensor_layer(m, P, T_CONV_B, l), nb, N, D);
    grela_gate_forward(y, ac, ab & NO_CONV ? NULL : y, ab & NO_GATE ? NULL : g, (int64_t)z->nD);
    linear_forward(res1, y, model_tensor_layer(m, P, T_OUT_W, l), NULL, z->nr, D, D);
    for (int64_t b = z->b0; b < z->b1; b++) {
      const size_t o = (size_t)((b - z->b0) * N * D);
      grela_path_forward(res1 + o, res1 + o, model_tensor_layer(m, P, T_OUT_B, l), h + o,
                         path_scale(j, b, l), N, D);
    }
    model_lap(m, LR_PHASE_PROJ, &t0);
    // H = X' + Dropout(W2 Dropout(GELU(LN2(X') W1^T + b1)) + b2)
    layernorm_forward(xt2, model_act(m, A_LN2_MEAN) + lR, model_act(m, A_LN2_RSTD) + lR, res1,
                      model_tensor_layer(m, P, T_LN2_W, l), model_tensor_layer(m, P, T_LN2_B, l),
                      z->nr, D, c->ln_eps);
    linear_forward(fc1, xt2, model_tensor_layer(m, P, T_FC1_W, l), NULL, z->nr, D, F);
    gelu_forward_train(gelu, fc1, model_tensor_layer(m, P, T_FC1_B, l), z->nr, F); // fc1 := gelu'
    dropout_forward(gelu, gelu, rid, z->nr, F, inner_site(m, dp, l));
    linear_forward(hout, gelu, model_tensor_layer(m, P, T_FC2_W, l), NULL, z->nr, F, D);
    dropout_residual_forward(hout, hout, model_tensor_layer(m, P, T_FC2_B, l), res1, rid, z->nr, D,
                             model_site(m, dp, SITE_FFN_OUT(l), KEEP_FFN_OUT(l), z->r0));
    model_lap(m, LR_PHASE_FFN, &t0);
    h = hout;
  }
}

static const float *recgrela_output(const lr_model *m) {
  return model_act_layer(m, A_H, m->cfg.layers - 1);
}

// ---- backward -------------------------------------------------------------------------------

// Layer l of one sequence: j->dh (its output's gradient) is used as the
// gradient of X' in place; j->dhin receives the input's.
static void backward_layer(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const lr_model_cfg *c = &m->cfg;
  const int64_t B = m->B, N = c->max_len, D = c->d, F = c->inner, H = c->heads, l = j->l;
  const int64_t nr = z->nr, nD = (int64_t)z->nD;
  const size_t lR = (size_t)l * (size_t)z->R + (size_t)z->r0;
  const uint64_t *rid = j->row_ids ? j->row_ids + z->r0 : NULL;
  float *P = m->params_mem, *G = model_lane_stage(m);
  const float *hin = (l ? model_act(m, A_H) + (size_t)(l - 1) * z->RD : model_act(m, A_H0)) + z->oD;
  const float *xt = act_l(m, A_XT, l, z, 1), *gz = act_l(m, A_GZ, l, z, 1);
  const float *g = act_l(m, A_G, l, z, 1), *qkv = act_l(m, A_QKV, l, z, 3);
  const float *cz = act_l(m, A_CZ, l, z, 1), *ac = act_l(m, A_AC, l, z, 1);
  const float *y = act_l(m, A_Y, l, z, 1), *res1 = act_l(m, A_RES1, l, z, 1);
  const float *xt2 = act_l(m, A_XT2, l, z, 1);
  const float *fc1 = model_act(m, A_FC1) + (size_t)l * z->RF + z->oF;
  const float *gelu = model_act(m, A_GELU) + (size_t)l * z->RF + z->oF;
  float *dres = j->dh + z->oD, *dhin = j->dhin + z->oD;
  const size_t t = model_lane_tmp_row(m);
  float *dx = model_act(m, A_D_X) + t * (size_t)D, *dy = model_act(m, A_D_Y) + t * (size_t)D;
  float *dg = model_act(m, A_D_G) + t * (size_t)D, *dxt = model_act(m, A_D_XT) + t * (size_t)D;
  float *df = model_act(m, A_D_F) + t * (size_t)F;
  float *dqkv = model_act(m, A_D_QKV) + t * 3 * (size_t)D;
  const unsigned ab = ablated(m->arch);
  double t0 = model_now();
  // H = X' + Dropout(fc2 + b2): dX' = dH (in place), dfc2 = Dropout'(dH)
  memset(dx, 0, z->nD * sizeof(float));
  dropout_backward(dx, dres, rid, nr, D,
                   model_site(m, j->dp, SITE_FFN_OUT(l), KEEP_FFN_OUT(l), z->r0));
  grela_colsum(model_tensor_layer(m, G, T_FC2_B, l), dx, D, nr, D);
  linear_backward_to(df, model_tensor_layer(m, G, T_FC2_W, l), NULL, dx, gelu,
                     model_tensor_layer(m, P, T_FC2_W, l), nr, F, D);
  dropout_forward(df, df, rid, nr, F, inner_site(m, j->dp, l)); // the inner mask, again
  gelu_backward_stored(df, fc1, (int64_t)z->nF);
  linear_backward_to(dx, model_tensor_layer(m, G, T_FC1_W, l), model_tensor_layer(m, G, T_FC1_B, l),
                     df, xt2, model_tensor_layer(m, P, T_FC1_W, l), nr, D, F);
  layernorm_backward(dres, model_tensor_layer(m, G, T_LN2_W, l),
                     model_tensor_layer(m, G, T_LN2_B, l), dx, res1,
                     model_tensor_layer(m, P, T_LN2_W, l), model_act(m, A_LN2_MEAN) + lR,
                     model_act(m, A_LN2_RSTD) + lR, nr, D);
  model_lap(m, LR_PHASE_FFN, &t0);
  // X' = H + s (Y Wout^T + bout); Y = (A + C) * G
  grela_path_backward(dx, model_tensor_layer(m, G, T_OUT_B, l), dres, path_scale(j, z->b0, l), nr,
                      D);
  linear_backward_to(dy, model_tensor_layer(m, G, T_OUT_W, l), NULL, dx, y,
                     model_tensor_layer(m, P, T_OUT_W, l), nr, D, D);
  if (!(ab & NO_GATE)) {                        // (without the gate, dy is d(A + C) already)
    grela_gate_backward(dy, dg, dy, ac, g, nD); // dy := d(A + C)
    grela_silu_backward(dg, dg, gz, nD);        // dg := the gate's pre-activation gradient
  }
  memset(dqkv, 0, z->nD * 3 * sizeof(float));
  model_lap(m, LR_PHASE_PROJ, &t0);
  attn_backward_range(
      dqkv, model_tensor_layer(m, G, T_ATTN_P, l), dy, model_act(m, A_QKV) + (size_t)l * z->RD * 3,
      model_tensor_layer(m, P, T_ATTN_P, l), m->attn_cache + (size_t)l * m->attn_cache_elems,
      m->lens, attn_kind(m), B, z->b0, z->b1, N, D, H, model_lane_attn_scratch(m));
  model_lap(m, LR_PHASE_ATTN, &t0);
  if (!(ab & NO_CONV))
    grela_conv_backward(dqkv + 2 * D, 3 * D, model_tensor_layer(m, G, T_CONV_W, l),
                        model_tensor_layer(m, G, T_CONV_B, l), dy, cz, qkv + 2 * D, 3 * D,
                        model_tensor_layer(m, P, T_CONV_W, l), 1, N, D);
  // [Q|K] = V Wqk^T + bqk; V = X~ Win^T + bin; G's pre-activation = X~ Wg^T + bg
  const float *qk_w = model_tensor_layer(m, P, T_QK_W, l),
              *in_w = model_tensor_layer(m, P, T_IN_W, l);
  lr_matmul(1, 0, 2 * D, D, nr, 1.0f, dqkv, 3 * D, qkv + 2 * D, 3 * D, 1.0f,
           model_tensor_layer(m, G, T_QK_W, l), D);
  grela_colsum(model_tensor_layer(m, G, T_QK_B, l), dqkv, 3 * D, nr, 2 * D);
  lr_matmul(0, 0, nr, D, 2 * D, 1.0f, dqkv, 3 * D, qk_w, D, 1.0f, dqkv + 2 * D, 3 * D);
  lr_matmul(1, 0, D, D, nr, 1.0f, dqkv + 2 * D, 3 * D, xt, D, 1.0f,
           model_tensor_layer(m, G, T_IN_W, l), D);
  grela_colsum(model_tensor_layer(m, G, T_IN_B, l), dqkv + 2 * D, 3 * D, nr, D);
  lr_matmul(0, 0, nr, D, D, 1.0f, dqkv + 2 * D, 3 * D, in_w, D, 0.0f, dxt, D);
  if (!(ab & NO_GATE))
    linear_backward(dxt, model_tensor_layer(m, G, T_G_W, l), model_tensor_layer(m, G, T_G_B, l), dg,
                    xt, model_tensor_layer(m, P, T_G_W, l), nr, D, D);
  // X~ = LN1(H): dH = dX' + LN1'(dX~)
  memcpy(dhin, dres, z->nD * sizeof(float));
  layernorm_backward(dhin, model_tensor_layer(m, G, T_LN1_W, l),
                     model_tensor_layer(m, G, T_LN1_B, l), dxt, hin,
                     model_tensor_layer(m, P, T_LN1_W, l), model_act(m, A_LN1_MEAN) + lR,
                     model_act(m, A_LN1_RSTD) + lR, nr, D);
  model_lap(m, LR_PHASE_PROJ, &t0);
}

// The embedding stage, H^0 = LN0(Dropout(E)): j->dh in, dE to j->dhin.
static void backward_embed(const lr_lane_job *j, const lr_lane_rows *z) {
  lr_model *m = j->m;
  const int64_t D = m->cfg.d;
  float *G = model_lane_stage(m);
  float *dln = model_act(m, A_D_X) + model_lane_tmp_row(m) * (size_t)D, *demb = j->dhin + z->oD;
  double t0 = model_now();
  memset(dln, 0, z->nD * sizeof(float));
  layernorm_backward(dln, model_tensor_in(m, G, T_LN0_W), model_tensor_in(m, G, T_LN0_B),
                     j->dh + z->oD, model_act(m, A_EMB) + z->oD,
                     model_tensor_in(m, m->params_mem, T_LN0_W), model_act(m, A_LN0_MEAN) + z->r0,
                     model_act(m, A_LN0_RSTD) + z->r0, z->nr, D);
  memset(demb, 0, z->nD * sizeof(float));
  dropout_backward(demb, dln, j->row_ids ? j->row_ids + z->r0 : NULL, z->nr, D,
                   model_site(m, j->dp, SITE_EMB, KEEP_EMB, z->r0));
  model_lap(m, LR_PHASE_EMBED, &t0);
}

static void recgrela_bwd(const lr_lane_job *j, const lr_lane_rows *z) {
  if (j->l < 0)
    backward_embed(j, z);
  else
    backward_layer(j, z);
}

static double recgrela_layer_flops(const lr_model_cfg *c) {
  const double N = (double)c->max_len, D = (double)c->d, F = (double)c->inner;
  const unsigned ab = ablated(c->arch);
  // gate, V, Q|K, output, FFN; the conv's K taps
  return N * ((ab & NO_GATE ? 4 : 5) * D * D + 2 * D * F +
              (ab & NO_CONV ? 0 : (double)GRELA_CONV_K * D));
}

// ---- streaming (model.h, model_stream_step) ----------------------------------------------

// State per layer: the attention kind's, then the last K-1 rows of V (oldest
// first; the conv's window). Workspace: the kind's, then one position's
// rows: x (the layer's input and output), xt, gz, g, qkv (3D), ac, res,
// xt2, fc1 (F), act (F), the conv's window v, c, z (K,D), mean and rstd.
static size_t step_layer_elems(const lr_model *m) {
  const lr_model_cfg *c = &m->cfg;
  return attn_kind(m)->step_elems(c->d, c->heads) + (size_t)((GRELA_CONV_K - 1) * c->d);
}

static size_t recgrela_step_elems(const lr_model *m) {
  return attn_kind(m)->step ? (size_t)m->cfg.layers * step_layer_elems(m) : 0;
}

static size_t recgrela_step_ws_elems(const lr_model *m) {
  const lr_model_cfg *c = &m->cfg;
  return attn_kind(m)->step_ws_elems(c->max_len, c->d, c->heads) +
         (size_t)((10 + 3 * GRELA_CONV_K) * c->d + 2 * c->inner + 2);
}

static void recgrela_step_ws_init(const lr_model *m, float *ws) {
  const lr_model_cfg *c = &m->cfg;
  const lr_attn_ops *k = attn_kind(m);
  if (k->step_ws_init) k->step_ws_init(ws, c->max_len, c->d, c->heads);
}

// recgrela_fwd's calls for one row (evaluation: no dropout, DropPath scale 1).
static void recgrela_step(const lr_model *m, float *st, float *ws, const float *row, int64_t t,
                          float *h) {
  const lr_model_cfg *c = &m->cfg;
  const int64_t N = c->max_len, D = c->d, F = c->inner, H = c->heads, L = c->layers;
  const int64_t K = GRELA_CONV_K, nw = t + 1 < K ? t + 1 : K; // rows in the conv's window
  const lr_attn_ops *kind = attn_kind(m);
  const unsigned ab = ablated(m->arch);
  const size_t ke = kind->step_elems(D, H), le = step_layer_elems(m);
  float *P = m->params_mem, *kws = ws;
  float *x = ws + kind->step_ws_elems(N, D, H), *xt = x + D, *gz = xt + D, *g = gz + D;
  float *qkv = g + D, *ac = qkv + 3 * D, *res = ac + D, *xt2 = res + D, *fc1 = xt2 + D;
  float *act = fc1 + F, *wv = act + F, *wc = wv + K * D, *wz = wc + K * D, *mean = wz + K * D;
  float *rstd = mean + 1;
  const int32_t idx0 = 0;
  const lr_dropout off = {0};
  embedding_forward(xt, &idx0, row, NULL, 1, 1, D);
  dropout_forward(xt, xt, NULL, 1, D, off);
  layernorm_forward(x, mean, rstd, xt, model_tensor_in(m, P, T_LN0_W),
                    model_tensor_in(m, P, T_LN0_B), 1, D, c->ln_eps);
  for (int64_t l = 0; l < L; l++) {
    float *kst = st + (size_t)l * le, *vh = kst + ke; // vh: V of rows t-K+1 .. t-1
    layernorm_forward(xt, mean, rstd, x, model_tensor_layer(m, P, T_LN1_W, l),
                      model_tensor_layer(m, P, T_LN1_B, l), 1, D, c->ln_eps);
    if (!(ab & NO_GATE)) {
      linear_forward(gz, xt, model_tensor_layer(m, P, T_G_W, l), NULL, 1, D, D);
      grela_silu_forward(g, gz, model_tensor_layer(m, P, T_G_B, l), 1, D);
    }
    linear_into(qkv + 2 * D, 3 * D, xt, D, model_tensor_layer(m, P, T_IN_W, l),
                model_tensor_layer(m, P, T_IN_B, l), 1, D, D);
    linear_into(qkv, 3 * D, qkv + 2 * D, 3 * D, model_tensor_layer(m, P, T_QK_W, l),
                model_tensor_layer(m, P, T_QK_B, l), 1, D, 2 * D);
    kind->step(ac, kst, kws, qkv, model_tensor_layer(m, P, T_ATTN_P, l), t, D, H);
    // the conv over the window of rows max(0, t-K+1) .. t, as a sequence of its own: the
    // forward's taps before row 0 are skipped there too
    memcpy(wv, vh + (K - nw) * D, (size_t)((nw - 1) * D) * sizeof(float));
    memcpy(wv + (nw - 1) * D, qkv + 2 * D, (size_t)D * sizeof(float));
    memmove(vh, vh + D, (size_t)((K - 2) * D) * sizeof(float));
    memcpy(vh + (K - 2) * D, qkv + 2 * D, (size_t)D * sizeof(float));
    float *y = wc + (nw - 1) * D;
    if (!(ab & NO_CONV))
      grela_conv_forward(wc, wz, wv, D, model_tensor_layer(m, P, T_CONV_W, l),
                         model_tensor_layer(m, P, T_CONV_B, l), 1, nw, D);
    grela_gate_forward(y, ac, ab & NO_CONV ? NULL : y, ab & NO_GATE ? NULL : g, D);
    linear_forward(res, y, model_tensor_layer(m, P, T_OUT_W, l), NULL, 1, D, D);
    grela_path_forward(res, res, model_tensor_layer(m, P, T_OUT_B, l), x, 1.0, 1, D);
    layernorm_forward(xt2, mean, rstd, res, model_tensor_layer(m, P, T_LN2_W, l),
                      model_tensor_layer(m, P, T_LN2_B, l), 1, D, c->ln_eps);
    linear_forward(fc1, xt2, model_tensor_layer(m, P, T_FC1_W, l), NULL, 1, D, F);
    gelu_forward_train(act, fc1, model_tensor_layer(m, P, T_FC1_B, l), 1, F);
    dropout_forward(act, act, NULL, 1, F, off);
    linear_forward(x, act, model_tensor_layer(m, P, T_FC2_W, l), NULL, 1, F, D);
    dropout_residual_forward(x, x, model_tensor_layer(m, P, T_FC2_B, l), res, NULL, 1, D, off);
  }
  memcpy(h, x, (size_t)D * sizeof(float));
}

// recgrela and its ablations: the same functions; ablated() tells them apart.
#define RECGRELA_VARIANT(nm)                                                                       \
  {                                                                                                \
    .name = nm, .tensors = recgrela_tensors, .acts = recgrela_acts,                                \
    .keep_blocks = recgrela_keep_blocks, .fwd = recgrela_fwd, .bwd = recgrela_bwd,                 \
    .output = recgrela_output, .layer_flops = recgrela_layer_flops,                                \
    .step_elems = recgrela_step_elems, .step_ws_elems = recgrela_step_ws_elems,                    \
    .step_ws_init = recgrela_step_ws_init, .step = recgrela_step,                                  \
  }
const lr_arch lr_arch_recgrela = RECGRELA_VARIANT("recgrela");
const lr_arch lr_arch_recgrela_nogate = RECGRELA_VARIANT("recgrela_nogate");
const lr_arch lr_arch_recgrela_noconv = RECGRELA_VARIANT("recgrela_noconv");
const lr_arch lr_arch_recgrela_norope = RECGRELA_VARIANT("recgrela_norope");
