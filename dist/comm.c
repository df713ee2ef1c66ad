// comm.c: MPI behind comm.h's checked wrappers.
#include "comm.h"

#include <limits.h> // INT_MAX
#include <mpi.h>    // MPI_*
#include <stdarg.h> // va_list
#include <stdio.h>  // vprintf, sscanf
#include <stdlib.h> // exit (only in dist_abort's fallback), getenv
#include <string.h> // memmove
#include <time.h>   // clock_gettime

#include "comm_internal.h"
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

static int *g_iws; // see iws_get

void dist_finalize(void) {
  lr_free(g_iws);
  g_iws = NULL;
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
int dist_allreduce_or_u8(uint8_t *buf, int64_t n) {
  return allreduce(buf, n, MPI_UINT8_T, 1, MPI_BOR);
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

static FILE *g_log; // NULL: stdout

void dist_log0(const char *fmt, ...) {
  if (g_rank != 0) return;
  FILE *f = g_log ? g_log : stdout;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fflush(f);
}

void dist_log0_stream(FILE *f) { g_log = f; }

int dist_node_ranks(void) {
  if (g_size == 1) return 1;
  MPI_Comm node;
  LR_MPI_CALL(MPI_Comm_split_type(g_comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int n = 0, rc = MPI_Comm_size(node, &n);
  MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) return mpi_error(rc, "MPI_Comm_size", __FILE__, __LINE__);
  return n;
}

// ---- generic collectives -------------------------------------------------------------

size_t dist_dtype_bytes(lr_dtype t) {
  switch (t) {
  case LR_DTYPE_BYTE: return 1;
  case LR_DTYPE_I32: return 4;
  case LR_DTYPE_I64: return 8;
  case LR_DTYPE_F32: return 4;
  case LR_DTYPE_F64: return 8;
  }
  lr_assert_fail(__FILE__, __LINE__, "bad lr_dtype");
}

static MPI_Datatype mpi_type(lr_dtype t) {
  switch (t) {
  case LR_DTYPE_BYTE: return MPI_BYTE;
  case LR_DTYPE_I32: return MPI_INT32_T;
  case LR_DTYPE_I64: return MPI_INT64_T;
  case LR_DTYPE_F32: return MPI_FLOAT;
  case LR_DTYPE_F64: return MPI_DOUBLE;
  }
  lr_assert_fail(__FILE__, __LINE__, "bad lr_dtype");
}

// int copies of count/displacement arrays for MPI: 4 arrays of P ints,
// allocated on first use (once per process), freed by dist_finalize.

static int iws_get(int **out, const char *call) {
  if (!g_iws) g_iws = lr_calloc((size_t)4 * (size_t)g_size, sizeof(int), "MPI count arrays");
  *out = g_iws;
  if (!g_iws)
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "[rank %d/%d] %s: no memory for counts",
                    g_rank, g_size, call);
  return LR_OK;
}

// out[q] = (int)in[q] for q < P, or LR_ERR_MPI naming the call and the array.
static int to_int(int *out, const int64_t *in, const char *call, const char *what) {
  for (int q = 0; q < g_size; q++) {
    if (in[q] < 0 || in[q] > INT32_MAX)
      return lr_error(LR_ERR_MPI, __FILE__, __LINE__,
                      "[rank %d/%d] %s: %s %lld for rank %d does not fit an int", g_rank, g_size,
                      call, what, (long long)in[q], q);
    out[q] = (int)in[q];
  }
  return LR_OK;
}

static int fits_int(int64_t x, const char *call, const char *what) {
  if (x >= 0 && x <= INT32_MAX) return LR_OK;
  return lr_error(LR_ERR_MPI, __FILE__, __LINE__, "[rank %d/%d] %s: %s %lld does not fit an int",
                  g_rank, g_size, call, what, (long long)x);
}

static void local_copy(void *dst, const void *src, int64_t n, lr_dtype t) {
  if (n > 0) memmove(dst, src, (size_t)n * dist_dtype_bytes(t));
}

int dist_alltoall(void *recv, const void *send, int64_t count, lr_dtype t) {
  if (g_size == 1) {
    local_copy(recv, send, count, t);
    return LR_OK;
  }
  LR_CALL(fits_int(count, "MPI_Alltoall", "count"));
  LR_CALL(fits_int(count * g_size, "MPI_Alltoall", "total count"));
  LR_MPI_CALL(MPI_Alltoall(send, (int)count, mpi_type(t), recv, (int)count, mpi_type(t), g_comm));
  return LR_OK;
}

int dist_alltoallv(void *recv, const int64_t *rcounts, const int64_t *rdispls, const void *send,
                   const int64_t *scounts, const int64_t *sdispls, lr_dtype t) {
  const size_t es = dist_dtype_bytes(t);
  if (g_size == 1) {
    if (rcounts[0] != scounts[0])
      return lr_error(LR_ERR_MPI, __FILE__, __LINE__,
                      "[rank 0/1] MPI_Alltoallv: receive count %lld != send count %lld",
                      (long long)rcounts[0], (long long)scounts[0]);
    local_copy((char *)recv + (size_t)rdispls[0] * es, (const char *)send + (size_t)sdispls[0] * es,
               scounts[0], t);
    return LR_OK;
  }
  int *w;
  LR_CALL(iws_get(&w, "MPI_Alltoallv"));
  int *sc = w, *sd = w + g_size, *rc = w + 2 * g_size, *rd = w + 3 * g_size;
  LR_CALL(to_int(sc, scounts, "MPI_Alltoallv", "send count"));
  LR_CALL(to_int(sd, sdispls, "MPI_Alltoallv", "send displacement"));
  LR_CALL(to_int(rc, rcounts, "MPI_Alltoallv", "receive count"));
  LR_CALL(to_int(rd, rdispls, "MPI_Alltoallv", "receive displacement"));
  LR_MPI_CALL(MPI_Alltoallv(send, sc, sd, mpi_type(t), recv, rc, rd, mpi_type(t), g_comm));
  return LR_OK;
}

int dist_allgather(void *recv, const void *send, int64_t count, lr_dtype t) {
  if (g_size == 1) {
    local_copy(recv, send, count, t);
    return LR_OK;
  }
  LR_CALL(fits_int(count, "MPI_Allgather", "count"));
  LR_CALL(fits_int(count * g_size, "MPI_Allgather", "total count"));
  LR_MPI_CALL(MPI_Allgather(send, (int)count, mpi_type(t), recv, (int)count, mpi_type(t), g_comm));
  return LR_OK;
}

int dist_allgatherv(void *recv, const int64_t *rcounts, const int64_t *rdispls, const void *send,
                    int64_t scount, lr_dtype t) {
  if (g_size == 1) {
    local_copy((char *)recv + (size_t)rdispls[0] * dist_dtype_bytes(t), send, scount, t);
    return LR_OK;
  }
  int *w;
  LR_CALL(iws_get(&w, "MPI_Allgatherv"));
  int *rc = w, *rd = w + g_size;
  LR_CALL(fits_int(scount, "MPI_Allgatherv", "send count"));
  LR_CALL(to_int(rc, rcounts, "MPI_Allgatherv", "receive count"));
  LR_CALL(to_int(rd, rdispls, "MPI_Allgatherv", "receive displacement"));
  LR_MPI_CALL(MPI_Allgatherv(send, (int)scount, mpi_type(t), recv, rc, rd, mpi_type(t), g_comm));
  return LR_OK;
}

int dist_reduce_scatter_sum_f(float *recv, const float *send, const int64_t *rcounts) {
  if (g_size == 1) {
    local_copy(recv, send, rcounts[0], LR_DTYPE_F32);
    return LR_OK;
  }
  int *w;
  LR_CALL(iws_get(&w, "MPI_Reduce_scatter"));
  LR_CALL(to_int(w, rcounts, "MPI_Reduce_scatter", "receive count"));
  int64_t total = 0;
  for (int q = 0; q < g_size; q++)
    total += rcounts[q];
  LR_CALL(fits_int(total, "MPI_Reduce_scatter", "total count"));
  LR_MPI_CALL(MPI_Reduce_scatter(send, recv, w, MPI_FLOAT, MPI_SUM, g_comm));
  return LR_OK;
}

int dist_reduce_scatter_sum_i64(int64_t *recv, const int64_t *send, const int64_t *rcounts) {
  if (g_size == 1) {
    local_copy(recv, send, rcounts[0], LR_DTYPE_I64);
    return LR_OK;
  }
  int *w;
  LR_CALL(iws_get(&w, "MPI_Reduce_scatter"));
  LR_CALL(to_int(w, rcounts, "MPI_Reduce_scatter", "receive count"));
  int64_t total = 0;
  for (int q = 0; q < g_size; q++)
    total += rcounts[q];
  LR_CALL(fits_int(total, "MPI_Reduce_scatter", "total count"));
  LR_MPI_CALL(MPI_Reduce_scatter(send, recv, w, MPI_INT64_T, MPI_SUM, g_comm));
  return LR_OK;
}

int dist_allreduce_xs(lr_xs *buf, int64_t n) {
  return dist_allreduce_sum_i64((int64_t *)(void *)buf, LR_XS_LIMBS * n);
}

int dist_allreduce_max_f(float *buf, int64_t n) {
  return allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_MAX);
}
int dist_allreduce_sum_i64(int64_t *buf, int64_t n) {
  return allreduce(buf, n, MPI_INT64_T, sizeof(int64_t), MPI_SUM);
}
int dist_allreduce_max_i64(int64_t *buf, int64_t n) {
  return allreduce(buf, n, MPI_INT64_T, sizeof(int64_t), MPI_MAX);
}

int dist_check_same_i64(const int64_t *x, int n, const char *what) {
  LR_ASSERT(n >= 0 && n <= 16);
  if (g_size == 1) return LR_OK;
  int64_t b[32];
  for (int i = 0; i < n; i++)
    b[i] = -x[i], b[n + i] = x[i];
  LR_CALL(dist_allreduce_max_i64(b, 2 * n));
  for (int i = 0; i < n; i++)
    if (-b[i] != b[n + i])
      return lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                      "[rank %d/%d] %s[%d] differs across ranks: min %lld, max %lld", g_rank,
                      g_size, what, i, (long long)-b[i], (long long)b[n + i]);
  return LR_OK;
}

