// comm.h: the process group linrec runs on, behind checked wrappers
// (dist/README.md, "Errors, job checks and the watchdog"). This header does
// not expose mpi.h: only dist/*.c include it.
// Every wrapper returns LR_OK or LR_ERR_MPI with "[rank r/P] MPI_X: reason".
// With one rank the collectives return at once without calling MPI, so a
// single-process run and the core/ tests need no mpirun.
#ifndef LR_COMM_H
#define LR_COMM_H

#include <stddef.h> // size_t
#include <stdint.h>
#include <stdio.h> // FILE

#include "xsum.h" // lr_xs

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
int dist_allreduce_or_u8(uint8_t *buf, int64_t n); // bitwise or
int dist_barrier(void);

// Wall clock in seconds. Local.
double dist_wtime(void);

// printf on rank 0 only (stdout). Local.
void dist_log0(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Send dist_log0's lines to f instead (NULL: back to stdout). Local.
void dist_log0_stream(FILE *f);

// Ranks of this job on this node (>= 1), or a negative status (LR_ERR_MPI).
// Collective.
int dist_node_ranks(void);

// ---- generic collectives (embedding exchange, vocab-parallel loss) -------------
// Element types of the wrappers below (mpi.h stays out of this header).
typedef enum {
  LR_DTYPE_BYTE = 0,
  LR_DTYPE_I32 = 1,
  LR_DTYPE_I64 = 2,
  LR_DTYPE_F32 = 3,
  LR_DTYPE_F64 = 4,
} lr_dtype;

// Traffic and time of a dist/ operation, summed over its calls. Bytes count
// the payload of the direct (pairwise) algorithm with this rank's own block
// excluded: what this rank hands to / takes from the other P-1 ranks (0 at
// P = 1); an allreduce of n bytes counts 2n(P-1)/P each way (reduce-scatter
// plus allgather). seconds is wall time inside the operation (communication
// and the local work between its collectives).
typedef struct {
  int64_t calls;
  int64_t bytes_sent, bytes_recv;
  double seconds;
} dist_stats;

// Counts and displacements below are in elements of the given type and
// int64_t; each must fit an MPI int (and so must the totals), else the call
// returns LR_ERR_MPI "[rank r/P] MPI_X: ... does not fit an int" WITHOUT
// entering the collective (the caller's error then aborts the job).
// Arrays of counts/displacements have P entries. recv and send must not
// overlap. All are Collective (comm) and return LR_OK or LR_ERR_MPI; at
// P = 1 they copy locally without calling MPI.

// recv (P*count) block q = send block `rank` of rank q; send (P*count).
int dist_alltoall(void *recv, const void *send, int64_t count, lr_dtype t);
// recv[rdispls[q] .. +rcounts[q]) = what rank q sends this rank from its
// send[sdispls[rank] .. +scounts[rank]). rcounts[q] must equal rank q's
// scounts[rank] (exchange counts first with dist_alltoall).
int dist_alltoallv(void *recv, const int64_t *rcounts, const int64_t *rdispls, const void *send,
                   const int64_t *scounts, const int64_t *sdispls, lr_dtype t);
// recv (P*count) block q = rank q's send (count).
int dist_allgather(void *recv, const void *send, int64_t count, lr_dtype t);
// recv[rdispls[q] .. +rcounts[q]) = rank q's send (scount = rcounts[rank]).
int dist_allgatherv(void *recv, const int64_t *rcounts, const int64_t *rdispls, const void *send,
                    int64_t scount, lr_dtype t);
// recv (rcounts[rank]) = sum over ranks of their send block `rank`, where
// send (sum of rcounts) holds the blocks of ranks 0..P-1 back to back.
int dist_reduce_scatter_sum_f(float *recv, const float *send, const int64_t *rcounts);
int dist_reduce_scatter_sum_i64(int64_t *recv, const int64_t *send, const int64_t *rcounts);
// In-place sum of n exact accumulators (xsum.h) over all ranks: an int64
// sum of their limbs, so the result does not depend on the reduction order.
int dist_allreduce_xs(lr_xs *buf, int64_t n);
// In-place element-wise max / sum over all ranks.
int dist_allreduce_max_f(float *buf, int64_t n);
int dist_allreduce_sum_i64(int64_t *buf, int64_t n);
int dist_allreduce_max_i64(int64_t *buf, int64_t n);

// Verify a logically collective argument: x (n <= 16) must be the
// same on every rank (one MPI_Allreduce MAX over {-x, x}). Collective.
// Returns LR_ERR_ARG on EVERY rank if any rank differs ("<what>[i] differs
// across ranks: min a, max b"), LR_ERR_MPI if the reduction fails.
int dist_check_same_i64(const int64_t *x, int n, const char *what);

// Point to point, blocking, tag 0: n floats (n <= INT_MAX) to / from another
// rank; the receiver checks the count. LR_ERR_MPI.
int dist_send_f(const float *buf, int64_t n, int dest);
int dist_recv_f(float *buf, int64_t n, int src);

// Agreement point for errors every rank may detect alike (config, data):
// returns the lowest rank whose rc is not LR_OK, or -1 when all are OK.
// Collective; call it where no rank can be inside another collective. When
// the reduction itself fails nothing is agreed (other ranks may still wait
// in it): it returns the caller's rank, records the MPI error, and
// dist_failure_agreed() stays 0 for good, so the error ends in MPI_Abort.
// (Test hook: LINREC_INJECT_AGREE_FAULT=RANK:N fails rank RANK's N-th
// reduction that way.)
int dist_first_failure(int rc);

// dist_first_failure as a status: LR_OK when every rank passed LR_OK; the
// lowest failing rank gets its own rc back (to report), every other rank
// LR_ERR_PEER (to stop quietly), and dist_failure_agreed() becomes true on
// all of them: the job can end without MPI_Abort, reporting the error once.
// A failed reduction returns this rank's rc (LR_ERR_MPI if it was LR_OK)
// with dist_failure_agreed() = 0: the caller must abort. Collective.
int dist_agree(int rc);
int dist_failure_agreed(void); // Local.
int dist_failure_status(void); // Local: the agreed failing rank's status.

// Bytes of one element of t. Local; cannot fail.
size_t dist_dtype_bytes(lr_dtype t);

#endif
