// test_ckpt.c: sharded checkpoints (io/ckpt.h). Round trip of shards and
// manifest; re-cut reads (written by 3 ranks, read back as 2 and 4 ranges);
// damage: missing and truncated shards, a flipped byte at every position of
// a small shard and of the manifest, wrong versions, another config, shard
// ranges with gaps/overlaps, unsafe file names; `latest` fallback; prune;
// fault injection at every write/fsync/rename and allocation of one
// checkpoint write, simulated crashes in forked children (the sweep of
// test_fault.h), and a full disk.
// Every damaged read must be a clean status with a message naming the file
// (and for corruption a byte offset and a HINT), never a crash (run under
// ASan too), and the previous checkpoint must always still verify. Paths
// that are not regular files (FIFOs, directories, a symlink loop) in place
// of shards, manifests and `latest`, and a step directory holding another
// step's copy, are refused without blocking and skipped by the fallback.
#define _GNU_SOURCE       // nftw, mkdtemp, unshare, open_memstream
#include <cjson/cJSON.h>  // rewriting manifests
#include <dirent.h>       // opendir
#include <errno.h>        // errno
#include <ftw.h>          // nftw
#include <sched.h>        // unshare, CLONE_NEWNS
#include <signal.h>       // signal, SIGXFSZ
#include <stdarg.h>       // va_list
#include <stdio.h>        // fopen, rename
#include <stdlib.h>       // mkdtemp, malloc, setenv
#include <string.h>       // strstr, memcmp
#include <sys/mount.h>    // mount
#include <sys/resource.h> // setrlimit
#include <sys/stat.h>     // mkdir, stat, mkfifo
#include <sys/wait.h>     // waitpid
#include <unistd.h>       // fork, truncate, _exit, alarm, symlink
#include <zlib.h>         // crc32

#include "attention.h" // attn_names
#include "ckpt.h"
#include "config.h"
#include "fault.h"
#include "le.h" // le_put_u32
#include "lr.h"
#include "shard.h"
#include "test_fault.h" // t_fault_sweep
#include "state.h" // state_config_choices
#include "test_util.h"

static char g_tmp[64];
static int g_show; // print the messages of single damage checks (not of loops)

// ---------------------------------------------------------------------------
// helpers: files

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
  static char buf[8][4096];
  static int k;
  k = (k + 1) % 8;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf[k], sizeof buf[k], fmt, ap);
  va_end(ap);
  return buf[k];
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *n = 0;
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n + 1);
  *n = fread(b, 1, *n, f);
  b[*n] = 0;
  fclose(f);
  return b;
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(b, 1, n, f);
  fclose(f);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

