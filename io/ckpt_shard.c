// ckpt_shard.c: the shard files of a checkpoint (format in ckpt.h, section 2):
// streaming compression on write, streaming decompression with row-range
// copy-out on read, so neither side holds more than two 1 MiB buffers beyond
// the caller's arrays. Not here: the manifest (ckpt_manifest.c), directories
// (ckpt.c).
#include <errno.h>    // errno, ENOENT, ENOSPC
#include <stdio.h>    // snprintf
#include <stdlib.h>   // malloc, free
#include <string.h>   // memcpy, memcmp, memset, strerror
#include <sys/stat.h> // struct stat
#include <unistd.h>   // pread, close
#include <zlib.h>     // crc32_combine
#include <zstd.h>     // ZSTD_compressStream2, ZSTD_decompressStream

#include "afile.h" // lr_afile, afile_open, afile_pwrite, afile_commit
#include "ckpt_internal.h"
#include "fault.h" // lr_fault_malloc
#include "file.h"
#include "le.h" // le_put_u32, le_get_u64, ...
#include "lr.h"

#define SHARD_MAGIC "LRCKPT01"
#define SHARD_VERSION 2u // version 1 (no group name) is still read
#define HDR_BYTES 128
#define CHUNK_BYTES ((size_t)1 << 20)
#define MAX_ROWS ((int64_t)1 << 48) // sanity bounds on header fields: sizes
#define MAX_D ((int64_t)1 << 24)    // computed from them cannot overflow
#define MAX_WINDOW_LOG 27           // = ZSTD_WINDOWLOG_LIMIT_DEFAULT; levels <= 19 use <= 2^23

// NULL if d is well-formed (and then *raw_bytes is its payload size), else
// what is wrong with it.
static const char *desc_problem(const ckpt_shard_desc *d, uint64_t *raw_bytes) {
  *raw_bytes = 0;
  if (d->kind != CKPT_KIND_ROWS && d->kind != CKPT_KIND_DENSE) return "kind is not rows or dense";
  if (!memchr(d->group, 0, sizeof d->group) || !ckpt_group_name_ok(d->group))
    return "group name is not 1..15 of [A-Za-z0-9_]";
  if (d->n_arrays < 1 || d->n_arrays > CKPT_MAX_ARRAYS) return "n_arrays outside 1..8";
  if (d->lo < 0 || d->lo > d->hi || d->hi > MAX_ROWS) return "row range not 0 <= lo <= hi <= 2^48";
  if (d->D < 1 || d->D > MAX_D) return "D outside 1..2^24";
  uint64_t rows = (uint64_t)(d->hi - d->lo);
  if (rows > 0 && (uint64_t)d->D * 4u * (uint64_t)d->n_arrays > (UINT64_MAX >> 8) / rows)
    return "payload size overflows";
  *raw_bytes = rows * (uint64_t)d->D * 4u * (uint64_t)d->n_arrays;
  return NULL;
}

static void header_encode(unsigned char *b, const ckpt_shard_desc *d, uint64_t raw, uint64_t comp,
                          uint32_t payload_crc, int level) {
  memset(b, 0, HDR_BYTES);
  memcpy(b, SHARD_MAGIC, 8);
  le_put_u32(b + 8, SHARD_VERSION);
  le_put_u32(b + 12, HDR_BYTES);
  le_put_u32(b + 16, (uint32_t)d->kind);
  le_put_u32(b + 20, (uint32_t)d->n_arrays);
  le_put_u64(b + 24, (uint64_t)d->lo);
  le_put_u64(b + 32, (uint64_t)d->hi);
  le_put_u64(b + 40, (uint64_t)d->D);
  le_put_u64(b + 48, (uint64_t)d->aux);
  le_put_u64(b + 56, raw);
  le_put_u64(b + 64, comp);
  le_put_u32(b + 72, payload_crc);
  le_put_u32(b + 76, (uint32_t)level);
  memcpy(b + 80, d->group, strlen(d->group));
  le_put_u32(b + 124, ckpt_crc32_(0, b, 124));
}

