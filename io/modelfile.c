// modelfile.c: the model file of modelfile.h.
#include "modelfile.h"

#include <errno.h>  // errno
#include <stdio.h>  // FILE, fopen
#include <stdlib.h> // malloc, free
#include <string.h> // memcpy, strerror
#include <unistd.h> // fsync, fileno
#include <zlib.h>   // crc32
#include <zstd.h>   // ZSTD_compress2, ZSTD_decompress

#include "lr.h"

#define MAGIC "LRMODEL1"
#define VERSION 1u
#define HDR_BYTES 64

typedef struct {
  uint64_t json_bytes, n_dense, n_rows, D, payload_bytes;
} hdr;

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

int modelfile_write(const char *path, const char *config_json, const float *dense,
                    size_t n_dense, const float *items, int64_t n_rows, int64_t D) {
  size_t raw_bytes = (n_dense + (size_t)n_rows * (size_t)D) * sizeof(float);
  unsigned char *raw = malloc(raw_bytes ? raw_bytes : 1);
  size_t cap = ZSTD_compressBound(raw_bytes);
  unsigned char *z = malloc(cap ? cap : 1);
  char tmp[4096];
  FILE *f = NULL;
  int rc = LR_OK;
  if (!raw || !z) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
    goto out;
  }
  memcpy(raw, dense, n_dense * sizeof(float));
  memcpy(raw + n_dense * sizeof(float), items, (size_t)n_rows * (size_t)D * sizeof(float));
  ZSTD_CCtx *cctx = ZSTD_createCCtx();
  if (!cctx) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: zstd context", path);
    goto out;
  }
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  size_t zn = ZSTD_compress2(cctx, z, cap, raw, raw_bytes);
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(zn)) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: compress: %s", path, ZSTD_getErrorName(zn));
    goto out;
  }
  unsigned char h[HDR_BYTES] = {0};
  size_t jn = strlen(config_json);
  memcpy(h, MAGIC, 8);
  put_u32(h + 8, VERSION);
  put_u64(h + 16, jn);
  put_u64(h + 24, n_dense);
  put_u64(h + 32, (uint64_t)n_rows);
  put_u64(h + 40, (uint64_t)D);
  put_u64(h + 48, zn);
  put_u32(h + 60, (uint32_t)crc32(0, h, 60));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  f = fopen(tmp, "wb");
  if (!f) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot create: %s", tmp, strerror(errno));
    goto out;
  }
  if (fwrite(h, 1, HDR_BYTES, f) != HDR_BYTES || fwrite(config_json, 1, jn, f) != jn ||
      fwrite(z, 1, zn, f) != zn || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: write failed: %s", tmp, strerror(errno));
    fclose(f);
    f = NULL;
    remove(tmp);
    goto out;
  }
  if (fclose(f) != 0) {
    f = NULL;
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: close failed: %s", tmp, strerror(errno));
    remove(tmp);
    goto out;
  }
  f = NULL;
  if (rename(tmp, path) != 0) {
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: rename failed: %s", path, strerror(errno));
    remove(tmp);
  }
out:
  free(raw);
  free(z);
  return rc;
}

// Open path, read and check the header. On success *fp is positioned at the
// config JSON.
static int read_header(const char *path, FILE **fp, hdr *h) {
  *fp = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot open: %s", path, strerror(errno));
  unsigned char b[HDR_BYTES];
  if (fread(b, 1, HDR_BYTES, f) != HDR_BYTES) {
    fclose(f);
    return LR_CORRUPT(path, 0, "file shorter than the %d-byte header", HDR_BYTES);
  }
  if (memcmp(b, MAGIC, 8)) {
    fclose(f);
    return LR_CORRUPT(path, 0, "not a linrec model file (bad magic)");
  }
  if (get_u32(b + 60) != (uint32_t)crc32(0, b, 60)) {
    fclose(f);
    return LR_CORRUPT(path, 60, "header checksum mismatch");
  }
  if (get_u32(b + 8) != VERSION) {
    fclose(f);
    return LR_CORRUPT(path, 8, "format version %u, expected %u", get_u32(b + 8), VERSION);
  }
  h->json_bytes = get_u64(b + 16);
  h->n_dense = get_u64(b + 24);
  h->n_rows = get_u64(b + 32);
  h->D = get_u64(b + 40);
  h->payload_bytes = get_u64(b + 48);
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: seek: %s", path, strerror(errno));
  }
  long size = ftell(f);
  uint64_t want = HDR_BYTES + h->json_bytes + h->payload_bytes;
  if (size < 0 || (uint64_t)size != want) {
    fclose(f);
    return LR_CORRUPT(path, size, "file is %ld bytes, header says %llu (truncated?)", size,
                      (unsigned long long)want);
  }
  fseek(f, HDR_BYTES, SEEK_SET);
  *fp = f;
  return LR_OK;
}

int modelfile_read_config(const char *path, char **config_json) {
  *config_json = NULL;
  FILE *f;
  hdr h;
  LR_CALL(read_header(path, &f, &h));
  if (h.json_bytes > (1u << 24)) {
    fclose(f);
    return LR_CORRUPT(path, 16, "config JSON of %llu bytes is implausible",
                      (unsigned long long)h.json_bytes);
  }
  char *s = malloc(h.json_bytes + 1);
  if (!s) {
    fclose(f);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  }
  if (fread(s, 1, h.json_bytes, f) != h.json_bytes) {
    free(s);
    fclose(f);
    return LR_CORRUPT(path, HDR_BYTES, "cannot read the config JSON");
  }
  s[h.json_bytes] = 0;
  fclose(f);
  *config_json = s;
  return LR_OK;
}

int modelfile_read(const char *path, float *dense, size_t n_dense, float *items, int64_t n_rows,
                   int64_t D) {
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
  size_t raw_bytes = (n_dense + (size_t)n_rows * (size_t)D) * sizeof(float);
  unsigned char *z = malloc(h.payload_bytes ? h.payload_bytes : 1);
  unsigned char *raw = malloc(raw_bytes ? raw_bytes : 1);
  int rc = LR_OK;
  if (!z || !raw) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
    goto out;
  }
  fseek(f, (long)(HDR_BYTES + h.json_bytes), SEEK_SET);
  if (fread(z, 1, h.payload_bytes, f) != h.payload_bytes) {
    rc = LR_CORRUPT(path, (int64_t)(HDR_BYTES + h.json_bytes), "cannot read the payload");
    goto out;
  }
  size_t got = ZSTD_decompress(raw, raw_bytes, z, h.payload_bytes);
  if (ZSTD_isError(got) || got != raw_bytes) {
    rc = LR_CORRUPT(path, (int64_t)(HDR_BYTES + h.json_bytes), "payload: %s",
                    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong decompressed size");
    goto out;
  }
  memcpy(dense, raw, n_dense * sizeof(float));
  memcpy(items, raw + n_dense * sizeof(float), (size_t)n_rows * (size_t)D * sizeof(float));
out:
  free(z);
  free(raw);
  fclose(f);
  return rc;
}