// Files in dir whose names end in suffix.
static int count_suffix(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  size_t ls = strlen(suffix);
  for (struct dirent *e; (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    n += l >= ls && !strcmp(e->d_name + l - ls, suffix);
  }
  closedir(d);
  return n;
}

// A failed call's status and message have the expected shape; clears it.
static int is_error(int rc, int want, const char *needle) {
  const char *m = lr_error_msg();
  int ok = rc == want && (!needle || strstr(m, needle));
  if (!ok) printf("  (status %d '%s', message: %s)\n", rc, lr_status_str(rc), m);
  lr_error_clear();
  return ok;
}

// Corruption reported as ckpt.h promises: file, byte offset, HINT.
static int is_corrupt(int rc, const char *file, const char *needle) {
  const char *m = lr_error_msg();
  int ok = rc == LR_ERR_CORRUPT && strstr(m, file) && strstr(m, ": byte ") && strstr(m, "HINT") &&
           (!needle || strstr(m, needle));
  if (!ok)
    printf("  (status %d, message: %s)\n", rc, m);
  else if (g_show)
    printf("  > %s\n", m);
  lr_error_clear();
  return ok;
}

// ---------------------------------------------------------------------------
// helpers: a model tstate and writing a whole checkpoint as the ranks would

typedef struct {
  int64_t n_rows, D, n_dense;
  float *w, *m, *v;    // (n_rows, D)
  float *dp, *dm, *dv; // (n_dense)
  char *config_json;
  uint64_t config_hash;
} tstate;

static void ts_init(tstate *s, int64_t n_rows, int64_t D, int64_t n_dense, uint64_t seed) {
  s->n_rows = n_rows, s->D = D, s->n_dense = n_dense;
  float **a[6] = {&s->w, &s->m, &s->v, &s->dp, &s->dm, &s->dv};
  for (int k = 0; k < 6; k++) {
    int64_t n = k < 3 ? n_rows * D : n_dense;
    *a[k] = malloc((size_t)(n ? n : 1) * sizeof(float));
    t_fill_f(*a[k], n, seed + (uint64_t)k, 1.0f);
  }
  for (int64_t i = 0; i < n_rows * D; i++) // Adam's v is non-negative and small
    s->v[i] = s->v[i] * s->v[i] * 1e-3f;
  lr_config c;
  config_defaults(&c);
  s->config_json = config_to_json(&c);
  s->config_hash = config_hash(&c);
}

static void ts_free(tstate *s) {
  free(s->w), free(s->m), free(s->v), free(s->dp), free(s->dm), free(s->dv);
  free(s->config_json);
}

typedef struct {
  ckpt_shard_entry e[16];
  int n;
  double write_s, raw_bytes, file_bytes;
} written;

// The full protocol of ckpt.h section 4 on one process: P item shards, the
// dense shard, the manifest, latest. *w (if given) lists the shards written.
static int write_ckpt(const char *root, int64_t step, int P, const tstate *s, int level,
                      written *w) {
  char dir[4096], name[CKPT_NAME_MAX];
  ckpt_manifest m = {0};
  ckpt_file_info info;
  if (w) memset(w, 0, sizeof *w);
  LR_CALL(ckpt_dir_create(root, step, dir, sizeof dir));
  int rc = ckpt_manifest_set_config(&m, s->config_json, s->config_hash);
  m.step = step, m.epoch = step / 7, m.cursor = step % 7;
  m.rng_seed = 0xfedcba9876543210ull;
  for (int k = 0; k < CKPT_RNG_COUNTERS; k++)
    m.rng_counter[k] = (uint64_t)step * 1000 + (uint64_t)k;
  m.world_size = P;
  m.loop = (ckpt_loop){1.25 + (double)step, 0.125, 2, 3};
  const ckpt_group gd = {"dense", CKPT_KIND_DENSE, 3, s->n_dense, 1};
  const ckpt_group gi = {"items", CKPT_KIND_ROWS, 3, s->n_rows, s->D};
  if (rc == LR_OK) rc = ckpt_manifest_add_group(&m, &gd);
  if (rc == LR_OK) rc = ckpt_manifest_add_group(&m, &gi);
  for (int r = 0; r < P && rc == LR_OK; r++) {
    lr_shard sh = shard_range(s->n_rows, r, P);
    ckpt_shard_desc d = {CKPT_KIND_ROWS, 3, sh.offset, sh.offset + sh.count, s->D, 0, "items"};
    const float *arr[3] = {s->w + sh.offset * s->D, s->m + sh.offset * s->D,
                           s->v + sh.offset * s->D};
    ckpt_shard_name(name, "items", r);
    rc = ckpt_shard_write(dir, name, &d, arr, level, &info);
    if (rc == LR_OK) rc = ckpt_manifest_add_shard(&m, &info.entry);
    if (rc == LR_OK && w) {
      w->e[w->n++] = info.entry;
      w->write_s += info.seconds, w->raw_bytes += (double)info.raw_bytes;
      w->file_bytes += (double)info.entry.bytes;
    }
  }
  if (rc == LR_OK) {
    ckpt_shard_desc d = {CKPT_KIND_DENSE, 3, 0, s->n_dense, 1, step, "dense"};
    const float *arr[3] = {s->dp, s->dm, s->dv};
    rc = ckpt_shard_write(dir, CKPT_DENSE_NAME, &d, arr, level, &info);
    if (rc == LR_OK) rc = ckpt_manifest_add_shard(&m, &info.entry);
    if (rc == LR_OK && w) w->e[w->n++] = info.entry;
  }
  if (rc == LR_OK) rc = ckpt_manifest_write(dir, &m);
  if (rc == LR_OK) {
    ckpt_step_name(name, sizeof name, step);
    rc = ckpt_update_latest(root, name);
  }
  ckpt_manifest_free(&m);
  LR_CALL(rc);
  return LR_OK;
}

static const char *step_dir(const char *root, int64_t step) {
  char name[32];
  ckpt_step_name(name, sizeof name, step);
  return pathf("%s/%s", root, name);
}

// Load the item table rows [lo,hi) and compare with s.
static int rows_equal(const char *dir, const ckpt_manifest *m, const tstate *s, int64_t lo,
                      int64_t hi) {
  size_t n = (size_t)((hi - lo) * s->D);
  float *a[3];
  for (int k = 0; k < 3; k++)
    a[k] = calloc(n ? n : 1, sizeof(float));
  int rc = ckpt_load_rows(dir, m, "items", lo, hi, a, 3);
  int ok = rc == LR_OK && !memcmp(a[0], s->w + lo * s->D, n * 4) &&
           !memcmp(a[1], s->m + lo * s->D, n * 4) && !memcmp(a[2], s->v + lo * s->D, n * 4);
  if (rc != LR_OK) printf("  (%s)\n", lr_error_msg()), lr_error_clear();
  for (int k = 0; k < 3; k++)
    free(a[k]);
  return ok;
}

static int manifests_equal(const ckpt_manifest *a, const ckpt_manifest *b) {
  if (a->version != b->version || a->step != b->step || a->epoch != b->epoch ||
      a->cursor != b->cursor || a->rng_seed != b->rng_seed || a->world_size != b->world_size ||
      a->n_groups != b->n_groups || memcmp(a->groups, b->groups, sizeof a->groups) ||
      memcmp(&a->loop, &b->loop, sizeof a->loop) ||
      a->time_unix != b->time_unix || a->config_hash != b->config_hash ||
      strcmp(a->config_json, b->config_json) || a->n_shards != b->n_shards ||
      memcmp(a->rng_counter, b->rng_counter, sizeof a->rng_counter))
    return 0;
  for (int k = 0; k < a->n_shards; k++) {
    const ckpt_shard_entry *x = &a->shards[k], *y = &b->shards[k];
    if (strcmp(x->file, y->file) || memcmp(&x->desc, &y->desc, sizeof x->desc) ||
        x->bytes != y->bytes || x->crc32 != y->crc32)
      return 0;
  }
  return 1;
}

// Apply edit to the manifest of dir and re-seal it with a valid checksum,
// so that the semantic checks (not the checksum) must catch the change.
// v1: the version 1 checksum (crc32 of the canonical print without it) and
// "version": 1 (before edit); else version 2's (crc32 of the file's bytes
// before the 8 hex digits of the last member).
static void to_v12(cJSON *o);
static void reseal_manifest_v(const char *dir, void (*edit)(cJSON *), int v1) {
  size_t n;
  char *text = (char *)read_all(pathf("%s/manifest.json", dir), &n);
  cJSON *o = cJSON_Parse(text);
  free(text);
  cJSON_DeleteItemFromObjectCaseSensitive(o, "checksum");
  if (v1) cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "version"), 1), to_v12(o);
  if (edit) edit(o);
  char *out;
  if (v1) {
    char *canon = cJSON_PrintUnformatted(o), sum[32];
    snprintf(sum, sizeof sum, "crc32:%08x",
             (unsigned)crc32(0, (const Bytef *)canon, (uInt)strlen(canon)));
    cJSON_free(canon);
    cJSON_AddStringToObject(o, "checksum", sum);
    out = cJSON_Print(o);
  } else {
    char *body = cJSON_Print(o);
    size_t len = strlen(body) - 2; // without the closing "\n}"
    out = malloc(len + 64);
    len = (size_t)sprintf(out, "%.*s,\n\t\"checksum\":\t\"crc32:", (int)len, body);
    sprintf(out + len, "%08x\"\n}\n", (unsigned)crc32(0, (const Bytef *)out, (uInt)len));
    cJSON_free(body);
  }
  write_bytes(pathf("%s/manifest.json", dir), out, strlen(out));
  free(out);
  cJSON_Delete(o);
}
static void reseal_manifest(const char *dir, void (*edit)(cJSON *)) {
  reseal_manifest_v(dir, edit, 0);
}