// ---------------------------------------------------------------------------
// writing

typedef struct {
  lr_afile f; // the file being written (f.tmp: its path)
  ZSTD_CCtx *cctx;
  unsigned char *buf;   // (CHUNK_BYTES) compressed output
  uint64_t pos;         // next file offset
  uint32_t payload_crc; // of the compressed bytes, as they are written
  uint32_t file_crc;    // of the whole file, once complete
  double zstd_seconds;
} shard_writer;

// Feed one array to the compressor (ending the frame when last) and write
// out what it produces.
static int put_array(shard_writer *w, const void *src, size_t n, int last) {
  ZSTD_inBuffer in = {src, n, 0};
  ZSTD_EndDirective mode = last ? ZSTD_e_end : ZSTD_e_continue;
  for (;;) {
    ZSTD_outBuffer out = {w->buf, CHUNK_BYTES, 0};
    double t = ckpt_now_();
    size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
    w->zstd_seconds += ckpt_now_() - t;
    LR_CHECK(!ZSTD_isError(left), LR_ERR_NOMEM, "%s: zstd compression failed: %s", w->f.tmp,
             ZSTD_getErrorName(left));
    if (out.pos > 0) {
      LR_CALL(afile_pwrite(&w->f, w->buf, out.pos, w->pos));
      w->payload_crc = ckpt_crc32_(w->payload_crc, w->buf, out.pos);
      w->pos += out.pos;
    }
    if (last ? left == 0 : in.pos == in.size) return LR_OK;
  }
}

static int setup_cctx(shard_writer *w, const char *path, int level, uint64_t raw) {
  w->cctx = ZSTD_createCCtx();
  LR_CHECK(w->cctx, LR_ERR_NOMEM, "%s: cannot create a zstd context", path);
  size_t r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
  if (!ZSTD_isError(r)) r = ZSTD_CCtx_setPledgedSrcSize(w->cctx, raw);
  LR_CHECK(!ZSTD_isError(r), LR_ERR_NOMEM, "%s: cannot set up zstd: %s", path,
           ZSTD_getErrorName(r));
  return LR_OK;
}

// Write the whole shard into the open w->f: the payload from byte 128, then
// the header (which records the payload's size and crc) at byte 0.
static int write_body(shard_writer *w, const ckpt_shard_desc *d, const float *const arrays[],
                      uint64_t raw, int level) {
  size_t arr_bytes = (size_t)(raw / (uint64_t)d->n_arrays);
  w->pos = HDR_BYTES;
  w->payload_crc = ckpt_crc32_(0, NULL, 0);
  for (int a = 0; a < d->n_arrays; a++)
    LR_CALL(put_array(w, arr_bytes ? (const void *)arrays[a] : (const void *)"", arr_bytes,
                      a == d->n_arrays - 1));
  unsigned char h[HDR_BYTES];
  header_encode(h, d, raw, w->pos - HDR_BYTES, w->payload_crc, level);
  LR_CALL(afile_pwrite(&w->f, h, HDR_BYTES, 0));
  // the whole-file crc32: header then payload
  w->file_crc = (uint32_t)crc32_combine(ckpt_crc32_(0, h, HDR_BYTES), w->payload_crc,
                                        (z_off_t)(w->pos - HDR_BYTES));
  return LR_OK;
}

