// test_afile.c: the atomic file writer (io/afile.h). A whole buffer and a
// streamed file (writes, a pwrite over the start) land under the final name
// only at commit, the old file staying readable until then; the temp file's
// name (PATH.tmp, PATH.tmp.<pid>); abort. Then each operation failing in
// turn through the fault hooks (io/fault.h): the message names the
// operation, the path and strerror; the temp file is gone; the final name
// holds the old file, or (only the directory fsync failed) the complete new
// one, or nothing with AFILE_UNDO_RENAME; a failed writer refuses further
// calls. A missing directory, an overlong path, a relative path (its
// directory is "."), and a file-size limit (EFBIG: the space HINT, default
// or the caller's).
#include <signal.h>       // signal, SIGXFSZ
#include <stdio.h>        // snprintf, printf
#include <stdlib.h>       // free
#include <string.h>       // memcmp, memset, strcmp, strstr
#include <sys/resource.h> // setrlimit
#include <sys/stat.h>     // stat
#include <sys/wait.h>     // waitpid
#include <unistd.h>       // fork, getpid, chdir, _exit

#include "afile.h"
#include "fault.h"
#include "lr.h"
#include "test_fault.h" // t_count_names
#include "test_util.h"

static const char *g_dir; // the test's directory
static const char OLD[] = "the old file", NEW[] = "HELLO world, the new file";