static cJSON *shard_obj(cJSON *o, int k) {
  return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "shards"), k);
}
static void set_num(cJSON *o, const char *key, double v) {
  cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(o, key), v);
}
static double get_num(cJSON *o, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(o, key)->valuedouble;
}
static void ed_version(cJSON *o) { set_num(o, "version", 4); }
static cJSON *group_obj(cJSON *o, int k) {
  return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "groups"), k);
}
static void ed_group(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(shard_obj(o, 0), "group", cJSON_CreateString("nope"));
}
static void ed_width(cJSON *o) {
  set_num(group_obj(o, 1), "width", get_num(group_obj(o, 1), "width") + 1);
}
static void ed_dup_group(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(group_obj(o, 0), "name", cJSON_CreateString("items"));
}
static void ed_old_member(cJSON *o) { cJSON_AddNumberToObject(o, "n_dense", 5); }
// A version 3 manifest as versions 1-2 wrote it: no groups or loop, the
// tables' shapes in n_rows, D, n_dense, shards of kind items or dense.
static void to_v12(cJSON *o) {
  cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "groups");
  for (cJSON *x = g->child; x; x = x->next) {
    const char *name = cJSON_GetObjectItemCaseSensitive(x, "name")->valuestring;
    if (!strcmp(name, "items")) {
      cJSON_AddNumberToObject(o, "n_rows", get_num(x, "rows"));
      cJSON_AddNumberToObject(o, "D", get_num(x, "width"));
    } else {
      cJSON_AddNumberToObject(o, "n_dense", get_num(x, "rows"));
    }
  }
  cJSON_DeleteItemFromObjectCaseSensitive(o, "groups");
  cJSON_DeleteItemFromObjectCaseSensitive(o, "loop");
  for (cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "shards")->child; x; x = x->next) {
    cJSON *grp = cJSON_DetachItemFromObjectCaseSensitive(x, "group");
    cJSON_AddStringToObject(x, "kind", grp->valuestring);
    cJSON_Delete(grp);
  }
}
static void ed_gap(cJSON *o) { set_num(shard_obj(o, 1), "lo", get_num(shard_obj(o, 1), "lo") + 1); }
static void ed_overlap(cJSON *o) {
  set_num(shard_obj(o, 1), "lo", get_num(shard_obj(o, 1), "lo") - 1);
}
static void ed_short(cJSON *o) {
  set_num(group_obj(o, 1), "rows", get_num(group_obj(o, 1), "rows") + 5);
}
static void ed_traversal(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(shard_obj(o, 0), "file",
                                         cJSON_CreateString("../step-00000100/items-r0000.zst"));
}
static void ed_absolute(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(shard_obj(o, 0), "file",
                                         cJSON_CreateString("/etc/passwd"));
}
static void ed_twice(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(shard_obj(o, 1), "file",
                                         cJSON_CreateString("items-r0000.zst"));
}
static void ed_world(cJSON *o) { set_num(o, "world_size", 4); }
static void ed_unknown(cJSON *o) { cJSON_AddNumberToObject(o, "extra", 1); }
static void ed_missing(cJSON *o) { cJSON_DeleteItemFromObjectCaseSensitive(o, "cursor"); }
static void ed_type(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(o, "step", cJSON_CreateString("100"));
}
static void ed_fraction(cJSON *o) { set_num(o, "epoch", 1.5); }
static void ed_config(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(o, "config", cJSON_CreateString("{\"model.d\": 3}"));
}
static void ed_crc(cJSON *o) {
  cJSON_ReplaceItemInObjectCaseSensitive(shard_obj(o, 0), "crc32", cJSON_CreateString("00000000"));
}

// ---------------------------------------------------------------------------
// tests

