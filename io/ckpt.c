// ckpt.c: checkpoints as directories (ckpt.h): creating a step directory,
// `latest`, verifying, finding the newest valid checkpoint, pruning, loading
// re-cut row ranges; plus the small helpers the ckpt*.c files share
// (ckpt_internal.h). Not here: the shard file format (ckpt_shard.c), the
// manifest (ckpt_manifest.c), any MPI (dist/ sequences the ranks).
#include <dirent.h>   // opendir, readdir
#include <errno.h>    // errno, ENOENT, EEXIST, EINVAL
#include <stdarg.h>   // va_list
#include <stdio.h>    // snprintf, rename
#include <stdlib.h>   // malloc, free, qsort
#include <string.h>   // strcmp, strlen, strchr, strerror, memcpy
#include <sys/stat.h> // stat, mkdir
#include <time.h>     // clock_gettime, time
#include <unistd.h>   // close, unlink, rmdir
#include <zlib.h>     // crc32

#include "afile.h" // afile_write_whole, afile_fsync_dir
#include "ckpt_internal.h"
#include "file.h"
#include "le.h" // le_get_u32, le_get_f64
#include "lr.h"

#define LATEST_MAX 64 // bytes of the latest file we accept

// ---------------------------------------------------------------------------
// shared helpers (ckpt_internal.h)

int ckpt_path_(char *out, size_t size, const char *dir, const char *name) {
  int n = snprintf(out, size, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= size) {
    if (size) out[0] = '\0';
    return lr_error(LR_ERR_ARG, __FILE__, __LINE__, "path too long: %s/%s", dir, name);
  }
  return LR_OK;
}

