// afile.c: the atomic file writer of afile.h.
#include "afile.h"

#include <errno.h>  // errno, EINTR, EINVAL, ENOSPC, EDQUOT, EFBIG
#include <fcntl.h>  // open, O_DIRECTORY
#include <stdio.h>  // snprintf
#include <string.h> // memset, strerror, strlen, strrchr
#include <unistd.h> // close, unlink, getpid

#include "fault.h" // lr_fault_write, lr_fault_pwrite, lr_fault_fsync, lr_fault_rename
#include "lr.h"

#define HINT_SPACE                                                                                 \
  "\nHINT: the file system is full, or a quota or file-size limit is reached: free space, or "     \
  "write elsewhere"

// The HINT for a failed write with errno e: f's space hint when there is no
// room, else "".
static const char *space_hint(const lr_afile *f, int e) {
  if (e != ENOSPC && e != EDQUOT && e != EFBIG) return "";
  return f->space_hint ? f->space_hint : HINT_SPACE;
}

// Close f's descriptor (if open) and remove its temp file (if any), keeping
// errno. Cannot fail.
static void discard(lr_afile *f) {
  int e = errno;
  if (f->is_open) close(f->fd);
  f->is_open = 0;
  f->fd = -1;
  if (f->tmp[0]) unlink(f->tmp);
  f->tmp[0] = '\0';
  errno = e;
}

// Discard f and pass on status rc (its message is recorded).
static int fail(lr_afile *f, int rc) {
  discard(f);
  return rc;
}

int afile_open(lr_afile *f, const char *path, int flags, const char *hint) {
  memset(f, 0, sizeof *f);
  f->fd = -1;
  LR_CHECK(path && path[0], LR_ERR_ARG, "afile_open: empty path");
  size_t n = strlen(path);
  LR_CHECK(n < sizeof f->path, LR_ERR_ARG, "%.60s...: path too long", path);
  memcpy(f->path, path, n + 1);
  if (flags & AFILE_TMP_PID)
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld", path, (long)getpid());
  else
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
  const char *slash = strrchr(path, '/');
  if (!slash)
    snprintf(f->dir, sizeof f->dir, ".");
  else if (slash == path)
    snprintf(f->dir, sizeof f->dir, "/");
  else
    snprintf(f->dir, sizeof f->dir, "%.*s", (int)(slash - path), path);
  f->flags = flags;
  f->space_hint = hint;
  f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f->fd < 0) {
    int rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "create %s: %s", f->tmp, strerror(errno));
    f->tmp[0] = '\0'; // not created: nothing of ours to remove
    return rc;
  }
  f->is_open = 1;
  return LR_OK;
}

// Write buf[0..n) at off, or at the current offset when off is -1.
static int write_at(lr_afile *f, const void *buf, size_t n, int64_t off) {
  LR_CHECK(f->is_open, LR_ERR_STATE, "write %s: the file is not open (a failed call closed it)",
           f->path);
  const unsigned char *p = buf;
  int64_t at = off;
  while (n > 0) {
    ssize_t k = off < 0 ? lr_fault_write(f->fd, p, n) : lr_fault_pwrite(f->fd, p, n, (off_t)at);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int e = k < 0 ? errno : ENOSPC; // a zero-byte write means no room
      if (off < 0)
        lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s%s", f->tmp, strerror(e),
                 space_hint(f, e));
      else
        lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s (at byte %lld): %s%s", f->tmp,
                 (long long)at, strerror(e), space_hint(f, e));
      return fail(f, LR_ERR_IO);
    }
    p += k, n -= (size_t)k, at += k;
  }
  return LR_OK;
}

int afile_write(lr_afile *f, const void *buf, size_t n) { return write_at(f, buf, n, -1); }

int afile_pwrite(lr_afile *f, const void *buf, size_t n, uint64_t off) {
  LR_CHECK(off <= (uint64_t)INT64_MAX - n, LR_ERR_ARG, "write %s: offset %llu out of range",
           f->path, (unsigned long long)off);
  return write_at(f, buf, n, (int64_t)off);
}

int afile_commit(lr_afile *f) {
  LR_CHECK(f->is_open, LR_ERR_STATE, "commit %s: the file is not open (a failed call closed it)",
           f->path);
  if (lr_fault_fsync(f->fd) != 0)
    return fail(f,
                lr_error(LR_ERR_IO, __FILE__, __LINE__, "fsync %s: %s", f->tmp, strerror(errno)));
  f->is_open = 0;
  if (close(f->fd) != 0)
    return fail(f,
                lr_error(LR_ERR_IO, __FILE__, __LINE__, "close %s: %s", f->tmp, strerror(errno)));
  f->fd = -1;
  if (lr_fault_rename(f->tmp, f->path) != 0)
    return fail(f, lr_error(LR_ERR_IO, __FILE__, __LINE__, "rename %s -> %s: %s", f->tmp, f->path,
                            strerror(errno)));
  f->tmp[0] = '\0'; // renamed: nothing left to remove
  int rc = afile_fsync_dir(f->dir);
  if (rc != LR_OK) {
    // durability unknown: keep the complete file unless the caller must not
    if (f->flags & AFILE_UNDO_RENAME) unlink(f->path);
    lr_error_trace(__FILE__, __LINE__, __func__);
  }
  return rc;
}

void afile_abort(lr_afile *f) {
  if (f) discard(f);
}

int afile_write_whole(const char *path, const void *buf, size_t n, int flags,
                      const char *space_hint) {
  lr_afile f;
  LR_CALL(afile_open(&f, path, flags, space_hint));
  LR_CALL(afile_write(&f, buf, n));
  LR_CALL(afile_commit(&f));
  return LR_OK;
}

int afile_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  LR_CHECK(fd >= 0, LR_ERR_IO, "open directory %s: %s", dir, strerror(errno));
  int rc = lr_fault_fsync(fd);
  int e = errno;
  close(fd);
  LR_CHECK(rc == 0 || e == EINVAL, LR_ERR_IO, "fsync directory %s: %s", dir, strerror(e));
  return LR_OK;
}
