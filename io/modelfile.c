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
#define VERSION 2u
#define HDR_BYTES 64
#define MAX_JSON_BYTES (1 << 24)
#define HINT                                                                                       \
  "\nHINT: the model file is damaged; re-train (or copy it again from where it was written)"

typedef struct {
  uint64_t json_bytes, n_dense, n_rows, D, payload_bytes;
  uint32_t json_crc, payload_crc;
} hdr;

struct lr_modelfile_writer {
  lr_afile f; // the file being written (f.path: its final name)
  ZSTD_CCtx *cctx;
  unsigned char *z; // compressed output chunk (ZSTD_CStreamOutSize)
  size_t zcap;
  uint64_t payload_bytes;     // compressed bytes written so far
  uint32_t payload_crc;       // CRC32 of those bytes
  uint64_t want, got;         // floats expected / appended
  unsigned char h[HDR_BYTES]; // header, payload size filled in by commit
};

static int mw_fail(lr_modelfile_writer *w, int rc) {
  modelfile_abandon(w);
  return rc;
}

int modelfile_begin(lr_modelfile_writer **out, const char *path, const char *config_json,
                    size_t n_dense, int64_t n_rows, int64_t D) {
  *out = NULL;
  size_t jn = strlen(config_json);
  LR_CHECK(jn <= MAX_JSON_BYTES, LR_ERR_ARG, "%s: config JSON of %zu bytes exceeds %d", path, jn,
           MAX_JSON_BYTES);
  lr_modelfile_writer *w = lr_fault_malloc(sizeof *w);
  if (!w) return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  memset(w, 0, sizeof *w);
  w->want = n_dense + (uint64_t)n_rows * (uint64_t)D;
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
  le_put_u32(w->h + 12, (uint32_t)crc32(0, (const unsigned char *)config_json, (uInt)jn));
  le_put_u64(w->h + 16, jn);
  le_put_u64(w->h + 24, n_dense);
  le_put_u64(w->h + 32, (uint64_t)n_rows);
  le_put_u64(w->h + 40, (uint64_t)D);
  int rc = afile_open(&w->f, path, 0, NULL);
  // the header is rewritten by commit once the payload size is known
  if (rc == LR_OK) rc = afile_write(&w->f, w->h, HDR_BYTES);
  if (rc == LR_OK) rc = afile_write(&w->f, config_json, jn);
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
  free(w);
}

// Open path, read and check the header. On success *fp is positioned at the
// config JSON.
static int read_header(const char *path, FILE **fp, hdr *h) {
  *fp = NULL;
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
  unsigned char b[HDR_BYTES];
  int rc = LR_OK;
  uint32_t version = 0;
  uint64_t want = 0;
  if (fread(b, 1, HDR_BYTES, f) != HDR_BYTES)
    rc = LR_CORRUPT(path, 0, "file shorter than the %d-byte header" HINT, HDR_BYTES);
  else if (memcmp(b, MAGIC, 8))
    rc = LR_CORRUPT(path, 0, "not a linrec model file (bad magic)");
  else if (le_get_u32(b + 60) != (uint32_t)crc32(0, b, 60))
    rc = LR_CORRUPT(path, 60, "header checksum mismatch" HINT);
  else if ((version = le_get_u32(b + 8)) == 1)
    rc = LR_CORRUPT(path, 8,
                    "format version 1: its config section is under no checksum, so a damaged "
                    "byte there would silently change results; this build reads version %u "
                    "only\nHINT: re-train to write a version %u model file",
                    VERSION, VERSION);
  else if (version != VERSION)
    rc = LR_CORRUPT(path, 8, "format version %u, expected %u", version, VERSION);
  if (rc == LR_OK) {
    h->json_crc = le_get_u32(b + 12);
    h->json_bytes = le_get_u64(b + 16);
    h->n_dense = le_get_u64(b + 24);
    h->n_rows = le_get_u64(b + 32);
    h->D = le_get_u64(b + 40);
    h->payload_bytes = le_get_u64(b + 48);
    h->payload_crc = le_get_u32(b + 56);
    if (h->json_bytes > MAX_JSON_BYTES)
      rc = LR_CORRUPT(path, 16, "config JSON of %llu bytes is implausible" HINT,
                      (unsigned long long)h->json_bytes);
  }
  if (rc == LR_OK) {
    want = HDR_BYTES + h->json_bytes + h->payload_bytes;
    if (h->payload_bytes > UINT64_MAX / 2 || (uint64_t)st.st_size != want)
      rc = LR_CORRUPT(path, (int64_t)st.st_size,
                      "file is %lld bytes, header says %llu (truncated?)" HINT,
                      (long long)st.st_size, (unsigned long long)want);
  }
  if (rc != LR_OK) {
    fclose(f);
    return rc;
  }
  *fp = f;
  return LR_OK;
}

