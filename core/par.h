// par.h: the team of threads one process uses for its non-BLAS work
// (LayerNorm, dropout, GELU, residuals, column sums, the cross-entropy's
// row passes) when it has more than one core to itself; OpenBLAS keeps its
// own threads for the GEMMs. Work is cut into contiguous ranges, one per
// thread, so every result is bitwise the same for any thread count.
// Between calls workers spin for about 100 us, then sleep on a condition
// variable (so a team idle for longer, as around OpenBLAS's own threads or
// MPI waits, does not hold its cores).
#ifndef LR_PAR_H
#define LR_PAR_H

#include <stdint.h>

// fn(ctx, lo, hi) does items lo..hi-1.
typedef void (*lr_par_fn)(void *ctx, int64_t lo, int64_t hi);

// Use n threads (the caller and n-1 workers; n <= 1: none). Not thread
// safe; call it between parallel loops. LR_ERR_NOMEM / LR_ERR_STATE (a
// thread could not be started; then 1 thread is used).
int lr_par_set_threads(int n);
int lr_par_threads(void); // Local. 1 before lr_par_set_threads.

// Run fn over [0, n) cut into lr_par_threads() ranges whose bounds are
// multiples of `align` (>= 1), the caller taking the first; returns when all
// are done. Runs fn(ctx, 0, n) directly when one thread is set, n is small
// (< 2 * align) or when called from inside a parallel range. Cannot fail.
void lr_par_for(int64_t n, int64_t align, lr_par_fn fn, void *ctx);

// Inside fn: the index of the range being run (0 .. lr_par_threads()-1; 0
// for the caller and outside lr_par_for), e.g. to pick per-thread scratch.
// Local; cannot fail.
int lr_par_part(void);

#endif
