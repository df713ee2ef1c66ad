// ckpt_manifest.c: manifest.json, the commit record of a checkpoint (format
// in ckpt.h, section 3): building and writing it, reading it strictly,
// comparing its config, printing it. Not here: shard files (ckpt_shard.c),
// directories and `latest` (ckpt.c).
#include <cjson/cJSON.h> // cJSON_Parse*, cJSON_Print*, cJSON_Create*
#include <errno.h>       // errno, ENOENT
#include <inttypes.h>    // PRIx64
#include <stdarg.h>      // va_list
#include <stdio.h>       // snprintf, fprintf
#include <stdlib.h>      // malloc, free, qsort, strtoull
#include <string.h>      // strcmp, strlen, strstr, memchr, memset
#include <sys/stat.h>    // struct stat
#include <time.h>        // time, gmtime_r, strftime
#include <unistd.h>      // read, close

#include "afile.h" // afile_write_whole
#include "ckpt_internal.h"
#include "fault.h" // lr_fault_malloc
#include "file.h"
#include "lr.h"

#define FORMAT_NAME "linrec-checkpoint"
#define MAX_MANIFEST_BYTES ((size_t)64 << 20)
#define MAX_SHARDS (1 << 20)
#define MAX_JSON_INT ((int64_t)1 << 53) // integers a JSON number holds exactly
// The file ends in SUM_HEAD, 8 lowercase hex digits, SUM_TAIL: the
// checksum member (ckpt.h section 3, version 2).
#define SUM_HEAD ",\n\t\"checksum\":\t\"crc32:"
#define SUM_TAIL "\"\n}\n"
#define HINT_WRITE "\nHINT: a bug in the caller: the entries must come from ckpt_shard_write"

// ---------------------------------------------------------------------------
// owning helpers

void ckpt_manifest_free(ckpt_manifest *m) {
  if (!m) return;
  free(m->config_json);
  free(m->shards);
  memset(m, 0, sizeof *m);
}

int ckpt_manifest_set_config(ckpt_manifest *m, const char *config_json, uint64_t config_hash) {
  LR_CHECK(m && config_json, LR_ERR_ARG, "ckpt_manifest_set_config: NULL argument");
  size_t n = strlen(config_json);
  char *s = lr_fault_malloc(n + 1);
  LR_CHECK(s, LR_ERR_NOMEM, "manifest: out of memory for %zu bytes of config", n);
  memcpy(s, config_json, n + 1);
  free(m->config_json);
  m->config_json = s;
  m->config_hash = config_hash;
  return LR_OK;
}

int ckpt_manifest_add_shard(ckpt_manifest *m, const ckpt_shard_entry *e) {
  LR_CHECK(m && e, LR_ERR_ARG, "ckpt_manifest_add_shard: NULL argument");
  LR_CHECK(m->n_shards < MAX_SHARDS, LR_ERR_ARG, "manifest: more than %d shards", MAX_SHARDS);
  if (m->n_shards == m->cap_shards) {
    int cap = m->cap_shards ? 2 * m->cap_shards : 8;
    ckpt_shard_entry *s = lr_fault_malloc((size_t)cap * sizeof *s);
    LR_CHECK(s, LR_ERR_NOMEM, "manifest: out of memory for %d shard entries", cap);
    if (m->n_shards) memcpy(s, m->shards, (size_t)m->n_shards * sizeof *s);
    free(m->shards);
    m->shards = s;
    m->cap_shards = cap;
  }
  m->shards[m->n_shards++] = *e;
  return LR_OK;
}

int64_t ckpt_manifest_dense_step(const ckpt_manifest *m) {
  for (int k = 0; m && k < m->n_shards; k++)
    if (m->shards[k].desc.kind == CKPT_KIND_DENSE) return m->shards[k].desc.aux;
  return 0;
}

const ckpt_group *ckpt_manifest_group(const ckpt_manifest *m, const char *name) {
  for (int i = 0; m && i < m->n_groups; i++)
    if (!strcmp(m->groups[i].name, name)) return &m->groups[i];
  return NULL;
}

int ckpt_manifest_add_group(ckpt_manifest *m, const ckpt_group *g) {
  LR_CHECK(m && g && m->n_groups < CKPT_MAX_GROUPS, LR_ERR_ARG,
           "manifest: more than %d groups", CKPT_MAX_GROUPS);
  m->groups[m->n_groups++] = *g;
  return LR_OK;
}

