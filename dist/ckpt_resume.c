// ckpt_resume.c: choosing, checking and loading a checkpoint to resume from
// (ckpt_resume.h).
#include "ckpt_resume.h"

#include <dirent.h>   // opendir, readdir
#include <errno.h>    // errno, ENOENT
#include <stdio.h>    // fprintf, snprintf, rename
#include <stdlib.h>   // free
#include <string.h>   // memcpy, strcmp, strlen, strrchr
#include <sys/stat.h> // stat, lstat
#include <time.h>     // time

#include "comm.h"   // dist_agree, dist_allgather, dist_rank, dist_size
#include "config.h" // config_hash_text
#include "lr.h"

// ---- small helpers --------------------------------------------------------------------

// The step of a directory name "step-" + 8..18 digits, or -1 (as io/ckpt.c).
static int64_t step_of(const char *name) {
  if (strncmp(name, "step-", 5) != 0) return -1;
  size_t n = strlen(name + 5);
  if (n < 8 || n > 18) return -1;
  int64_t s = 0;
  for (const char *p = name + 5; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    s = 10 * s + (*p - '0');
  }
  return s;
}

// 1 if root/name holds a manifest.json entry of any kind: a committed
// checkpoint, or a damaged one (even a symlink loop or a FIFO): a later
// write of that step would refuse the directory either way.
static int has_manifest(const char *root, const char *name) {
  char p[4096 + 64];
  snprintf(p, sizeof p, "%s/%s/%s", root, name, CKPT_MANIFEST_NAME);
  struct stat st;
  return lstat(p, &st) == 0;
}

// Rank 0's string str[size] to every rank. Collective. LR_ERR_NOMEM, LR_ERR_MPI.
static int bcast0_str(char *str, size_t size) {
  const int P = dist_size();
  if (P == 1) return LR_OK;
  char *all = lr_calloc((size_t)P * size, 1, "broadcast buffer");
  int rc = dist_agree(all ? LR_OK : LR_ERR_NOMEM);
  if (rc == LR_OK) rc = dist_allgather(all, str, (int64_t)size, LR_DTYPE_BYTE);
  if (rc == LR_OK) memcpy(str, all, size), str[size - 1] = '\0';
  lr_free(all);
  return rc;
}

// ---- find -----------------------------------------------------------------------------

static void print_report(const ckpt_report *r, const char *prefix) {
  for (int k = 0; k < r->n; k++) fprintf(stderr, "linrec: %s%s\n", prefix, r->line[k]);
  if (r->n_dropped) fprintf(stderr, "linrec: %s(%d more lines)\n", prefix, r->n_dropped);
  fflush(stderr);
}

static int find0(const char *root, const char *arg, char *out, size_t size) {
  out[0] = '\0';
  if (!strcmp(arg, "latest")) {
    ckpt_report skipped;
    int rc = ckpt_find_latest_valid(root, out, size, &skipped);
    print_report(&skipped, "resume: ");
    if (rc != LR_OK) {
      lr_error_trace(__FILE__, __LINE__, __func__);
      return rc;
    }
    if (!out[0])
      printf("resume: no complete checkpoint in %s: starting from scratch\n", root);
    else if (skipped.n)
      fprintf(stderr, "linrec: resume: falling back to %s, the newest checkpoint that verifies\n",
              out);
    fflush(stdout);
    fflush(stderr);
    return LR_OK;
  }
  struct stat st;
  char p[4096 + 64];
  snprintf(p, sizeof p, "%s/%s", arg, CKPT_MANIFEST_NAME);
  if (stat(p, &st) != 0) {
    snprintf(p, sizeof p, "%s/%s", arg, CKPT_LATEST_NAME);
    LR_CHECK(stat(p, &st) != 0, LR_ERR_CONFIG,
             "--resume %s: a directory of checkpoints, not a checkpoint\nHINT: --resume latest "
             "--set train.checkpoint.dir=%s, or --resume %s/step-NNNNNNNN",
             arg, arg, arg);
  }
  ckpt_report problems;
  int rc = ckpt_verify(arg, 1, &problems);
  if (rc != LR_OK) {
    fprintf(stderr, "linrec: --resume %s: the checkpoint does not verify:\n", arg);
    print_report(&problems, "  ");
    lr_error_trace(__FILE__, __LINE__, __func__);
    return rc;
  }
  LR_CHECK(strlen(arg) < size, LR_ERR_CONFIG, "--resume: path too long: %.60s...", arg);
  memcpy(out, arg, strlen(arg) + 1);
  return LR_OK;
}

