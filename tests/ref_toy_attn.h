// ref_toy_attn.h: `toy_gate`, a test-only attention kind with one parameter
// of its own per head, registered at run time from the tests. It proves that
// a kind is a unit: its file (ref_toy_attn.c) and a registration call are
// all it takes to train, pass the finite-difference checks, checkpoint and
// resume. Per sequence and head, with d = D/H, g_h the head's parameter:
//   u_i = q_i . k_i / sqrt(d),  S_i = (1/(i+1)) sum_{m<=i} v_m
//   o_i = g_h tanh(u_i) S_i                                   (causal)
#ifndef LR_REF_TOY_ATTN_H
#define LR_REF_TOY_ATTN_H

#include "attention.h"

extern const lr_attn_ops ref_toy_attn;

// Register `toy_gate` (once; later calls return its id). Its id, or an
// error status with the registry's message.
int ref_toy_attn_register(void);

#endif