static void test_round_trip(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/rt", g_tmp));
  tstate s;
  ts_init(&s, 1001, 16, 777, 1);
  written w;
  int rc = write_ckpt(root, 100, 3, &s, 3, &w);
  t_check(rc == LR_OK, "round trip: write 3 item shards + dense + manifest%s%s", rc ? ": " : "",
          rc ? lr_error_msg() : "");
  lr_error_clear();
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", step_dir(root, 100));
  t_check(exists(pathf("%s/items-r0000.zst", dir)) && exists(pathf("%s/items-r0002.zst", dir)) &&
              exists(pathf("%s/dense.zst", dir)) && exists(pathf("%s/manifest.json", dir)) &&
              count_suffix(dir, ".tmp") == 0,
          "round trip: layout step-00000100/{items-rRRRR.zst, dense.zst, manifest.json}, no temp");
  char latest[32];
  rc = ckpt_read_latest(root, latest, sizeof latest);
  t_check(rc == LR_OK && !strcmp(latest, "step-00000100"),
          "round trip: latest names step-00000100");

  ckpt_manifest m;
  rc = ckpt_manifest_read(dir, &m);
  t_check(rc == LR_OK && m.version == CKPT_VERSION && m.step == 100 && m.epoch == 14 &&
              m.cursor == 2 && m.rng_seed == 0xfedcba9876543210ull && m.rng_counter[3] == 100003 &&
              m.world_size == 3 && m.n_groups == 2 && m.groups[1].n_rows == 1001 &&
              m.groups[1].width == 16 && m.groups[0].n_rows == 777 && m.loop.epoch_loss == 101.25 &&
              m.loop.best_score == 0.125 && m.loop.since_best == 2 && m.loop.best_epoch == 3 &&
              m.config_hash == s.config_hash && !strcmp(m.config_json, s.config_json) &&
              m.n_shards == 4 && m.time_unix > 0 && ckpt_manifest_dense_step(&m) == 100,
          "round trip: manifest fields");
  int same = m.n_shards == w.n;
  for (int k = 0; same && k < w.n; k++)
    same = !memcmp(&m.shards[k], &w.e[k], sizeof w.e[k]);
  t_check(same, "round trip: manifest shard entries = what ckpt_shard_write returned");
  t_check(rows_equal(dir, &m, &s, 0, s.n_rows), "round trip: item rows w, m, v bit-identical");
  float *d[3];
  for (int k = 0; k < 3; k++)
    d[k] = malloc((size_t)s.n_dense * 4);
  rc = ckpt_load_rows(dir, &m, "dense", 0, s.n_dense, d, 3);
  t_check(rc == LR_OK && !memcmp(d[0], s.dp, (size_t)s.n_dense * 4) &&
              !memcmp(d[1], s.dm, (size_t)s.n_dense * 4) &&
              !memcmp(d[2], s.dv, (size_t)s.n_dense * 4),
          "round trip: dense params, m, v bit-identical");
  for (int k = 0; k < 3; k++)
    free(d[k]);
  ckpt_report rep;
  t_check(ckpt_verify(dir, 1, &rep) == LR_OK && rep.n == 0, "round trip: deep verify is clean");

  // re-cut: written by 3 ranks, read by 2 and by 4 (and by odd ranges)
  for (int P2 = 2; P2 <= 4; P2 += 2) {
    int ok = 1;
    for (int r = 0; r < P2; r++) {
      lr_shard sh = shard_range(s.n_rows, r, P2);
      ok &= rows_equal(dir, &m, &s, sh.offset, sh.offset + sh.count);
    }
    t_check(ok, "re-cut: 3 shards read back as %d ranges", P2);
  }
  t_check(rows_equal(dir, &m, &s, 333, 335) && rows_equal(dir, &m, &s, 0, 1) &&
              rows_equal(dir, &m, &s, 1000, 1001) && rows_equal(dir, &m, &s, 500, 500) &&
              rows_equal(dir, &m, &s, 100, 900),
          "re-cut: ranges across shard boundaries, single rows, empty range");
  float *only_w = malloc(10 * 16 * 4);
  float *arr[3] = {only_w, NULL, NULL};
  rc = ckpt_shard_read(dir, &m.shards[1], 330, 340, arr);
  int64_t lo1 = m.shards[1].desc.lo; // 334: rows 334..339 land at 4..9
  t_check(rc == LR_OK &&
              !memcmp(only_w + (lo1 - 330) * 16, s.w + lo1 * 16, (size_t)(340 - lo1) * 64),
          "re-cut: ckpt_shard_read copies the overlap only, NULL arrays skipped");
  free(only_w);
  rc = ckpt_load_rows(dir, &m, "items", 0, 1002, arr, 3);
  t_check(is_error(rc, LR_ERR_ARG, "outside"), "load_rows: range beyond the table is LR_ERR_ARG");
  rc = ckpt_load_rows(dir, &m, "items", 0, 10, arr, 2);
  t_check(is_error(rc, LR_ERR_ARG, "arrays"), "load_rows: wrong array count is LR_ERR_ARG");

  char *txt;
  size_t tn;
  FILE *f = open_memstream(&txt, &tn);
  ckpt_inspect_print(f, &m);
  fclose(f);
  t_check(strstr(txt, "step 100") && strstr(txt, "items-r0002.zst") && strstr(txt, "dense.zst") &&
              strstr(txt, "3 ranks"),
          "inspect: summary names step, shards and ranks");
  printf("%s", txt);
  free(txt);

  // a complete checkpoint is never overwritten
  char d2[4096];
  rc = ckpt_dir_create(root, 100, d2, sizeof d2);
  t_check(is_error(rc, LR_ERR_STATE, "already holds a complete checkpoint") && d2[0] == 0,
          "dir_create: refuses to reuse a committed step");
  // an incomplete one is reused, emptied of stale shards
  mkdir(pathf("%s/step-00000150", root), 0755);
  write_bytes(pathf("%s/step-00000150/items-r0007.zst", root), "x", 1);
  write_bytes(pathf("%s/step-00000150/dense.zst.tmp", root), "x", 1);
  rc = ckpt_dir_create(root, 150, d2, sizeof d2);
  t_check(rc == LR_OK && count_suffix(d2, ".zst") == 0 && count_suffix(d2, ".tmp") == 0,
          "dir_create: an interrupted step directory is emptied of stale files");
  // bad arguments
  ckpt_file_info info;
  ckpt_shard_desc dd = {CKPT_KIND_ROWS, 3, 0, 2, 16, 0, "items"};
  const float *a3[3] = {s.w, s.m, s.v};
  rc = ckpt_shard_write(dir, "../evil.zst", &dd, a3, 3, &info);
  t_check(is_error(rc, LR_ERR_ARG, "plain file name"), "shard_write: a path as name is LR_ERR_ARG");
  dd.n_arrays = 9;
  rc = ckpt_shard_write(dir, "x.zst", &dd, a3, 3, &info);
  t_check(is_error(rc, LR_ERR_ARG, "n_arrays"), "shard_write: 9 arrays is LR_ERR_ARG");
  dd.n_arrays = 3;
  rc = ckpt_shard_write(dir, "x.zst", &dd, a3, 42, &info);
  t_check(is_error(rc, LR_ERR_ARG, "level"), "shard_write: level 42 is LR_ERR_ARG");
  rc = ckpt_update_latest(root, "step-00000999");
  t_check(is_error(rc, LR_ERR_ARG, "not a directory"),
          "update_latest: a missing step is LR_ERR_ARG");
  ckpt_manifest bad = {0};
  rc = ckpt_manifest_write(d2, &bad);
  t_check(is_error(rc, LR_ERR_ARG, "refusing to write") && !exists(pathf("%s/manifest.json", d2)),
          "manifest_write: an invalid manifest is refused, nothing written");
  ckpt_manifest_free(&m);
  ts_free(&s);

  // more ranks than rows: empty shards are normal
  tstate t;
  ts_init(&t, 2, 8, 3, 9);
  char root2[4096];
  snprintf(root2, sizeof root2, "%s/tiny-rt", g_tmp);
  rc = write_ckpt(root2, 5, 4, &t, 1, NULL);
  rc |= ckpt_manifest_read(step_dir(root2, 5), &m);
  t_check(rc == LR_OK && m.n_shards == 5 && ckpt_verify(step_dir(root2, 5), 1, NULL) == LR_OK &&
              rows_equal(step_dir(root2, 5), &m, &t, 0, 2) &&
              rows_equal(step_dir(root2, 5), &m, &t, 1, 2),
          "round trip: 2 rows over 4 ranks (empty shards) write, verify and load");
  ckpt_manifest_free(&m);
  ts_free(&t);
}