static uint64_t fnv1a64(const char *s) { // = config_hash() of io/config.c
  uint64_t h = 1469598103934665603ull;
  for (const char *p = s; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return h;
}

static const char *kind_str(int kind) {
  return kind == CKPT_KIND_ROWS ? "rows" : kind == CKPT_KIND_DENSE ? "dense" : "?";
}

// ---------------------------------------------------------------------------
// validation, shared by the writer (LR_ERR_ARG) and the reader (LR_ERR_CORRUPT)

typedef struct {
  const char *path; // manifest path, for messages
  const char *text; // the file's text when reading, NULL when writing
} vctx;

// Byte offset of the nth (0-based) occurrence of "key" in the text, or 0.
static int64_t key_offset(const vctx *v, const char *key, int nth) {
  if (!v->text) return 0;
  char pat[80];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = v->text;
  for (int k = 0; (p = strstr(p, pat)) != NULL; k++, p++)
    if (k == nth) return p - v->text;
  return 0;
}

// Report a problem with member `key` (its nth occurrence) of the manifest.
__attribute__((format(printf, 4, 5))) static int bad(const vctx *v, const char *key, int nth,
                                                     const char *fmt, ...) {
  char what[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (!v->text)
    return lr_error(LR_ERR_ARG, __FILE__, __LINE__, "%s: refusing to write: %s" HINT_WRITE, v->path,
                    what);
  return lr_corrupt_error(__FILE__, __LINE__, v->path, key_offset(v, key, nth),
                          "%s" CKPT_HINT_DAMAGED, what);
}

static int cmp_name(const void *a, const void *b) {
  const ckpt_shard_entry *x = *(ckpt_shard_entry *const *)a, *y = *(ckpt_shard_entry *const *)b;
  return strcmp(x->file, y->file);
}
static int cmp_range(const void *a, const void *b) {
  const ckpt_shard_entry *x = *(ckpt_shard_entry *const *)a, *y = *(ckpt_shard_entry *const *)b;
  int g = strcmp(x->desc.group, y->desc.group);
  if (g) return g;
  if (x->desc.lo != y->desc.lo) return x->desc.lo < y->desc.lo ? -1 : 1;
  if (x->desc.hi != y->desc.hi) return x->desc.hi < y->desc.hi ? -1 : 1;
  return 0;
}

static int check_entry(const vctx *v, const ckpt_manifest *m, int k) {
  const ckpt_shard_entry *e = &m->shards[k];
  const ckpt_shard_desc *d = &e->desc;
  if (!memchr(e->file, 0, sizeof e->file) || !ckpt_name_ok_(e->file) ||
      !strcmp(e->file, CKPT_MANIFEST_NAME))
    return bad(v, "file", k,
               "shard %d: file name '%.*s' is not a plain name inside the checkpoint directory", k,
               CKPT_NAME_MAX - 1, e->file);
  const ckpt_group *g = memchr(d->group, 0, sizeof d->group) ? ckpt_manifest_group(m, d->group)
                                                              : NULL;
  if (!g)
    return bad(v, "group", k, "shard %s: group '%.*s' is not one of the manifest's groups",
               e->file, CKPT_GROUP_MAX - 1, d->group);
  if (d->kind != g->kind)
    return bad(v, "group", k, "shard %s: kind %d, its group %s is %s", e->file, d->kind, g->name,
               kind_str(g->kind));
  if (d->n_arrays < 1 || d->n_arrays > CKPT_MAX_ARRAYS)
    return bad(v, "file", k, "shard %s: %d arrays, expected 1..%d", e->file, d->n_arrays,
               CKPT_MAX_ARRAYS);
  if (d->lo < 0 || d->hi < d->lo || d->hi >= MAX_JSON_INT || d->D < 1 || d->D >= MAX_JSON_INT)
    return bad(v, "file", k, "shard %s: rows [%lld, %lld) of width %lld are not a valid range",
               e->file, (long long)d->lo, (long long)d->hi, (long long)d->D);
  if (d->D != g->width || d->n_arrays != g->n_arrays)
    return bad(v, "file", k, "shard %s: %d arrays of width %lld, its group %s has %d of %lld",
               e->file, d->n_arrays, (long long)d->D, g->name, g->n_arrays, (long long)g->width);
  if (e->bytes < 128 || e->bytes >= (uint64_t)MAX_JSON_INT || d->aux <= -MAX_JSON_INT ||
      d->aux >= MAX_JSON_INT)
    return bad(v, "file", k, "shard %s: %llu bytes or aux %lld out of range", e->file,
               (unsigned long long)e->bytes, (long long)d->aux);
  return LR_OK;
}

// The shards of group g tile its rows [0, n) exactly once (s sorted by
// group, lo, hi).
static int check_cover(const vctx *v, ckpt_shard_entry **s, int n, const ckpt_group *g) {
  int64_t next = 0;
  for (int k = 0; k < n; k++) {
    if (strcmp(s[k]->desc.group, g->name)) continue;
    if (s[k]->desc.lo != next)
      return bad(v, "shards", 0, "%s shards: %s starts at row %lld, expected %lld (%s)", g->name,
                 s[k]->file, (long long)s[k]->desc.lo, (long long)next,
                 s[k]->desc.lo > next ? "a gap: rows missing" : "an overlap");
    next = s[k]->desc.hi;
  }
  if (next != g->n_rows)
    return bad(v, "shards", 0, "%s shards cover rows 0..%lld, expected 0..%lld (%s)", g->name,
               (long long)next, (long long)g->n_rows,
               next < g->n_rows ? "rows missing" : "rows beyond the table");
  return LR_OK;
}

static int check_groups(const vctx *v, const ckpt_manifest *m) {
  if (m->n_groups < 1 || m->n_groups > CKPT_MAX_GROUPS)
    return bad(v, "groups", 0, "%d groups, expected 1..%d", m->n_groups, CKPT_MAX_GROUPS);
  for (int i = 0; i < m->n_groups; i++) {
    const ckpt_group *g = &m->groups[i];
    if (!memchr(g->name, 0, sizeof g->name) || !ckpt_group_name_ok(g->name))
      return bad(v, "name", i, "group %d: name is not 1..15 of [A-Za-z0-9_]", i);
    for (int j = 0; j < i; j++)
      if (!strcmp(m->groups[j].name, g->name))
        return bad(v, "name", i, "group %s is listed twice", g->name);
    if (g->kind != CKPT_KIND_ROWS && g->kind != CKPT_KIND_DENSE)
      return bad(v, "kind", i, "group %s: kind %d is neither rows nor dense", g->name, g->kind);
    if (g->n_rows < 0 || g->n_rows >= MAX_JSON_INT || g->width < 1 || g->width >= MAX_JSON_INT ||
        g->n_arrays < 1 || g->n_arrays > CKPT_MAX_ARRAYS)
      return bad(v, "rows", i, "group %s: %lld rows of width %lld in %d arrays out of range",
                 g->name, (long long)g->n_rows, (long long)g->width, g->n_arrays);
  }
  return LR_OK;
}

static int check_shards(const vctx *v, const ckpt_manifest *m) {
  if (m->n_shards < 1 || !m->shards) return bad(v, "shards", 0, "no shards listed");
  LR_CALL(check_groups(v, m));
  int n_items = 0;
  for (int k = 0; k < m->n_shards; k++) {
    LR_CALL(check_entry(v, m, k));
    n_items += !strcmp(m->shards[k].desc.group, "items");
  }
  if (m->version != 0 && m->version < 3 && n_items != m->world_size) // versions 1-2: one per rank
    return bad(v, "world_size", 0, "%d items shards for a world size of %d (one per rank)", n_items,
               m->world_size);
  ckpt_shard_entry **s = malloc((size_t)m->n_shards * sizeof *s);
  LR_CHECK(s, LR_ERR_NOMEM, "%s: out of memory", v->path);
  for (int k = 0; k < m->n_shards; k++)
    s[k] = &m->shards[k];
  int rc = LR_OK;
  qsort(s, (size_t)m->n_shards, sizeof *s, cmp_name);
  for (int k = 1; k < m->n_shards && rc == LR_OK; k++)
    if (!strcmp(s[k]->file, s[k - 1]->file))
      rc = bad(v, "shards", 0, "file %s is listed twice", s[k]->file);
  if (rc == LR_OK) {
    qsort(s, (size_t)m->n_shards, sizeof *s, cmp_range);
  }
  for (int i = 0; i < m->n_groups && rc == LR_OK; i++)
    rc = check_cover(v, s, m->n_shards, &m->groups[i]);
  free(s);
  return rc;
}

static int check_manifest(const vctx *v, const ckpt_manifest *m) {
  if (m->step < 0 || m->step >= MAX_JSON_INT || m->epoch < 0 || m->epoch >= MAX_JSON_INT ||
      m->cursor < 0 || m->cursor >= MAX_JSON_INT)
    return bad(v, "step", 0, "step %lld, epoch %lld, cursor %lld: expected 0..2^53",
               (long long)m->step, (long long)m->epoch, (long long)m->cursor);
  if (m->world_size < 1 || m->world_size > MAX_SHARDS)
    return bad(v, "world_size", 0, "world size %d outside 1..%d", m->world_size, MAX_SHARDS);
  if (m->time_unix < 0 || m->time_unix >= MAX_JSON_INT)
    return bad(v, "time_unix", 0, "time %lld out of range", (long long)m->time_unix);
  const ckpt_loop *l = &m->loop;
  if (!(l->epoch_loss == l->epoch_loss && l->best_score == l->best_score) || l->since_best < 0 ||
      l->since_best >= MAX_JSON_INT || l->best_epoch < 0 || l->best_epoch >= MAX_JSON_INT)
    return bad(v, "loop", 0, "loop state: epoch loss %g, best score %g, %lld since best, best "
               "epoch %lld out of range", l->epoch_loss, l->best_score, (long long)l->since_best,
               (long long)l->best_epoch);
  const lr_data_fp *d = &m->data;
  if (d->n_inter >= 0 && (d->n_users < 0 || d->n_users >= MAX_JSON_INT || d->n_items < 0 ||
                          d->n_items >= MAX_JSON_INT || d->n_inter >= MAX_JSON_INT))
    return bad(v, "data", 0, "data fingerprint: %lld users, %lld items, %lld interactions out of "
               "range", (long long)d->n_users, (long long)d->n_items, (long long)d->n_inter);
  if (!m->config_json) return bad(v, "config", 0, "no config text");
  uint64_t h = fnv1a64(m->config_json);
  if (h != m->config_hash)
    return bad(v, "config", 0, "config text hashes to %016" PRIx64 ", config_hash says %016" PRIx64,
               h, m->config_hash);
  return check_shards(v, m);
}

// ---------------------------------------------------------------------------
// writing

// The manifest as a cJSON object without the checksum member (NULL on
// allocation failure).
static cJSON *to_json(const ckpt_manifest *m, int64_t time_unix) {
  char hex[24];
  cJSON *o = cJSON_CreateObject(), *arr, *sh;
  int ok = o != NULL;
  ok = ok && cJSON_AddStringToObject(o, "format", FORMAT_NAME);
  ok = ok && cJSON_AddNumberToObject(o, "version", CKPT_VERSION);
  ok = ok && cJSON_AddNumberToObject(o, "step", (double)m->step);
  ok = ok && cJSON_AddNumberToObject(o, "epoch", (double)m->epoch);
  ok = ok && cJSON_AddNumberToObject(o, "cursor", (double)m->cursor);
  snprintf(hex, sizeof hex, "%016" PRIx64, m->rng_seed);
  ok = ok && cJSON_AddStringToObject(o, "rng_seed", hex);
  ok = ok && (arr = cJSON_AddArrayToObject(o, "rng_counters"));
  for (int k = 0; ok && k < CKPT_RNG_COUNTERS; k++) {
    snprintf(hex, sizeof hex, "%016" PRIx64, m->rng_counter[k]);
    cJSON *s = cJSON_CreateString(hex);
    ok = s && cJSON_AddItemToArray(arr, s);
    if (!ok) cJSON_Delete(s);
  }
  ok = ok && cJSON_AddNumberToObject(o, "world_size", m->world_size);
  ok = ok && cJSON_AddNumberToObject(o, "time_unix", (double)time_unix);
  cJSON *lp = ok ? cJSON_AddObjectToObject(o, "loop") : NULL;
  ok = lp && cJSON_AddNumberToObject(lp, "epoch_loss", m->loop.epoch_loss) &&
       cJSON_AddNumberToObject(lp, "best_score", m->loop.best_score) &&
       cJSON_AddNumberToObject(lp, "since_best", (double)m->loop.since_best) &&
       cJSON_AddNumberToObject(lp, "best_epoch", (double)m->loop.best_epoch);
  ok = ok && (arr = cJSON_AddArrayToObject(o, "groups"));
  for (int i = 0; ok && i < m->n_groups; i++) {
    const ckpt_group *g = &m->groups[i];
    ok = (sh = cJSON_CreateObject()) != NULL;
    if (ok && !cJSON_AddItemToArray(arr, sh)) {
      cJSON_Delete(sh);
      ok = 0;
    }
    ok = ok && cJSON_AddStringToObject(sh, "name", g->name);
    ok = ok && cJSON_AddStringToObject(sh, "kind", kind_str(g->kind));
    ok = ok && cJSON_AddNumberToObject(sh, "rows", (double)g->n_rows);
    ok = ok && cJSON_AddNumberToObject(sh, "width", (double)g->width);
    ok = ok && cJSON_AddNumberToObject(sh, "arrays", g->n_arrays);
  }
  ok = ok && (arr = cJSON_AddArrayToObject(o, "shards"));
  for (int k = 0; ok && k < m->n_shards; k++) {
    const ckpt_shard_entry *e = &m->shards[k];
    ok = (sh = cJSON_CreateObject()) != NULL;
    if (ok && !cJSON_AddItemToArray(arr, sh)) {
      cJSON_Delete(sh);
      ok = 0;
    }
    ok = ok && cJSON_AddStringToObject(sh, "file", e->file);
    ok = ok && cJSON_AddStringToObject(sh, "group", e->desc.group);
    ok = ok && cJSON_AddNumberToObject(sh, "lo", (double)e->desc.lo);
    ok = ok && cJSON_AddNumberToObject(sh, "hi", (double)e->desc.hi);
    ok = ok && cJSON_AddNumberToObject(sh, "D", (double)e->desc.D);
    ok = ok && cJSON_AddNumberToObject(sh, "arrays", e->desc.n_arrays);
    ok = ok && cJSON_AddNumberToObject(sh, "aux", (double)e->desc.aux);
    ok = ok && cJSON_AddNumberToObject(sh, "bytes", (double)e->bytes);
    snprintf(hex, sizeof hex, "%08x", (unsigned)e->crc32);
    ok = ok && cJSON_AddStringToObject(sh, "crc32", hex);
  }
  snprintf(hex, sizeof hex, "%016" PRIx64, m->config_hash);
  ok = ok && cJSON_AddStringToObject(o, "config_hash", hex);
  ok = ok && cJSON_AddStringToObject(o, "config", m->config_json);
  if (ok && m->data.n_inter >= 0) {
    cJSON *d = cJSON_AddObjectToObject(o, "data");
    snprintf(hex, sizeof hex, "%016" PRIx64, m->data.hash);
    ok = d && cJSON_AddNumberToObject(d, "users", (double)m->data.n_users) &&
         cJSON_AddNumberToObject(d, "items", (double)m->data.n_items) &&
         cJSON_AddNumberToObject(d, "interactions", (double)m->data.n_inter) &&
         cJSON_AddStringToObject(d, "hash", hex);
  }
  if (!ok) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

// Version 1's checksum: "crc32:xxxxxxxx" of the canonical (unformatted)
// print of o (the manifest without its checksum member) into out[24].
static int canonical_checksum(const cJSON *o, char *out) {
  char *s = cJSON_PrintUnformatted(o);
  if (!s) return 0;
  snprintf(out, 24, "crc32:%08x", (unsigned)ckpt_crc32_(0, s, strlen(s)));
  cJSON_free(s);
  return 1;
}

int ckpt_manifest_write(const char *dir, const ckpt_manifest *m) {
  LR_CHECK(dir && m, LR_ERR_ARG, "ckpt_manifest_write: NULL argument");
  char path[4096];
  LR_CALL(ckpt_path_(path, sizeof path, dir, CKPT_MANIFEST_NAME));
  vctx v = {.path = path};
  LR_CALL(check_manifest(&v, m));
  int64_t t = m->time_unix ? m->time_unix : (int64_t)time(NULL);
  cJSON *o = to_json(m, t);
  char *text = o ? cJSON_Print(o) : NULL;
  cJSON_Delete(o);
  LR_CHECK(text, LR_ERR_NOMEM, "%s: out of memory building the manifest", path);
  // The print ends in "\n}": the checksum member goes in its place.
  size_t n = strlen(text);
  LR_ASSERT(n >= 2 && !strcmp(text + n - 2, "\n}"));
  n -= 2;
  const size_t head = strlen(SUM_HEAD), tail = strlen(SUM_TAIL);
  char *buf = lr_fault_malloc(n + head + 8 + tail + 1);
  if (!buf) {
    cJSON_free(text);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  }
  memcpy(buf, text, n);
  cJSON_free(text);
  memcpy(buf + n, SUM_HEAD, head);
  n += head;
  snprintf(buf + n, 9, "%08x", (unsigned)ckpt_crc32_(0, buf, n));
  memcpy(buf + n + 8, SUM_TAIL, tail + 1);
  n += 8 + tail;
  int rc = afile_write_whole(path, buf, n, AFILE_UNDO_RENAME, CKPT_HINT_SPACE);
  free(buf);
  LR_CALL(rc);
  return LR_OK;
}

// ---------------------------------------------------------------------------
// reading

static int read_text(const char *path, char **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  struct stat st;
  int fd = file_open_regular(path, &st);
  if (fd == FILE_NOT_REGULAR)
    return LR_CORRUPT(path, 0, "is %s, not a regular file" CKPT_HINT_DAMAGED, file_type_name(&st));
  LR_CHECK(fd >= 0, LR_ERR_IO, "open %s: %s%s", path, strerror(errno),
           errno == ENOENT ? " (no manifest: the checkpoint was never committed)" : "");
  size_t n = (size_t)st.st_size;
  if (st.st_size < 2 || n > MAX_MANIFEST_BYTES) {
    close(fd);
    return LR_CORRUPT(path, 0, "manifest is %lld bytes, expected 2..%zu" CKPT_HINT_DAMAGED,
                      (long long)st.st_size, MAX_MANIFEST_BYTES);
  }
  char *s = malloc(n + 1);
  if (!s) {
    close(fd);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  }
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, s + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  int e = errno;
  close(fd);
  if (got != n) {
    free(s);
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "read %s: %s", path,
                    got < n ? "file shrank while reading" : strerror(e));
  }
  s[n] = '\0';
  const char *nul = memchr(s, '\0', n);
  if (nul) {
    int64_t at = nul - s;
    free(s);
    return LR_CORRUPT(path, at, "NUL byte in the manifest text" CKPT_HINT_DAMAGED);
  }
  *out = s;
  *n_out = n;
  return LR_OK;
}

// Top-level members of every version; which are required (and which
// allowed) depends on the version (required_v3, required_v12).
enum {
  M_FORMAT,
  M_VERSION,
  M_STEP,
  M_EPOCH,
  M_CURSOR,
  M_RNG_SEED,
  M_RNG_COUNTERS,
  M_WORLD,
  M_TIME,
  M_SHARDS,
  M_CONFIG_HASH,
  M_CONFIG,
  M_CHECKSUM,
  M_DATA,   // optional in every version
  M_LOOP,   // version 3
  M_GROUPS, // version 3
  M_N_ROWS, // versions 1-2
  M_D,      // versions 1-2
  M_N_DENSE, // versions 1-2
  M_COUNT
};
static const char *const top_keys[M_COUNT] = {
    "format", "version",     "step",   "epoch",   "cursor", "rng_seed", "rng_counters",
    "world_size", "time_unix", "shards", "config_hash", "config", "checksum", "data",
    "loop",   "groups",      "n_rows", "D",       "n_dense"};
// Shard members: group (version 3) or kind (versions 1-2).
enum { S_FILE, S_LO, S_HI, S_D, S_ARRAYS, S_AUX, S_BYTES, S_CRC, S_GROUP, S_KIND, S_COUNT };
static const char *const shard_keys[S_COUNT] = {"file",  "lo",    "hi",    "D",     "arrays",
                                                "aux",   "bytes", "crc32", "group", "kind"};

// Match the members of object o against keys[0..n): each at most once,
// nothing else, the first n_required of them present. found[k] receives
// member k (NULL if absent).
static int members(const vctx *v, const cJSON *o, const char *const keys[], int n, int n_required,
                   const cJSON *found[], const char *where, int nth) {
  for (int k = 0; k < n; k++)
    found[k] = NULL;
  for (const cJSON *c = o->child; c; c = c->next) {
    int k = 0;
    while (k < n && strcmp(c->string, keys[k]) != 0)
      k++;
    if (k == n) return bad(v, c->string, 0, "%s: unknown member \"%s\"", where, c->string);
    if (found[k])
      return bad(v, keys[k], nth + 1, "%s: member \"%s\" appears twice", where, keys[k]);
    found[k] = c;
  }
  for (int k = 0; k < n_required; k++)
    if (!found[k]) return bad(v, keys[0], nth, "%s: member \"%s\" is missing", where, keys[k]);
  return LR_OK;
}

// Of the members `keys` found (f), those listed in want (-1-terminated) must
// be present and those in never absent.
static int presence(const vctx *v, const cJSON *const f[], const char *const keys[],
                    const int *want, const int *never, const char *where, int nth,
                    int version) {
  for (const int *k = want; *k >= 0; k++)
    if (!f[*k])
      return bad(v, keys[0], nth, "%s: member \"%s\" is missing (format version %d)", where,
                 keys[*k], version);
  for (const int *k = never; *k >= 0; k++)
    if (f[*k])
      return bad(v, keys[*k], nth, "%s: member \"%s\" is not one of format version %d", where,
                 keys[*k], version);
  return LR_OK;
}

static int get_int(const vctx *v, const cJSON *x, const char *key, int nth, int64_t lo, int64_t hi,
                   int64_t *out) {
  double d = cJSON_IsNumber(x) ? x->valuedouble : 0.5;
  if (!cJSON_IsNumber(x) || d != (double)(int64_t)d || d < (double)lo || d > (double)hi)
    return bad(v, key, nth, "\"%s\" must be an integer in %lld..%lld", key, (long long)lo,
               (long long)hi);
  *out = (int64_t)d;
  return LR_OK;
}

// A string of exactly `digits` lowercase hex digits.
static int get_hex(const vctx *v, const cJSON *x, const char *key, int nth, int digits,
                   uint64_t *out) {
  const char *s = cJSON_IsString(x) ? x->valuestring : NULL;
  int ok = s && (int)strlen(s) == digits;
  for (int k = 0; ok && k < digits; k++)
    ok = (s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f');
  if (!ok)
    return bad(v, key, nth, "\"%s\" must be a string of %d lowercase hex digits", key, digits);
  *out = strtoull(s, NULL, 16);
  return LR_OK;
}

static int get_shard(const vctx *v, const cJSON *o, int k, int m_version, ckpt_shard_entry *e) {
  if (!cJSON_IsObject(o)) return bad(v, "shards", 0, "shard %d is not an object", k);
  const cJSON *f[S_COUNT];
  char where[32];
  snprintf(where, sizeof where, "shard %d", k);
  LR_CALL(members(v, o, shard_keys, S_COUNT, 0, f, where, k));
  static const int want3[] = {S_FILE, S_LO, S_HI, S_D, S_ARRAYS, S_AUX, S_BYTES, S_CRC, S_GROUP, -1},
                   never3[] = {S_KIND, -1};
  static const int want12[] = {S_FILE, S_LO, S_HI, S_D, S_ARRAYS, S_AUX, S_BYTES, S_CRC, S_KIND, -1},
                   never12[] = {S_GROUP, -1};
  const int v3 = m_version >= 3;
  LR_CALL(presence(v, f, shard_keys, v3 ? want3 : want12, v3 ? never3 : never12, where, k,
                   m_version));
  memset(e, 0, sizeof *e);
  const char *name = cJSON_IsString(f[S_FILE]) ? f[S_FILE]->valuestring : NULL;
  if (!name || strlen(name) >= CKPT_NAME_MAX)
    return bad(v, "file", k, "shard %d: \"file\" must be a string of < %d bytes", k, CKPT_NAME_MAX);
  memcpy(e->file, name, strlen(name) + 1);
  if (v3) { // the group by name (its kind comes from the group)
    const char *g = cJSON_IsString(f[S_GROUP]) ? f[S_GROUP]->valuestring : NULL;
    if (!g || !ckpt_group_name_ok(g))
      return bad(v, "group", k, "shard %d: \"group\" must be a group name", k);
    snprintf(e->desc.group, sizeof e->desc.group, "%s", g);
  } else { // versions 1-2: the two groups of that time, by kind
    const char *kind = cJSON_IsString(f[S_KIND]) ? f[S_KIND]->valuestring : "";
    e->desc.kind = !strcmp(kind, "items")   ? CKPT_KIND_ROWS
                   : !strcmp(kind, "dense") ? CKPT_KIND_DENSE
                                            : 0;
    if (!e->desc.kind)
      return bad(v, "kind", k, "shard %d: \"kind\" must be \"items\" or \"dense\"", k);
    snprintf(e->desc.group, sizeof e->desc.group, "%s", kind);
  }
  int64_t arrays = 0, bytes = 0;
  uint64_t crc = 0;
  LR_CALL(get_int(v, f[S_LO], "lo", k, 0, MAX_JSON_INT - 1, &e->desc.lo));
  LR_CALL(get_int(v, f[S_HI], "hi", k, 0, MAX_JSON_INT - 1, &e->desc.hi));
  LR_CALL(get_int(v, f[S_D], "D", k + 1, 1, MAX_JSON_INT - 1, &e->desc.D));
  LR_CALL(get_int(v, f[S_ARRAYS], "arrays", k, 1, CKPT_MAX_ARRAYS, &arrays));
  LR_CALL(get_int(v, f[S_AUX], "aux", k, -MAX_JSON_INT + 1, MAX_JSON_INT - 1, &e->desc.aux));
  LR_CALL(get_int(v, f[S_BYTES], "bytes", k, 128, MAX_JSON_INT - 1, &bytes));
  LR_CALL(get_hex(v, f[S_CRC], "crc32", k, 8, &crc));
  e->desc.n_arrays = (int)arrays;
  e->bytes = (uint64_t)bytes;
  e->crc32 = (uint32_t)crc;
  return LR_OK;
}

// The optional data fingerprint (absent: n_inter = -1, not recorded).
static int get_data(const vctx *v, const cJSON *o, lr_data_fp *d) {
  static const char *const keys[] = {"users", "items", "interactions", "hash"};
  memset(d, 0, sizeof *d);
  d->n_users = d->n_items = d->n_inter = -1;
  if (!o) return LR_OK;
  if (!cJSON_IsObject(o)) return bad(v, "data", 0, "\"data\" must be an object");
  const cJSON *f[4];
  LR_CALL(members(v, o, keys, 4, 4, f, "data", 0));
  LR_CALL(get_int(v, f[0], "users", 0, 0, MAX_JSON_INT - 1, &d->n_users));
  LR_CALL(get_int(v, f[1], "items", 0, 0, MAX_JSON_INT - 1, &d->n_items));
  LR_CALL(get_int(v, f[2], "interactions", 0, 0, MAX_JSON_INT - 1, &d->n_inter));
  return get_hex(v, f[3], "hash", 0, 16, &d->hash);
}

static int get_double(const vctx *v, const cJSON *x, const char *key, double *out) {
  if (!cJSON_IsNumber(x)) return bad(v, key, 0, "\"%s\" must be a number", key);
  *out = x->valuedouble;
  return LR_OK;
}

static int get_loop(const vctx *v, const cJSON *o, ckpt_loop *l) {
  static const char *const keys[] = {"epoch_loss", "best_score", "since_best", "best_epoch"};
  if (!cJSON_IsObject(o)) return bad(v, "loop", 0, "\"loop\" must be an object");
  const cJSON *f[4];
  LR_CALL(members(v, o, keys, 4, 4, f, "loop", 0));
  LR_CALL(get_double(v, f[0], "epoch_loss", &l->epoch_loss));
  LR_CALL(get_double(v, f[1], "best_score", &l->best_score));
  LR_CALL(get_int(v, f[2], "since_best", 0, 0, MAX_JSON_INT - 1, &l->since_best));
  return get_int(v, f[3], "best_epoch", 0, 0, MAX_JSON_INT - 1, &l->best_epoch);
}

static int get_groups(const vctx *v, const cJSON *a, ckpt_manifest *m) {
  static const char *const keys[] = {"name", "kind", "rows", "width", "arrays"};
  const int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
  if (n < 1 || n > CKPT_MAX_GROUPS)
    return bad(v, "groups", 0, "\"groups\" must be an array of 1..%d objects", CKPT_MAX_GROUPS);
  int i = 0;
  for (const cJSON *c = a->child; c; c = c->next, i++) {
    if (!cJSON_IsObject(c)) return bad(v, "groups", 0, "group %d is not an object", i);
    const cJSON *f[5];
    char where[32];
    snprintf(where, sizeof where, "group %d", i);
    LR_CALL(members(v, c, keys, 5, 5, f, where, i));
    ckpt_group *g = &m->groups[i];
    const char *name = cJSON_IsString(f[0]) ? f[0]->valuestring : NULL;
    if (!name || !ckpt_group_name_ok(name))
      return bad(v, "name", i, "group %d: \"name\" must be 1..15 of [A-Za-z0-9_]", i);
    snprintf(g->name, sizeof g->name, "%s", name);
    const char *kind = cJSON_IsString(f[1]) ? f[1]->valuestring : "";
    g->kind = !strcmp(kind, "rows") ? CKPT_KIND_ROWS : !strcmp(kind, "dense") ? CKPT_KIND_DENSE : 0;
    if (!g->kind) return bad(v, "kind", i, "group %s: \"kind\" must be \"rows\" or \"dense\"", name);
    int64_t arrays = 0;
    LR_CALL(get_int(v, f[2], "rows", i, 0, MAX_JSON_INT - 1, &g->n_rows));
    LR_CALL(get_int(v, f[3], "width", i, 1, MAX_JSON_INT - 1, &g->width));
    LR_CALL(get_int(v, f[4], "arrays", i, 1, CKPT_MAX_ARRAYS, &arrays));
    g->n_arrays = (int)arrays;
  }
  m->n_groups = n;
  return LR_OK;
}

static int get_all(const vctx *v, const cJSON *const f[], ckpt_manifest *m) {
  int64_t x = 0;
  uint64_t u = 0;
  LR_CALL(get_int(v, f[M_STEP], "step", 0, 0, MAX_JSON_INT - 1, &m->step));
  LR_CALL(get_int(v, f[M_EPOCH], "epoch", 0, 0, MAX_JSON_INT - 1, &m->epoch));
  LR_CALL(get_int(v, f[M_CURSOR], "cursor", 0, 0, MAX_JSON_INT - 1, &m->cursor));
  LR_CALL(get_hex(v, f[M_RNG_SEED], "rng_seed", 0, 16, &m->rng_seed));
  const cJSON *rc = f[M_RNG_COUNTERS];
  if (!cJSON_IsArray(rc) || cJSON_GetArraySize(rc) != CKPT_RNG_COUNTERS)
    return bad(v, "rng_counters", 0, "\"rng_counters\" must be an array of %d hex strings",
               CKPT_RNG_COUNTERS);
  for (int k = 0; k < CKPT_RNG_COUNTERS; k++)
    LR_CALL(get_hex(v, cJSON_GetArrayItem(rc, k), "rng_counters", 0, 16, &m->rng_counter[k]));
  LR_CALL(get_int(v, f[M_WORLD], "world_size", 0, 1, MAX_SHARDS, &x));
  m->world_size = (int)x;
  LR_CALL(get_int(v, f[M_TIME], "time_unix", 0, 0, MAX_JSON_INT - 1, &m->time_unix));
  if (m->version >= 3) {
    LR_CALL(get_loop(v, f[M_LOOP], &m->loop));
    LR_CALL(get_groups(v, f[M_GROUPS], m));
  } else {
    int64_t n_rows = 0, D = 0, n_dense = 0;
    LR_CALL(get_int(v, f[M_N_ROWS], "n_rows", 0, 0, MAX_JSON_INT - 1, &n_rows));
    LR_CALL(get_int(v, f[M_D], "D", 0, 1, MAX_JSON_INT - 1, &D));
    LR_CALL(get_int(v, f[M_N_DENSE], "n_dense", 0, 0, MAX_JSON_INT - 1, &n_dense));
    m->n_groups = 2; // their arrays from the shards, below
    m->groups[0] = (ckpt_group){"dense", CKPT_KIND_DENSE, 0, n_dense, 0};
    m->groups[1] = (ckpt_group){"items", CKPT_KIND_ROWS, 0, n_rows, D};
  }
  LR_CALL(get_hex(v, f[M_CONFIG_HASH], "config_hash", 0, 16, &u));
  m->config_hash = u;
  if (!cJSON_IsString(f[M_CONFIG])) return bad(v, "config", 0, "\"config\" must be a string");
  LR_CALL(ckpt_manifest_set_config(m, f[M_CONFIG]->valuestring, u));
  LR_CALL(get_data(v, f[M_DATA], &m->data));
  const cJSON *sh = f[M_SHARDS];
  int n = cJSON_IsArray(sh) ? cJSON_GetArraySize(sh) : -1;
  if (n < 1 || n > MAX_SHARDS)
    return bad(v, "shards", 0, "\"shards\" must be an array of 1..%d objects", MAX_SHARDS);
  int k = 0;
  for (const cJSON *c = sh->child; c; c = c->next, k++) {
    ckpt_shard_entry e;
    LR_CALL(get_shard(v, c, k, m->version, &e));
    const ckpt_group *g = ckpt_manifest_group(m, e.desc.group);
    if (m->version >= 3 && g) e.desc.kind = g->kind;
    if (m->version < 3) { // the shapes of the two groups from their shards
      ckpt_group *w = (ckpt_group *)g;
      if (!w->n_arrays) w->n_arrays = e.desc.n_arrays;
      if (w->kind == CKPT_KIND_DENSE && !w->width) w->width = e.desc.D;
    }
    LR_CALL(ckpt_manifest_add_shard(m, &e));
  }
  for (int i = 0; i < m->n_groups; i++) // versions 1-2 without a shard of a group
    if (!m->groups[i].n_arrays || !m->groups[i].width)
      return bad(v, "shards", 0, "no %s shards listed", m->groups[i].name);
  return LR_OK;
}

// Version 1: the checksum member is the crc32 of the canonical print of the
// manifest without it (whitespace is not covered: it changes nothing).
// Detaches (and frees) the checksum member of o.
static int check_canonical_sum(const vctx *v, cJSON *o) {
  char want[24];
  int rc = LR_OK;
  cJSON *sum = cJSON_DetachItemFromObjectCaseSensitive(o, "checksum");
  if (!canonical_checksum(o, want))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", v->path);
  else if (!cJSON_IsString(sum) || strcmp(sum->valuestring, want) != 0)
    rc = bad(v, "checksum", 0,
             "checksum expected \"%s\" (computed), found \"%s\": the "
             "manifest was edited or damaged",
             want, cJSON_IsString(sum) ? sum->valuestring : "(not a string)");
  cJSON_Delete(sum);
  return rc;
}

// Version 2: the file's n bytes end in SUM_HEAD, 8 hex digits, SUM_TAIL, the
// digits are the crc32 of every byte before them, and they are the value of
// the parsed checksum member `sum` (so every byte of the file is covered).
static int check_file_sum(const vctx *v, size_t n, const cJSON *sum) {
  const size_t head = strlen(SUM_HEAD), tail = strlen(SUM_TAIL);
  if (n < head + 8 + tail || memcmp(v->text + n - tail, SUM_TAIL, tail) != 0 ||
      memcmp(v->text + n - tail - 8 - head, SUM_HEAD, head) != 0)
    return lr_corrupt_error(__FILE__, __LINE__, v->path, (int64_t)(n > tail ? n - tail : 0),
                            "the file does not end with its checksum member "
                            "(\"checksum\": \"crc32:<8 hex digits>\" and the closing brace): "
                            "edited or damaged" CKPT_HINT_DAMAGED);
  const size_t at = n - tail - 8;
  char found[9];
  memcpy(found, v->text + at, 8);
  found[8] = '\0';
  char want[9];
  snprintf(want, sizeof want, "%08x", (unsigned)ckpt_crc32_(0, v->text, at));
  const char *member = cJSON_IsString(sum) ? sum->valuestring : "";
  if (strcmp(found, want) != 0 || strncmp(member, "crc32:", 6) != 0 || strcmp(member + 6, found))
    return lr_corrupt_error(__FILE__, __LINE__, v->path, (int64_t)at,
                            "checksum expected crc32:%s (computed over bytes 0..%zu), found "
                            "\"%.20s\": the manifest was edited or damaged" CKPT_HINT_DAMAGED,
                            want, at, member);
  return LR_OK;
}

// Parse, match members, check format, version and checksum, extract, validate.
static int parse_manifest(const vctx *v, size_t n, ckpt_manifest *m) {
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithLengthOpts(v->text, n + 1, &end, 1);
  if (!o) {
    int64_t at = end && end >= v->text && end <= v->text + n ? end - v->text : 0;
    return lr_corrupt_error(__FILE__, __LINE__, v->path, at, "not valid JSON" CKPT_HINT_DAMAGED);
  }
  int rc = LR_OK;
  const cJSON *f[M_COUNT];
  if (!cJSON_IsObject(o)) rc = bad(v, "format", 0, "the manifest is not a JSON object");
  if (rc == LR_OK) rc = members(v, o, top_keys, M_COUNT, 0, f, "manifest", 0);
  if (rc == LR_OK && !f[M_VERSION]) rc = bad(v, "format", 0, "member \"version\" is missing");
  if (rc == LR_OK &&
      !(cJSON_IsString(f[M_FORMAT]) && !strcmp(f[M_FORMAT]->valuestring, FORMAT_NAME)))
    rc = bad(v, "format", 0, "\"format\" must be \"%s\"", FORMAT_NAME);
  int64_t version = 0;
  if (rc == LR_OK) rc = get_int(v, f[M_VERSION], "version", 0, 0, 1 << 30, &version);
  // Version 1 is checked by its canonical checksum; any other version by the
  // whole-file checksum first, so that a damaged version number reads as
  // damage rather than as a format from another linrec.
  if (rc == LR_OK && version == 1) rc = check_canonical_sum(v, o);
  if (rc == LR_OK && version != 1) rc = check_file_sum(v, n, f[M_CHECKSUM]);
  if (rc == LR_OK && version != 1 && version != 2 && version != CKPT_VERSION)
    rc = lr_corrupt_error(__FILE__, __LINE__, v->path, key_offset(v, "version", 0),
                          "manifest format version %lld, this build reads versions 1 to %d\n"
                          "HINT: resume with the linrec version that wrote this checkpoint",
                          (long long)version, CKPT_VERSION);
  static const int common[] = {M_FORMAT, M_VERSION, M_STEP, M_EPOCH, M_CURSOR, M_RNG_SEED,
                               M_RNG_COUNTERS, M_WORLD, M_TIME, M_SHARDS, M_CONFIG_HASH,
                               M_CONFIG, M_CHECKSUM, -1};
  static const int want3[] = {M_LOOP, M_GROUPS, -1}, never3[] = {M_N_ROWS, M_D, M_N_DENSE, -1};
  static const int want12[] = {M_N_ROWS, M_D, M_N_DENSE, -1}, never12[] = {M_LOOP, M_GROUPS, -1};
  const int none[] = {-1};
  if (rc == LR_OK) rc = presence(v, f, top_keys, common, none, "manifest", 0, (int)version);
  if (rc == LR_OK)
    rc = presence(v, f, top_keys, version >= 3 ? want3 : want12, version >= 3 ? never3 : never12,
                  "manifest", 0, (int)version);
  if (rc == LR_OK) {
    m->version = (int)version;
    rc = get_all(v, f, m);
  }
  if (rc == LR_OK) rc = check_manifest(v, m);
  cJSON_Delete(o);
  return rc;
}

int ckpt_manifest_read(const char *dir, ckpt_manifest *m) {
  LR_CHECK(dir && m, LR_ERR_ARG, "ckpt_manifest_read: NULL argument");
  memset(m, 0, sizeof *m);
  char path[4096];
  LR_CALL(ckpt_path_(path, sizeof path, dir, CKPT_MANIFEST_NAME));
  char *text;
  size_t n;
  LR_CALL(read_text(path, &text, &n));
  vctx v = {.path = path, .text = text};
  int rc = parse_manifest(&v, n, m);
  free(text);
  if (rc != LR_OK) {
    ckpt_manifest_free(m);
    lr_error_trace(__FILE__, __LINE__, __func__);
  }
  return rc;
}

// ---------------------------------------------------------------------------
// printing

static void print_bytes(FILE *f, double b) {
  if (b >= 1e9)
    fprintf(f, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    fprintf(f, "%.2f MB", b / 1e6);
  else if (b >= 1e3)
    fprintf(f, "%.1f kB", b / 1e3);
  else
    fprintf(f, "%.0f B", b);
}

void ckpt_inspect_print(FILE *f, const ckpt_manifest *m) {
  char when[64] = "unknown";
  time_t t = (time_t)m->time_unix;
  struct tm tm;
  if (m->time_unix > 0 && gmtime_r(&t, &tm))
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  fprintf(f, "checkpoint   step %lld (epoch %lld, step %lld of the epoch), format version %d\n",
          (long long)m->step, (long long)m->epoch, (long long)m->cursor, m->version);
  fprintf(f, "written      %s by %d rank%s\n", when, m->world_size, m->world_size == 1 ? "" : "s");
  fprintf(f, "config       hash %016" PRIx64 " (%zu bytes of JSON)\n", m->config_hash,
          m->config_json ? strlen(m->config_json) : (size_t)0);
  fprintf(f, "groups      ");
  for (int i = 0; i < m->n_groups; i++)
    fprintf(f, "%s %s %lld x %lld (%d arrays)", i ? "," : "", m->groups[i].name,
            (long long)m->groups[i].n_rows, (long long)m->groups[i].width, m->groups[i].n_arrays);
  fprintf(f, "; Adam step %lld\n", (long long)ckpt_manifest_dense_step(m));

  char fp[160];
  data_fp_text(&m->data, fp, sizeof fp);
  if (m->data.n_inter >= 0)
    fprintf(f, "data         %s\n", fp);
  else
    fprintf(f, "data         not recorded (written before linrec recorded data fingerprints)\n");
  fprintf(f, "rng          seed %016" PRIx64 ", counters", m->rng_seed);
  for (int k = 0; k < CKPT_RNG_COUNTERS; k++)
    fprintf(f, " %" PRIx64, m->rng_counter[k]);
  double total = 0, raw = 0;
  for (int k = 0; k < m->n_shards; k++) {
    const ckpt_shard_desc *d = &m->shards[k].desc;
    total += (double)m->shards[k].bytes;
    raw += (double)(d->hi - d->lo) * (double)d->D * 4.0 * d->n_arrays;
  }
  fprintf(f, "\nshards       %d files, ", m->n_shards);
  print_bytes(f, total);
  fprintf(f, " (");
  print_bytes(f, raw);
  fprintf(f, " raw, ratio %.2f)\n", total > 0 ? raw / total : 0.0);
  for (int k = 0; k < m->n_shards; k++) {
    const ckpt_shard_entry *e = &m->shards[k];
    fprintf(f, "  %-18s %-6s rows %lld..%lld (%lld x %lld, %d arrays)  ", e->file,
            e->desc.group, (long long)e->desc.lo, (long long)e->desc.hi,
            (long long)(e->desc.hi - e->desc.lo), (long long)e->desc.D, e->desc.n_arrays);
    print_bytes(f, (double)e->bytes);
    fprintf(f, "  crc32 %08x\n", (unsigned)e->crc32);
  }
}