int ckpt_shard_write(const char *dir, const char *name, const ckpt_shard_desc *desc,
                     const float *const arrays[], int zstd_level, ckpt_file_info *out) {
  if (out) memset(out, 0, sizeof *out);
  double t0 = ckpt_now_();
  LR_CHECK(dir && name && desc && out, LR_ERR_ARG, "ckpt_shard_write: NULL argument");
  LR_CHECK(ckpt_name_ok_(name), LR_ERR_ARG,
           "ckpt_shard_write: '%s' is not a plain file name of at most %d bytes", name,
           CKPT_NAME_MAX - 1);
  uint64_t raw;
  const char *why = desc_problem(desc, &raw);
  LR_CHECK(!why, LR_ERR_ARG, "ckpt_shard_write %s: %s", name, why);
  if (zstd_level == 0) zstd_level = 3;
  LR_CHECK(zstd_level >= 1 && zstd_level <= 19, LR_ERR_ARG,
           "ckpt_shard_write %s: zstd level %d outside 1..19", name, zstd_level);
  for (int a = 0; a < desc->n_arrays; a++)
    LR_CHECK(arrays && (arrays[a] || raw == 0), LR_ERR_ARG, "ckpt_shard_write %s: array %d is NULL",
             name, a);
  char path[AFILE_PATH_MAX];
  LR_CALL(ckpt_path_(path, sizeof path, dir, name));

  shard_writer w = {0};
  int rc = LR_OK;
  w.buf = lr_fault_malloc(CHUNK_BYTES);
  if (!w.buf)
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for a %zu-byte buffer", path,
                  CHUNK_BYTES);
  if (rc == LR_OK) rc = setup_cctx(&w, path, zstd_level, raw);
  // A shard whose durability is unknown must not be left to be trusted.
  if (rc == LR_OK) rc = afile_open(&w.f, path, AFILE_UNDO_RENAME, CKPT_HINT_SPACE);
  if (rc == LR_OK) rc = write_body(&w, desc, arrays, raw, zstd_level);
  if (rc == LR_OK) rc = afile_commit(&w.f);
  afile_abort(&w.f);
  if (rc != LR_OK) {
    lr_error_trace(__FILE__, __LINE__, __func__);
  } else {
    snprintf(out->entry.file, sizeof out->entry.file, "%s", name);
    out->entry.desc = *desc;
    out->entry.bytes = w.pos;
    out->entry.crc32 = w.file_crc;
    out->raw_bytes = raw;
    out->compress_seconds = w.zstd_seconds;
    out->seconds = ckpt_now_() - t0;
  }
  ZSTD_freeCCtx(w.cctx);
  free(w.buf);
  return rc;
}

// ---------------------------------------------------------------------------
// reading

typedef struct {
  const char *path;
  const ckpt_shard_entry *e;
  int fd;
  uint64_t size;              // actual file bytes
  uint64_t raw, comp;         // header: payload bytes
  uint32_t payload_crc;       // header
  unsigned char h[HDR_BYTES]; // the header as read
  unsigned char *in, *out;    // (CHUNK_BYTES) each
  ZSTD_DCtx *dctx;
} shard_reader;

static int pread_all(const shard_reader *r, void *buf, size_t n, uint64_t off) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = pread(r->fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    LR_CHECK(k >= 0, LR_ERR_IO, "read %s: %s", r->path, strerror(errno));
    if (k == 0)
      return LR_CORRUPT(r->path, (int64_t)off, "unexpected end of file" CKPT_HINT_DAMAGED);
    p += k, n -= (size_t)k, off += (uint64_t)k;
  }
  return LR_OK;
}

// One field of the header against the manifest's entry.
static int expect_field(const shard_reader *r, int off, const char *what, int64_t found,
                        int64_t want) {
  if (found == want) return LR_OK;
  return LR_CORRUPT(r->path, off, "%s: manifest says %lld, file header says %lld" CKPT_HINT_DAMAGED,
                    what, (long long)want, (long long)found);
}