MPI_Comm dist_comm_(void) { return g_comm; }

int dist_send_f(const float *buf, int64_t n, int dest) {
  LR_ASSERT(n >= 0 && n <= INT_MAX && dest >= 0 && dest < g_size && dest != g_rank);
  LR_MPI_CALL(MPI_Send(buf, (int)n, MPI_FLOAT, dest, 0, g_comm));
  return LR_OK;
}

int dist_recv_f(float *buf, int64_t n, int src) {
  LR_ASSERT(n >= 0 && n <= INT_MAX && src >= 0 && src < g_size && src != g_rank);
  MPI_Status st;
  LR_MPI_CALL(MPI_Recv(buf, (int)n, MPI_FLOAT, src, 0, g_comm, &st));
  int got = 0;
  LR_MPI_CALL(MPI_Get_count(&st, MPI_FLOAT, &got));
  if (got != (int)n)
    return lr_error(LR_ERR_MPI, __FILE__, __LINE__,
                    "[rank %d/%d] MPI_Recv from rank %d: %d floats, expected %lld", g_rank,
                    g_size, src, got, (long long)n);
  return LR_OK;
}

static int g_agreed_status; // the first failing rank's status, once agreed
static int g_agree_broken;  // an agreement's own reduction failed: nothing is agreed