int ckpt_resume_find(const char *root, const char *arg, char *dir, size_t size) {
  char buf[4096] = "";
  int rc = dist_rank() == 0 ? find0(root, arg, buf, sizeof buf) : LR_OK;
  LR_CALL(dist_agree(rc));
  LR_CALL(bcast0_str(buf, sizeof buf));
  LR_CHECK(strlen(buf) < size, LR_ERR_CONFIG, "--resume: path too long: %.60s...", buf);
  memcpy(dir, buf, strlen(buf) + 1);
  return LR_OK;
}

// ---- fresh start and adoption ---------------------------------------------------------

// The newest complete step directory under root into name[32] ("" if none).
static int newest_complete(const char *root, char *name) {
  name[0] = '\0';
  DIR *d = opendir(root);
  if (!d && errno == ENOENT) return LR_OK;
  LR_CHECK(d, LR_ERR_IO, "open directory %s: %s", root, strerror(errno));
  int64_t best = -1;
  for (struct dirent *e; (e = readdir(d));) {
    int64_t s = step_of(e->d_name);
    if (s > best && has_manifest(root, e->d_name)) // step_of: at most 23 bytes
      best = s, memcpy(name, e->d_name, strlen(e->d_name) + 1);
  }
  closedir(d);
  return LR_OK;
}

static int check_fresh0(const char *root) {
  char name[32];
  LR_CALL(newest_complete(root, name));
  LR_CHECK(!name[0], LR_ERR_CONFIG,
           "%s already holds checkpoints of an earlier run (newest: %s); a new run does not mix "
           "its checkpoints with them\nHINT: continue that run with --resume latest, or give this "
           "one another --out or train.checkpoint.dir (or remove the old checkpoints)",
           root, name);
  return LR_OK;
}

int ckpt_resume_check_fresh(const char *root) {
  return dist_agree(dist_rank() == 0 ? check_fresh0(root) : LR_OK);
}

static int adopt0(const char *root, const char *dir, int64_t step) {
  DIR *d = opendir(root);
  if (!d && errno == ENOENT) return LR_OK;
  LR_CHECK(d, LR_ERR_IO, "open directory %s: %s", root, strerror(errno));
  char names[64][32];
  int n = 0, rc = LR_OK, more = 0;
  for (struct dirent *e; (e = readdir(d));) {
    int64_t s = step_of(e->d_name);
    if (s <= step || !has_manifest(root, e->d_name)) continue;
    if (n < 64) memcpy(names[n++], e->d_name, strlen(e->d_name) + 1); // <= 23 bytes
    else more = 1;
  }
  closedir(d);
  long long now = (long long)time(NULL);
  for (int k = 0; k < n && rc == LR_OK; k++) {
    char from[4096 + 64], to[4096 + 128];
    snprintf(from, sizeof from, "%s/%s", root, names[k]);
    snprintf(to, sizeof to, "%s.abandoned-%lld", from, now);
    if (rename(from, to) != 0)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "rename %s -> %s: %s", from, to, strerror(errno));
    else
      fprintf(stderr,
              "linrec: resume: set aside %s (newer than the resumed step %lld) as %s; the run "
              "writes its own checkpoint of that step\n",
              names[k], (long long)step, to);
  }
  if (rc != LR_OK) return rc;
  LR_CHECK(!more, LR_ERR_STATE,
           "%s: more than 64 checkpoints newer than step %lld: set them aside by hand", root,
           (long long)step);
  // `latest` -> dir when dir is a step directory of root.
  const char *base = strrchr(dir, '/');
  base = base ? base + 1 : dir;
  char here[4096 + 64];
  snprintf(here, sizeof here, "%s/%s", root, base);
  struct stat a, b;
  if (step_of(base) >= 0 && stat(dir, &a) == 0 && stat(here, &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    LR_CALL(ckpt_update_latest(root, base));
  return LR_OK;
}

int ckpt_resume_adopt(const char *root, const char *dir, int64_t step) {
  return dist_agree(dist_rank() == 0 ? adopt0(root, dir, step) : LR_OK);
}

// ---- open and load --------------------------------------------------------------------

// The config check of ckpt_resume_open. Local.
static int check_config(const char *dir, const lr_config *c, const ckpt_manifest *m) {
  char *json = config_to_json_trajectory(c);
  LR_CHECK(json, LR_ERR_NOMEM, "%s: config check: out of memory", dir);
  uint64_t want = config_hash_text(json);
  free(json);
  if (m->config_hash == want) return LR_OK;
  char diff[1024] = "";
  lr_config saved;
  config_defaults(&saved);
  if (config_load_json(&saved, m->config_json, "the checkpoint's config") != LR_OK) {
    snprintf(diff, sizeof diff, "it was written by a linrec with other config keys (%.300s)",
             lr_error_msg());
    lr_error_clear();
  } else if (!config_diff(&saved, c, 1, "checkpoint", "this run", 6, diff, sizeof diff)) {
    // the same values in another form: written by a linrec with fewer keys
    // (a key added since takes its default, which is this run's value)
    return LR_OK;
  }
  return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                  "%s: checkpoint written by another config (hash %016llx, this run's "
                  "%016llx): %s\nHINT: resume with the config that wrote it (`linrec ckpt "
                  "inspect` prints it); these keys may differ: log.*, train.checkpoint.*, "
                  "train.epochs, train.max_steps, train.threads, eval.batch_size, dist.*, "
                  "bench.*",
                  dir, (unsigned long long)m->config_hash, (unsigned long long)want, diff);
}