static int header_check(shard_reader *r) {
  const unsigned char *b = r->h;
  if (memcmp(b, SHARD_MAGIC, 8) != 0) {
    char found[9];
    for (int k = 0; k < 8; k++)
      found[k] = b[k] >= 32 && b[k] < 127 ? (char)b[k] : '?';
    found[8] = '\0';
    return LR_CORRUPT(
        r->path, 0,
        "not a linrec checkpoint shard: magic expected '%s', found '%s'" CKPT_HINT_DAMAGED,
        SHARD_MAGIC, found);
  }
  uint32_t want = le_get_u32(b + 124), got = ckpt_crc32_(0, b, 124);
  if (want != got)
    return LR_CORRUPT(r->path, 124, "header crc32 expected %08x, computed %08x" CKPT_HINT_DAMAGED,
                      want, got);
  const uint32_t version = le_get_u32(b + 8);
  if (version != 1 && version != SHARD_VERSION)
    return LR_CORRUPT(r->path, 8,
                      "shard format version %u, this build reads versions 1 and %u\nHINT: resume "
                      "with the linrec version that wrote this checkpoint",
                      version, SHARD_VERSION);
  if (le_get_u32(b + 12) != HDR_BYTES)
    return LR_CORRUPT(r->path, 12, "header size expected %d, found %u" CKPT_HINT_DAMAGED, HDR_BYTES,
                      le_get_u32(b + 12));
  // version 2: the group name at 80..95, NUL-padded; then reserved bytes
  const int reserved_from = version == 1 ? 80 : 96;
  for (int k = reserved_from; k < 124; k++)
    if (b[k])
      return LR_CORRUPT(r->path, k, "reserved header byte is %u, expected 0" CKPT_HINT_DAMAGED,
                        b[k]);
  ckpt_shard_desc d = {.kind = (int)le_get_u32(b + 16),
                       .n_arrays = (int)le_get_u32(b + 20),
                       .lo = (int64_t)le_get_u64(b + 24),
                       .hi = (int64_t)le_get_u64(b + 32),
                       .D = (int64_t)le_get_u64(b + 40),
                       .aux = (int64_t)le_get_u64(b + 48)};
  if (version == 1) // the two groups of that time, by kind
    snprintf(d.group, sizeof d.group, "%s", d.kind == CKPT_KIND_DENSE ? "dense" : "items");
  else
    memcpy(d.group, b + 80, CKPT_GROUP_MAX);
  for (int k = (int)strnlen(d.group, CKPT_GROUP_MAX); version == 2 && k < CKPT_GROUP_MAX; k++)
    if (b[80 + k])
      return LR_CORRUPT(r->path, 80 + k, "group name not NUL-padded" CKPT_HINT_DAMAGED);
  uint64_t raw;
  const char *why = desc_problem(&d, &raw);
  if (why) return LR_CORRUPT(r->path, 16, "header: %s" CKPT_HINT_DAMAGED, why);
  r->raw = le_get_u64(b + 56);
  r->comp = le_get_u64(b + 64);
  r->payload_crc = le_get_u32(b + 72);
  if (r->raw != raw)
    return LR_CORRUPT(r->path, 56,
                      "raw size expected %llu (from the shape), found %llu" CKPT_HINT_DAMAGED,
                      (unsigned long long)raw, (unsigned long long)r->raw);
  if (r->comp != r->size - HDR_BYTES)
    return LR_CORRUPT(r->path, 64, "file is %llu bytes, header says %llu%s" CKPT_HINT_DAMAGED,
                      (unsigned long long)r->size, (unsigned long long)(r->comp + HDR_BYTES),
                      r->size < r->comp + HDR_BYTES ? " (truncated)" : "");
  const ckpt_shard_desc *x = &r->e->desc;
  LR_CALL(expect_field(r, 16, "kind", d.kind, x->kind));
  LR_CALL(expect_field(r, 20, "n_arrays", d.n_arrays, x->n_arrays));
  LR_CALL(expect_field(r, 24, "first row", d.lo, x->lo));
  LR_CALL(expect_field(r, 32, "end row", d.hi, x->hi));
  LR_CALL(expect_field(r, 40, "row width D", d.D, x->D));
  LR_CALL(expect_field(r, 48, "aux (Adam step)", d.aux, x->aux));
  if (strcmp(d.group, x->group))
    return LR_CORRUPT(r->path, 80, "group: manifest says %s, file header says %s" CKPT_HINT_DAMAGED,
                      x->group, d.group);
  return LR_OK;
}

// Copy the part of raw payload bytes [p0, p0+n) that falls in the wanted
// rows [olo, ohi) of each array into the caller's arrays (rows from lo).
typedef struct {
  float *const *arrays;
  int n_arrays;
  uint64_t arr_bytes;        // per array
  uint64_t want_lo, want_hi; // byte range wanted within each array
  uint64_t dst_off;          // byte offset of row olo in the destination
} copy_plan;

