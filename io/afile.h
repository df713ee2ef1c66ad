// afile.h: the one atomic, durable file writer of io/, used for every file
// linrec writes in place (checkpoint shards, manifests and `latest`, the
// binary datasets of `linrec prep`, model files).
//
// A file is written to a temp file beside its final name, then fsync'ed,
// closed, renamed over the final name, and the directory holding it is
// fsync'ed (so the rename itself survives a power cut). A reader, or a crash
// at any moment, sees the old file (or none) or the whole new one: never a
// partial file under the final name.
//
// Every write, pwrite, fsync (of the file and of the directory) and rename
// goes through the io/fault.h hooks, so the fault tests can fail or crash
// each of them. A failure removes the temp file and returns LR_ERR_IO whose
// message names the operation and the path, with strerror:
//   create P.tmp: ...         write P.tmp: ...  (pwrite: "(at byte N)")
//   fsync P.tmp: ...          close P.tmp: ...  rename P.tmp -> P: ...
//   open directory D: ...     fsync directory D: ...
// and, when the disk, a quota or a file-size limit is full, a HINT line.
// After the rename only the directory fsync can fail: the complete new file
// then stays under its name (the old one is gone already), unless the
// writer asked for AFILE_UNDO_RENAME.
//
// Use:
//   lr_afile f;
//   LR_CALL(afile_open(&f, path, 0, NULL));
//   int rc = afile_write(&f, buf, n);      // any number of writes / pwrites
//   if (rc == LR_OK) rc = afile_commit(&f);
//   afile_abort(&f);                       // no-op after commit or a failed call
// or afile_write_whole for a buffer at once.
//
// Local; one writer per lr_afile (not thread-safe: the fault hooks are not).
// Not here: reading (io/file.h), which directories exist (the callers
// create them), the formats (the callers encode them).
#ifndef LR_AFILE_H
#define LR_AFILE_H

#include <stddef.h> // size_t
#include <stdint.h> // uint64_t

#define AFILE_PATH_MAX 4096

// Flags of afile_open / afile_write_whole.
enum {
  // Temp name PATH.tmp.<pid> instead of PATH.tmp: two processes writing the
  // same path (two `linrec prep` runs) never write into one temp file.
  AFILE_TMP_PID = 1,
  // If the directory fsync after the rename fails, remove PATH too: its
  // durability is unknown and nothing may trust it (a checkpoint's shard or
  // manifest: a failed manifest write means "not committed").
  AFILE_UNDO_RENAME = 2,
};

typedef struct {
  char path[AFILE_PATH_MAX];     // the final name
  char tmp[AFILE_PATH_MAX + 32]; // the temp file; "" when there is none to remove
  char dir[AFILE_PATH_MAX];      // the directory fsync'ed after the rename
  const char *space_hint;        // appended to the message of a write that finds no room
  int is_open;                   // fd is open (a zeroed lr_afile is closed)
  int fd;                        // of tmp, while is_open
  int flags;                     // AFILE_*
} lr_afile;

// Create the temp file of `path` (truncating one a crash left behind) and
// fill *f. space_hint: the "\nHINT: ..." line appended when a write fails
// with ENOSPC, EDQUOT or EFBIG (NULL: a generic one). LR_ERR_ARG if a path
// is too long, LR_ERR_IO ("create ...") with nothing created; *f is then
// closed (afile_abort is a no-op).
int afile_open(lr_afile *f, const char *path, int flags, const char *space_hint);

// Write buf[0..n) at the file's current offset (which it advances), or at
// byte `off` (afile_pwrite: the offset does not move), retrying short writes
// and EINTR. On failure (LR_ERR_IO "write ...", a zero-byte write counting as
// ENOSPC) the temp file is removed and f closed.
int afile_write(lr_afile *f, const void *buf, size_t n);
int afile_pwrite(lr_afile *f, const void *buf, size_t n, uint64_t off);

// fsync, close, rename to the final name, fsync the directory. LR_ERR_IO
// naming the failed call; the temp file is gone either way and f closed.
int afile_commit(lr_afile *f);

// Close f and remove its temp file, if any: for a writer whose own work
// (encoding, compression) failed. Accepts a zeroed, committed or already
// failed lr_afile (then nothing to do). Cannot fail.
void afile_abort(lr_afile *f);

// afile_open, afile_write of buf[0..n), afile_commit. Same statuses.
int afile_write_whole(const char *path, const void *buf, size_t n, int flags,
                      const char *space_hint);

// fsync the directory `dir` through the fault hooks (after creating or
// renaming an entry in it); EINVAL (a file system that cannot) is not an
// error. LR_ERR_IO "open directory D" / "fsync directory D" with strerror.
int afile_fsync_dir(const char *dir);

#endif
