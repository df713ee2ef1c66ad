// lr.h: status codes, error stack and the four checking macros every folder uses.
//
// Dimension letters used in shape comments across the code base:
//   B  sequences in a (micro-)batch      N  sequence length (model.max_len)
//   D  hidden size                       H  heads, Dh = D / H
//   L  layers                            F  FFN inner size
//   I  items (real, ids 1..I; row 0 of the item table is padding)
//   I_r item rows owned by this rank      M  loss rows (positions carrying a target)
// Sizes and strides are int64_t/size_t: B*N*D*L overflows int on real data.
//
// Error classes (core/README.md, "Conventions"): a broken invariant in our
// own code is LR_ASSERT (prints file:line and aborts, also in release
// builds); bad input and environment failures return an lr_status with a
// message recorded here.
// Only launch/ turns a status into an exit code.
#ifndef LR_H
#define LR_H

#include <stddef.h> // size_t
#include <stdint.h> // int64_t

typedef enum {
  LR_OK = 0,
  LR_ERR_IO = -1,      // open/read/write/fsync failed
  LR_ERR_CORRUPT = -2, // a file's bytes fail a check (magic, size, checksum)
  LR_ERR_CONFIG = -3,  // a config key, value or CLI argument is invalid
  LR_ERR_DATA = -4,    // a data file is malformed (field count, ids)
  LR_ERR_NOMEM = -5,   // allocation failed
  LR_ERR_MPI = -6,     // an MPI call failed
  LR_ERR_ARG = -7,     // a caller passed arguments outside a function's contract
  LR_ERR_STATE = -8,   // an operation is impossible in the current state
  LR_ERR_PEER = -9,    // another rank failed (and reported it); this rank stops too
  LR_ERR_DIVERGED = -10, // training produced a non-finite or out-of-range loss or gradient
} lr_status;

// Name of a status ("io error", ...). Cannot fail.
const char *lr_status_str(int status);

// Record the first error message of the current failure (printf-style) and
// return `status`. Later calls while an error is pending append nothing to the
// message but are counted in the traceback. Cannot fail.
int lr_error(int status, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// Record a corruption found at `path`, byte `offset`: one symbol to
// break on in a debugger. Returns LR_ERR_CORRUPT.
int lr_corrupt_error(const char *file, int line, const char *path, int64_t offset,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

// Append "file:line func" to the traceback of the pending error. Cannot fail.
void lr_error_trace(const char *file, int line, const char *func);

// The pending error's message ("" if none) and its traceback (newline separated).
const char *lr_error_msg(void);
const char *lr_error_traceback(void);
// Forget the pending error (after it has been reported or handled).
void lr_error_clear(void);

// Abort with file:line and the failed expression. Used by LR_ASSERT only.
_Noreturn void lr_assert_fail(const char *file, int line, const char *expr);

#define LR_ASSERT(x) ((x) ? (void)0 : lr_assert_fail(__FILE__, __LINE__, #x))

// Propagate a failed status, recording the call site.
#define LR_CALL(expr)                                                                      \
  do {                                                                                     \
    int lr_rc_ = (expr);                                                                   \
    if (lr_rc_ != LR_OK) {                                                                 \
      lr_error_trace(__FILE__, __LINE__, __func__);                                        \
      return lr_rc_;                                                                       \
    }                                                                                      \
  } while (0)

// Raise `code` with a message when `cond` is false.
#define LR_CHECK(cond, code, ...)                                                          \
  do {                                                                                     \
    if (!(cond)) return lr_error((code), __FILE__, __LINE__, __VA_ARGS__);                 \
  } while (0)

#define LR_CORRUPT(path, offset, ...)                                                      \
  lr_corrupt_error(__FILE__, __LINE__, (path), (offset), __VA_ARGS__)

// Allocation helpers: zeroed, 64-byte aligned; return NULL and record
// LR_ERR_NOMEM (naming `what`) on failure. Free with lr_free.
void *lr_calloc(size_t n, size_t elem_bytes, const char *what);
void lr_free(void *p);

#endif