// A flipped byte anywhere in a small shard is caught; so is truncation.
static void test_shard_damage(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/dmg", g_tmp));
  tstate s;
  ts_init(&s, 9, 4, 5, 2);
  int rc = write_ckpt(root, 1, 2, &s, 3, NULL);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", step_dir(root, 1));
  ckpt_manifest m;
  rc |= ckpt_manifest_read(dir, &m);
  t_check(rc == LR_OK, "damage: small checkpoint written");
  if (rc) return;
  char file[4096];
  snprintf(file, sizeof file, "%s", pathf("%s/items-r0001.zst", dir));
  size_t n;
  unsigned char *orig = read_all(file, &n), *b = malloc(n);
  int flips_ok = 1, bad_at = -1;
  for (size_t i = 0; i < n; i++)
    for (int mask = 0; mask < 2; mask++) {
      memcpy(b, orig, n);
      b[i] ^= mask ? 0xff : 0x01;
      write_bytes(file, b, n);
      rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
      int ok = is_corrupt(rc, file, NULL);
      if (!ok && bad_at < 0) bad_at = (int)i;
      flips_ok &= ok;
    }
  t_check(flips_ok,
          "damage: each of %zu bytes flipped (^0x01, ^0xff) is LR_ERR_CORRUPT with "
          "file, offset, HINT (first miss at %d)",
          n, bad_at);
  int trunc_ok = 1;
  for (size_t len = 0; len < n; len++) {
    write_bytes(file, orig, len);
    rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
    trunc_ok &= is_corrupt(rc, file, "truncated");
  }
  t_check(trunc_ok, "damage: truncation to every length 0..%zu is caught as truncated", n - 1);
  g_show = 1;
  write_bytes(file, orig, n - 7);
  rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
  t_check(is_corrupt(rc, file, "truncated"), "damage: e.g. 7 bytes short");
  memcpy(b, orig, n);
  b[n - 20] ^= 0x04;
  write_bytes(file, b, n);
  rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
  t_check(is_corrupt(rc, file, NULL), "damage: e.g. one bit flipped in the payload");
  // trailing garbage (manifest updated to match the size): still caught
  memcpy(b, orig, n);
  write_bytes(file, orig, n);
  FILE *f = fopen(file, "ab");
  fputc(0, f);
  fclose(f);
  ckpt_shard_entry e = m.shards[1];
  e.bytes++;
  rc = ckpt_shard_read(dir, &e, 0, 9, NULL);
  t_check(is_corrupt(rc, file, NULL), "damage: a byte appended to a shard is caught");
  // wrong format version with a valid header crc
  memcpy(b, orig, n);
  b[8] = 3;
  le_put_u32(b + 124, (uint32_t)crc32(0, b, 124));
  write_bytes(file, b, n);
  rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
  t_check(is_corrupt(rc, file, "format version 3, this build reads versions 1 and 2"),
          "damage: shard of format version 3 is refused by name");
  // another group name in the header than the manifest's (re-sealed header crc)
  memcpy(b, orig, n);
  memcpy(b + 80, "users", 5);
  le_put_u32(b + 124, (uint32_t)crc32(0, b, 124));
  write_bytes(file, b, n);
  rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
  t_check(is_corrupt(rc, file, "group: manifest says items, file header says users"),
          "damage: a shard of another group is refused by name");
  // missing shard
  write_bytes(file, orig, n);
  rename(file, pathf("%s.away", file));
  ckpt_report rep;
  rc = ckpt_verify(dir, 1, &rep);
  t_check(is_corrupt(rc, file, "missing") && rep.n == 1 && strstr(rep.line[0], "missing"),
          "damage: missing shard is named by verify");
  rc = ckpt_verify(dir, 0, &rep);
  t_check(is_corrupt(rc, file, "missing"), "damage: missing shard is caught by shallow verify");
  rename(pathf("%s.away", file), file);
  // a valid shard of another checkpoint in its place
  tstate s2;
  ts_init(&s2, 9, 4, 5, 3);
  t_check(write_ckpt(root, 2, 2, &s2, 3, NULL) == LR_OK, "damage: second checkpoint written");
  size_t n2;
  unsigned char *other = read_all(pathf("%s/items-r0001.zst", step_dir(root, 2)), &n2);
  write_bytes(file, other, n2);
  rc = ckpt_shard_read(dir, &m.shards[1], 0, 9, NULL);
  t_check(is_corrupt(rc, file, n2 == n ? "another checkpoint" : "manifest says"),
          "damage: a shard copied from another checkpoint is caught");
  write_bytes(file, orig, n);
  // two damaged shards: verify reports both
  char file0[4096];
  snprintf(file0, sizeof file0, "%s", pathf("%s/items-r0000.zst", dir));
  size_t n0;
  unsigned char *orig0 = read_all(file0, &n0);
  write_bytes(file0, orig0, n0 / 2);
  write_bytes(file, orig, n - 1);
  rc = ckpt_verify(dir, 1, &rep);
  t_check(is_corrupt(rc, "items-r000", "and 1 more damaged") && rep.n == 2,
          "damage: verify lists every damaged shard");
  write_bytes(file0, orig0, n0);
  write_bytes(file, orig, n);
  g_show = 0;
  t_check(ckpt_verify(dir, 1, NULL) == LR_OK, "damage: restored checkpoint verifies again");
  free(orig0);
  free(other);
  free(orig);
  free(b);
  ckpt_manifest_free(&m);
  ts_free(&s);
  ts_free(&s2);
}