int ckpt_name_ok_(const char *name) {
  size_t n = strlen(name);
  if (n < 1 || n >= CKPT_NAME_MAX || name[0] == '.' || strstr(name, "..")) return 0;
  for (size_t k = 0; k < n; k++) {
    char c = name[k];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

uint32_t ckpt_crc32_(uint32_t c, const void *p, size_t n) {
  const unsigned char *b = p;
  while (n > 0) { // zlib takes uInt lengths
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = (uint32_t)crc32(c, b, k);
    b += k, n -= k;
  }
  return c;
}

double ckpt_now_(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ---------------------------------------------------------------------------
// reports

static void report_reset(ckpt_report *r) {
  if (r) r->n = r->n_dropped = 0;
}

// Add a line (only up to the first newline of the formatted text: HINTs stay
// in the error message).
__attribute__((format(printf, 2, 3))) static void report_add(ckpt_report *r, const char *fmt, ...) {
  if (!r) return;
  if (r->n == CKPT_REPORT_LINES) {
    r->n_dropped++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->line[r->n], sizeof r->line[r->n], fmt, ap);
  va_end(ap);
  char *nl = strchr(r->line[r->n], '\n');
  if (nl) *nl = '\0';
  r->n++;
}

// ---------------------------------------------------------------------------
// names and directories

void ckpt_step_name(char *buf, size_t size, int64_t step) {
  snprintf(buf, size, "step-%08lld", (long long)step);
}

void ckpt_shard_name(char *buf, const char *group, int rank) {
  snprintf(buf, CKPT_NAME_MAX, "%s-r%04d.zst", group, rank);
}

int ckpt_group_name_ok(const char *name) {
  size_t n = 0;
  for (; name[n]; n++)
    if (!((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= 'A' && name[n] <= 'Z') ||
          (name[n] >= '0' && name[n] <= '9') || name[n] == '_'))
      return 0;
  return n >= 1 && n < CKPT_GROUP_MAX;
}

// The step of a directory named like ckpt_step_name (8 to 18 digits), or -1.
static int64_t parse_step(const char *name) {
  if (strncmp(name, "step-", 5) != 0) return -1;
  const char *d = name + 5;
  size_t n = strlen(d);
  if (n < 8 || n > 18) return -1;
  int64_t s = 0;
  for (size_t k = 0; k < n; k++) {
    if (d[k] < '0' || d[k] > '9') return -1;
    s = 10 * s + (d[k] - '0');
  }
  return s;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_real_dir(const char *path) { // not a symlink to one
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

// mkdir -p, fsync'ing the parent of each directory it creates.
static int make_dirs(const char *path) {
  char p[4096];
  size_t n = strlen(path);
  LR_CHECK(n > 0 && n < sizeof p, LR_ERR_ARG, "checkpoint root '%s': empty or too long", path);
  memcpy(p, path, n + 1);
  for (size_t k = 1; k <= n; k++) {
    if (p[k] != '/' && p[k] != '\0') continue;
    char save = p[k];
    p[k] = '\0';
    if (mkdir(p, 0755) == 0) {
      char parent[4096];
      const char *slash = strrchr(p, '/');
      if (!slash)
        snprintf(parent, sizeof parent, ".");
      else if (slash == p)
        snprintf(parent, sizeof parent, "/");
      else
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - p), p);
      LR_CALL(afile_fsync_dir(parent));
    } else {
      LR_CHECK(errno == EEXIST && is_dir(p), LR_ERR_IO, "mkdir %s: %s", p,
               errno == EEXIST ? "exists and is not a directory" : strerror(errno));
    }
    p[k] = save;
  }
  return LR_OK;
}

// Remove the *.zst and *.tmp files of an incomplete step directory.
static int empty_stale(const char *dir) {
  DIR *d = opendir(dir);
  LR_CHECK(d, LR_ERR_IO, "open directory %s: %s", dir, strerror(errno));
  int rc = LR_OK;
  for (struct dirent *e; rc == LR_OK && (e = readdir(d));) {
    size_t n = strlen(e->d_name);
    if (n < 4 || (strcmp(e->d_name + n - 4, ".zst") != 0 && strcmp(e->d_name + n - 4, ".tmp") != 0))
      continue;
    char p[4096];
    rc = ckpt_path_(p, sizeof p, dir, e->d_name);
    if (rc == LR_OK && unlink(p) != 0)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "remove stale %s: %s", p, strerror(errno));
  }
  closedir(d);
  return rc;
}

int ckpt_dir_create(const char *root, int64_t step, char *dir, size_t dir_size) {
  LR_CHECK(root && dir && dir_size > 0 && step >= 0, LR_ERR_ARG, "ckpt_dir_create: bad arguments");
  dir[0] = '\0';
  char name[32], path[4096], man[4096];
  ckpt_step_name(name, sizeof name, step);
  LR_CALL(ckpt_path_(path, sizeof path, root, name));
  LR_CALL(ckpt_path_(man, sizeof man, path, CKPT_MANIFEST_NAME));
  LR_CHECK(strlen(path) < dir_size, LR_ERR_ARG, "%s: path longer than the %zu-byte buffer", path,
           dir_size);
  LR_CALL(make_dirs(root));
  if (mkdir(path, 0755) == 0) {
    LR_CALL(afile_fsync_dir(root));
  } else {
    LR_CHECK(errno == EEXIST && is_dir(path), LR_ERR_IO, "mkdir %s: %s", path,
             errno == EEXIST ? "exists and is not a directory" : strerror(errno));
    LR_CHECK(!exists(man), LR_ERR_STATE,
             "%s already holds a complete checkpoint of step %lld; it is never overwritten\n"
             "HINT: resume from it, or remove it first if it is unwanted",
             path, (long long)step);
    LR_CALL(empty_stale(path));
  }
  memcpy(dir, path, strlen(path) + 1);
  return LR_OK;
}

typedef struct {
  int64_t step;
  char name[32];
} step_dir;

static int cmp_step(const void *a, const void *b) {
  const step_dir *x = a, *y = b;
  if (x->step != y->step) return x->step < y->step ? -1 : 1;
  return strcmp(x->name, y->name);
}

// The step directories under root, ascending. A missing root is empty.
static int list_steps(const char *root, step_dir **out, int *n_out) {
  *out = NULL;
  *n_out = 0;
  DIR *d = opendir(root);
  if (!d && errno == ENOENT) return LR_OK;
  LR_CHECK(d, LR_ERR_IO, "open directory %s: %s", root, strerror(errno));
  step_dir *v = NULL;
  int n = 0, cap = 0, rc = LR_OK;
  for (struct dirent *e; (e = readdir(d));) {
    int64_t s = parse_step(e->d_name);
    char p[4096];
    if (s < 0 || ckpt_path_(p, sizeof p, root, e->d_name) != LR_OK || !is_real_dir(p)) {
      lr_error_clear(); // an overlong name is simply not ours
      continue;
    }
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      step_dir *w = realloc(v, (size_t)cap * sizeof *w);
      if (!w) {
        rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory listing", root);
        break;
      }
      v = w;
    }
    v[n].step = s;
    memcpy(v[n].name, e->d_name, strlen(e->d_name) + 1); // <= 23 bytes: parse_step
    n++;
  }
  closedir(d);
  if (rc != LR_OK) {
    free(v);
    return rc;
  }
  if (n) qsort(v, (size_t)n, sizeof *v, cmp_step);
  *out = v;
  *n_out = n;
  return LR_OK;
}

// ---------------------------------------------------------------------------
// latest

// A directory named `latest` (nothing we write) would make the rename
// below fail: rename it to latest.not-a-file-<unix time> (kept, never
// deleted; ckpt_read_latest's message announced it). LR_ERR_IO.
static int move_aside_dir_latest(const char *root) {
  char path[4096], aside[4096 + 64];
  LR_CALL(ckpt_path_(path, sizeof path, root, CKPT_LATEST_NAME));
  if (!is_real_dir(path)) return LR_OK;
  snprintf(aside, sizeof aside, "%s.not-a-file-%lld", path, (long long)time(NULL));
  LR_CHECK(rename(path, aside) == 0, LR_ERR_IO,
           "%s is a directory, not the file naming the newest checkpoint; moving it aside as "
           "%s failed: %s",
           path, aside, strerror(errno));
  return LR_OK;
}

int ckpt_update_latest(const char *root, const char *step_name) {
  LR_CHECK(root && step_name && parse_step(step_name) >= 0, LR_ERR_ARG,
           "ckpt_update_latest: '%s' is not a step directory name", step_name ? step_name : "");
  char path[4096], text[LATEST_MAX];
  LR_CALL(ckpt_path_(path, sizeof path, root, step_name));
  LR_CHECK(is_dir(path), LR_ERR_ARG, "ckpt_update_latest: %s is not a directory", path);
  LR_CALL(move_aside_dir_latest(root));
  int n = snprintf(text, sizeof text, "%s\n", step_name);
  // A failed directory fsync leaves the new `latest` in place: it names a
  // committed checkpoint either way, and removing it would lose the old one.
  char latest[4096];
  LR_CALL(ckpt_path_(latest, sizeof latest, root, CKPT_LATEST_NAME));
  LR_CALL(afile_write_whole(latest, text, (size_t)n, 0, CKPT_HINT_SPACE));
  return LR_OK;
}

int ckpt_read_latest(const char *root, char *name, size_t size) {
  LR_CHECK(root && name && size > 0, LR_ERR_ARG, "ckpt_read_latest: bad arguments");
  name[0] = '\0';
  char path[4096], text[LATEST_MAX + 1];
  LR_CALL(ckpt_path_(path, sizeof path, root, CKPT_LATEST_NAME));
  struct stat st;
  int fd = file_open_regular(path, &st);
  if (fd == FILE_NOT_REGULAR)
    return LR_CORRUPT(path, 0,
                      "is %s, not a file naming a step directory\nHINT: resume ignores it and "
                      "picks the newest valid checkpoint; the next `latest` written moves it "
                      "aside as " CKPT_LATEST_NAME ".not-a-file-<unix time>",
                      file_type_name(&st));
  if (fd < 0 && errno == ENOENT) return LR_OK;
  LR_CHECK(fd >= 0, LR_ERR_IO, "open %s: %s", path, strerror(errno));
  ssize_t n = read(fd, text, LATEST_MAX);
  int e = errno;
  close(fd);
  LR_CHECK(n >= 0, LR_ERR_IO, "read %s: %s", path, strerror(e));
  text[n] = '\0';
  if (n > 0 && text[n - 1] == '\n') text[--n] = '\0';
  if (parse_step(text) < 0 || strlen(text) >= size)
    return LR_CORRUPT(path, 0,
                      "expected a step directory name (step-NNNNNNNN), found %zd unusable bytes\n"
                      "HINT: resume ignores `latest` and picks the newest valid checkpoint; "
                      "`ckpt_update_latest` rewrites it",
                      n);
  memcpy(name, text, (size_t)n + 1);
  return LR_OK;
}

// ---------------------------------------------------------------------------
// verify, find, prune

// Shallow check of one shard: it exists with the recorded size.
static int shard_present(const char *dir, const ckpt_shard_entry *e) {
  char p[4096];
  LR_CALL(ckpt_path_(p, sizeof p, dir, e->file));
  struct stat st;
  if (stat(p, &st) != 0) {
    if (errno == ENOENT)
      return LR_CORRUPT(p, 0, "shard listed in the manifest is missing" CKPT_HINT_DAMAGED);
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "stat %s: %s", p, strerror(errno));
  }
  if (!S_ISREG(st.st_mode))
    return LR_CORRUPT(p, 0,
                      "shard listed in the manifest is %s, not a regular file" CKPT_HINT_DAMAGED,
                      file_type_name(&st));
  if ((uint64_t)st.st_size != e->bytes)
    return LR_CORRUPT(p, (int64_t)st.st_size,
                      "file is %lld bytes, manifest says %llu%s" CKPT_HINT_DAMAGED,
                      (long long)st.st_size, (unsigned long long)e->bytes,
                      (uint64_t)st.st_size < e->bytes ? " (truncated)" : "");
  return LR_OK;
}

