// ref_ram.h: the RAM encoder of core/arch_ram.c in double precision, written
// plainly (every row of one sequence, no dropout, no lanes or staging) over
// the f64 kernels, as the reference its finite differences run on
// (tests/test_ram.c). E enters on separate inputs for Q^0 and for each
// block's keys and values, so a test can take the gradient of each path.
#ifndef LR_REF_RAM_H
#define LR_REF_RAM_H

#include <stdint.h>

#include "model.h"

// out (n,D) = LNf(Q^L) + u for one sequence of n valid rows (1 <= n <= N):
// Q^0 = e_q0 (n,D); block l takes its keys and values from e_kv[l] (n,D);
// c: the model's configuration (D, heads, layers, inner, ln_eps, attention
// kind; max_len sizes the kind's buffers); arena: the model's parameters in
// double, in c's tensor layout (model_tensors); u (D) or NULL (no users
// table). Local; cannot fail (LR_ASSERT on a tensor missing from c's table).
void ram_ref_forward(double *out, const lr_model_cfg *c, const double *arena, const double *e_q0,
                     const double *const *e_kv, const double *u, int64_t n);

// E (n,D) of a sequence: s * table[ids[t]] + pos[p(t)] (c's emb_scale and
// pos_from_end; table (I+1,D) in double). Cannot fail.
void ram_ref_embed(double *e, const lr_model_cfg *c, const double *arena, const double *table,
                   const int32_t *ids, int64_t n);

#endif
