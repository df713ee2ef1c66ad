// attn_instantiate.h: compile the templated part of an attention kind's file
// (core/attn_<name>.c) for float and for double. A kind's file keeps its
// type-independent part (includes, layouts, the lr_attn_ops table) under
// #ifndef ATTN_BODY and its kernels under #else, written over `real` with
// FN() names (real_begin.inc), and includes this header between the two
// with ATTN_SELF naming itself:
//   #define ATTN_SELF "attn_softmax.c"
//   #include "attn_instantiate.h"
// after which FN(x) resolves to x (float) and x_f64 (double).
// Not a normal header: no include guard, on purpose.
#define ATTN_BODY 1
// clang-format off
#define LR_F64 0
#include "real_begin.inc"
#include ATTN_SELF
#include "real_end.inc"
#undef LR_F64
#define LR_F64 1
#include "real_begin.inc"
#include ATTN_SELF
#include "real_end.inc"
#undef LR_F64
// clang-format on
#undef ATTN_BODY
