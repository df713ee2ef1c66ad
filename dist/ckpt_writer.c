// ckpt_writer.c: the background checkpoint writer of ckpt_writer.h.
#include "ckpt_writer.h"

#include <pthread.h>   // pthread_create, pthread_join, pthread_sigmask
#include <signal.h>    // sigset_t, SIGTERM, SIGUSR1, SIGINT
#include <stdatomic.h> // atomic_int
#include <stdio.h>     // snprintf, fprintf
#include <stdlib.h>    // calloc, free
#include <string.h>    // memcpy, memset, strlen, strstr

#include "comm.h"   // dist_agree, dist_allgather, dist_rank, dist_size, dist_wtime
#include "config.h" // config_hash_text
#include "lr.h"

// What each rank reports to rank 0 at commit (plain bytes: allgathered as such).
typedef struct {
  ckpt_shard_entry entry[CKPT_MAX_PARTS]; // its shards
  int32_t n_entries, pad;
  double raw_bytes, write_s, compress_s;
} shard_report;

struct ckpt_writer {
  ckpt_writer_cfg cfg; // root and config_json point to the copies below
  char *root, *config_json;
  float *snap[CKPT_MAX_PARTS][CKPT_MAX_ARRAYS]; // (hi-lo, width) each, a part's first n_snapshot
  shard_report *reports;        // (P) at commit
  // the pending checkpoint
  int pending, background, thread_live;
  pthread_t thread;
  atomic_int busy;
  ckpt_point pt;
  char name[32], dir[4096];
  const float *arrays[CKPT_MAX_PARTS][CKPT_MAX_ARRAYS]; // what the writer writes
  int rc;         // the writer's status
  char msg[1024]; // and its message
  shard_report rep;
  double start_s, snapshot_s;
};

static char *dup_str(const char *s, const char *what) {
  size_t n = strlen(s) + 1;
  char *p = lr_calloc(n, 1, what);
  if (p) memcpy(p, s, n);
  return p;
}

int ckpt_writer_init(ckpt_writer **out, const ckpt_writer_cfg *cfg) {
  *out = NULL;
  const ckpt_writer_cfg *c = cfg;
  int ok = c->root && c->root[0] && c->config_json && c->keep_last >= 1 && c->zstd_level >= 1 &&
           c->zstd_level <= 19 && c->n_groups >= 1 && c->n_groups <= CKPT_MAX_GROUPS &&
           c->n_parts >= 0 && c->n_parts <= CKPT_MAX_PARTS;
  for (int p = 0; ok && p < c->n_parts; p++) {
    const ckpt_part *q = &c->parts[p];
    ok = ckpt_group_name_ok(q->group) && 0 <= q->lo && q->lo <= q->hi && q->width >= 1 &&
         q->n_arrays >= 1 && q->n_arrays <= CKPT_MAX_ARRAYS && q->n_snapshot >= 0 &&
         q->n_snapshot <= q->n_arrays;
  }
  LR_CHECK(ok, LR_ERR_ARG, "ckpt_writer_init: bad configuration");
  LR_CHECK(strlen(c->root) + 32 < sizeof ((ckpt_writer *)0)->dir, LR_ERR_CONFIG,
           "train.checkpoint.dir: path too long: %.60s...", c->root);
  ckpt_writer *w = lr_calloc(1, sizeof *w, "checkpoint writer");
  if (!w) return LR_ERR_NOMEM;
  w->cfg = *c;
  w->root = dup_str(c->root, "checkpoint root");
  w->config_json = dup_str(c->config_json, "checkpoint config");
  w->reports = lr_calloc((size_t)dist_size(), sizeof *w->reports, "checkpoint reports");
  ok = w->root && w->config_json && w->reports;
  for (int p = 0; ok && c->background && p < c->n_parts; p++) {
    const size_t n = (size_t)(c->parts[p].hi - c->parts[p].lo) * (size_t)c->parts[p].width;
    for (int a = 0; ok && a < c->parts[p].n_snapshot; a++)
      ok = (w->snap[p][a] = lr_calloc(n ? n : 1, sizeof(float), "checkpoint snapshot")) != NULL;
  }
  if (!ok) {
    ckpt_writer_free(w);
    return LR_ERR_NOMEM;
  }
  w->cfg.root = w->root;
  w->cfg.config_json = w->config_json;
  atomic_init(&w->busy, 0);
  *out = w;
  return LR_OK;
}

