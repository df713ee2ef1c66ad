// modelfile.c: the model file of modelfile.h.
#include "modelfile.h"

#include <errno.h>    // errno
#include <stdio.h>    // FILE, fdopen, fread
#include <stdlib.h>   // malloc, free
#include <string.h>   // memcpy, memchr, memset, strerror
#include <sys/stat.h> // struct stat
#include <unistd.h>   // close
#include <zlib.h>     // crc32
#include <zstd.h>     // ZSTD_compressStream2, ZSTD_decompressStream

#include "afile.h" // lr_afile, afile_open, afile_write, afile_pwrite, afile_commit
#include "fault.h" // lr_fault_malloc
#include "file.h"  // file_open_regular
#include "le.h"    // le_put_u32, le_get_u64, ...
#include "lr.h"

#define MAGIC "LRMODEL1"
#define VERSION 4u
#define HDR_BYTES 64
#define GROUP_BYTES 32 // a group table entry
#define MAX_JSON_BYTES (1 << 24)
#define HINT                                                                                       \
  "\nHINT: the model file is damaged; re-train (or copy it again from where it was written)"

typedef struct {
  uint32_t version;
  uint64_t json_bytes, payload_bytes;
  uint32_t json_crc, payload_crc; // json_crc: of section 2 (version 2: the config alone)
  uint64_t ids_bytes;             // section 4 (version 4; 0: none)
  uint32_t ids_crc;
  int n_groups;
  lr_mf_group g[LR_MF_MAX_GROUPS];
} hdr;

// Floats of the payload: the groups' rows x width summed. UINT64_MAX if
// that overflows (a damaged table).
static uint64_t payload_floats(const lr_mf_group *g, int n) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) {
    const uint64_t r = (uint64_t)g[i].n_rows, w = (uint64_t)g[i].width;
    if (w && r > (UINT64_MAX / 8 - total) / w) return UINT64_MAX;
    total += r * w;
  }
  return total;
}

// Encode group i's table entry into b (GROUP_BYTES).
static void group_put(unsigned char *b, const lr_mf_group *g) {
  memset(b, 0, GROUP_BYTES);
  memcpy(b, g->name, strnlen(g->name, LR_MF_NAME_MAX - 1));
  le_put_u64(b + 16, (uint64_t)g->n_rows);
  le_put_u64(b + 24, (uint64_t)g->width);
}

struct lr_modelfile_writer {
  lr_afile f; // the file being written (f.path: its final name)
  ZSTD_CCtx *cctx;
  unsigned char *z; // compressed output chunk (ZSTD_CStreamOutSize)
  size_t zcap;
  uint64_t payload_bytes;     // compressed bytes written so far
  uint32_t payload_crc;       // CRC32 of those bytes
  uint64_t want, got;         // floats expected / appended
  unsigned char h[HDR_BYTES]; // header, payload size filled in by commit
  unsigned char *ids;         // section 4, compressed (modelfile_set_ids), or NULL
  size_t ids_bytes;
};

static int mw_fail(lr_modelfile_writer *w, int rc) {
  modelfile_abandon(w);
  return rc;
}