static void test_manifest_damage(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/man", g_tmp));
  tstate s;
  ts_init(&s, 9, 4, 5, 4);
  int rc = write_ckpt(root, 1, 3, &s, 3, NULL);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", step_dir(root, 1));
  char file[4096];
  snprintf(file, sizeof file, "%s", pathf("%s/manifest.json", dir));
  ckpt_manifest m0, m;
  rc |= ckpt_manifest_read(dir, &m0);
  t_check(rc == LR_OK, "manifest: small checkpoint written");
  if (rc) return;
  size_t n;
  unsigned char *orig = read_all(file, &n), *b = malloc(n);
  int all_ok = 1, bad_at = -1;
  for (size_t i = 0; i < n; i++)
    for (int mask = 0; mask < 9; mask++) { // every single bit, and all eight
      memcpy(b, orig, n);
      b[i] ^= mask < 8 ? 1u << mask : 0xff;
      write_bytes(file, b, n);
      rc = ckpt_manifest_read(dir, &m);
      int ok = is_corrupt(rc, file, NULL);
      if (!ok && bad_at < 0) bad_at = (int)i;
      all_ok &= ok;
      ckpt_manifest_free(&m);
    }
  t_check(all_ok,
          "manifest: each of %zu bytes with any bit flipped is caught, whitespace included "
          "(first miss at %d)",
          n, bad_at);
  // Version 1 manifests (canonical checksum) are still read; their
  // whitespace is not covered, their content is.
  reseal_manifest_v(dir, NULL, 1);
  rc = ckpt_manifest_read(dir, &m);
  int v1_ok = rc == LR_OK && m.version == 1 && m.loop.epoch_loss == 0; // no loop member
  m.version = m0.version, m.loop = m0.loop;
  v1_ok &= rc == LR_OK && manifests_equal(&m, &m0);
  ckpt_manifest_free(&m);
  size_t n1;
  unsigned char *t1 = read_all(file, &n1);
  char *at1 = strstr((char *)t1, "\"step\":");
  at1[strlen("\"step\":") + 1] ^= 0x01;
  write_bytes(file, t1, n1);
  free(t1);
  rc = ckpt_manifest_read(dir, &m);
  t_check(v1_ok && is_corrupt(rc, file, "checksum"),
          "manifest: version 1 still reads, and its checksum still catches a changed step");
  // versions 1-2: one items shard per rank of world_size
  write_bytes(file, orig, n);
  reseal_manifest_v(dir, ed_world, 1);
  rc = ckpt_manifest_read(dir, &m);
  t_check(is_corrupt(rc, file, "world size of 4"),
          "manifest: version 1's items shards against its world size");
  // Key names are matched case-sensitively: "Step" is not "step".
  memcpy(b, orig, n);
  char *st = strstr((char *)b, "\"step\":");
  st[1] = 'S';
  write_bytes(file, b, n);
  reseal_manifest(dir, NULL);
  rc = ckpt_manifest_read(dir, &m);
  t_check(is_corrupt(rc, file, "unknown member \"Step\""),
          "manifest: a member name differing only in case is unknown (re-sealed checksum)");
  int trunc_ok = 1;
  for (size_t len = 0; len + 1 < n; len++) { // the last byte is a newline
    write_bytes(file, orig, len);
    rc = ckpt_manifest_read(dir, &m);
    trunc_ok &= rc == LR_OK ? (len + 1 == n) : is_corrupt(rc, file, NULL);
    ckpt_manifest_free(&m);
  }
  t_check(trunc_ok, "manifest: truncation at every length is caught");
  g_show = 1;
  memcpy(b, orig, n);
  char *at = strstr((char *)b, "\"step\":");
  at[strlen("\"step\":") + 1] ^= 0x01; // 1 -> 0
  write_bytes(file, b, n);
  rc = ckpt_manifest_read(dir, &m);
  t_check(is_corrupt(rc, file, "checksum"), "manifest: e.g. the step changed by one bit");

  struct {
    void (*edit)(cJSON *);
    const char *needle, *what;
  } cases[] = {
      {ed_version, "manifest format version 4", "wrong format version"},
      {ed_group, "group 'nope' is not one of the manifest's groups", "a shard of no group"},
      {ed_width, "its group items has 3 of", "a group's width against its shards"},
      {ed_dup_group, "group items is listed twice", "a group listed twice"},
      {ed_old_member, "\"n_dense\" is not one of format version 3", "a version 2 member"},
      {ed_gap, "a gap", "shard range gap"},
      {ed_overlap, "an overlap", "shard range overlap"},
      {ed_short, "rows missing", "shards short of n_rows"},
      {ed_traversal, "not a plain name", "path traversal ../"},
      {ed_absolute, "not a plain name", "absolute path"},
      {ed_twice, "listed twice", "same file twice"},
      {ed_unknown, "unknown member \"extra\"", "unknown member"},
      {ed_missing, "\"cursor\" is missing", "missing member"},
      {ed_type, "\"step\" must be an integer", "wrong type"},
      {ed_fraction, "\"epoch\" must be an integer", "fractional number"},
      {ed_config, "config text hashes to", "config text vs its hash"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    write_bytes(file, orig, n);
    reseal_manifest(dir, cases[k].edit);
    rc = ckpt_manifest_read(dir, &m);
    t_check(is_corrupt(rc, file, cases[k].needle) && m.shards == NULL && m.config_json == NULL,
            "manifest: %s is caught (re-sealed checksum), output zeroed", cases[k].what);
  }
  write_bytes(file, orig, n);
  reseal_manifest(dir, ed_crc);
  rc = ckpt_verify(dir, 1, NULL);
  t_check(is_corrupt(rc, "items-r0000.zst", "manifest"),
          "manifest: a wrong shard crc32 fails verify");
  write_bytes(file, orig, n);
  unlink(file);
  rc = ckpt_verify(dir, 1, NULL);
  t_check(is_error(rc, LR_ERR_IO, "never committed"),
          "manifest: a missing manifest means not committed");
  write_bytes(file, orig, n);
  g_show = 0;
  t_check(ckpt_verify(dir, 1, NULL) == LR_OK, "manifest: restored checkpoint verifies again");
  free(orig);
  free(b);
  ckpt_manifest_free(&m0);
  ts_free(&s);
}

static int report_has(const ckpt_report *r, const char *a, const char *b) {
  for (int k = 0; k < r->n; k++)
    if (strstr(r->line[k], a) && (!b || strstr(r->line[k], b))) return 1;
  return 0;
}

static void test_latest_and_prune(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/lat", g_tmp));
  char dir[4096];
  ckpt_report rep;
  int rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && dir[0] == 0, "latest: no root, no checkpoint (fresh start)");
  tstate s;
  ts_init(&s, 20, 4, 6, 5);
  for (int64_t st = 100; st <= 500; st += 100)
    rc |= write_ckpt(root, st, 2, &s, 1, NULL);
  t_check(rc == LR_OK, "latest: five checkpoints written");
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 500)) && rep.n == 0,
          "latest: the newest valid is step 500, nothing skipped");
  // damage 500 (latest), leave 600 incomplete
  char f500[4096];
  snprintf(f500, sizeof f500, "%s", pathf("%s/dense.zst", step_dir(root, 500)));
  size_t n;
  unsigned char *b = read_all(f500, &n);
  b[n / 2] ^= 0x10;
  write_bytes(f500, b, n);
  free(b);
  char d600[4096];
  ckpt_dir_create(root, 600, d600, sizeof d600);
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  for (int k = 0; k < rep.n; k++)
    printf("  | %s\n", rep.line[k]);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 400)) &&
              report_has(&rep, "skipped step-00000600", "incomplete") &&
              report_has(&rep, "skipped step-00000500 (named by `latest`): damaged", "dense.zst") &&
              report_has(&rep, "`latest` names step-00000500", "step-00000400"),
          "latest: falls back to step 400, saying why 600 and 500 were skipped");
  // latest file damaged: ignored with a message
  write_bytes(pathf("%s/latest", root), "garbage", 7);
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 400)) &&
              report_has(&rep, "ignoring `latest`", NULL),
          "latest: an unreadable latest file is ignored, loudly");
  char nm[32];
  rc = ckpt_read_latest(root, nm, sizeof nm);
  t_check(is_corrupt(rc, "latest", NULL), "latest: read_latest reports the damaged file");
  ckpt_update_latest(root, "step-00000200");

  // prune: keep 2 newest good ones (400, 300) + latest (200); 500 (damaged
  // but only in content: shallow checks pass) counts as complete
  write_bytes(pathf("%s/latest.tmp", root), "x", 1);
  mkdir(pathf("%s/step-00000250", root), 0755); // incomplete, older than good ones
  mkdir(pathf("%s/not-a-step", root), 0755);    // not ours
  rc = ckpt_prune(root, 2, &rep);
  for (int k = 0; k < rep.n; k++)
    printf("  | %s\n", rep.line[k]);
  t_check(rc == LR_OK && exists(step_dir(root, 500)) && exists(step_dir(root, 400)) &&
              !exists(step_dir(root, 300)) && exists(step_dir(root, 200)) &&
              !exists(step_dir(root, 100)) && !exists(step_dir(root, 250)) &&
              exists(step_dir(root, 600)) && exists(pathf("%s/not-a-step", root)) &&
              !exists(pathf("%s/latest.tmp", root)),
          "prune: keeps the 2 newest + latest + newer incomplete; removes older, stale, temp");
  t_check(ckpt_verify(step_dir(root, 200), 1, NULL) == LR_OK &&
              ckpt_verify(step_dir(root, 400), 1, NULL) == LR_OK,
          "prune: what it keeps still verifies");
  rc = ckpt_prune(root, 0, NULL);
  t_check(is_error(rc, LR_ERR_ARG, "keep_last"), "prune: keep_last 0 is LR_ERR_ARG");
  // shallow-damaged 500 (a shard removed) is pruned once older than a good one
  unlink(pathf("%s/items-r0000.zst", step_dir(root, 500)));
  rc = write_ckpt(root, 700, 2, &s, 1, NULL);
  rc |= ckpt_prune(root, 1, &rep);
  for (int k = 0; k < rep.n; k++)
    printf("  | %s\n", rep.line[k]);
  t_check(rc == LR_OK && !exists(step_dir(root, 500)) && !exists(step_dir(root, 600)) &&
              !exists(step_dir(root, 400)) && exists(step_dir(root, 700)) &&
              report_has(&rep, "step-00000500", "damaged"),
          "prune: damaged and incomplete directories older than a good one go");
  // every checkpoint damaged: LR_ERR_CORRUPT
  char f700[4096];
  snprintf(f700, sizeof f700, "%s", pathf("%s/manifest.json", step_dir(root, 700)));
  b = read_all(f700, &n);
  b[n / 2] ^= 0x01;
  write_bytes(f700, b, n);
  free(b);
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(is_error(rc, LR_ERR_CORRUPT, "none of the 1 complete checkpoints verifies") && !dir[0],
          "latest: no valid checkpoint left is LR_ERR_CORRUPT");
  ts_free(&s);
}

