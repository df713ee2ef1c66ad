// err.c: the per-process error record behind lr.h (first message + traceback)
// and the aligned allocation helpers.
#include "lr.h"

#include <stdarg.h> // va_list
#include <stdio.h>  // vsnprintf, fprintf
#include <stdlib.h> // aligned_alloc, abort
#include <string.h> // memset, strlen

static struct {
  int status;
  char msg[1024];
  char trace[2048];
} g_err;

const char *lr_status_str(int status) {
  switch (status) {
  case LR_OK: return "ok";
  case LR_ERR_IO: return "I/O error";
  case LR_ERR_CORRUPT: return "corrupt file";
  case LR_ERR_CONFIG: return "configuration error";
  case LR_ERR_DATA: return "data error";
  case LR_ERR_NOMEM: return "out of memory";
  case LR_ERR_MPI: return "MPI error";
  case LR_ERR_ARG: return "invalid argument";
  case LR_ERR_STATE: return "invalid state";
  case LR_ERR_PEER: return "failure on another rank";
  case LR_ERR_DIVERGED: return "training diverged";
  default: return "unknown error";
  }
}

static int verror(int status, const char *file, int line, const char *fmt, va_list ap) {
  if (g_err.status == LR_OK) {
    g_err.status = status;
    vsnprintf(g_err.msg, sizeof g_err.msg, fmt, ap);
    g_err.trace[0] = 0;
  }
  size_t n = strlen(g_err.trace);
  if (n < sizeof g_err.trace - 1)
    snprintf(g_err.trace + n, sizeof g_err.trace - n, "%s:%d\n", file, line);
  return status;
}

int lr_error(int status, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verror(status, file, line, fmt, ap);
  va_end(ap);
  return status;
}

int lr_corrupt_error(const char *file, int line, const char *path, int64_t offset,
                     const char *fmt, ...) {
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return lr_error(LR_ERR_CORRUPT, file, line, "%s: byte %lld: %s", path, (long long)offset,
                  what);
}

void lr_error_trace(const char *file, int line, const char *func) {
  size_t n = strlen(g_err.trace);
  if (n < sizeof g_err.trace - 1)
    snprintf(g_err.trace + n, sizeof g_err.trace - n, "%s:%d %s\n", file, line, func);
}

const char *lr_error_msg(void) { return g_err.msg; }
const char *lr_error_traceback(void) { return g_err.trace; }

void lr_error_clear(void) { memset(&g_err, 0, sizeof g_err); }

_Noreturn void lr_assert_fail(const char *file, int line, const char *expr) {
  fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n", file, line, expr);
  fflush(stderr);
  abort();
}

void *lr_calloc(size_t n, size_t elem_bytes, const char *what) {
  if (n == 0) n = 1;
  if (elem_bytes && n > SIZE_MAX / elem_bytes) {
    lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "allocating %s: size overflow", what);
    return NULL;
  }
  size_t bytes = (n * elem_bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, bytes);
  if (!p) {
    lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "allocating %s: %zu bytes: out of memory",
             what, bytes);
    return NULL;
  }
  memset(p, 0, bytes);
  return p;
}

void lr_free(void *p) { free(p); }