int modelfile_begin(lr_modelfile_writer **out, const char *path, const char *config_json,
                    const lr_mf_group *groups, int n_groups) {
  *out = NULL;
  size_t jn = strlen(config_json);
  LR_CHECK(jn <= MAX_JSON_BYTES, LR_ERR_ARG, "%s: config JSON of %zu bytes exceeds %d", path, jn,
           MAX_JSON_BYTES);
  LR_CHECK(n_groups >= 1 && n_groups <= LR_MF_MAX_GROUPS, LR_ERR_ARG, "%s: %d groups", path,
           n_groups);
  unsigned char table[LR_MF_MAX_GROUPS * GROUP_BYTES];
  for (int i = 0; i < n_groups; i++) {
    const size_t len = strnlen(groups[i].name, LR_MF_NAME_MAX);
    LR_CHECK(len >= 1 && len < LR_MF_NAME_MAX && groups[i].n_rows >= 0 && groups[i].width >= 1,
             LR_ERR_ARG, "%s: group %d: bad name or shape", path, i);
    group_put(table + i * GROUP_BYTES, &groups[i]);
  }
  const size_t tn = (size_t)n_groups * GROUP_BYTES;
  lr_modelfile_writer *w = lr_fault_malloc(sizeof *w);
  if (!w) return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  memset(w, 0, sizeof *w);
  w->want = payload_floats(groups, n_groups);
  w->payload_crc = (uint32_t)crc32(0, NULL, 0);
  w->zcap = ZSTD_CStreamOutSize();
  w->z = lr_fault_malloc(w->zcap);
  w->cctx = ZSTD_createCCtx();
  if (!w->z || !w->cctx)
    return mw_fail(w, lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path));
  if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, 3)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(w->cctx, w->want * sizeof(float))))
    return mw_fail(w, lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: zstd parameters", path));
  memcpy(w->h, MAGIC, 8);
  le_put_u32(w->h + 8, VERSION);
  uint32_t crc = (uint32_t)crc32(0, (const unsigned char *)config_json, (uInt)jn);
  le_put_u32(w->h + 12, (uint32_t)crc32(crc, table, (uInt)tn));
  le_put_u64(w->h + 16, jn);
  le_put_u64(w->h + 24, (uint64_t)n_groups);
  int rc = afile_open(&w->f, path, 0, NULL);
  // the header is rewritten by commit once the payload size is known
  if (rc == LR_OK) rc = afile_write(&w->f, w->h, HDR_BYTES);
  if (rc == LR_OK) rc = afile_write(&w->f, config_json, jn);
  if (rc == LR_OK) rc = afile_write(&w->f, table, tn);
  if (rc != LR_OK) return mw_fail(w, rc);
  *out = w;
  return LR_OK;
}

// Feed in (n bytes) to the compressor, or finish the frame (end = 1), and
// write what comes out.
static int mw_pump(lr_modelfile_writer *w, const void *in, size_t n, int end) {
  ZSTD_inBuffer ib = {in, n, 0};
  for (;;) {
    ZSTD_outBuffer ob = {w->z, w->zcap, 0};
    size_t r = ZSTD_compressStream2(w->cctx, &ob, &ib, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(r))
      return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: compress: %s", w->f.tmp,
                      ZSTD_getErrorName(r));
    if (ob.pos) LR_CALL(afile_write(&w->f, w->z, ob.pos));
    w->payload_bytes += ob.pos;
    w->payload_crc = (uint32_t)crc32(w->payload_crc, w->z, (uInt)ob.pos);
    if (end ? r == 0 : ib.pos == ib.size) return LR_OK;
  }
}

int modelfile_append(lr_modelfile_writer *w, const float *x, size_t n) {
  LR_CHECK(w->got + n <= w->want, LR_ERR_ARG, "%s: %llu floats appended, the header says %llu",
           w->f.path, (unsigned long long)(w->got + n), (unsigned long long)w->want);
  w->got += n;
  return mw_pump(w, x, n * sizeof(float), 0);
}

int modelfile_commit(lr_modelfile_writer *w) {
  int rc = LR_OK;
  if (w->got != w->want)
    return mw_fail(w, lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                               "%s: %llu floats appended, the header says %llu", w->f.path,
                               (unsigned long long)w->got, (unsigned long long)w->want));
  if ((rc = mw_pump(w, NULL, 0, 1)) != LR_OK) return mw_fail(w, rc);
  if (w->ids && (rc = afile_write(&w->f, w->ids, w->ids_bytes)) != LR_OK) return mw_fail(w, rc);
  le_put_u64(w->h + 32, w->ids_bytes);
  le_put_u32(w->h + 40, w->ids ? (uint32_t)crc32(0, w->ids, (uInt)w->ids_bytes) : 0);
  le_put_u64(w->h + 48, w->payload_bytes);
  le_put_u32(w->h + 56, w->payload_crc);
  le_put_u32(w->h + 60, (uint32_t)crc32(0, w->h, 60));
  rc = afile_pwrite(&w->f, w->h, HDR_BYTES, 0);
  if (rc == LR_OK) rc = afile_commit(&w->f);
  if (rc != LR_OK) return mw_fail(w, rc);
  modelfile_abandon(w); // frees w; nothing left to remove
  return LR_OK;
}

void modelfile_abandon(lr_modelfile_writer *w) {
  if (!w) return;
  afile_abort(&w->f);
  ZSTD_freeCCtx(w->cctx);
  free(w->z);
  free(w->ids);
  free(w);
}

