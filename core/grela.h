// grela.h: the pieces of RecGRELA (Hu et al. 2025, "Gated Rotary-Enhanced
// Linear Attention for Long-term Sequential Recommendation") that are not
// layers every architecture shares: the rotary position map (RoPE) of the
// rela attention kinds (core/attn_rela.c, core/attn_rela_causal.c), their
// feature map, and the block's local shortcut (a causal depthwise conv with
// SiLU), its SiLU gate and DropPath (core/arch_recgrela.c). Each is written
// once over `real` (grela_impl.inc) and instantiated in float (training)
// and in double (_f64, the finite-difference tests), like layers.h.
//
// Shapes: a batch is B sequences of N rows (right padded); R = B*N rows;
// D features; row-major with an explicit leading dimension (ld) where a
// buffer is a column slice of a wider one (V inside the fused Q|K|V rows).
// Every _backward ACCUMULATES (+=) into its input and parameter gradients
// unless it says it writes. All functions are Local and cannot fail (shape
// errors are bugs).
#ifndef LR_GRELA_H
#define LR_GRELA_H

#include <stdint.h>

// The local shortcut's kernel width and the rela kinds' denominator
// constant, both as released (Conv1d(kernel_size=4, padding=3, groups=D);
// z = 1 / (q . mean_j k_j + 1e-6)).
#define GRELA_CONV_K 4
#define GRELA_EPS 1e-6

// ---- RoPE over the full width D ------------------------------------------------------
// The released RoPE module: features (2p, 2p+1) of a row at position t are
// the complex number x_2p + i x_2p+1, multiplied by e^(i t theta_p),
// theta_p = 10000^(-p/(D/2)), p < D/2. It acts on the whole width D before
// the head split, so head h of Dh = D/H features gets its own band of
// frequencies. With D odd the last feature is not rotated (PyTorch's
// view_as_complex refuses odd D).
// cs (n,D): cs[t D + 2p] = cos(t theta_p), cs[t D + 2p + 1] = sin(t theta_p),
// t < n; angles stepped by the angle-addition recurrence in double (relative
// error ~ t 1e-16), so no libm call per element.
void grela_rope_table(float *cs, int64_t n, int64_t D);
void grela_rope_table_f64(double *cs, int64_t n, int64_t D);
// y = R(t) x for rows t < n (ld ldy, ldx); y may equal x.
void grela_rope_forward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *cs,
                        int64_t n, int64_t D);
void grela_rope_forward_f64(double *y, int64_t ldy, const double *x, int64_t ldx, const double *cs,
                            int64_t n, int64_t D);
// y = R(t)^T x (the gradient map of grela_rope_forward); y may equal x.
void grela_rope_backward(float *y, int64_t ldy, const float *x, int64_t ldx, const float *cs,
                         int64_t n, int64_t D);
void grela_rope_backward_f64(double *y, int64_t ldy, const double *x, int64_t ldx, const double *cs,
                             int64_t n, int64_t D);

// ---- the feature map elu + 1 of Q and K -------------------------------------------------
// qf, kf (n,D) = elu(Q) + 1, elu(K) + 1 of the rows of x (ld 3D, Q at
// column 0, K at D). Backward: dx's Q and K columns += elu'(x) dqf, dkf.
// vec: 2D scratch.
void grela_maps_forward(float *qf, float *kf, const float *x, int64_t n, int64_t D, float *vec);
void grela_maps_forward_f64(double *qf, double *kf, const double *x, int64_t n, int64_t D,
                            double *vec);
void grela_maps_backward(float *dx, const float *dqf, const float *dkf, const float *x, int64_t n,
                         int64_t D, float *vec);
void grela_maps_backward_f64(double *dx, const double *dqf, const double *dkf, const double *x,
                             int64_t n, int64_t D, double *vec);

// ---- the rela kinds' shared steps --------------------------------------------------------
// cs (n,D) = the RoPE table, qr, kr (n,D) = the rotations of qf, kf (ld D).
// rope = 0 (the ablation model.arch=recgrela_norope): cs is the identity
// (cos 1, sin 0), so qr = qf and kr = kf exactly, and so are the
// gradients through grela_rope_backward.
// cs (n,D) = the RoPE table (grela_rope_table), or the identity when rope = 0.
void grela_rope_cs(float *cs, int64_t n, int64_t D, int rope);
void grela_rope_cs_f64(double *cs, int64_t n, int64_t D, int rope);
void grela_rope_qk(float *cs, float *qr, float *kr, const float *qf, const float *kf, int64_t n,
                   int64_t D, int rope);
void grela_rope_qk_f64(double *cs, double *qr, double *kr, const double *qf, const double *kf,
                       int64_t n, int64_t D, int rope);
// One row's division by its denominators: per head h, den[h] = qf_h .
// ksum_h + eps, ob_h /= den[h]; o (D; NULL: none) gets a copy of ob.
void grela_divide_row(float *ob, float *o, float *den, const float *qf, const float *ksum,
                      float eps, int64_t D, int64_t H);
void grela_divide_row_f64(double *ob, double *o, double *den, const double *qf,
                          const double *ksum, double eps, int64_t D, int64_t H);