// path holds exactly the n bytes b (b == NULL: path does not exist).
static int holds(const char *path, const char *b, size_t n) {
  size_t got;
  unsigned char *f = t_read_file(path, &got);
  int ok = b ? f && got == n && !memcmp(f, b, n) : !f;
  free(f);
  return ok;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

// The pending error has `status` and its message contains a and b; clears it.
static int is_error(int rc, int status, const char *a, const char *b) {
  const char *m = lr_error_msg();
  int ok = rc == status && strstr(m, a) && (!b || strstr(m, b));
  if (!ok) printf("  (status %d, message: %s)\n", rc, m);
  lr_error_clear();
  return ok;
}

// Stream NEW into path: "hello " and "world, the new file" appended, then
// "HELLO" written over the start.
static int write_new(const char *path, int flags) {
  lr_afile f;
  LR_CALL(afile_open(&f, path, flags, NULL));
  int rc = afile_write(&f, "hello ", 6);
  if (rc == LR_OK) rc = afile_write(&f, NEW + 6, sizeof NEW - 7);
  if (rc == LR_OK) rc = afile_pwrite(&f, "HELLO", 5, 0);
  if (rc == LR_OK) rc = afile_commit(&f);
  afile_abort(&f);
  return rc;
}

static void test_writes(void) {
  const char *p = t_path("whole.bin");
  int rc = afile_write_whole(p, OLD, sizeof OLD - 1, 0, NULL);
  t_check(rc == LR_OK && holds(p, OLD, sizeof OLD - 1) && t_count_names(g_dir, ".tmp") == 0,
          "afile: a whole buffer, no temp file left");
  rc = afile_write_whole(t_path("empty.bin"), "", 0, 0, NULL);
  t_check(rc == LR_OK && holds(t_path("empty.bin"), "", 0), "afile: an empty file");

  // streamed over the old file, which stays readable until the commit
  lr_afile f;
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  rc = afile_open(&f, p, 0, NULL);
  if (rc == LR_OK) rc = afile_write(&f, "hello ", 6);
  if (rc == LR_OK) rc = afile_write(&f, NEW + 6, sizeof NEW - 7);
  if (rc == LR_OK) rc = afile_pwrite(&f, "HELLO", 5, 0);
  int before = holds(p, OLD, sizeof OLD - 1) && holds(tmp, NEW, sizeof NEW - 1);
  if (rc == LR_OK) rc = afile_commit(&f);
  afile_abort(&f); // after a commit: nothing to do
  t_check(rc == LR_OK && before && holds(p, NEW, sizeof NEW - 1) && !exists(tmp),
          "afile: writes and a pwrite go to PATH.tmp; the old file is replaced at commit");

  // AFILE_TMP_PID; abort
  char tmp_pid[600];
  snprintf(tmp_pid, sizeof tmp_pid, "%s.tmp.%ld", p, (long)getpid());
  rc = afile_open(&f, p, AFILE_TMP_PID, NULL);
  if (rc == LR_OK) rc = afile_write(&f, "x", 1);
  int named = exists(tmp_pid);
  afile_abort(&f);
  afile_abort(&f);
  lr_afile zero;
  memset(&zero, 0, sizeof zero);
  afile_abort(&zero);
  t_check(rc == LR_OK && named && !exists(tmp_pid) && holds(p, NEW, sizeof NEW - 1),
          "afile: AFILE_TMP_PID writes PATH.tmp.<pid>; abort removes it, the old file stays");
}

// Each operation failing in turn: kind, k (the k-th call of write_new), the
// message, what the final name holds afterwards.
static void test_failures(void) {
  const char *p = t_path("f.bin");
  char tmp[600], dir[600], op[700], name[100];
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  snprintf(dir, sizeof dir, "%s", p);
  *strrchr(dir, '/') = '\0';
  struct {
    lr_fault_kind kind;
    int64_t k;
    int flags;
    const char *call; // which call fails
    const char *what;
    const char *holds; // afterwards: OLD, NEW or NULL (nothing)
  } cases[] = {
      {LR_FAULT_WRITE, 1, 0, "first write", "write %s: Input/output error", OLD},
      {LR_FAULT_WRITE, 2, 0, "second write", "write %s: Input/output error", OLD},
      {LR_FAULT_WRITE, 3, 0, "pwrite", "write %s (at byte 0): Input/output error", OLD},
      {LR_FAULT_FSYNC, 1, 0, "file fsync", "fsync %s: Input/output error", OLD},
      {LR_FAULT_RENAME, 1, 0, "rename", "rename %s -> ", OLD},
      {LR_FAULT_FSYNC, 2, 0, "directory fsync", "fsync directory %s: Input/output error", NEW},
      {LR_FAULT_FSYNC, 2, AFILE_UNDO_RENAME, "directory fsync",
       "fsync directory %s: Input/output error", NULL},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    t_write_file(p, OLD, sizeof OLD - 1);
    const int in_dir = cases[c].kind == LR_FAULT_FSYNC && cases[c].k == 2;
    snprintf(op, sizeof op, cases[c].what, in_dir ? dir : tmp);
    snprintf(name, sizeof name, cases[c].what, in_dir ? "DIR" : "PATH.tmp");
    lr_fault_set(cases[c].kind, cases[c].k);
    int rc = write_new(p, cases[c].flags);
    int fired = lr_fault_fired();
    lr_fault_set(LR_FAULT_NONE, 0);
    int clean = fired && is_error(rc, LR_ERR_IO, op, NULL);
    const char *h = cases[c].holds;
    t_check(clean && !exists(tmp) && holds(p, h, h ? strlen(h) : 0),
            "afile: failing the %s%s: '%s', the temp file gone, the name holds %s", cases[c].call,
            cases[c].flags ? " (AFILE_UNDO_RENAME)" : "", name,
            h == OLD ? "the old file"
            : h      ? "the complete new file"
                     : "nothing");
  }

  // a failed writer refuses further calls
  lr_afile f;
  int rc = afile_open(&f, p, 0, NULL);
  lr_fault_set(LR_FAULT_WRITE, 1);
  rc = rc ? rc : afile_write(&f, "x", 1);
  lr_fault_set(LR_FAULT_NONE, 0);
  lr_error_clear();
  int w = afile_write(&f, "y", 1), c = afile_commit(&f);
  t_check(rc == LR_ERR_IO && w == LR_ERR_STATE && c == LR_ERR_STATE && !exists(tmp),
          "afile: after a failed call, write and commit are LR_ERR_STATE");
  lr_error_clear();
  afile_abort(&f);
}

static void test_paths(void) {
  char missing[600];
  snprintf(missing, sizeof missing, "%s/x.bin", t_path("no-such-dir"));
  int rc = afile_write_whole(missing, OLD, 3, 0, NULL);
  t_check(is_error(rc, LR_ERR_IO, "create ", "No such file or directory"),
          "afile: a missing directory is LR_ERR_IO 'create PATH.tmp: ...'");
  static char longp[5000];
  memset(longp, 'a', sizeof longp - 1);
  rc = afile_write_whole(longp, OLD, 3, 0, NULL);
  t_check(is_error(rc, LR_ERR_ARG, "path too long", NULL), "afile: an overlong path is LR_ERR_ARG");

  // a relative path: its directory is "."
  char here[600];
  snprintf(here, sizeof here, "%s", t_path(""));
  t_check(chdir(here) == 0, "afile: chdir to the test directory");
  lr_fault_set(LR_FAULT_FSYNC, 2);
  rc = afile_write_whole("rel.bin", OLD, 3, 0, NULL);
  lr_fault_set(LR_FAULT_NONE, 0);
  t_check(is_error(rc, LR_ERR_IO, "fsync directory .: ", NULL) && holds("rel.bin", OLD, 3),
          "afile: a relative path fsyncs the directory '.'");
}

// In a child with a 4 KiB file-size limit: a 64 KiB write fails with EFBIG
// and the space HINT (the caller's, or the generic one). Exit 0 if so.
static int no_room_child(const char *hint, const char *want) {
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {4096, 4096};
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return 2;
  static char big[65536];
  int rc = afile_write_whole(t_path("big.bin"), big, sizeof big, 0, hint);
  const char *m = lr_error_msg();
  printf("  no room: %s\n", m);
  fflush(stdout);
  return rc == LR_ERR_IO && strstr(m, "File too large") && strstr(m, want) &&
                 !exists(t_path("big.bin")) && !exists(t_path("big.bin.tmp"))
             ? 0
             : 1;
}

static void test_no_room(void) {
  const char *hints[2] = {NULL, "\nHINT: the caller's own"};
  const char *want[2] = {"HINT: the file system is full", "HINT: the caller's own"};
  for (int k = 0; k < 2; k++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(no_room_child(hints[k], want[k]));
    int status = 0;
    waitpid(pid, &status, 0);
    t_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "afile: no room (file-size limit): LR_ERR_IO with the %s space HINT, nothing left",
            k ? "caller's" : "generic");
  }
}

int main(void) {
  const char *dir = g_dir = t_tmpdir("lr_test_afile");
  if (!dir) {
    perror("mkdtemp");
    return 1;
  }
  test_writes();
  test_failures();
  test_no_room();
  test_paths();
  t_rm_tree(dir);
  return t_done();
}