// Raw bytes of the names of t from index first (u32 length + bytes each).
static size_t ids_raw_bytes(const lr_names *t, int64_t first) {
  return (size_t)(t->off[t->n] - t->off[first]) + 3 * (size_t)(t->n - first);
}

static size_t ids_put(unsigned char *p, const lr_names *t, int64_t first) {
  size_t at = 0;
  for (int64_t k = first; k < t->n; k++) {
    const size_t len = (size_t)(t->off[k + 1] - t->off[k] - 1);
    le_put_u32(p + at, (uint32_t)len);
    memcpy(p + at + 4, names_get(t, k), len);
    at += 4 + len;
  }
  return at;
}

int modelfile_set_ids(lr_modelfile_writer *w, const lr_names *users, const lr_names *items) {
  for (int side = 0; side < 2; side++) {
    const lr_names *t = side ? items : users;
    for (int64_t k = side; k < t->n; k++) {
      const size_t len = (size_t)(t->off[k + 1] - t->off[k] - 1);
      if (len < 1 || len > LR_ID_MAX_BYTES)
        return mw_fail(w, lr_error(LR_ERR_ARG, __FILE__, __LINE__,
                                   "%s: %s %lld has an id of %zu bytes (1..%d)", w->f.path,
                                   side ? "item" : "user", (long long)k, len, LR_ID_MAX_BYTES));
    }
  }
  if (items->n < 1)
    return mw_fail(w, lr_error(LR_ERR_ARG, __FILE__, __LINE__, "%s: no item names", w->f.path));
  const size_t raw_n = 16 + ids_raw_bytes(users, 0) + ids_raw_bytes(items, 1);
  unsigned char *raw = lr_fault_malloc(raw_n);
  const size_t cap = ZSTD_compressBound(raw_n);
  free(w->ids);
  w->ids = lr_fault_malloc(cap);
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  int rc = LR_OK;
  if (!raw || !w->ids || !cc) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for the id maps", w->f.path);
  } else {
    le_put_u64(raw, (uint64_t)users->n);
    le_put_u64(raw + 8, (uint64_t)(items->n - 1));
    size_t at = 16;
    at += ids_put(raw + at, users, 0);
    at += ids_put(raw + at, items, 1);
    LR_ASSERT(at == raw_n);
    size_t n = 0;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)) ||
        ZSTD_isError(n = ZSTD_compress2(cc, w->ids, cap, raw, raw_n)))
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: compressing the id maps failed",
                    w->f.path);
    w->ids_bytes = n;
  }
  ZSTD_freeCCtx(cc);
  free(raw);
  if (rc != LR_OK) return mw_fail(w, rc);
  return LR_OK;
}

