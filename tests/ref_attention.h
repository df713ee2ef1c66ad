// ref_attention.h: naive double-precision references for the attention kinds
// of core/attention.h. Each materialises the (N,N) attention matrix W of one
// (sequence, head) straight from the formula and computes out_i = sum_m W_im V_m;
// slow (O(N^2 Dh), O(N^3 Dh) for linrec_causal's prefix norms) and meant only
// to check the fast paths. Conventions match attention.c: rows i >= lens[b]
// of W and of out are 0, and padded rows of qkv are never read.
#ifndef LR_REF_ATTENTION_H
#define LR_REF_ATTENTION_H

#include <stdint.h>

#include "attention.h"

// Whether the kind (by name) has a reference here. Cannot fail.
int ref_attn_known(const char *kind);

// W (N,N) for sequence b, head h of qkv (B,N,3D) with n = lens[b] valid rows:
// W_im is the weight of value row m in output row i. kind must be known
// (asserted). Cannot fail.
void ref_attn_matrix(double *W, const double *qkv, int64_t n, const char *kind, int64_t b,
                     int64_t h, int64_t N, int64_t D, int64_t H);

// out (B,N,D) = W V per (b,h), heads concatenated. Cannot fail (allocates one
// (N,N) matrix; LR_ASSERT on allocation failure).
void ref_attn_forward(double *out, const double *qkv, const int32_t *lens, const char *kind,
                      int64_t B, int64_t N, int64_t D, int64_t H);

#endif