static void copy_out(const copy_plan *c, uint64_t p0, const unsigned char *src, size_t n) {
  if (!c->arrays || c->want_lo >= c->want_hi) return;
  for (int a = 0; a < c->n_arrays; a++) {
    if (!c->arrays[a]) continue;
    uint64_t s = (uint64_t)a * c->arr_bytes + c->want_lo, e = s + (c->want_hi - c->want_lo);
    uint64_t x0 = s > p0 ? s : p0, x1 = e < p0 + n ? e : p0 + n;
    if (x0 < x1)
      memcpy((unsigned char *)c->arrays[a] + c->dst_off + (x0 - s), src + (x0 - p0),
             (size_t)(x1 - x0));
  }
}

// Decode the frame at byte 128 to the end of the file, checking it as it goes.
static int stream_payload(shard_reader *r, const copy_plan *plan) {
  r->dctx = ZSTD_createDCtx();
  LR_CHECK(r->dctx, LR_ERR_NOMEM, "%s: cannot create a zstd context", r->path);
  size_t z = ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_windowLogMax, MAX_WINDOW_LOG);
  LR_CHECK(!ZSTD_isError(z), LR_ERR_NOMEM, "%s: zstd: %s", r->path, ZSTD_getErrorName(z));
  uint32_t crc = ckpt_crc32_(0, NULL, 0);
  uint64_t off = HDR_BYTES, produced = 0;
  size_t left = 1; // 0 once the frame is complete
  while (off < r->size) {
    size_t n = r->size - off < CHUNK_BYTES ? (size_t)(r->size - off) : CHUNK_BYTES;
    LR_CALL(pread_all(r, r->in, n, off));
    crc = ckpt_crc32_(crc, r->in, n);
    if (off == HDR_BYTES) {
      unsigned long long cs = ZSTD_getFrameContentSize(r->in, n);
      if (cs != (unsigned long long)r->raw)
        return LR_CORRUPT(
            r->path, HDR_BYTES,
            "zstd frame header: content size expected %llu, found %s%lld" CKPT_HINT_DAMAGED,
            (unsigned long long)r->raw, cs == ZSTD_CONTENTSIZE_ERROR ? "no valid frame, " : "",
            cs >= ZSTD_CONTENTSIZE_ERROR ? -1LL : (long long)cs);
    }
    ZSTD_inBuffer in = {r->in, n, 0};
    for (;;) {
      if (left == 0) {
        if (in.pos == in.size) break;
        return LR_CORRUPT(r->path, (int64_t)(off + in.pos),
                          "%llu bytes follow the end of the zstd frame" CKPT_HINT_DAMAGED,
                          (unsigned long long)(r->size - off - in.pos));
      }
      ZSTD_outBuffer out = {r->out, CHUNK_BYTES, 0};
      left = ZSTD_decompressStream(r->dctx, &out, &in);
      if (ZSTD_isError(left))
        return LR_CORRUPT(r->path, (int64_t)(off + in.pos), "zstd: %s" CKPT_HINT_DAMAGED,
                          ZSTD_getErrorName(left));
      if (out.pos > r->raw - produced)
        return LR_CORRUPT(
            r->path, (int64_t)(off + in.pos),
            "zstd frame decodes to more than the %llu bytes recorded" CKPT_HINT_DAMAGED,
            (unsigned long long)r->raw);
      copy_out(plan, produced, r->out, out.pos);
      produced += out.pos;
      if (left != 0 && in.pos == in.size && out.pos < out.size) break; // needs input
    }
    off += n;
  }
  if (left != 0 || produced != r->raw)
    return LR_CORRUPT(
        r->path, (int64_t)r->size,
        "zstd frame ends early: %llu of %llu bytes decoded (truncated?)" CKPT_HINT_DAMAGED,
        (unsigned long long)produced, (unsigned long long)r->raw);
  if (crc != r->payload_crc)
    return LR_CORRUPT(r->path, HDR_BYTES,
                      "payload crc32 expected %08x (header), computed %08x" CKPT_HINT_DAMAGED,
                      r->payload_crc, crc);
  uint32_t whole =
      (uint32_t)crc32_combine(ckpt_crc32_(0, r->h, HDR_BYTES), crc, (z_off_t)(r->size - HDR_BYTES));
  if (whole != r->e->crc32)
    return LR_CORRUPT(
        r->path, 0,
        "file crc32 expected %08x (manifest), computed %08x: a self-consistent shard, "
        "but not the one this manifest recorded (copied from another "
        "checkpoint?)" CKPT_HINT_DAMAGED,
        r->e->crc32, whole);
  return LR_OK;
}