// Test hook: LINREC_INJECT_AGREE_FAULT=RANK:N makes the N-th agreement of
// rank RANK fail as if its MPI_Allreduce had returned an error (without
// entering it, so the other ranks stay inside): the path that must end in
// MPI_Abort. Read once.
static int agree_fault_now(void) {
  static long rank = -1, nth = 0, calls = 0;
  static int read;
  if (!read) {
    const char *f = getenv("LINREC_INJECT_AGREE_FAULT");
    if (!f || sscanf(f, "%ld:%ld", &rank, &nth) != 2) rank = -1;
    read = 1;
  }
  return rank == g_rank && ++calls == nth;
}

int dist_first_failure(int rc) {
  if (g_size == 1) {
    g_agreed_status = rc;
    return rc == LR_OK ? -1 : 0;
  }
  // rank * 64 + (-status) carries both the lowest failing rank and its status.
  int mine = rc == LR_OK ? INT_MAX : g_rank * 64 + (-rc & 63), first = INT_MAX;
  int injected = agree_fault_now();
  int mrc = injected ? MPI_ERR_OTHER : MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, g_comm);
  if (mrc != MPI_SUCCESS) {
    // Nothing is agreed: the other ranks may still wait in this reduction.
    // The caller's error must abort the job (dist_failure_agreed stays 0).
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mrc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", mrc);
    lr_error(LR_ERR_MPI, __FILE__, __LINE__,
             "[rank %d/%d] MPI_Allreduce of the failure agreement failed (%s%s): the ranks "
             "cannot agree, the job is aborted",
             g_rank, g_size, msg, injected ? ", injected by LINREC_INJECT_AGREE_FAULT" : "");
    g_agree_broken = 1;
    g_agreed_status = rc != LR_OK ? rc : LR_ERR_MPI;
    return g_rank;
  }
  if (first == INT_MAX) return -1;
  g_agreed_status = -(first % 64);
  return first / 64;
}

static int g_agreed;

int dist_agree(int rc) {
  g_agreed = 0;
  int first = dist_first_failure(rc);
  if (first < 0) return LR_OK;
  if (g_agree_broken) return rc != LR_OK ? rc : LR_ERR_MPI; // not agreed: abort
  g_agreed = 1;
  if (first == g_rank) return rc != LR_OK ? rc : LR_ERR_MPI;
  return lr_error(LR_ERR_PEER, __FILE__, __LINE__, "rank %d failed", first);
}

int dist_failure_agreed(void) { return g_agreed && !g_agree_broken; }
int dist_failure_status(void) { return g_agreed_status; }