// The division o = num / den per (row, head), backward: from g (n,D) WRITES
// dnum = g / den (n,D) and dden = -(g . o) / den (n,H); o (n,D), den (n,H).
void grela_div_backward(float *dnum, float *dden, const float *g, const float *o, const float *den,
                        int64_t n, int64_t D, int64_t H);
void grela_div_backward_f64(double *dnum, double *dden, const double *g, const double *o,
                            const double *den, int64_t n, int64_t D, int64_t H);

// ---- SiLU with the bias of the linear before it ---------------------------------------
// z (R,C) += bias (C; NULL: none), then g = silu(z) = z sigmoid(z); z keeps
// the pre-activation for backward. g must not overlap z.
void grela_silu_forward(float *g, float *z, const float *bias, int64_t R, int64_t C);
void grela_silu_forward_f64(double *g, double *z, const double *bias, int64_t R, int64_t C);
// dz (n) = dg * silu'(z), WRITTEN (dz may equal dg).
void grela_silu_backward(float *dz, const float *dg, const float *z, int64_t n);
void grela_silu_backward_f64(double *dz, const double *dg, const double *z, int64_t n);

// ---- the local shortcut: C = SiLU(causal depthwise conv of V) -----------------------------
// Per sequence of N rows and channel c:
//   z[t,c] = b[c] + sum_{k<K} w[c,k] v[t-K+1+k, c]   (rows before 0 are 0), C = silu(z)
// w (D,K) is PyTorch's Conv1d(D, D, K, padding=K-1, groups=D) weight (D,1,K)
// and the released code keeps the first N outputs; causal, so a sequence's
// padded rows never reach its real ones. v rows ld ldv (V inside Q|K|V).
// c, z (B*N, D) written.
void grela_conv_forward(float *c, float *z, const float *v, int64_t ldv, const float *w,
                        const float *b, int64_t B, int64_t N, int64_t D);
void grela_conv_forward_f64(double *c, double *z, const double *v, int64_t ldv, const double *w,
                            const double *b, int64_t B, int64_t N, int64_t D);
// From dc (B*N, D): dz = dc * silu'(z) is WRITTEN over dc; dv (ld lddv) +=,
// dw (D,K) +=, db (D) += (dw, db summed over the rows in order).
void grela_conv_backward(float *dv, int64_t lddv, float *dw, float *db, float *dc, const float *z,
                         const float *v, int64_t ldv, const float *w, int64_t B, int64_t N,
                         int64_t D);
void grela_conv_backward_f64(double *dv, int64_t lddv, double *dw, double *db, double *dc,
                             const double *z, const double *v, int64_t ldv, const double *w,
                             int64_t B, int64_t N, int64_t D);

// ---- the gate: Y = (A + C) * G ---------------------------------------------------------
// ac (n) += c (ac holds A), then y = ac * g (y may equal c). Backward
// WRITES dac = dy * g (the gradient of A and of C) and dg = dy * ac (either
// may equal dy). The ablations: c = NULL, no shortcut (y = A * G); g =
// NULL, no gate (y = A + C, dac = dy, dg not written: may be NULL).
void grela_gate_forward(float *y, float *ac, const float *c, const float *g, int64_t n);
void grela_gate_forward_f64(double *y, double *ac, const double *c, const double *g, int64_t n);
void grela_gate_backward(float *dac, float *dg, const float *dy, const float *ac, const float *g,
                         int64_t n);
void grela_gate_backward_f64(double *dac, double *dg, const double *dy, const double *ac,
                             const double *g, int64_t n);

// ---- DropPath (stochastic depth) of a residual branch --------------------------------------
// The scale of one sequence's branch in layer `layer`: 0 (dropped, with
// probability p) or 1/(1-p), as timm's DropPath(scale_by_keep=True). A
// pure function of (seed, epoch, example id, layer) through Philox (rng.h,
// the dropout stream with counter (ex, epoch << 8 | site, 0xd9a7)), so it
// does not depend on batching, lanes or ranks. p = 0: 1. Cannot fail.
float grela_droppath_scale(uint64_t seed, uint32_t epoch, uint32_t site, uint64_t ex, float p);
// out (R,D) = resid + s (x + bias) (bias (D) may be NULL; out may equal x).
void grela_path_forward(float *out, const float *x, const float *bias, const float *resid, double s,
                        int64_t R, int64_t D);
void grela_path_forward_f64(double *out, const double *x, const double *bias, const double *resid,
                            double s, int64_t R, int64_t D);
// dx (R,D) = s dout WRITTEN; dbias (D; may be NULL) += its column sums.
void grela_path_backward(float *dx, float *dbias, const float *dout, double s, int64_t R,
                         int64_t D);
void grela_path_backward_f64(double *dx, double *dbias, const double *dout, double s, int64_t R,
                             int64_t D);

// ---- column sums ---------------------------------------------------------------------------
// db (C) += the column sums of x (R rows, ld ldx), rows in order.
void grela_colsum(float *db, const float *x, int64_t ldx, int64_t R, int64_t C);
void grela_colsum_f64(double *db, const double *x, int64_t ldx, int64_t R, int64_t C);

#endif