void ckpt_writer_free(ckpt_writer *w) {
  if (!w) return;
  if (w->thread_live) pthread_join(w->thread, NULL);
  for (int p = 0; p < CKPT_MAX_PARTS; p++)
    for (int a = 0; a < CKPT_MAX_ARRAYS; a++) lr_free(w->snap[p][a]);
  lr_free(w->reports);
  lr_free(w->root);
  lr_free(w->config_json);
  lr_free(w);
}

int ckpt_writer_pending(const ckpt_writer *w) { return w && w->pending; }
int ckpt_writer_busy(const ckpt_writer *w) { return w && atomic_load(&w->busy); }

// ---- the writer (thread or caller) ----------------------------------------------------

// This rank's shard files, described in w->rep. No MPI.
static int write_shards(ckpt_writer *w) {
  const ckpt_writer_cfg *c = &w->cfg;
  double t0 = dist_wtime();
  shard_report *r = &w->rep;
  memset(r, 0, sizeof *r);
  for (int p = 0; p < c->n_parts; p++) {
    const ckpt_part *q = &c->parts[p];
    char name[CKPT_NAME_MAX];
    if (q->kind == CKPT_KIND_DENSE)
      snprintf(name, sizeof name, "%s", CKPT_DENSE_NAME);
    else
      ckpt_shard_name(name, q->group, dist_rank());
    ckpt_shard_desc d = {q->kind, q->n_arrays, q->lo, q->hi, q->width,
                         q->kind == CKPT_KIND_DENSE ? w->pt.adam_step : 0, {0}};
    memcpy(d.group, q->group, sizeof d.group);
    ckpt_file_info info;
    LR_CALL(ckpt_shard_write(w->dir, name, &d, w->arrays[p], c->zstd_level, &info));
    r->entry[r->n_entries++] = info.entry;
    r->raw_bytes += (double)info.raw_bytes;
    r->compress_s += info.compress_seconds;
  }
  r->write_s = dist_wtime() - t0;
  return LR_OK;
}

static void run_writer(ckpt_writer *w) {
  w->rc = write_shards(w);
  if (w->rc != LR_OK) snprintf(w->msg, sizeof w->msg, "%s", lr_error_msg());
  atomic_store(&w->busy, 0);
}

static void *writer_main(void *arg) {
  run_writer(arg);
  return NULL;
}

// Start the writer thread with the preemption signals blocked in it (they
// belong to the training thread, whose handler sets the stop flag). 0 if the
// thread could not be created.
static int spawn_writer(ckpt_writer *w) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int rc = pthread_create(&w->thread, NULL, writer_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc == 0;
}

// ---- start ----------------------------------------------------------------------------

int ckpt_writer_start(ckpt_writer *w, const ckpt_point *pt, const ckpt_source *src,
                      int background) {
  LR_CHECK(!w->pending, LR_ERR_STATE, "checkpoint of step %lld started while step %lld is pending",
           (long long)pt->step, (long long)w->pt.step);
  const ckpt_writer_cfg *c = &w->cfg;
  double t0 = dist_wtime();
  ckpt_step_name(w->name, sizeof w->name, pt->step);
  int rc = LR_OK;
  if (dist_rank() == 0) rc = ckpt_dir_create(w->root, pt->step, w->dir, sizeof w->dir);
  else snprintf(w->dir, sizeof w->dir, "%s/%s", w->root, w->name); // length checked at init
  LR_CALL(dist_agree(rc));
  w->pt = *pt;
  w->pending = 1;
  w->rc = LR_OK;
  w->msg[0] = '\0';
  double t1 = dist_wtime();
  w->start_s = t1 - t0;
  background = background && c->background;
  for (int p = 0; p < c->n_parts; p++) {
    const ckpt_part *q = &c->parts[p];
    const size_t bytes = (size_t)(q->hi - q->lo) * (size_t)q->width * sizeof(float);
    for (int a = 0; a < q->n_arrays; a++) {
      if (background && a < q->n_snapshot) {
        if (bytes) memcpy(w->snap[p][a], src->arrays[p][a], bytes);
        w->arrays[p][a] = w->snap[p][a];
      } else {
        w->arrays[p][a] = src->arrays[p][a];
      }
    }
  }
  w->snapshot_s = dist_wtime() - t1;
  atomic_store(&w->busy, 1);
  w->background = background && spawn_writer(w);
  w->thread_live = w->background;
  if (!w->background) run_writer(w);
  return LR_OK;
}