// A checkpoint directory named like a step directory must carry the step of
// its manifest: a copy of step 5 renamed step-00000025 is not step 25.
// LR_ERR_CORRUPT naming the manifest; LR_ERR_ARG if the path is too long.
static int check_dir_step(const char *dir, int64_t step) {
  char base[4096];
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--; // "step-00000025/" names it too
  size_t b = n;
  while (b > 0 && dir[b - 1] != '/')
    b--;
  LR_CHECK(n - b < sizeof base, LR_ERR_ARG, "path too long: %s", dir);
  memcpy(base, dir + b, n - b);
  base[n - b] = '\0';
  int64_t named = parse_step(base);
  if (named < 0 || named == step) return LR_OK;
  char man[4096];
  LR_CALL(ckpt_path_(man, sizeof man, dir, CKPT_MANIFEST_NAME));
  return LR_CORRUPT(man, 0,
                    "the manifest records step %lld, but its directory is named %s (a "
                    "checkpoint copied or renamed?)" CKPT_HINT_DAMAGED,
                    (long long)step, base);
}

int ckpt_verify(const char *dir, int deep, ckpt_report *report) {
  report_reset(report);
  LR_CHECK(dir, LR_ERR_ARG, "ckpt_verify: NULL directory");
  ckpt_manifest m;
  int rc = ckpt_manifest_read(dir, &m);
  if (rc == LR_OK && (rc = check_dir_step(dir, m.step)) != LR_OK) ckpt_manifest_free(&m);
  if (rc != LR_OK) {
    report_add(report, "%s", lr_error_msg());
    return rc;
  }
  int first = LR_OK, n_bad = 0;
  char first_msg[1024] = "";
  for (int k = 0; k < m.n_shards; k++) {
    rc = deep ? ckpt_shard_read(dir, &m.shards[k], 0, 0, NULL) : shard_present(dir, &m.shards[k]);
    if (rc == LR_OK) continue;
    report_add(report, "%s", lr_error_msg());
    if (first == LR_OK) {
      first = rc;
      snprintf(first_msg, sizeof first_msg, "%s", lr_error_msg());
    }
    n_bad++;
    lr_error_clear();
  }
  ckpt_manifest_free(&m);
  if (first != LR_OK) {
    if (n_bad > 1) {
      char *nl = strchr(first_msg, '\n'); // the count goes before the HINT
      char tail[512] = "";
      if (nl) {
        snprintf(tail, sizeof tail, "%s", nl);
        *nl = '\0';
      }
      size_t n = strlen(first_msg);
      snprintf(first_msg + n, sizeof first_msg - n, " (and %d more damaged shards)%s", n_bad - 1,
               tail);
    }
    return lr_error(first, __FILE__, __LINE__, "%s", first_msg);
  }
  return LR_OK;
}

