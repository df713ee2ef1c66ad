// comm.h: the process group linrec runs on, behind checked wrappers (STYLE
// 14-17). This header does not expose mpi.h: only dist/*.c include it.
// Every wrapper returns LR_OK or LR_ERR_MPI with "[rank r/P] MPI_X: reason".
// With one rank the collectives return at once without calling MPI, so a
// single-process run and the core/ tests need no mpirun.
#ifndef LR_COMM_H
#define LR_COMM_H

#include <stdint.h>

// Initialise MPI (or use it if already initialised), duplicate the world
// communicator and make MPI errors return codes. Collective (world).
int dist_init(int *argc, char ***argv);
// Finalise if dist_init initialised MPI. Collective.
void dist_finalize(void);
// Abort the whole job with `code` (launch/ only). Does not return.
_Noreturn void dist_abort(int code);

int dist_rank(void); // Local. 0 before dist_init.
int dist_size(void); // Local. 1 before dist_init.

// In-place sums over all ranks. Collective.
int dist_allreduce_sum_f(float *buf, int64_t n);
int dist_allreduce_sum_d(double *buf, int64_t n);
int dist_allreduce_max_d(double *buf, int64_t n);
int dist_barrier(void);

// Wall clock in seconds. Local.
double dist_wtime(void);

// printf on rank 0 only (stdout). Local.
void dist_log0(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