// Open path, read and check the header, the config (into *json when not
// NULL, NUL-terminated, caller frees) and the group table. On success *fp is
// positioned at the payload.
static int read_header(const char *path, FILE **fp, hdr *h, char **json) {
  *fp = NULL;
  memset(h, 0, sizeof *h);
  struct stat st;
  int fd = file_open_regular(path, &st);
  LR_CHECK(fd != FILE_NOT_REGULAR, LR_ERR_IO, "%s: is %s, not a model file", path,
           file_type_name(&st));
  LR_CHECK(fd >= 0, LR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    int e = errno;
    close(fd);
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot open: %s", path, strerror(e));
  }
  unsigned char b[HDR_BYTES], table[LR_MF_MAX_GROUPS * GROUP_BYTES];
  char *s = NULL;
  int rc = LR_OK;
  uint64_t want = 0, ng = 0;
  if (fread(b, 1, HDR_BYTES, f) != HDR_BYTES)
    rc = LR_CORRUPT(path, 0, "file shorter than the %d-byte header" HINT, HDR_BYTES);
  else if (memcmp(b, MAGIC, 8))
    rc = LR_CORRUPT(path, 0, "not a linrec model file (bad magic)");
  else if (le_get_u32(b + 60) != (uint32_t)crc32(0, b, 60))
    rc = LR_CORRUPT(path, 60, "header checksum mismatch" HINT);
  else if ((h->version = le_get_u32(b + 8)) == 1)
    rc = LR_CORRUPT(path, 8,
                    "format version 1: its config section is under no checksum, so a damaged "
                    "byte there would silently change results; this build reads versions 2 "
                    "to %u\nHINT: re-train to write a version %u model file",
                    VERSION, VERSION);
  else if (h->version < 2 || h->version > VERSION)
    rc = LR_CORRUPT(path, 8, "format version %u, expected 2 to %u", h->version, VERSION);
  if (rc == LR_OK) {
    h->json_crc = le_get_u32(b + 12);
    h->json_bytes = le_get_u64(b + 16);
    h->payload_bytes = le_get_u64(b + 48);
    h->payload_crc = le_get_u32(b + 56);
    if (h->version >= 4) h->ids_bytes = le_get_u64(b + 32), h->ids_crc = le_get_u32(b + 40);
    if (h->version == 3 && (le_get_u64(b + 32) || le_get_u64(b + 40)))
      rc = LR_CORRUPT(path, 32, "version 3: reserved bytes 32..47 are not zero" HINT);
    if (h->ids_bytes > UINT64_MAX / 4)
      rc = LR_CORRUPT(path, 32, "id-map section of %llu bytes is implausible" HINT,
                      (unsigned long long)h->ids_bytes);
    if (h->json_bytes > MAX_JSON_BYTES)
      rc = LR_CORRUPT(path, 16, "config JSON of %llu bytes is implausible" HINT,
                      (unsigned long long)h->json_bytes);
    if (h->version == 2) { // dense floats, item rows, D: the two groups of that time
      h->n_groups = 2;
      snprintf(h->g[0].name, LR_MF_NAME_MAX, "dense");
      h->g[0].n_rows = (int64_t)le_get_u64(b + 24), h->g[0].width = 1;
      snprintf(h->g[1].name, LR_MF_NAME_MAX, "items");
      h->g[1].n_rows = (int64_t)le_get_u64(b + 32), h->g[1].width = (int64_t)le_get_u64(b + 40);
    } else if ((ng = le_get_u64(b + 24)) < 1 || ng > LR_MF_MAX_GROUPS) {
      rc = LR_CORRUPT(path, 24, "%llu groups (1..%d)" HINT, (unsigned long long)ng,
                      LR_MF_MAX_GROUPS);
    } else {
      h->n_groups = (int)ng;
    }
  }
  const uint64_t tn = h->version == 2 ? 0 : (uint64_t)h->n_groups * GROUP_BYTES;
  if (rc == LR_OK) {
    want = HDR_BYTES + h->json_bytes + tn + h->payload_bytes + h->ids_bytes;
    if (h->payload_bytes > UINT64_MAX / 2 || (uint64_t)st.st_size != want)
      rc = LR_CORRUPT(path, (int64_t)st.st_size,
                      "file is %lld bytes, header says %llu (truncated?)" HINT,
                      (long long)st.st_size, (unsigned long long)want);
  }
  if (rc == LR_OK && !(s = malloc(h->json_bytes + 1)))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  if (rc == LR_OK) {
    uint32_t crc = 0;
    const char *nul = NULL;
    if (fread(s, 1, h->json_bytes, f) != h->json_bytes || fread(table, 1, tn, f) != tn)
      rc = LR_CORRUPT(path, HDR_BYTES, "cannot read the config JSON and group table" HINT);
    else if ((crc = (uint32_t)crc32(
                  (uint32_t)crc32(0, (unsigned char *)s, (uInt)h->json_bytes), table, (uInt)tn)) !=
             h->json_crc)
      rc = LR_CORRUPT(path, HDR_BYTES,
                      "config section (bytes %d..%llu): CRC32 expected %08x (header), computed "
                      "%08x: the stored config or group table was changed or damaged" HINT,
                      HDR_BYTES, (unsigned long long)(HDR_BYTES + h->json_bytes + tn), h->json_crc,
                      crc);
    else if ((nul = memchr(s, 0, h->json_bytes)))
      rc = LR_CORRUPT(path, HDR_BYTES + (nul - s), "NUL byte in the config section" HINT);
    s[h->json_bytes] = 0;
  }
  for (int i = 0; rc == LR_OK && h->version != 2 && i < h->n_groups; i++) {
    const unsigned char *e = table + i * GROUP_BYTES;
    const int64_t at = (int64_t)(HDR_BYTES + h->json_bytes) + i * GROUP_BYTES;
    memcpy(h->g[i].name, e, LR_MF_NAME_MAX);
    const uint64_t r = le_get_u64(e + 16), w = le_get_u64(e + 24);
    const size_t len = strnlen(h->g[i].name, LR_MF_NAME_MAX);
    if (len == 0 || len == LR_MF_NAME_MAX)
      rc = LR_CORRUPT(path, at, "group %d: bad name" HINT, i);
    else if (r > INT64_MAX / 8 || w < 1 || w > INT64_MAX / 8)
      rc = LR_CORRUPT(path, at + 16, "group %s: %llu rows of width %llu" HINT, h->g[i].name,
                      (unsigned long long)r, (unsigned long long)w);
    h->g[i].n_rows = (int64_t)r, h->g[i].width = (int64_t)w;
  }
  if (rc == LR_OK && payload_floats(h->g, h->n_groups) == UINT64_MAX)
    rc = LR_CORRUPT(path, 24, "the groups' sizes overflow" HINT);
  if (rc != LR_OK || !json) free(s);
  if (rc != LR_OK) {
    fclose(f);
    return rc;
  }
  if (json) *json = s;
  *fp = f;
  return LR_OK;
}