int ckpt_find_latest_valid(const char *root, char *dir, size_t size, ckpt_report *skipped) {
  report_reset(skipped);
  LR_CHECK(root && dir && size > 0, LR_ERR_ARG, "ckpt_find_latest_valid: bad arguments");
  dir[0] = '\0';
  step_dir *v;
  int n;
  LR_CALL(list_steps(root, &v, &n));
  char latest[32];
  if (ckpt_read_latest(root, latest, sizeof latest) != LR_OK) {
    report_add(skipped, "ignoring `latest`: %s", lr_error_msg());
    lr_error_clear();
    latest[0] = '\0';
  }
  int n_damaged = 0, rc = LR_OK;
  char newest_bad[1024] = "";
  for (int i = n - 1; i >= 0; i--) {
    char p[4096], man[4096];
    if (ckpt_path_(p, sizeof p, root, v[i].name) != LR_OK ||
        ckpt_path_(man, sizeof man, p, CKPT_MANIFEST_NAME) != LR_OK) {
      rc = LR_ERR_ARG;
      break;
    }
    const char *tag = strcmp(v[i].name, latest) ? "" : " (named by `latest`)";
    if (!exists(man)) {
      report_add(skipped,
                 "skipped %s%s: incomplete (no manifest.json: interrupted before its commit)",
                 v[i].name, tag);
      continue;
    }
    ckpt_report problems;
    if (ckpt_verify(p, 1, &problems) == LR_OK) {
      if (strlen(p) >= size) {
        rc = LR_ERR_ARG;
        break;
      }
      memcpy(dir, p, strlen(p) + 1);
      if (latest[0] && strcmp(latest, v[i].name) != 0)
        report_add(skipped, "`latest` names %s, but %s is the newest valid checkpoint", latest,
                   v[i].name);
      free(v);
      return LR_OK;
    }
    if (!n_damaged) snprintf(newest_bad, sizeof newest_bad, "%s", lr_error_msg());
    report_add(skipped, "skipped %s%s: damaged: %s", v[i].name, tag, lr_error_msg());
    for (int k = 1; k < problems.n; k++)
      report_add(skipped, "  also: %s", problems.line[k]);
    lr_error_clear();
    n_damaged++;
  }
  free(v);
  LR_CHECK(rc == LR_OK, rc, "%s: path too long", root);
  if (n_damaged == 0) return LR_OK; // nothing was ever committed here
  return lr_error(LR_ERR_CORRUPT, __FILE__, __LINE__,
                  "%s: none of the %d complete checkpoints verifies; the newest: %s", root,
                  n_damaged, newest_bad);
}