// After a failed or crashed checkpoint write of step 200: step 100 still
// verifies and is found; no temp file is left (fail) and every final-named
// file in step 200 is complete (its entry from a clean write reads back).
static int after_failure_ok(const char *root, const written *ref, int crashed) {
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s", step_dir(root, 100));
  snprintf(b, sizeof b, "%s", step_dir(root, 200));
  int ok = ckpt_verify(a, 1, NULL) == LR_OK;
  char dir[4096], latest[32];
  ckpt_report rep;
  int b_valid = exists(pathf("%s/manifest.json", b)) && ckpt_verify(b, 1, NULL) == LR_OK;
  lr_error_clear();
  ok &=
      ckpt_find_latest_valid(root, dir, sizeof dir, &rep) == LR_OK && !strcmp(dir, b_valid ? b : a);
  ok &= ckpt_read_latest(root, latest, sizeof latest) == LR_OK &&
        (!strcmp(latest, "step-00000100") || (b_valid && !strcmp(latest, "step-00000200")));
  if (!crashed) ok &= count_suffix(b, ".tmp") == 0 && count_suffix(root, ".tmp") == 0;
  for (int k = 0; k < ref->n; k++)
    if (exists(pathf("%s/%s", b, ref->e[k].file)))
      ok &= ckpt_shard_read(b, &ref->e[k], 0, 0, NULL) == LR_OK;
  if (!ok) printf("  (after failure: %s)\n", lr_error_msg());
  lr_error_clear();
  return ok;
}

static void reset_to_a(const char *root) {
  rm_rf(step_dir(root, 200));
  ckpt_update_latest(root, "step-00000100");
}

typedef struct {
  const char *root;
  const tstate *s;
  const written *ref;
} fault_ctx;

static int fault_write(void *arg) {
  const fault_ctx *c = arg;
  return write_ckpt(c->root, 200, 3, c->s, 3, NULL);
}
static int fault_after(void *arg, int crashed) {
  const fault_ctx *c = arg;
  return after_failure_ok(c->root, c->ref, crashed);
}
static void fault_reset(void *arg) { reset_to_a(((const fault_ctx *)arg)->root); }

static void test_faults(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/flt", g_tmp));
  tstate s;
  ts_init(&s, 50, 4, 9, 6);
  int rc = write_ckpt(root, 100, 3, &s, 3, NULL);
  written ref;
  rc |= write_ckpt(root, 200, 3, &s, 3, &ref);
  t_check(rc == LR_OK, "faults: steps 100 and 200 written");
  reset_to_a(root);

  // every write/fsync/rename and malloc of writing step 200 fails, or crashes
  fault_ctx c = {root, &s, &ref};
  t_fault_target t = {"checkpoint", root, fault_write, fault_after, fault_reset, &c};
  int64_t n[LR_FAULT_N_KINDS];
  t_fault_sweep(&t, n);
  t_check(n[LR_FAULT_IO] == n[LR_FAULT_WRITE] + n[LR_FAULT_FSYNC] + n[LR_FAULT_RENAME] &&
              n[LR_FAULT_IO] > 20 && n[LR_FAULT_MALLOC] >= 5,
          "faults: a checkpoint of 3 ranks makes > 20 wrapped I/O calls and >= 5 mallocs");

  // the environment variable arms the same faults
  setenv("LINREC_FAULT", "fsync:2", 1);
  int armed = lr_fault_from_env();
  rc = write_ckpt(root, 200, 3, &s, 3, NULL);
  t_check(armed && lr_fault_fired() && is_error(rc, LR_ERR_IO, "fsync"),
          "faults: LINREC_FAULT=fsync:2 fails the second fsync");
  setenv("LINREC_FAULT", "bogus", 1);
  armed = lr_fault_from_env();
  unsetenv("LINREC_FAULT");
  t_check(!armed, "faults: a malformed LINREC_FAULT arms nothing");
  lr_fault_set(LR_FAULT_NONE, 0);
  t_check(after_failure_ok(root, &ref, 0), "faults: after the env fault, step 100 is intact");
  reset_to_a(root);
  ts_free(&s);
}

// Child body of the full-disk test: step 100 fits, step 200 does not.
// Exit 0 when everything behaves, 1 otherwise.
static int full_disk_child(const char *root, int write_a, const char *needle) {
  tstate small, big;
  ts_init(&small, 40, 4, 8, 7);
  ts_init(&big, 40000, 16, 8, 8); // ~7.7 MB of random floats: incompressible
  int ok = 1;
  if (write_a) ok &= write_ckpt(root, 100, 2, &small, 3, NULL) == LR_OK;
  written ref = {0};
  int rc = write_ckpt(root, 200, 2, &big, 3, NULL);
  const char *msg = lr_error_msg();
  int clean = rc == LR_ERR_IO && strstr(msg, needle) && strstr(msg, "HINT");
  printf("  full disk: status %d: %s\n", rc, msg);
  lr_error_clear();
  ok &= clean && after_failure_ok(root, &ref, 0);
  ts_free(&small);
  ts_free(&big);
  fflush(stdout);
  return ok ? 0 : 1;
}

static void test_full_disk(void) {
  // (a) a 64 kB tmpfs in a private mount namespace (needs root)
  char mnt[4096];
  snprintf(mnt, sizeof mnt, "%s", pathf("%s/tiny", g_tmp));
  mkdir(mnt, 0755);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0)
      _exit(77);
    _exit(full_disk_child(pathf("%s/ck", mnt), 1, "No space left on device"));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
    printf("full disk (tmpfs): skipped: cannot mount here (not root?)\n");
  else
    t_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "full disk (64 kB tmpfs): ENOSPC is a clean LR_ERR_IO with a HINT; step 100 intact");

  // (b) a file-size limit in a child (works unprivileged)
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/fsz", g_tmp));
  tstate small;
  ts_init(&small, 40, 4, 8, 7);
  int rc = write_ckpt(root, 100, 2, &small, 3, NULL);
  ts_free(&small);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 << 10, 64 << 10};
    setrlimit(RLIMIT_FSIZE, &rl);
    _exit(full_disk_child(root, 0, "File too large"));
  }
  waitpid(pid, &status, 0);
  written none = {0};
  t_check(rc == LR_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
              after_failure_ok(root, &none, 0),
          "full disk (RLIMIT_FSIZE 64 kB): EFBIG is a clean LR_ERR_IO; step 100 intact");
}