// ---- commit ---------------------------------------------------------------------------

// Rank 0: the manifest from every rank's report, `latest`, the prune.
static int commit_manifest(ckpt_writer *w, ckpt_stats *st) {
  const ckpt_writer_cfg *c = &w->cfg;
  const int P = dist_size();
  ckpt_manifest m;
  memset(&m, 0, sizeof m);
  m.step = w->pt.step, m.epoch = w->pt.epoch, m.cursor = w->pt.cursor;
  m.rng_seed = w->pt.rng_seed;
  memcpy(m.rng_counter, w->pt.rng_counter, sizeof m.rng_counter);
  m.world_size = P;
  m.n_groups = c->n_groups;
  memcpy(m.groups, c->groups, sizeof m.groups);
  m.loop = w->pt.loop;
  m.data = c->data;
  int rc = ckpt_manifest_set_config(&m, w->config_json, config_hash_text(w->config_json));
  for (int q = 0; q < P && rc == LR_OK; q++)
    for (int k = 0; k < w->reports[q].n_entries && rc == LR_OK; k++)
      rc = ckpt_manifest_add_shard(&m, &w->reports[q].entry[k]);
  if (rc == LR_OK) rc = ckpt_manifest_write(w->dir, &m); // the commit
  ckpt_manifest_free(&m);
  if (rc == LR_OK) rc = ckpt_update_latest(w->root, w->name);
  if (rc != LR_OK) {
    lr_error_trace(__FILE__, __LINE__, __func__);
    return rc;
  }
  ckpt_report pruned;
  if (ckpt_prune(w->root, c->keep_last, &pruned) != LR_OK) {
    fprintf(stderr, "linrec: warning: checkpoint prune in %s: %s\n", w->root, lr_error_msg());
    lr_error_clear();
    return LR_OK;
  }
  for (int k = 0; k < pruned.n; k++) {
    if (strstr(pruned.line[k], "removed step-")) st->n_pruned++;
    if (!strstr(pruned.line[k], "older than the newest kept")) // routine removals stay quiet
      dist_log0("checkpoint: %s\n", pruned.line[k]);
  }
  return LR_OK;
}

int ckpt_writer_commit(ckpt_writer *w, ckpt_stats *st) {
  memset(st, 0, sizeof *st);
  LR_CHECK(w->pending, LR_ERR_STATE, "checkpoint commit with none pending");
  double t0 = dist_wtime();
  if (w->thread_live) {
    pthread_join(w->thread, NULL);
    w->thread_live = 0;
  }
  double t1 = dist_wtime();
  w->pending = 0;
  int rc = w->rc;
  // The writer thread's message is already the pending error unless this
  // thread recorded one first (then that one is reported).
  if (rc != LR_OK && !lr_error_msg()[0]) lr_error(rc, __FILE__, __LINE__, "%s", w->msg);
  LR_CALL(dist_agree(rc));
  LR_CALL(dist_allgather(w->reports, &w->rep, (int64_t)sizeof w->rep, LR_DTYPE_BYTE));
  ckpt_stats s;
  memset(&s, 0, sizeof s);
  rc = dist_rank() == 0 ? commit_manifest(w, &s) : LR_OK;
  LR_CALL(dist_agree(rc));
  s.step = w->pt.step;
  memcpy(s.name, w->name, sizeof s.name);
  s.background = w->background;
  for (int q = 0; q < dist_size(); q++) {
    const shard_report *r = &w->reports[q];
    for (int k = 0; k < r->n_entries; k++) s.bytes += (double)r->entry[k].bytes;
    s.raw_bytes += r->raw_bytes;
    if (r->write_s > s.write_s) s.write_s = r->write_s;
    if (r->compress_s > s.compress_s) s.compress_s = r->compress_s;
  }
  s.start_s = w->start_s, s.snapshot_s = w->snapshot_s;
  s.wait_s = t1 - t0;
  s.commit_s = dist_wtime() - t1;
  *st = s;
  return LR_OK;
}