// Remove the checkpoint directory root/name: manifest first (so it stops
// being a checkpoint at once), then its files, then the directory.
static int remove_ckpt_dir(const char *root, const char *name) {
  char dir[4096], p[4096];
  LR_CALL(ckpt_path_(dir, sizeof dir, root, name));
  LR_CALL(ckpt_path_(p, sizeof p, dir, CKPT_MANIFEST_NAME));
  if (unlink(p) == 0)
    LR_CALL(afile_fsync_dir(dir));
  else
    LR_CHECK(errno == ENOENT, LR_ERR_IO, "remove %s: %s", p, strerror(errno));
  DIR *d = opendir(dir);
  LR_CHECK(d, LR_ERR_IO, "open directory %s: %s", dir, strerror(errno));
  int rc = LR_OK;
  for (struct dirent *e; rc == LR_OK && (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    rc = ckpt_path_(p, sizeof p, dir, e->d_name);
    if (rc != LR_OK) break;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__,
                    "%s holds a subdirectory (%s): not ours, left alone", dir, e->d_name);
    else if (unlink(p) != 0 && errno != ENOENT)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "remove %s: %s", p, strerror(errno));
  }
  closedir(d);
  if (rc != LR_OK) return rc;
  LR_CHECK(rmdir(dir) == 0, LR_ERR_IO, "rmdir %s: %s", dir, strerror(errno));
  LR_CALL(afile_fsync_dir(root));
  return LR_OK;
}

enum { ST_GOOD, ST_INCOMPLETE, ST_DAMAGED };