static int open_checked(shard_reader *r) {
  struct stat st;
  r->fd = file_open_regular(r->path, &st);
  if (r->fd == FILE_NOT_REGULAR)
    return LR_CORRUPT(r->path, 0,
                      "shard listed in the manifest is %s, not a regular file" CKPT_HINT_DAMAGED,
                      file_type_name(&st));
  if (r->fd < 0 && errno == ENOENT)
    return LR_CORRUPT(r->path, 0, "shard listed in the manifest is missing" CKPT_HINT_DAMAGED);
  LR_CHECK(r->fd >= 0, LR_ERR_IO, "open %s: %s", r->path, strerror(errno));
  r->size = (uint64_t)st.st_size;
  if (r->size != r->e->bytes)
    return LR_CORRUPT(r->path, (int64_t)r->size,
                      "file is %llu bytes, manifest says %llu%s" CKPT_HINT_DAMAGED,
                      (unsigned long long)r->size, (unsigned long long)r->e->bytes,
                      r->size < r->e->bytes ? " (truncated)" : "");
  if (r->size < HDR_BYTES)
    return LR_CORRUPT(r->path, 0,
                      "file is %llu bytes, shorter than the %d-byte header" CKPT_HINT_DAMAGED,
                      (unsigned long long)r->size, HDR_BYTES);
  LR_CALL(pread_all(r, r->h, HDR_BYTES, 0));
  LR_CALL(header_check(r));
  return LR_OK;
}

int ckpt_shard_read(const char *dir, const ckpt_shard_entry *e, int64_t lo, int64_t hi,
                    float *const arrays[]) {
  LR_CHECK(dir && e && lo <= hi, LR_ERR_ARG, "ckpt_shard_read: bad arguments");
  LR_CHECK(ckpt_name_ok_(e->file), LR_ERR_ARG, "ckpt_shard_read: '%.*s' is not a plain file name",
           CKPT_NAME_MAX, e->file);
  char path[4096];
  LR_CALL(ckpt_path_(path, sizeof path, dir, e->file));
  shard_reader r = {.path = path, .e = e, .fd = -1};
  int rc = open_checked(&r);
  if (rc == LR_OK) {
    r.in = malloc(CHUNK_BYTES);
    r.out = malloc(CHUNK_BYTES);
    if (!r.in || !r.out)
      rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for read buffers", path);
  }
  if (rc == LR_OK) {
    const ckpt_shard_desc *d = &e->desc;
    uint64_t rb = (uint64_t)d->D * 4u;
    int64_t olo = lo > d->lo ? lo : d->lo, ohi = hi < d->hi ? hi : d->hi;
    copy_plan plan = {
        .arrays = arrays, .n_arrays = d->n_arrays, .arr_bytes = (uint64_t)(d->hi - d->lo) * rb};
    if (olo < ohi) {
      plan.want_lo = (uint64_t)(olo - d->lo) * rb;
      plan.want_hi = (uint64_t)(ohi - d->lo) * rb;
      plan.dst_off = (uint64_t)(olo - lo) * rb;
    }
    rc = stream_payload(&r, &plan);
  }
  if (r.fd >= 0) close(r.fd);
  ZSTD_freeDCtx(r.dctx);
  free(r.in);
  free(r.out);
  if (rc != LR_OK) lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
}