int modelfile_read_config(const char *path, char **config_json) {
  *config_json = NULL;
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h));
  char *s = malloc(h.json_bytes + 1);
  if (!s) {
    fclose(f);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  }
  int rc = LR_OK;
  uint32_t crc = 0;
  const char *nul = NULL;
  if (fread(s, 1, h.json_bytes, f) != h.json_bytes)
    rc = LR_CORRUPT(path, HDR_BYTES, "cannot read the config JSON" HINT);
  else if ((crc = (uint32_t)crc32(0, (unsigned char *)s, (uInt)h.json_bytes)) != h.json_crc)
    rc = LR_CORRUPT(path, HDR_BYTES,
                    "config section (bytes %d..%llu): CRC32 expected %08x (header), computed "
                    "%08x: the stored config was changed or damaged" HINT,
                    HDR_BYTES, (unsigned long long)(HDR_BYTES + h.json_bytes), h.json_crc, crc);
  else if ((nul = memchr(s, 0, h.json_bytes)))
    rc = LR_CORRUPT(path, HDR_BYTES + (nul - s), "NUL byte in the config section" HINT);
  fclose(f);
  if (rc != LR_OK) {
    free(s);
    return rc;
  }
  s[h.json_bytes] = 0;
  *config_json = s;
  return LR_OK;
}

// Copy the part of the decompressed payload bytes [pos, pos+n) that falls in
// [lo, hi) to dst (which holds the bytes from lo).
static void take(unsigned char *dst, uint64_t lo, uint64_t hi, const unsigned char *src,
                 uint64_t pos, uint64_t n) {
  uint64_t a = pos > lo ? pos : lo, b = pos + n < hi ? pos + n : hi;
  if (a < b) memcpy(dst + (a - lo), src + (a - pos), b - a);
}

int modelfile_read(const char *path, float *dense, size_t n_dense, float *items, int64_t row_lo,
                   int64_t row_count, int64_t n_rows, int64_t D) {
  LR_ASSERT(row_lo >= 0 && row_count >= 0 && row_lo + row_count <= n_rows);
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h));
  if (h.n_dense != n_dense || h.n_rows != (uint64_t)n_rows || h.D != (uint64_t)D) {
    fclose(f);
    return LR_CORRUPT(path, 24,
                      "shape mismatch: file has %llu dense floats, %llu item rows, D=%llu; "
                      "the config needs %zu, %lld, %lld",
                      (unsigned long long)h.n_dense, (unsigned long long)h.n_rows,
                      (unsigned long long)h.D, n_dense, (long long)n_rows, (long long)D);
  }
  const int64_t at = (int64_t)(HDR_BYTES + h.json_bytes);
  const uint64_t raw_bytes = (n_dense + (uint64_t)n_rows * (uint64_t)D) * sizeof(float);
  const uint64_t dense_hi = n_dense * sizeof(float);
  const uint64_t rows_lo = dense_hi + (uint64_t)row_lo * (uint64_t)D * sizeof(float);
  const uint64_t rows_hi = rows_lo + (uint64_t)row_count * (uint64_t)D * sizeof(float);
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
      take((unsigned char *)dense, 0, dense_hi, out, pos, ob.pos);
      take((unsigned char *)items, rows_lo, rows_hi, out, pos, ob.pos);
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
out:
  ZSTD_freeDCtx(dctx);
  free(zin);
  free(out);
  fclose(f);
  return rc;
}
