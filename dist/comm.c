// comm.c: MPI behind comm.h's checked wrappers.
#include "comm.h"

#include <mpi.h>    // MPI_*
#include <stdarg.h> // va_list
#include <stdio.h>  // vprintf
#include <stdlib.h> // exit (only in dist_abort's fallback)
#include <time.h>   // clock_gettime

#include "lr.h"

static MPI_Comm g_comm = MPI_COMM_NULL;
static int g_rank = 0, g_size = 1, g_we_initialised = 0;

#define LR_MPI_CALL(call)                                                                    \
  do {                                                                                     \
    int mpi_rc_ = (call);                                                                  \
    if (mpi_rc_ != MPI_SUCCESS) return mpi_error(mpi_rc_, #call, __FILE__, __LINE__);      \
  } while (0)

static int mpi_error(int rc, const char *call, const char *file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
  return lr_error(LR_ERR_MPI, file, line, "[rank %d/%d] %s: %s", g_rank, g_size, call, msg);
}

int dist_init(int *argc, char ***argv) {
  int inited = 0;
  LR_MPI_CALL(MPI_Initialized(&inited));
  if (!inited) {
    LR_MPI_CALL(MPI_Init(argc, argv));
    g_we_initialised = 1;
  }
  LR_MPI_CALL(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  LR_MPI_CALL(MPI_Comm_dup(MPI_COMM_WORLD, &g_comm));
  LR_MPI_CALL(MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN));
  LR_MPI_CALL(MPI_Comm_rank(g_comm, &g_rank));
  LR_MPI_CALL(MPI_Comm_size(g_comm, &g_size));
  return LR_OK;
}

void dist_finalize(void) {
  if (g_comm != MPI_COMM_NULL) MPI_Comm_free(&g_comm);
  if (g_we_initialised) MPI_Finalize();
  g_we_initialised = 0;
}

_Noreturn void dist_abort(int code) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (inited && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  if (inited && g_we_initialised) MPI_Finalize();
  exit(code);
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

// MPI counts are int: reduce in chunks.
#define CHUNK (1 << 28)

static int allreduce(void *buf, int64_t n, MPI_Datatype t, size_t elem, MPI_Op op) {
  if (g_size == 1) return LR_OK;
  for (int64_t off = 0; off < n; off += CHUNK) {
    int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
    LR_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * elem, cnt, t, op, g_comm));
  }
  return LR_OK;
}

int dist_allreduce_sum_f(float *buf, int64_t n) {
  return allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM);
}
int dist_allreduce_sum_d(double *buf, int64_t n) {
  return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
}
int dist_allreduce_max_d(double *buf, int64_t n) {
  return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_MAX);
}

int dist_barrier(void) {
  if (g_size == 1) return LR_OK;
  LR_MPI_CALL(MPI_Barrier(g_comm));
  return LR_OK;
}

double dist_wtime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dist_log0(const char *fmt, ...) {
  if (g_rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}
