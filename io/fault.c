// fault.c: the fault-injection wrappers of fault.h. Not here: which calls
// are wrapped (that is the writers' choice: io/afile.c and the buffers of
// io/ckpt*.c, io/dataset_bin.c, io/modelfile.c).
#include "fault.h"

#include <errno.h>    // errno, EIO
#include <stdio.h>    // rename, fprintf
#include <stdlib.h>   // malloc, getenv, strtoll
#include <string.h>   // strncmp, strchr
#include <sys/stat.h> // fstat
#include <unistd.h>   // write, pwrite, fsync, ftruncate, _exit

static struct {
  int env_read;        // LINREC_FAULT looked at
  lr_fault_kind armed; // LR_FAULT_NONE when off
  int64_t at;          // fire at this call number
  int fired;
  int64_t calls[LR_FAULT_N_KINDS];
  uint64_t rng;
} g = {.rng = 0x9e3779b97f4a7c15ull};

static const char *const kind_names[LR_FAULT_N_KINDS] = {
    [LR_FAULT_WRITE] = "write",   [LR_FAULT_FSYNC] = "fsync", [LR_FAULT_RENAME] = "rename",
    [LR_FAULT_MALLOC] = "malloc", [LR_FAULT_IO] = "io",       [LR_FAULT_CRASH] = "crash"};

// ---------------------------------------------------------------------------
// arming

void lr_fault_set(lr_fault_kind kind, int64_t k) {
  g.env_read = 1; // an explicit setting wins over the environment
  g.armed = (kind > LR_FAULT_NONE && kind < LR_FAULT_N_KINDS && k > 0) ? kind : LR_FAULT_NONE;
  g.at = k;
  g.fired = 0;
  for (int i = 0; i < LR_FAULT_N_KINDS; i++)
    g.calls[i] = 0;
}

void lr_fault_seed(uint64_t seed) { g.rng = seed ? seed : 0x9e3779b97f4a7c15ull; }

int64_t lr_fault_calls(lr_fault_kind kind) {
  if (kind == LR_FAULT_CRASH) kind = LR_FAULT_IO;
  return kind > LR_FAULT_NONE && kind < LR_FAULT_N_KINDS ? g.calls[kind] : 0;
}

int lr_fault_fired(void) { return g.fired; }

int lr_fault_from_env(void) {
  g.env_read = 1;
  const char *s = getenv("LINREC_FAULT");
  if (!s || !*s) return 0;
  for (int k = 1; k < LR_FAULT_N_KINDS; k++) {
    size_t n = strlen(kind_names[k]);
    if (strncmp(s, kind_names[k], n) != 0 || s[n] != ':') continue;
    char *end;
    long long at = strtoll(s + n + 1, &end, 10);
    unsigned long long seed = 0;
    if (*end == ':') seed = strtoull(end + 1, &end, 10);
    if (at < 1 || *end) break;
    lr_fault_set((lr_fault_kind)k, at);
    if (seed) lr_fault_seed(seed);
    return 1;
  }
  fprintf(stderr,
          "linrec: ignoring LINREC_FAULT='%s' (expected kind:k[:seed], kind one of write, fsync, "
          "rename, malloc, io, crash; k >= 1)\n",
          s);
  return 0;
}

static uint64_t next_rand(void) { // xorshift64*
  g.rng ^= g.rng >> 12;
  g.rng ^= g.rng << 25;
  g.rng ^= g.rng >> 27;
  return g.rng * 0x2545f4914f6cdd1dull;
}

// Count a call of `kind`; 1 if it must fail, 2 if the process must crash.
static int hit(lr_fault_kind kind) {
  if (!g.env_read) lr_fault_from_env();
  g.calls[kind]++;
  if (kind != LR_FAULT_MALLOC) g.calls[LR_FAULT_IO]++;
  if (g.armed == LR_FAULT_NONE || g.fired) return 0;
  int64_t n;
  if (g.armed == LR_FAULT_IO || g.armed == LR_FAULT_CRASH)
    n = kind == LR_FAULT_MALLOC ? -1 : g.calls[LR_FAULT_IO];
  else
    n = kind == g.armed ? g.calls[kind] : -1;
  if (n != g.at) return 0;
  g.fired = 1;
  return g.armed == LR_FAULT_CRASH ? 2 : 1;
}

// ---------------------------------------------------------------------------
// wrappers

ssize_t lr_fault_write(int fd, const void *buf, size_t n) {
  int h = hit(LR_FAULT_WRITE);
  if (h == 1) {
    errno = EIO;
    return -1;
  }
  if (h == 2) {
    if (n) (void)!write(fd, buf, (size_t)(next_rand() % n));
    _exit(LR_FAULT_CRASH_EXIT);
  }
  return write(fd, buf, n);
}

ssize_t lr_fault_pwrite(int fd, const void *buf, size_t n, off_t off) {
  int h = hit(LR_FAULT_WRITE);
  if (h == 1) {
    errno = EIO;
    return -1;
  }
  if (h == 2) {
    if (n) (void)!pwrite(fd, buf, (size_t)(next_rand() % n), off);
    _exit(LR_FAULT_CRASH_EXIT);
  }
  return pwrite(fd, buf, n, off);
}

int lr_fault_fsync(int fd) {
  int h = hit(LR_FAULT_FSYNC);
  if (h == 1) {
    errno = EIO;
    return -1;
  }
  if (h == 2) {
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
      (void)!ftruncate(fd, (off_t)(next_rand() % ((uint64_t)st.st_size + 1)));
    _exit(LR_FAULT_CRASH_EXIT);
  }
  return fsync(fd);
}

int lr_fault_rename(const char *from, const char *to) {
  int h = hit(LR_FAULT_RENAME);
  if (h == 1) {
    errno = EIO;
    return -1;
  }
  if (h == 2) {
    if (next_rand() & 1) (void)!rename(from, to);
    _exit(LR_FAULT_CRASH_EXIT);
  }
  return rename(from, to);
}

void *lr_fault_malloc(size_t n) {
  if (hit(LR_FAULT_MALLOC)) return NULL;
  return malloc(n ? n : 1);
}