int modelfile_read_config(const char *path, char **config_json, lr_mf_group *groups,
                          int *n_groups) {
  *config_json = NULL;
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h, config_json));
  fclose(f);
  if (groups) memcpy(groups, h.g, (size_t)h.n_groups * sizeof *groups);
  if (n_groups) *n_groups = h.n_groups;
  return LR_OK;
}

// Copy the part of the decompressed payload bytes [pos, pos+n) that falls in
// [lo, hi) to dst (which holds the bytes from lo).
static void take(unsigned char *dst, uint64_t lo, uint64_t hi, const unsigned char *src,
                 uint64_t pos, uint64_t n) {
  uint64_t a = pos > lo ? pos : lo, b = pos + n < hi ? pos + n : hi;
  if (a < b) memcpy(dst + (a - lo), src + (a - pos), b - a);
}

int modelfile_read(const char *path, const lr_mf_group *want, int n_want, const lr_mf_dest *dest,
                   int n_dest) {
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h, NULL));
  int bad = h.n_groups != n_want ? (h.n_groups < n_want ? h.n_groups : n_want) : -1;
  for (int i = 0; bad < 0 && i < n_want; i++)
    if (strcmp(h.g[i].name, want[i].name) || h.g[i].n_rows != want[i].n_rows ||
        h.g[i].width != want[i].width)
      bad = i;
  if (bad >= 0) {
    fclose(f);
    const lr_mf_group none = {"(none)", 0, 0};
    const lr_mf_group *fg = bad < h.n_groups ? &h.g[bad] : &none;
    const lr_mf_group *wg = bad < n_want ? &want[bad] : &none;
    return LR_CORRUPT(path, 24,
                      "shape mismatch: group %d of the file is %s (%lld x %lld), the config needs "
                      "%s (%lld x %lld) (%d groups in the file, %d needed)",
                      bad, fg->name, (long long)fg->n_rows, (long long)fg->width, wg->name,
                      (long long)wg->n_rows, (long long)wg->width, h.n_groups, n_want);
  }
  // each destination as a byte range of the decompressed payload
  uint64_t dlo[LR_MF_MAX_GROUPS * 2], dhi[LR_MF_MAX_GROUPS * 2];
  LR_ASSERT(n_dest <= LR_MF_MAX_GROUPS * 2);
  for (int k = 0; k < n_dest; k++) {
    uint64_t base = 0;
    int found = 0;
    for (int i = 0; i < h.n_groups && !found; i++) {
      const uint64_t w = (uint64_t)h.g[i].width * sizeof(float);
      if (!strcmp(h.g[i].name, dest[k].name)) {
        LR_ASSERT(dest[k].lo >= 0 && dest[k].lo <= dest[k].hi && dest[k].hi <= h.g[i].n_rows);
        dlo[k] = base + (uint64_t)dest[k].lo * w, dhi[k] = base + (uint64_t)dest[k].hi * w;
        found = 1;
      }
      base += (uint64_t)h.g[i].n_rows * w;
    }
    LR_ASSERT(found);
  }
  const int64_t at = (int64_t)(HDR_BYTES + h.json_bytes) +
                     (h.version == 2 ? 0 : (int64_t)h.n_groups * GROUP_BYTES);
  const uint64_t raw_bytes = payload_floats(h.g, h.n_groups) * sizeof(float);
  size_t icap = ZSTD_DStreamInSize(), ocap = ZSTD_DStreamOutSize();
  unsigned char *zin = malloc(icap), *out = malloc(ocap);
  ZSTD_DCtx *dctx = ZSTD_createDCtx();
  int rc = LR_OK;
  if (!zin || !out || !dctx) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
    goto out;
  }
  if (fseek(f, (long)at, SEEK_SET) != 0) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: seek: %s", path, strerror(errno));
    goto out;
  }
  uint64_t left = h.payload_bytes, pos = 0;
  uint32_t crc = (uint32_t)crc32(0, NULL, 0);
  size_t r = 1; // ZSTD_decompressStream's last return: 0 once the frame is complete
  while (left > 0 && rc == LR_OK) {
    size_t n = left < icap ? (size_t)left : icap;
    if (fread(zin, 1, n, f) != n) {
      rc = LR_CORRUPT(path, at, "cannot read the payload" HINT);
      break;
    }
    left -= n;
    crc = (uint32_t)crc32(crc, zin, (uInt)n);
    ZSTD_inBuffer ib = {zin, n, 0};
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob = {out, ocap, 0};
      r = ZSTD_decompressStream(dctx, &ob, &ib);
      if (ZSTD_isError(r)) {
        rc = LR_CORRUPT(path, at, "payload section: %s" HINT, ZSTD_getErrorName(r));
        break;
      }
      if (pos + ob.pos > raw_bytes) {
        rc = LR_CORRUPT(path, at, "payload decompresses to more than the %llu bytes expected" HINT,
                        (unsigned long long)raw_bytes);
        break;
      }
      for (int k = 0; k < n_dest; k++)
        take((unsigned char *)dest[k].dst, dlo[k], dhi[k], out, pos, ob.pos);
      pos += ob.pos;
      if (r == 0 && ib.pos < ib.size) {
        rc = LR_CORRUPT(path, at, "data after the end of the payload frame" HINT);
        break;
      }
    }
  }
  if (rc == LR_OK && (r != 0 || pos != raw_bytes))
    rc = LR_CORRUPT(path, at, "payload: %s" HINT,
                    r != 0 ? "truncated frame" : "wrong decompressed size");
  if (rc == LR_OK && crc != h.payload_crc)
    rc = LR_CORRUPT(path, at, "payload section: CRC32 expected %08x (header), computed %08x" HINT,
                    h.payload_crc, crc);
  // section 4 (the id maps) follows: its CRC32 too, so that any damaged byte
  // fails every load of the file, even one that does not use the ids
  if (rc == LR_OK && h.ids_bytes) {
    uint64_t left4 = h.ids_bytes;
    uint32_t c4 = (uint32_t)crc32(0, NULL, 0);
    const int64_t at4 = at + (int64_t)h.payload_bytes;
    while (left4 > 0 && rc == LR_OK) {
      size_t n = left4 < icap ? (size_t)left4 : icap;
      if (fread(zin, 1, n, f) != n) rc = LR_CORRUPT(path, at4, "cannot read the id-map section" HINT);
      c4 = (uint32_t)crc32(c4, zin, (uInt)n);
      left4 -= n;
    }
    if (rc == LR_OK && c4 != h.ids_crc)
      rc = LR_CORRUPT(path, at4, "id-map section: CRC32 expected %08x (header), computed %08x" HINT,
                      h.ids_crc, c4);
  }