int ckpt_prune(const char *root, int keep_last, ckpt_report *removed) {
  report_reset(removed);
  LR_CHECK(root && keep_last >= 1, LR_ERR_ARG, "ckpt_prune: keep_last must be >= 1, got %d",
           keep_last);
  step_dir *v;
  int n;
  LR_CALL(list_steps(root, &v, &n));
  char latest[32];
  if (ckpt_read_latest(root, latest, sizeof latest) != LR_OK) {
    lr_error_clear(); // keep_last still protects the newest ones
    latest[0] = '\0';
  }
  int *state = calloc((size_t)(n ? n : 1), sizeof *state);
  if (!state) {
    free(v);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", root);
  }
  int newest_good = -1, rc = LR_OK;
  for (int i = 0; i < n && rc == LR_OK; i++) {
    char p[4096], man[4096];
    rc = ckpt_path_(p, sizeof p, root, v[i].name);
    if (rc == LR_OK) rc = ckpt_path_(man, sizeof man, p, CKPT_MANIFEST_NAME);
    if (rc != LR_OK) break;
    if (!exists(man))
      state[i] = ST_INCOMPLETE;
    else if (ckpt_verify(p, 0, NULL) == LR_OK)
      state[i] = ST_GOOD, newest_good = i;
    else
      state[i] = ST_DAMAGED, lr_error_clear();
  }
  int kept_good = 0;
  for (int i = n - 1; i >= 0 && rc == LR_OK; i--) {
    const char *why = NULL;
    if (state[i] == ST_GOOD && ++kept_good > keep_last) why = "older than the newest kept";
    if (!strcmp(v[i].name, latest)) continue;
    if (state[i] == ST_INCOMPLETE && i < newest_good) why = "incomplete (never committed)";
    if (state[i] == ST_DAMAGED && i < newest_good)
      why = "damaged (the manifest or a shard fails the checks)";
    if (!why) continue;
    rc = remove_ckpt_dir(root, v[i].name);
    if (rc == LR_OK) report_add(removed, "removed %s: %s", v[i].name, why);
  }
  char tmp[4096];
  if (rc == LR_OK && ckpt_path_(tmp, sizeof tmp, root, CKPT_LATEST_NAME ".tmp") == LR_OK &&
      unlink(tmp) == 0)
    report_add(removed, "removed stale %s", tmp);
  free(state);
  free(v);
  if (rc != LR_OK) lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
}

// ---------------------------------------------------------------------------
// loading

int ckpt_load_rows(const char *dir, const ckpt_manifest *m, const char *group, int64_t lo,
                   int64_t hi, float *const arrays[], int n_arrays) {
  LR_CHECK(dir && m && group, LR_ERR_ARG, "ckpt_load_rows: bad arguments");
  const ckpt_group *g = ckpt_manifest_group(m, group);
  LR_CHECK(g, LR_ERR_ARG, "ckpt_load_rows %s: no group %s", dir, group);
  LR_CHECK(0 <= lo && lo <= hi && hi <= g->n_rows, LR_ERR_ARG,
           "ckpt_load_rows %s: rows [%lld, %lld) outside group %s's 0..%lld", dir, (long long)lo,
           (long long)hi, group, (long long)g->n_rows);
  LR_CHECK(g->n_arrays == n_arrays, LR_ERR_ARG,
           "ckpt_load_rows %s: group %s holds %d arrays, the caller passes %d", dir, group,
           g->n_arrays, n_arrays);
  for (int k = 0; k < m->n_shards; k++) {
    const ckpt_shard_entry *e = &m->shards[k];
    if (strcmp(e->desc.group, group) || e->desc.hi <= lo || e->desc.lo >= hi) continue;
    LR_CALL(ckpt_shard_read(dir, e, lo, hi, arrays));
  }
  return LR_OK;
}

// The loop block's words (ckpt.h, versions 1-2).
#define LOOP_MAGIC 0x5354524cu // "LRTS"

int ckpt_loop_read(const char *dir, ckpt_manifest *m) {
  if (m->version >= 3) return LR_OK;
  const ckpt_group *g = ckpt_manifest_group(m, "dense");
  LR_CHECK(g && g->n_rows >= CKPT_LOOP_FLOATS && g->width == 1, LR_ERR_CORRUPT,
           "%s: no loop state block (the dense group has %lld rows)", dir,
           (long long)(g ? g->n_rows : 0));
  float blk[CKPT_LOOP_FLOATS];
  float *arrays[CKPT_MAX_ARRAYS] = {blk}; // array 0 only
  LR_CALL(ckpt_load_rows(dir, m, "dense", g->n_rows - CKPT_LOOP_FLOATS, g->n_rows, arrays,
                         g->n_arrays));
  const unsigned char *b = (const unsigned char *)blk; // float k holds bytes 4k..4k+3
  const uint32_t magic = le_get_u32(b), version = le_get_u32(b + 4);
  LR_CHECK(magic == LOOP_MAGIC && version == 1, LR_ERR_CORRUPT,
           "%s: the loop state block has magic %08x version %u, expected %08x version 1", dir,
           magic, version, LOOP_MAGIC);
  m->loop.epoch_loss = le_get_f64(b + 8);
  m->loop.best_score = le_get_f64(b + 16);
  m->loop.since_best = (int64_t)le_get_u64(b + 24);
  m->loop.best_epoch = (int64_t)le_get_u64(b + 32);
  return LR_OK;
}
