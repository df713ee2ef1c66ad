// ref_toy_arch.h: `toy_userbias`, a test-only architecture registered at run
// time: the sasrec encoder with a learned per-user bias row added to every
// output position,
//   H_out[b, t] = sasrec(H)[b, t] + U[user(b)]      (U: the `users` row group)
// It proves a table of rows keyed by user (a ROWS group placed with the
// user's sequences) is a local change: this file and a registration call
// give it training, gradients, checkpoints, resume and model files.
#ifndef LR_REF_TOY_ARCH_H
#define LR_REF_TOY_ARCH_H

#include "model.h"

// Register `toy_userbias` (once; later calls return its id). Its id, or an
// error status with the registry's message.
int ref_toy_arch_register(void);

#endif