out:
  ZSTD_freeDCtx(dctx);
  free(zin);
  free(out);
  fclose(f);
  return rc;
}

int modelfile_read_ids(const char *path, lr_names *users, lr_names *items) {
  memset(users, 0, sizeof *users);
  memset(items, 0, sizeof *items);
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h, NULL));
  if (!h.ids_bytes) {
    fclose(f);
    return LR_OK;
  }
  const int64_t at = (int64_t)(HDR_BYTES + h.json_bytes + (uint64_t)h.n_groups * GROUP_BYTES +
                               h.payload_bytes);
  unsigned char *z = malloc((size_t)h.ids_bytes), *raw = NULL;
  const char **p = NULL;
  int rc = LR_OK;
  unsigned long long rn = 0;
  if (!z) rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  if (rc == LR_OK && (fseek(f, (long)at, SEEK_SET) != 0 || fread(z, 1, h.ids_bytes, f) != h.ids_bytes))
    rc = LR_CORRUPT(path, at, "cannot read the id-map section" HINT);
  if (rc == LR_OK && (uint32_t)crc32(0, z, (uInt)h.ids_bytes) != h.ids_crc)
    rc = LR_CORRUPT(path, at, "id-map section: CRC32 expected %08x (header), computed %08x" HINT,
                    h.ids_crc, (uint32_t)crc32(0, z, (uInt)h.ids_bytes));
  if (rc == LR_OK) {
    rn = ZSTD_getFrameContentSize(z, h.ids_bytes);
    if (rn >= ZSTD_CONTENTSIZE_ERROR || rn < 16 || rn > ((unsigned long long)1 << 40))
      rc = LR_CORRUPT(path, at, "id-map section: bad zstd frame size" HINT);
  }
  if (rc == LR_OK && !(raw = malloc((size_t)rn)))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for the id maps", path);
  if (rc == LR_OK) {
    size_t n = ZSTD_decompress(raw, (size_t)rn, z, h.ids_bytes);
    if (ZSTD_isError(n) || n != rn)
      rc = LR_CORRUPT(path, at, "id-map section: zstd: %s" HINT,
                      ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame");
  }
  uint64_t U = 0, I = 0;
  if (rc == LR_OK) {
    U = le_get_u64(raw), I = le_get_u64(raw + 8);
    if (U > (rn - 16) / 5 || I > (rn - 16) / 5 || U + I > (rn - 16) / 5)
      rc = LR_CORRUPT(path, at, "id-map section: %llu users and %llu items do not fit in %llu bytes" HINT,
                      (unsigned long long)U, (unsigned long long)I, rn);
  }
  // the rows of the groups must agree: "users" and "items" tables when present
  for (int g = 0; rc == LR_OK && g < h.n_groups; g++) {
    const int64_t want = !strcmp(h.g[g].name, "items") ? (int64_t)I + 1
                         : !strcmp(h.g[g].name, "users") ? (int64_t)U : -1;
    if (want >= 0 && h.g[g].n_rows != want)
      rc = LR_CORRUPT(path, at, "id-map section: %lld %s ids for a table of %lld rows" HINT,
                      (long long)want, h.g[g].name, (long long)h.g[g].n_rows);
  }
  if (rc == LR_OK && !(p = malloc((size_t)(U + I + 1) * sizeof *p)))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for the id maps", path);
  // names in place: each length word is overwritten by the previous name's NUL
  uint64_t pos = 16;
  for (uint64_t k = 0; rc == LR_OK && k < U + I; k++) {
    if (rn - pos < 4 || le_get_u32(raw + pos) > rn - pos - 4)
      rc = LR_CORRUPT(path, at, "id-map section: id %llu runs past its end" HINT,
                      (unsigned long long)k);
    else {
      const uint32_t len = le_get_u32(raw + pos);
      if (len < 1 || len > LR_ID_MAX_BYTES || memchr(raw + pos + 4, 0, len))
        rc = LR_CORRUPT(path, at, "id-map section: id %llu has %u bytes or a NUL" HINT,
                        (unsigned long long)k, len);
      pos += 4 + len;
    }
  }
  if (rc == LR_OK && pos != rn)
    rc = LR_CORRUPT(path, at, "id-map section: %llu bytes after the ids" HINT, rn - pos);
  if (rc == LR_OK) {
    // copy out: names_build wants NUL-terminated strings
    char *buf = malloc((size_t)rn + 1);
    if (!buf) rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
    uint64_t q = 16, w = 0;
    for (uint64_t k = 0; rc == LR_OK && k < U + I; k++) {
      const uint32_t len = le_get_u32(raw + q);
      memcpy(buf + w, raw + q + 4, len);
      buf[w + len] = '\0';
      p[k < U ? k : k + 1] = buf + w;
      w += len + 1, q += 4 + len;
    }
    if (rc == LR_OK) {
      p[U] = "";
      rc = names_build(users, p, (int64_t)U);
      if (rc == LR_OK) rc = names_build(items, p + U, (int64_t)I + 1);
    }
    free(buf);
  }
  free(p);
  free(z);
  free(raw);
  fclose(f);
  if (rc != LR_OK) {
    names_free(users);
    names_free(items);
  }
  return rc;
}