int ckpt_resume_open(const char *dir, const lr_config *c, ckpt_manifest *m) {
  int rc = ckpt_manifest_read(dir, m);
  if (rc == LR_OK) rc = check_config(dir, c, m);
  if (rc == LR_OK) rc = ckpt_loop_read(dir, m); // versions 1-2: from the dense shard
  if (rc != LR_OK) ckpt_manifest_free(m);
  return dist_agree(rc);
}

// One wanted group against the manifest's: kind, width, arrays and rows
// (versions 1-2: the dense group carries the loop block after the arena).
static int check_group(const char *dir, const ckpt_manifest *m, const ckpt_resume_group *w) {
  const ckpt_group *g = ckpt_manifest_group(m, w->name);
  LR_CHECK(g, LR_ERR_CONFIG,
           "%s: the checkpoint has no group %s\nHINT: it was written for another model "
           "(model.arch) or by another version of linrec train",
           dir, w->name);
  const int64_t rows = w->n_rows + (m->version < 3 && w->kind == CKPT_KIND_DENSE ? CKPT_LOOP_FLOATS
                                                                                 : 0);
  LR_CHECK(g->kind == w->kind && g->width == w->width && g->n_arrays == w->n_arrays &&
               g->n_rows == rows,
           LR_ERR_CONFIG,
           "%s: the checkpoint's group %s is %lld x %lld in %d arrays, this run's %lld x %lld in "
           "%d\nHINT: the data behind data.path (its items or users) or the model changed since "
           "the checkpoint was written",
           dir, w->name, (long long)g->n_rows, (long long)g->width, g->n_arrays, (long long)rows,
           (long long)w->width, w->n_arrays);
  return LR_OK;
}

static int load_local(const char *dir, const ckpt_manifest *m, const ckpt_resume_group *g,
                      int n) {
  for (int i = 0; i < m->n_groups; i++) {
    int wanted = 0;
    for (int k = 0; k < n; k++) wanted |= !strcmp(g[k].name, m->groups[i].name);
    LR_CHECK(wanted, LR_ERR_CONFIG,
             "%s: the checkpoint has a group %s this run does not\nHINT: it was written for "
             "another model (model.arch)",
             dir, m->groups[i].name);
  }
  for (int k = 0; k < n; k++) {
    LR_CALL(check_group(dir, m, &g[k]));
    LR_CALL(ckpt_load_rows(dir, m, g[k].name, g[k].lo, g[k].hi, g[k].arrays, g[k].n_arrays));
  }
  int64_t t = ckpt_manifest_dense_step(m);
  LR_CHECK(t == m->step, LR_ERR_CORRUPT,
           "%s: the dense shard's Adam step is %lld, the manifest's step %lld", dir, (long long)t,
           (long long)m->step);
  return LR_OK;
}

int ckpt_resume_load(const char *dir, const ckpt_manifest *m, const ckpt_resume_group *g, int n) {
  return dist_agree(load_local(dir, m, g, n));
}
