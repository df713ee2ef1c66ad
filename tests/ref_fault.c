// ref_fault.c: the fault sweep of test_fault.h.
#include <dirent.h>   // opendir, readdir
#include <stdio.h>    // printf, fflush, snprintf
#include <stdlib.h>   // free
#include <string.h>   // strstr, memcmp, memset
#include <sys/stat.h> // mkdir
#include <sys/wait.h> // waitpid
#include <unistd.h>   // fork, _exit

#include "lr.h"
#include "test_fault.h"
#include "test_util.h"

// Run t->write with `kind` armed at call k; 1 if it failed as a clean
// status of that kind (its message containing `need`, if not NULL) and left
// the files as promised (printing what went wrong otherwise). *renames (if
// not NULL): the renames made before the failure.
static int fail_once(const t_fault_target *t, lr_fault_kind kind, int64_t k, const char *need,
                     int64_t *renames) {
  lr_error_clear();
  lr_fault_set(kind, k);
  int rc = t->write(t->arg);
  int fired = lr_fault_fired();
  if (renames) *renames = lr_fault_calls(LR_FAULT_RENAME);
  lr_fault_set(LR_FAULT_NONE, 0);
  const char *m = lr_error_msg();
  int clean = rc != LR_OK && fired;
  if (kind == LR_FAULT_MALLOC)
    clean &= rc == LR_ERR_NOMEM && strstr(m, "out of memory");
  else
    clean &= rc == LR_ERR_IO && strstr(m, "Input/output error") && strstr(m, t->dir) &&
             (strstr(m, "write ") || strstr(m, "fsync ") || strstr(m, "rename ")) &&
             (!need || strstr(m, need));
  if (!clean) printf("  (k=%lld: status %d, fired %d: %s)\n", (long long)k, rc, fired, m);
  lr_error_clear();
  int after = t->after(t->arg, 0);
  if (!after) printf("  (k=%lld: files wrong after the failure)\n", (long long)k);
  t->reset(t->arg);
  return clean && after;
}

// Crash a child at its k-th write/fsync/rename; 1 if it died there and the
// files it left are as promised.
static int crash_once(const t_fault_target *t, int64_t k) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    lr_fault_seed((uint64_t)k * 7919u);
    lr_fault_set(LR_FAULT_CRASH, k);
    int rc = t->write(t->arg);
    _exit(rc == LR_OK ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  int died = WIFEXITED(status) && WEXITSTATUS(status) == LR_FAULT_CRASH_EXIT;
  int after = t->after(t->arg, 1);
  if (!died || !after)
    printf("  (crash k=%lld: status %#x, files as promised %d)\n", (long long)k, status, after);
  t->reset(t->arg);
  return died && after;
}

void t_fault_sweep(const t_fault_target *t, int64_t calls[LR_FAULT_N_KINDS]) {
  lr_error_clear();
  lr_fault_set(LR_FAULT_NONE, 0);
  int rc = t->write(t->arg);
  for (int k = 0; k < LR_FAULT_N_KINDS; k++)
    calls[k] = lr_fault_calls((lr_fault_kind)k);
  t_check(rc == LR_OK && calls[LR_FAULT_IO] > 0,
          "%s faults: one write = %lld writes + %lld fsyncs + %lld renames, %lld mallocs", t->name,
          (long long)calls[LR_FAULT_WRITE], (long long)calls[LR_FAULT_FSYNC],
          (long long)calls[LR_FAULT_RENAME], (long long)calls[LR_FAULT_MALLOC]);
  t->reset(t->arg);

  const int64_t n_io = calls[LR_FAULT_IO];
  int ok = 1;
  for (int64_t k = 1; k <= n_io; k++)
    ok &= fail_once(t, LR_FAULT_IO, k, NULL, NULL);
  t_check(ok,
          "%s faults: failing write/fsync/rename call k = 1..%lld: clean error naming it, "
          "no temp or partial file",
          t->name, (long long)n_io);
  ok = 1;
  for (int64_t k = 1; k <= calls[LR_FAULT_MALLOC]; k++)
    ok &= fail_once(t, LR_FAULT_MALLOC, k, NULL, NULL);
  t_check(ok, "%s faults: failing malloc k = 1..%lld: clean LR_ERR_NOMEM, no temp or partial file",
          t->name, (long long)calls[LR_FAULT_MALLOC]);
  char need[4200];
  snprintf(need, sizeof need, "fsync directory %s", t->dir);
  int64_t renames = -1;
  ok = calls[LR_FAULT_FSYNC] > 0 &&
       fail_once(t, LR_FAULT_FSYNC, calls[LR_FAULT_FSYNC], need, &renames);
  t_check(ok && renames == calls[LR_FAULT_RENAME],
          "%s faults: the last fsync is of the directory written into, after the last rename",
          t->name);
  ok = 1;
  for (int64_t k = 1; k <= n_io; k++)
    ok &= crash_once(t, k);
  t_check(ok, "%s faults: crash at call k = 1..%lld: the old files or complete new ones", t->name,
          (long long)n_io);
}

int t_replace_init(t_replace *r, const char *dir, const char *name) {
  memset(r, 0, sizeof *r);
  snprintf(r->dir, sizeof r->dir, "%s", dir);
  snprintf(r->path, sizeof r->path, "%s/%s", dir, name);
  return mkdir(dir, 0755) == 0;
}

int t_replace_take(t_replace *r, int which) {
  unsigned char **b = which ? &r->new : &r->old;
  free(*b);
  *b = t_read_file(r->path, which ? &r->n_new : &r->n_old);
  return *b != NULL;
}

int t_replace_after(void *arg, int crashed) {
  const t_replace *r = arg;
  size_t n;
  unsigned char *b = t_read_file(r->path, &n);
  int ok =
      b && ((n == r->n_old && !memcmp(b, r->old, n)) || (n == r->n_new && !memcmp(b, r->new, n)));
  if (!ok) printf("  (%s: %s)\n", r->path, b ? "neither the old file nor the new one" : "missing");
  free(b);
  int tmp = t_count_names(r->dir, ".tmp");
  if (!crashed && tmp) printf("  (%d temp files left in %s)\n", tmp, r->dir);
  return ok && (crashed || tmp == 0);
}

void t_replace_reset(void *arg) {
  const t_replace *r = arg;
  t_rm_tree(r->dir);
  mkdir(r->dir, 0755);
  t_write_file(r->path, r->old, r->n_old);
}

void t_replace_free(t_replace *r) {
  free(r->old);
  free(r->new);
  r->old = r->new = NULL;
}

int t_count_names(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strstr(e->d_name, part) != NULL;
  closedir(d);
  return n;
}