// Paths that are not regular files, and directories that are not what
// their names say (a FIFO would block a plain open forever: the test runs
// under an alarm so such a hang fails it in 30 s instead of at the ctest
// timeout).
static void test_odd_files(void) {
  char root[4096];
  snprintf(root, sizeof root, "%s", pathf("%s/odd", g_tmp));
  tstate s;
  ts_init(&s, 12, 4, 6, 11);
  int rc = write_ckpt(root, 5, 2, &s, 1, NULL);
  rc |= write_ckpt(root, 10, 2, &s, 1, NULL);
  t_check(rc == LR_OK, "odd files: checkpoints of steps 5 and 10 written");
  char d10[4096], shard[4096], aside[4096], man[4096];
  snprintf(d10, sizeof d10, "%s", step_dir(root, 10));
  snprintf(shard, sizeof shard, "%s", pathf("%s/items-r0001.zst", d10));
  snprintf(aside, sizeof aside, "%s", pathf("%s/aside", root));
  snprintf(man, sizeof man, "%s", pathf("%s/manifest.json", d10));
  alarm(30);
  g_show = 1;
  // a FIFO, then a directory, in place of a shard: deep and shallow verify
  rename(shard, aside);
  mkfifo(shard, 0644);
  rc = ckpt_verify(d10, 1, NULL);
  t_check(is_corrupt(rc, "items-r0001.zst", "is a FIFO, not a regular file"),
          "odd files: a FIFO in place of a shard is refused (deep verify), without blocking");
  rc = ckpt_verify(d10, 0, NULL);
  t_check(is_corrupt(rc, "items-r0001.zst", "a FIFO"), "odd files: ... and by the shallow verify");
  char dir[4096];
  ckpt_report rep;
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 5)) &&
              report_has(&rep, "skipped step-00000010", "FIFO"),
          "odd files: find_latest_valid skips it and falls back to step 5");
  unlink(shard);
  mkdir(shard, 0755);
  rc = ckpt_verify(d10, 1, NULL);
  t_check(is_corrupt(rc, "items-r0001.zst", "is a directory"),
          "odd files: a directory in place of a shard is refused");
  rmdir(shard);
  rename(aside, shard);
  // a FIFO in place of the manifest, then a symlink loop
  rename(man, aside);
  mkfifo(man, 0644);
  ckpt_manifest m;
  rc = ckpt_manifest_read(d10, &m);
  t_check(is_corrupt(rc, "manifest.json", "is a FIFO"),
          "odd files: a FIFO in place of manifest.json is refused, without blocking");
  unlink(man);
  rc = symlink("manifest.json", man) == 0 ? LR_OK : LR_ERR_IO;
  rc = rc ? rc : ckpt_verify(d10, 1, NULL);
  t_check(is_error(rc, LR_ERR_IO, "Too many levels of symbolic links"),
          "odd files: a manifest.json symlink loop is an error naming it");
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 5)) &&
              report_has(&rep, "skipped step-00000010", "symbolic links"),
          "odd files: ... and skipped by find_latest_valid");
  unlink(man);
  rename(aside, man);
  t_check(ckpt_verify(d10, 1, NULL) == LR_OK, "odd files: step 10 restored verifies");
  // a copy of step 5 named step-00000025 is not step 25
  char d25[4096];
  snprintf(d25, sizeof d25, "%s", pathf("%s/step-00000025", root));
  mkdir(d25, 0755);
  const char *files[] = {"manifest.json", "items-r0000.zst", "items-r0001.zst", "dense.zst"};
  for (int k = 0; k < 4; k++) {
    size_t n;
    unsigned char *b = read_all(pathf("%s/%s", step_dir(root, 5), files[k]), &n);
    write_bytes(pathf("%s/%s", d25, files[k]), b, n);
    free(b);
  }
  rc = ckpt_verify(d25, 1, NULL);
  t_check(is_corrupt(rc, "step-00000025/manifest.json",
                     "records step 5, but its directory is named step-00000025"),
          "odd files: a copy of step 5 named step-00000025 fails verify");
  rc = ckpt_verify(pathf("%s/", d25), 1, NULL);
  t_check(is_corrupt(rc, "manifest.json", "named step-00000025"),
          "odd files: ... also named with a trailing slash");
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 10)) &&
              report_has(&rep, "skipped step-00000025", "records step 5"),
          "odd files: find_latest_valid skips it and takes step 10");
  rm_rf(d25);
  // `latest` as a FIFO, then as a directory: refused on read, moved aside on write
  char latest[4096], nm[32];
  snprintf(latest, sizeof latest, "%s", pathf("%s/latest", root));
  unlink(latest);
  mkfifo(latest, 0644);
  rc = ckpt_read_latest(root, nm, sizeof nm);
  t_check(is_corrupt(rc, "latest", "is a FIFO"), "odd files: a FIFO `latest` is refused");
  unlink(latest);
  mkdir(latest, 0755);
  rc = ckpt_find_latest_valid(root, dir, sizeof dir, &rep);
  t_check(rc == LR_OK && !strcmp(dir, step_dir(root, 10)) &&
              report_has(&rep, "ignoring `latest`", "is a directory"),
          "odd files: a directory `latest` is ignored, loudly; step 10 found");
  rc = ckpt_update_latest(root, "step-00000010");
  rc = rc ? rc : ckpt_read_latest(root, nm, sizeof nm);
  t_check(rc == LR_OK && !strcmp(nm, "step-00000010"),
          "odd files: writing `latest` moves the directory aside and succeeds");
  DIR *d = opendir(root);
  int moved = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    moved += !strncmp(e->d_name, "latest.not-a-file-", 18);
  if (d) closedir(d);
  t_check(moved == 1, "odd files: the directory is kept as latest.not-a-file-<time>");
  g_show = 0;
  alarm(0);
  ts_free(&s);
}

int main(void) {
  state_config_choices(); // the attention kinds and architectures (dist/state.h)
  // /dev/shm when there is one: the fault loops fsync about a thousand
  // times, which costs seconds on a disk and nothing on tmpfs (the logic
  // under test does not depend on the file system; LINREC_TEST_TMP overrides)
  const char *base = getenv("LINREC_TEST_TMP");
  struct stat st;
  if (!base) base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  snprintf(g_tmp, sizeof g_tmp, "%.40s/lr_ckpt_XXXXXX", base);
  if (!mkdtemp(g_tmp)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_shard_damage();
  test_manifest_damage();
  test_latest_and_prune();
  test_odd_files();
  test_faults();
  test_full_disk();
  rm_rf(g_tmp);
  return t_done();
}
