// dataset_bin.c: the binary dataset file that `linrec prep` writes once and
// every rank reads (its users only).
//
// Layout, all integers little-endian, sections back to back with no gaps,
// so that every byte of the file is under a checksum (compressed blobs are
// decoded into their own buffers, so aligning them would buy nothing):
//  1. Header, 128 bytes at offset 0:
//       0  char[8] magic "LRDATA01"
//       8  u32 version (2; version 1 is still read)
//      12  u32 header bytes (128)
//      16  i64 n_users               24  i64 n_items (ids 1..n_items)
//      32  i64 n_inter               40  u64 flags: bit 0 user ids are strings,
//                                        bit 1 item ids are strings (version 1: 0)
//      48  i64 n_blocks              56  u64 file bytes (whole file)
//      64  u64 lengths offset        72  u64 lengths bytes (section 3)
//      80  u64 maps offset           88  u64 maps bytes    (section 4)
//      96  u32 crc32 of section 2   100  u32 crc32 of section 3
//     104  u32 crc32 of section 4   108  u64 section 4's raw (decompressed)
//                                        bytes (version 1: zero, the size
//                                        is 8 (n_users + n_items + 1))
//     116  8 reserved bytes, zero   124  u32 crc32 of bytes 0..123
//  2. Block index at offset 128: n_blocks entries of 48 bytes:
//       u64 offset, u64 compressed bytes, i64 first user, i64 n_users,
//       i64 n_inter, u32 crc32 of the compressed bytes, u32 reserved (0).
//     Blocks cover users 0..n_users-1 in order, each at most 65536 users
//     and closed once it holds >= 2^20 interactions.
//  3. Lengths: one zstd frame of u32 len[n_users] (interactions per user).
//  4. Maps: one zstd frame of i64 user_orig[n_users], i64 item_orig[n_items+1],
//     then (flag bit 0) the n_users user id strings, then (bit 1) the n_items
//     item id strings of items 1..n_items, each as u32 length (1..256) and
//     its bytes (no NUL, no control character), strictly increasing in byte
//     order; with string ids user_orig[u] = u and item_orig[i] = i-1 (ranks).
//  5. Blocks: one zstd frame each, the i32 item ids of its users in order.
// Every zstd frame records its content size and an XXH64 content checksum
// (verified by libzstd); the crc32s (zlib) cover the compressed bytes. The
// reader checks, in order: size >= header, magic, version, header crc,
// header size field, file size, flags, counts (<= 2^40 users, 2^48
// interactions, 2^31-1 items), that each section starts
// where the previous one ends, the index crc and its user/interaction
// ranges, then per section read: crc32, frame content size, zstd checksum,
// lengths against the index, item ids within 1..n_items. It also checks the
// invariants of a dataset `linrec prep` writes (checksums vouch only for
// bytes; a file with consistent checksums can still hold impossible
// contents): at least one user and one item, at least one interaction per
// user, original ids strictly increasing within 0..2^53-1 (users; items
// 1..n_items) and item 0 mapped to 0; the writer refuses a dataset that
// breaks them. Any failure is LR_ERR_CORRUPT with the byte offset. A rank
// reads the header, the index and the lengths (4 bytes per user), then only
// the blocks holding its users.
//
// Writing goes through io/afile.h (temp file "<path>.tmp.<pid>", fsync,
// rename, fsync of the directory): a reader sees the old file or the whole
// new one; a failure leaves no temp file.
// Not here: preprocessing (prep.c), checkpoints (io/ckpt*).
#include <errno.h>    // errno
#include <stdio.h>    // snprintf
#include <stdlib.h>   // calloc, free
#include <string.h>   // memcmp, memcpy, memset, strerror
#include <sys/stat.h> // fstat
#include <unistd.h>   // pread, close
#include <zlib.h>     // crc32
#include <zstd.h>     // ZSTD_compress2, ZSTD_decompressDCtx, frame checksums

#include "afile.h"         // lr_afile, afile_open, afile_pwrite, afile_commit
#include "data_internal.h" // LR_DATA_ID_MAX
#include "dataset.h"
#include "fault.h" // lr_fault_malloc
#include "file.h"  // file_open_regular
#include "le.h"    // le_put_u32, le_get_u64, ...
#include "lr.h"

#define BIN_MAGIC "LRDATA01"
#define BIN_VERSION 2u
#define FLAG_USER_NAMES 1u
#define FLAG_ITEM_NAMES 2u
#define HEADER_BYTES 128
#define INDEX_ENTRY_BYTES 48
#define BLOCK_MAX_USERS 65536
#define BLOCK_CLOSE_INTER ((int64_t)1 << 20)
#define ZSTD_LEVEL 3
#define MAX_USERS ((int64_t)1 << 40) // sanity bounds on header counts: sizes
#define MAX_INTER ((int64_t)1 << 48) // computed from them cannot overflow
#define HINT "\nHINT: the dataset file is damaged or incomplete; re-run `linrec prep` to rebuild it"

typedef struct {
  uint32_t version;
  int64_t n_users, n_items, n_inter, n_blocks;
  uint64_t flags, file_bytes, len_off, len_bytes, maps_off, maps_bytes, maps_raw;
  uint32_t index_crc, len_crc, maps_crc;
} bin_header;

typedef struct {
  uint64_t off, bytes;
  int64_t first_user, n_users, n_inter;
  uint32_t crc;
} bin_block;

// ---------------------------------------------------------------------------
// checksums

static uint32_t crc(const void *p, size_t n) {
  uLong c = crc32(0L, Z_NULL, 0);
  const unsigned char *b = p;
  while (n > 0) { // crc32 takes uInt lengths
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, b, k);
    b += k, n -= k;
  }
  return (uint32_t)c;
}

static void header_encode(unsigned char *b, const bin_header *h) {
  memset(b, 0, HEADER_BYTES);
  memcpy(b, BIN_MAGIC, 8);
  le_put_u32(b + 8, h->version);
  le_put_u32(b + 12, HEADER_BYTES);
  le_put_u64(b + 16, (uint64_t)h->n_users);
  le_put_u64(b + 24, (uint64_t)h->n_items);
  le_put_u64(b + 32, (uint64_t)h->n_inter);
  le_put_u64(b + 40, h->flags);
  le_put_u64(b + 48, (uint64_t)h->n_blocks);
  le_put_u64(b + 56, h->file_bytes);
  le_put_u64(b + 64, h->len_off);
  le_put_u64(b + 72, h->len_bytes);
  le_put_u64(b + 80, h->maps_off);
  le_put_u64(b + 88, h->maps_bytes);
  le_put_u32(b + 96, h->index_crc);
  le_put_u32(b + 100, h->len_crc);
  le_put_u32(b + 104, h->maps_crc);
  le_put_u64(b + 108, h->maps_raw);
  le_put_u32(b + 124, crc(b, 124));
}

static void block_encode(unsigned char *b, const bin_block *k) {
  le_put_u64(b, k->off);
  le_put_u64(b + 8, k->bytes);
  le_put_u64(b + 16, (uint64_t)k->first_user);
  le_put_u64(b + 24, (uint64_t)k->n_users);
  le_put_u64(b + 32, (uint64_t)k->n_inter);
  le_put_u32(b + 40, k->crc);
  le_put_u32(b + 44, 0);
}

// ---------------------------------------------------------------------------
// writing

typedef struct {
  const char *path;
  lr_afile f; // the file being written
  ZSTD_CCtx *cctx;
  unsigned char *raw, *comp; // scratch: raw section bytes, compressed bytes
  size_t raw_cap, comp_cap;
} writer;

static int scratch(writer *w, size_t raw_bytes) {
  size_t comp_bytes = ZSTD_compressBound(raw_bytes);
  if (!w->raw || raw_bytes > w->raw_cap) {
    free(w->raw);
    w->raw = lr_fault_malloc(raw_bytes);
    w->raw_cap = w->raw ? raw_bytes : 0;
  }
  if (!w->comp || comp_bytes > w->comp_cap) {
    free(w->comp);
    w->comp = lr_fault_malloc(comp_bytes);
    w->comp_cap = w->comp ? comp_bytes : 0;
  }
  LR_CHECK(w->raw && w->comp, LR_ERR_NOMEM, "%s: out of memory for a %zu-byte section", w->path,
           raw_bytes);
  return LR_OK;
}

// Compress w->raw[0..raw_bytes) and write it at *pos; returns its offset,
// size and crc; advances *pos.
static int put_frame(writer *w, size_t raw_bytes, uint64_t *pos, uint64_t *off, uint64_t *bytes,
                     uint32_t *crc_out) {
  size_t n = ZSTD_compress2(w->cctx, w->comp, w->comp_cap, w->raw, raw_bytes);
  LR_CHECK(!ZSTD_isError(n), LR_ERR_NOMEM, "%s: zstd compression failed: %s", w->path,
           ZSTD_getErrorName(n));
  LR_CALL(afile_pwrite(&w->f, w->comp, n, *pos));
  *off = *pos;
  *bytes = n;
  *crc_out = crc(w->comp, n);
  *pos += n;
  return LR_OK;
}

// A string id as prep writes it: 1..LR_ID_MAX_BYTES bytes, none a control
// character. Returns NULL or the reason.
static const char *bad_name(const unsigned char *p, size_t n) {
  if (n < 1 || n > LR_ID_MAX_BYTES) return "length outside 1..256";
  for (size_t k = 0; k < n; k++)
    if (p[k] < 0x20 || p[k] == 0x7f) return "a control character";
  return NULL;
}

// Byte order of two names (a, an) and (b, bn): memcmp, then the shorter first.
static int name_cmp(const void *a, size_t an, const void *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  return c ? c : (an > bn) - (an < bn);
}

// The string ids of one side of a dataset to write (none: numeric).
static int check_names(const lr_names *t, int64_t n, int items, const int64_t *orig,
                       const char *path, const char *what) {
  if (!t->n) return LR_OK;
  LR_CHECK(t->n == n + items && t->off && t->text && (!items || !names_get(t, 0)[0]), LR_ERR_ARG,
           "%s: %s id table has %lld names for %lld %ss", path, what, (long long)t->n,
           (long long)n, what);
  for (int64_t k = items; k < t->n; k++) {
    const char *s = names_get(t, k), *why = bad_name((const unsigned char *)s, strlen(s));
    LR_CHECK(!why, LR_ERR_ARG, "%s: %s %lld: id '%.40s' has %s", path, what, (long long)k, s, why);
    LR_CHECK(k == items || strcmp(names_get(t, k - 1), s) < 0, LR_ERR_ARG,
             "%s: %s %lld: id '%.40s' not after '%.40s' in byte order", path, what, (long long)k,
             s, names_get(t, k - 1));
    LR_CHECK(orig[k] == k - items, LR_ERR_ARG, "%s: %s %lld: rank %lld, expected %lld", path, what,
             (long long)k, (long long)orig[k], (long long)(k - items));
  }
  return LR_OK;
}

// Raw bytes of the names of t from index `first` (u32 length + bytes each).
static size_t names_bytes(const lr_names *t, int64_t first) {
  return t->n ? (size_t)(t->off[t->n] - t->off[first]) + 3 * (size_t)(t->n - first) : 0;
}

static size_t put_names(unsigned char *p, const lr_names *t, int64_t first) {
  size_t w = 0;
  for (int64_t k = first; k < t->n; k++) {
    size_t len = (size_t)(t->off[k + 1] - t->off[k] - 1);
    le_put_u32(p + w, (uint32_t)len);
    memcpy(p + w + 4, names_get(t, k), len);
    w += 4 + len;
  }
  return w;
}

// Check what data_read_binary will check, so a bad dataset fails here.
static int check_dataset(const lr_dataset *ds, const char *path) {
  LR_CHECK(ds && ds->n_users >= 0 && ds->n_users <= MAX_USERS && ds->n_items >= 0 &&
               ds->n_items <= INT32_MAX && ds->n_inter >= 0 && ds->n_inter <= MAX_INTER &&
               ds->offsets && ds->item_orig && (ds->n_users == 0 || ds->user_orig) &&
               (ds->n_inter == 0 || ds->items),
           LR_ERR_ARG, "%s: dataset to write is incomplete (counts or arrays missing)", path);
  LR_CHECK(ds->n_users >= 1 && ds->n_items >= 1, LR_ERR_ARG,
           "%s: dataset to write has %lld users and %lld items (at least one of each)", path,
           (long long)ds->n_users, (long long)ds->n_items);
  LR_CHECK(ds->offsets[0] == 0 && ds->offsets[ds->n_users] == ds->n_inter, LR_ERR_ARG,
           "%s: dataset offsets run 0..%lld, expected 0..%lld", path,
           (long long)ds->offsets[ds->n_users], (long long)ds->n_inter);
  LR_CALL(check_names(&ds->user_names, ds->n_users, 0, ds->user_orig, path, "user"));
  LR_CALL(check_names(&ds->item_names, ds->n_items, 1, ds->item_orig, path, "item"));
  for (int64_t u = 0; u < ds->n_users; u++) {
    int64_t n = ds->offsets[u + 1] - ds->offsets[u];
    LR_CHECK(n >= 1 && n <= (int64_t)UINT32_MAX, LR_ERR_ARG, "%s: user %lld has %lld items", path,
             (long long)u, (long long)n);
    LR_CHECK(ds->user_orig[u] >= 0 && ds->user_orig[u] <= LR_DATA_ID_MAX &&
                 (u == 0 || ds->user_orig[u] > ds->user_orig[u - 1]),
             LR_ERR_ARG, "%s: user %lld has original id %lld: not increasing within 0..2^53-1",
             path, (long long)u, (long long)ds->user_orig[u]);
  }
  LR_CHECK(ds->item_orig[0] == 0, LR_ERR_ARG, "%s: padding item 0 has original id %lld", path,
           (long long)ds->item_orig[0]);
  for (int64_t i = 1; i <= ds->n_items; i++)
    LR_CHECK(ds->item_orig[i] >= 0 && ds->item_orig[i] <= LR_DATA_ID_MAX &&
                 (i == 1 || ds->item_orig[i] > ds->item_orig[i - 1]),
             LR_ERR_ARG, "%s: item %lld has original id %lld: not increasing within 0..2^53-1",
             path, (long long)i, (long long)ds->item_orig[i]);
  for (int64_t k = 0; k < ds->n_inter; k++)
    LR_CHECK(ds->items[k] >= 1 && ds->items[k] <= ds->n_items, LR_ERR_ARG,
             "%s: interaction %lld has item %d outside 1..%lld", path, (long long)k,
             (int)ds->items[k], (long long)ds->n_items);
  return LR_OK;
}

static int64_t count_blocks(const lr_dataset *ds, bin_block *out) {
  int64_t nb = 0, u = 0;
  while (u < ds->n_users) {
    int64_t first = u;
    while (u < ds->n_users && u - first < BLOCK_MAX_USERS &&
           ds->offsets[u] - ds->offsets[first] < BLOCK_CLOSE_INTER)
      u++;
    if (out)
      out[nb] = (bin_block){.first_user = first,
                            .n_users = u - first,
                            .n_inter = ds->offsets[u] - ds->offsets[first]};
    nb++;
  }
  return nb;
}

static int write_sections(writer *w, const lr_dataset *ds, bin_block *blocks, int64_t nb) {
  bin_header h = {.version = BIN_VERSION,
                  .n_users = ds->n_users,
                  .n_items = ds->n_items,
                  .n_inter = ds->n_inter,
                  .n_blocks = nb};
  uint64_t pos = HEADER_BYTES + (uint64_t)nb * INDEX_ENTRY_BYTES;
  // 3. lengths
  LR_CALL(scratch(w, (size_t)ds->n_users * 4));
  for (int64_t u = 0; u < ds->n_users; u++)
    le_put_u32(w->raw + 4 * u, (uint32_t)(ds->offsets[u + 1] - ds->offsets[u]));
  LR_CALL(put_frame(w, (size_t)ds->n_users * 4, &pos, &h.len_off, &h.len_bytes, &h.len_crc));
  // 4. maps
  const size_t ints = (size_t)(ds->n_users + ds->n_items + 1) * 8;
  size_t maps_raw = ints + names_bytes(&ds->user_names, 0) + names_bytes(&ds->item_names, 1);
  LR_CALL(scratch(w, maps_raw));
  for (int64_t u = 0; u < ds->n_users; u++)
    le_put_u64(w->raw + 8 * u, (uint64_t)ds->user_orig[u]);
  for (int64_t i = 0; i <= ds->n_items; i++)
    le_put_u64(w->raw + 8 * (ds->n_users + i), (uint64_t)ds->item_orig[i]);
  size_t at = ints;
  at += put_names(w->raw + at, &ds->user_names, 0);
  at += put_names(w->raw + at, &ds->item_names, 1);
  LR_ASSERT(at == maps_raw);
  h.maps_raw = maps_raw;
  h.flags = (ds->user_names.n ? FLAG_USER_NAMES : 0) | (ds->item_names.n ? FLAG_ITEM_NAMES : 0);
  LR_CALL(put_frame(w, maps_raw, &pos, &h.maps_off, &h.maps_bytes, &h.maps_crc));
  // 5. blocks
  for (int64_t b = 0; b < nb; b++) {
    const int32_t *it = ds->items + ds->offsets[blocks[b].first_user];
    size_t raw = (size_t)blocks[b].n_inter * 4;
    LR_CALL(scratch(w, raw));
    for (int64_t k = 0; k < blocks[b].n_inter; k++)
      le_put_u32(w->raw + 4 * k, (uint32_t)it[k]);
    LR_CALL(put_frame(w, raw, &pos, &blocks[b].off, &blocks[b].bytes, &blocks[b].crc));
  }
  h.file_bytes = pos;
  // 2. index, then 1. header
  LR_CALL(scratch(w, (size_t)nb * INDEX_ENTRY_BYTES + HEADER_BYTES));
  for (int64_t b = 0; b < nb; b++)
    block_encode(w->raw + HEADER_BYTES + b * INDEX_ENTRY_BYTES, &blocks[b]);
  h.index_crc = crc(w->raw + HEADER_BYTES, (size_t)nb * INDEX_ENTRY_BYTES);
  header_encode(w->raw, &h);
  LR_CALL(afile_pwrite(&w->f, w->raw, HEADER_BYTES + (size_t)nb * INDEX_ENTRY_BYTES, 0));
  return LR_OK;
}

int data_write_binary(const lr_dataset *ds, const char *path) {
  LR_CHECK(path && path[0], LR_ERR_ARG, "data_write_binary: empty path");
  LR_CALL(check_dataset(ds, path));
  writer w = {.path = path};
  int64_t nb = count_blocks(ds, NULL);
  bin_block *blocks = lr_fault_malloc((size_t)nb * sizeof *blocks);
  LR_CHECK(blocks, LR_ERR_NOMEM, "%s: out of memory for the block index", path);
  count_blocks(ds, blocks);
  int rc = LR_OK;
  w.cctx = ZSTD_createCCtx();
  if (!w.cctx ||
      ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_checksumFlag, 1)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(w.cctx, ZSTD_c_contentSizeFlag, 1)))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: cannot set up zstd", path);
  // a temp file per process: two preps of one path never share one
  if (rc == LR_OK) rc = afile_open(&w.f, path, AFILE_TMP_PID, NULL);
  if (rc == LR_OK) rc = write_sections(&w, ds, blocks, nb);
  if (rc == LR_OK) rc = afile_commit(&w.f);
  afile_abort(&w.f);
  ZSTD_freeCCtx(w.cctx);
  free(w.raw);
  free(w.comp);
  free(blocks);
  if (rc != LR_OK) lr_error_trace(__FILE__, __LINE__, __func__);
  return rc;
}

// ---------------------------------------------------------------------------
// reading

typedef struct {
  const char *path;
  int fd;
  uint64_t size; // actual file bytes
  bin_header h;
  bin_block *blocks; // (h.n_blocks)
  uint32_t *lens;    // (h.n_users) after bin_read_lengths
} bin_file;

static void bin_close(bin_file *f) {
  if (f->fd >= 0) close(f->fd);
  free(f->blocks);
  free(f->lens);
  f->fd = -1;
  f->blocks = NULL;
  f->lens = NULL;
}

static int pread_all(const bin_file *f, void *buf, size_t n, uint64_t off) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = pread(f->fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    LR_CHECK(k >= 0, LR_ERR_IO, "read %s: %s", f->path, strerror(errno));
    if (k == 0) return LR_CORRUPT(f->path, (int64_t)off, "unexpected end of file" HINT);
    p += k, n -= (size_t)k, off += (uint64_t)k;
  }
  return LR_OK;
}

// A section [off, off+bytes) starts at `start` (where the previous one
// ends) and lies inside the file. `at` is where its offset is recorded.
static int check_range(const bin_file *f, uint64_t at, const char *what, uint64_t off,
                       uint64_t bytes, uint64_t start) {
  if (off != start || off > f->size || bytes > f->size - off)
    return LR_CORRUPT(f->path, (int64_t)at,
                      "%s spans bytes %llu..+%llu, expected to start at %llu and end by %llu" HINT,
                      what, (unsigned long long)off, (unsigned long long)bytes,
                      (unsigned long long)start, (unsigned long long)f->size);
  return LR_OK;
}

static int header_decode(bin_file *f, const unsigned char *b) {
  bin_header *h = &f->h;
  if (memcmp(b, BIN_MAGIC, 8) != 0) {
    char found[9];
    for (int k = 0; k < 8; k++)
      found[k] = b[k] >= 32 && b[k] < 127 ? (char)b[k] : '?';
    found[8] = '\0';
    return LR_CORRUPT(f->path, 0, "not a linrec dataset: magic expected '%s', found '%s'" HINT,
                      BIN_MAGIC, found);
  }
  h->version = le_get_u32(b + 8);
  if (h->version != 1 && h->version != BIN_VERSION)
    return LR_CORRUPT(f->path, 8, "format version expected 1 or %u, found %u" HINT, BIN_VERSION,
                      h->version);
  uint32_t want = le_get_u32(b + 124), got = crc(b, 124);
  if (want != got)
    return LR_CORRUPT(f->path, 124, "header crc32 expected %08x, computed %08x" HINT, want, got);
  if (le_get_u32(b + 12) != HEADER_BYTES)
    return LR_CORRUPT(f->path, 12, "header size expected %d, found %u" HINT, HEADER_BYTES,
                      le_get_u32(b + 12));
  h->n_users = (int64_t)le_get_u64(b + 16);
  h->n_items = (int64_t)le_get_u64(b + 24);
  h->n_inter = (int64_t)le_get_u64(b + 32);
  h->flags = le_get_u64(b + 40);
  h->n_blocks = (int64_t)le_get_u64(b + 48);
  h->file_bytes = le_get_u64(b + 56);
  h->len_off = le_get_u64(b + 64);
  h->len_bytes = le_get_u64(b + 72);
  h->maps_off = le_get_u64(b + 80);
  h->maps_bytes = le_get_u64(b + 88);
  h->index_crc = le_get_u32(b + 96);
  h->len_crc = le_get_u32(b + 100);
  h->maps_crc = le_get_u32(b + 104);
  h->maps_raw = le_get_u64(b + 108);
  if (h->file_bytes != f->size)
    return LR_CORRUPT(f->path, 56, "file size expected %llu bytes (header), found %llu%s" HINT,
                      (unsigned long long)h->file_bytes, (unsigned long long)f->size,
                      f->size < h->file_bytes ? " (truncated)" : "");
  const uint64_t known = h->version == 1 ? 0 : FLAG_USER_NAMES | FLAG_ITEM_NAMES;
  if (h->flags & ~known)
    return LR_CORRUPT(f->path, 40, "flags expected within %#llx, found %#llx" HINT,
                      (unsigned long long)known, (unsigned long long)h->flags);
  if (h->n_users < 0 || h->n_users > MAX_USERS || h->n_items < 0 || h->n_items > INT32_MAX ||
      h->n_inter < 0 || h->n_inter > MAX_INTER || h->n_blocks < 0 || h->n_blocks > h->n_users ||
      (h->n_users > 0 && h->n_blocks == 0) ||
      (uint64_t)h->n_blocks > (f->size - HEADER_BYTES) / INDEX_ENTRY_BYTES)
    return LR_CORRUPT(f->path, 16,
                      "counts out of range: %lld users, %lld items, %lld "
                      "interactions, %lld blocks" HINT,
                      (long long)h->n_users, (long long)h->n_items, (long long)h->n_inter,
                      (long long)h->n_blocks);
  if (h->n_users < 1 || h->n_items < 1 || h->n_inter < h->n_users)
    return LR_CORRUPT(f->path,
                      h->n_users < 1   ? 16
                      : h->n_items < 1 ? 24
                                       : 32,
                      "impossible contents: %lld users, %lld items, %lld interactions (`linrec "
                      "prep` writes at least one user and one item, and at least one "
                      "interaction per user)" HINT,
                      (long long)h->n_users, (long long)h->n_items, (long long)h->n_inter);
  const uint64_t ints = (uint64_t)(h->n_users + h->n_items + 1) * 8;
  const uint64_t most = ints + (uint64_t)(h->n_users + h->n_items) * (4 + LR_ID_MAX_BYTES);
  if (h->version == 1 ? h->maps_raw != 0
                      : h->maps_raw < ints || h->maps_raw > most ||
                            (h->flags == 0 && h->maps_raw != ints))
    return LR_CORRUPT(f->path, 108, "maps section of %llu raw bytes, expected %s %llu" HINT,
                      (unsigned long long)h->maps_raw,
                      h->version == 1 ? "(version 1)" : h->flags ? "between" : "exactly",
                      (unsigned long long)(h->version == 1 ? 0 : ints));
  if (h->version == 1) h->maps_raw = ints;
  uint64_t index_end = HEADER_BYTES + (uint64_t)h->n_blocks * INDEX_ENTRY_BYTES;
  LR_CALL(check_range(f, 48, "block index", HEADER_BYTES, index_end - HEADER_BYTES, HEADER_BYTES));
  LR_CALL(check_range(f, 64, "lengths section", h->len_off, h->len_bytes, index_end));
  LR_CALL(
      check_range(f, 80, "maps section", h->maps_off, h->maps_bytes, h->len_off + h->len_bytes));
  return LR_OK;
}

static int index_decode(bin_file *f, const unsigned char *b) {
  const bin_header *h = &f->h;
  uint64_t end = h->maps_off + h->maps_bytes;
  int64_t next_user = 0, n_inter = 0;
  for (int64_t k = 0; k < h->n_blocks; k++) {
    const unsigned char *e = b + k * INDEX_ENTRY_BYTES;
    uint64_t at = HEADER_BYTES + (uint64_t)k * INDEX_ENTRY_BYTES;
    bin_block *x = &f->blocks[k];
    *x = (bin_block){le_get_u64(e),
                     le_get_u64(e + 8),
                     (int64_t)le_get_u64(e + 16),
                     (int64_t)le_get_u64(e + 24),
                     (int64_t)le_get_u64(e + 32),
                     le_get_u32(e + 40)};
    char what[64];
    snprintf(what, sizeof what, "block %lld", (long long)k);
    LR_CALL(check_range(f, (int64_t)at, what, x->off, x->bytes, end));
    end = x->off + x->bytes;
    if (x->first_user != next_user || x->n_users < 1 || x->n_users > h->n_users - next_user)
      return LR_CORRUPT(f->path, (int64_t)at + 16,
                        "block %lld: users %lld..+%lld, expected to start at user %lld "
                        "within %lld users" HINT,
                        (long long)k, (long long)x->first_user, (long long)x->n_users,
                        (long long)next_user, (long long)h->n_users);
    if (x->n_inter < 0 || x->n_inter > h->n_inter - n_inter)
      return LR_CORRUPT(f->path, (int64_t)at + 32,
                        "block %lld: %lld interactions, only %lld left of %lld" HINT, (long long)k,
                        (long long)x->n_inter, (long long)(h->n_inter - n_inter),
                        (long long)h->n_inter);
    next_user += x->n_users;
    n_inter += x->n_inter;
  }
  if (end != f->size)
    return LR_CORRUPT(f->path, HEADER_BYTES, "sections end at byte %llu, the file at %llu" HINT,
                      (unsigned long long)end, (unsigned long long)f->size);
  if (next_user != h->n_users || n_inter != h->n_inter)
    return LR_CORRUPT(f->path, HEADER_BYTES,
                      "block index covers %lld users and %lld interactions, header says %lld "
                      "and %lld" HINT,
                      (long long)next_user, (long long)n_inter, (long long)h->n_users,
                      (long long)h->n_inter);
  return LR_OK;
}

static int bin_open(bin_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  f->path = path;
  struct stat st;
  f->fd = file_open_regular(path, &st);
  LR_CHECK(f->fd != FILE_NOT_REGULAR, LR_ERR_IO, "%s: is %s, not a binary dataset file", path,
           file_type_name(&st));
  LR_CHECK(f->fd >= 0, LR_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  f->size = (uint64_t)st.st_size;
  unsigned char hb[HEADER_BYTES];
  if (f->size < HEADER_BYTES)
    return LR_CORRUPT(path, 0, "file is %llu bytes, shorter than the %d-byte header" HINT,
                      (unsigned long long)f->size, HEADER_BYTES);
  LR_CALL(pread_all(f, hb, HEADER_BYTES, 0));
  LR_CALL(header_decode(f, hb));
  size_t ib = (size_t)f->h.n_blocks * INDEX_ENTRY_BYTES;
  unsigned char *index = malloc(ib ? ib : 1);
  f->blocks = calloc((size_t)(f->h.n_blocks ? f->h.n_blocks : 1), sizeof *f->blocks);
  if (!index || !f->blocks) {
    free(index);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for the block index",
                    path);
  }
  int rc = pread_all(f, index, ib, HEADER_BYTES);
  uint32_t got = rc == LR_OK ? crc(index, ib) : 0;
  if (rc == LR_OK && got != f->h.index_crc)
    rc = LR_CORRUPT(path, HEADER_BYTES, "block index crc32 expected %08x, computed %08x" HINT,
                    f->h.index_crc, got);
  if (rc == LR_OK) rc = index_decode(f, index);
  free(index);
  return rc;
}

// Read the zstd frame at [off, off+bytes), check its crc32 and that it holds
// exactly raw_bytes, then decompress into *out (allocated only after those
// checks, so a damaged size cannot ask for a huge buffer; caller frees).
static int read_frame(const bin_file *f, const char *what, uint64_t off, uint64_t bytes,
                      uint32_t want_crc, size_t raw_bytes, unsigned char **out) {
  *out = NULL;
  unsigned char *comp = malloc(bytes ? bytes : 1);
  LR_CHECK(comp, LR_ERR_NOMEM, "%s: out of memory reading %s", f->path, what);
  int rc = pread_all(f, comp, bytes, off);
  uint32_t got = rc == LR_OK ? crc(comp, bytes) : 0;
  if (rc == LR_OK && got != want_crc)
    rc = LR_CORRUPT(f->path, (int64_t)off, "%s: crc32 expected %08x, computed %08x" HINT, what,
                    want_crc, got);
  if (rc == LR_OK) {
    unsigned long long cs = ZSTD_getFrameContentSize(comp, bytes);
    if (cs != (unsigned long long)raw_bytes)
      rc = LR_CORRUPT(f->path, (int64_t)off, "%s: zstd frame holds %lld bytes, expected %zu" HINT,
                      what, cs >= ZSTD_CONTENTSIZE_ERROR ? -1LL : (long long)cs, raw_bytes);
  }
  if (rc == LR_OK && !(*out = malloc(raw_bytes ? raw_bytes : 1)))
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for %s (%zu bytes)", f->path,
                  what, raw_bytes);
  if (rc == LR_OK) {
    size_t n = ZSTD_decompress(*out, raw_bytes, comp, bytes);
    if (ZSTD_isError(n) || n != raw_bytes)
      rc = LR_CORRUPT(f->path, (int64_t)off, "%s: zstd: %s" HINT, what,
                      ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame");
  }
  free(comp);
  if (rc != LR_OK) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

// Read the per-user lengths; check them against the index.
static int bin_read_lengths(bin_file *f) {
  int64_t U = f->h.n_users;
  unsigned char *raw;
  LR_CALL(read_frame(f, "lengths section", f->h.len_off, f->h.len_bytes, f->h.len_crc,
                     (size_t)U * 4, &raw));
  f->lens = malloc((size_t)(U ? U : 1) * sizeof *f->lens);
  if (!f->lens) {
    free(raw);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for %lld users", f->path,
                    (long long)U);
  }
  for (int64_t u = 0; u < U; u++)
    f->lens[u] = le_get_u32(raw + 4 * u);
  free(raw);
  for (int64_t u = 0; u < U; u++)
    if (f->lens[u] == 0)
      return LR_CORRUPT(f->path, (int64_t)f->h.len_off,
                        "lengths section: user %lld has no interactions (every user `linrec "
                        "prep` writes has at least one)" HINT,
                        (long long)u);
  for (int64_t k = 0; k < f->h.n_blocks; k++) {
    const bin_block *x = &f->blocks[k];
    int64_t sum = 0;
    for (int64_t u = x->first_user; u < x->first_user + x->n_users; u++)
      sum += f->lens[u];
    if (sum != x->n_inter)
      return LR_CORRUPT(f->path, (int64_t)f->h.len_off,
                        "lengths of block %lld users sum to %lld, index says %lld" HINT,
                        (long long)k, (long long)sum, (long long)x->n_inter);
  }
  return LR_OK;
}

// Decompress block k and copy the items of users [lo, hi) that it holds.
static int read_block(const bin_file *f, int64_t k, const int64_t *goff, lr_dataset *ds, int64_t lo,
                      int64_t hi) {
  const bin_block *x = &f->blocks[k];
  char what[96];
  snprintf(what, sizeof what, "block %lld (users %lld..%lld)", (long long)k,
           (long long)x->first_user, (long long)(x->first_user + x->n_users - 1));
  unsigned char *raw;
  LR_CALL(read_frame(f, what, x->off, x->bytes, x->crc, (size_t)x->n_inter * 4, &raw));
  for (int64_t p = 0; p < x->n_inter; p++) {
    uint32_t v = le_get_u32(raw + 4 * p);
    if (v < 1 || v > (uint64_t)f->h.n_items) {
      free(raw);
      return LR_CORRUPT(f->path, (int64_t)x->off,
                        "%s: item id %u at position %lld, expected 1..%lld" HINT, what, v,
                        (long long)p, (long long)f->h.n_items);
    }
  }
  int64_t u0 = x->first_user > lo ? x->first_user : lo;
  int64_t u1 = x->first_user + x->n_users < hi ? x->first_user + x->n_users : hi;
  int64_t base = goff[x->first_user];
  for (int64_t p = goff[u0]; p < goff[u1]; p++)
    ds->items[p - goff[lo]] = (int32_t)le_get_u32(raw + 4 * (p - base));
  free(raw);
  return LR_OK;
}

// The id maps as prep writes them: original user ids, then item ids 1..I,
// each strictly increasing within 0..LR_DATA_ID_MAX (so distinct), and the
// padding item 0 mapped to 0.
static int check_maps(const bin_file *f, const unsigned char *maps) {
  const int64_t U = f->h.n_users, I = f->h.n_items;
  if (le_get_u64(maps + 8 * U) != 0)
    return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                      "maps section: the padding item 0 maps to original id %llu, expected 0" HINT,
                      (unsigned long long)le_get_u64(maps + 8 * U));
  for (int side = 0; side < 2; side++) {
    const int64_t first = side ? U + 1 : 0, n = side ? I : U;
    uint64_t prev = 0;
    for (int64_t k = 0; k < n; k++) {
      uint64_t id = le_get_u64(maps + 8 * (first + k));
      if (id > (uint64_t)LR_DATA_ID_MAX || (k > 0 && id <= prev))
        return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                          "maps section: %s %lld has original id %llu (the one before: %llu); "
                          "expected strictly increasing ids within 0..2^53-1" HINT,
                          side ? "item" : "user", (long long)(side ? k + 1 : k),
                          (unsigned long long)id, (unsigned long long)prev);
      prev = id;
    }
  }
  return LR_OK;
}

// Check the names of one side at maps[*at..) (n of them) and advance *at;
// copy those of [lo, hi) into t (items: preceded by "" for item 0).
static int take_names(const bin_file *f, const unsigned char *maps, uint64_t *at, int64_t n,
                      int64_t lo, int64_t hi, int items, lr_names *t) {
  const char *what = items ? "item" : "user";
  const uint64_t end = f->h.maps_raw, start = *at;
  uint64_t p = start, prev = 0, prev_len = 0, keep = 0;
  for (int64_t k = 0; k < n; k++) {
    if (end - p < 4 || end - p - 4 < le_get_u32(maps + p))
      return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                        "maps section: %s id string %lld runs past the section's end" HINT, what,
                        (long long)k);
    const uint32_t len = le_get_u32(maps + p);
    const char *why = bad_name(maps + p + 4, len);
    if (why || (k > 0 && name_cmp(maps + prev + 4, prev_len, maps + p + 4, len) >= 0))
      return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                        "maps section: %s id string %lld %s%s" HINT, what, (long long)k,
                        why ? "has " : "is not after the one before in byte order",
                        why ? why : "");
    if (k >= lo && k < hi) keep += len + 1;
    prev = p, prev_len = len;
    p += 4 + (uint64_t)len;
  }
  *at = p;
  const int64_t cnt = hi - lo + items;
  t->off = malloc((size_t)(cnt + 1) * sizeof *t->off);
  t->text = malloc((size_t)keep + 1);
  LR_CHECK(t->off && t->text, LR_ERR_NOMEM, "%s: out of memory for %lld id strings", f->path,
           (long long)cnt);
  int64_t w = 0, j = 0;
  if (items) t->off[j++] = w, t->text[w++] = '\0';
  p = start;
  for (int64_t k = 0; k < n; k++) {
    const uint32_t len = le_get_u32(maps + p);
    if (k >= lo && k < hi) {
      t->off[j++] = w;
      memcpy(t->text + w, maps + p + 4, len);
      w += len;
      t->text[w++] = '\0';
    }
    p += 4 + (uint64_t)len;
  }
  t->off[j] = w;
  t->n = cnt;
  return LR_OK;
}

// The string ids of a version-2 file (flags), with the ranks they imply.
static int read_names(const bin_file *f, const unsigned char *maps, lr_dataset *ds, int64_t lo,
                      int64_t hi) {
  const int64_t U = f->h.n_users, I = f->h.n_items;
  uint64_t at = (uint64_t)(U + I + 1) * 8;
  for (int side = 0; side < 2; side++) {
    if (!(f->h.flags & (side ? FLAG_ITEM_NAMES : FLAG_USER_NAMES))) continue;
    const int64_t n = side ? I : U;
    for (int64_t k = 0; k < n; k++)
      if (le_get_u64(maps + 8 * (side ? U + 1 + k : k)) != (uint64_t)k)
        return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                          "maps section: %s %lld has string ids but rank %llu, expected %lld" HINT,
                          side ? "item" : "user", (long long)(side ? k + 1 : k),
                          (unsigned long long)le_get_u64(maps + 8 * (side ? U + 1 + k : k)),
                          (long long)k);
    LR_CALL(take_names(f, maps, &at, n, side ? 0 : lo, side ? I : hi, side,
                       side ? &ds->item_names : &ds->user_names));
  }
  if (at != f->h.maps_raw)
    return LR_CORRUPT(f->path, (int64_t)f->h.maps_off,
                      "maps section: %llu bytes after the id strings" HINT,
                      (unsigned long long)(f->h.maps_raw - at));
  return LR_OK;
}

// Global offsets (n_users+1) from f->lens.
static int64_t *global_offsets(const bin_file *f) {
  int64_t *g = malloc((size_t)(f->h.n_users + 1) * sizeof *g);
  if (!g) return NULL;
  g[0] = 0;
  for (int64_t u = 0; u < f->h.n_users; u++)
    g[u + 1] = g[u] + f->lens[u];
  return g;
}

static int read_users(lr_dataset *ds, bin_file *f, int64_t lo, int64_t hi, int all) {
  int64_t U = f->h.n_users, I = f->h.n_items;
  if (all) lo = 0, hi = U;
  LR_CHECK(0 <= lo && lo <= hi && hi <= U, LR_ERR_ARG, "%s: user range %lld..%lld outside 0..%lld",
           f->path, (long long)lo, (long long)hi, (long long)U);
  LR_CALL(bin_read_lengths(f));
  unsigned char *maps = NULL;
  int64_t *goff = NULL;
  int rc = read_frame(f, "maps section", f->h.maps_off, f->h.maps_bytes, f->h.maps_crc,
                      (size_t)f->h.maps_raw, &maps);
  if (rc != LR_OK) goto done;
  if (!(goff = global_offsets(f))) {
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for offsets", f->path);
    goto done;
  }
  ds->n_users = hi - lo;
  ds->n_items = I;
  ds->n_inter = goff[hi] - goff[lo];
  ds->user_first = lo;
  ds->offsets = lr_calloc((size_t)ds->n_users + 1, sizeof *ds->offsets, "dataset offsets");
  ds->items = lr_calloc((size_t)ds->n_inter, sizeof *ds->items, "dataset items");
  ds->user_orig = lr_calloc((size_t)ds->n_users, sizeof *ds->user_orig, "dataset user ids");
  ds->item_orig = lr_calloc((size_t)I + 1, sizeof *ds->item_orig, "dataset item ids");
  if (!ds->offsets || !ds->items || !ds->user_orig || !ds->item_orig) {
    rc = LR_ERR_NOMEM;
    goto done;
  }
  for (int64_t u = lo; u <= hi; u++)
    ds->offsets[u - lo] = goff[u] - goff[lo];
  if ((rc = check_maps(f, maps)) != LR_OK) goto done;
  if ((rc = read_names(f, maps, ds, lo, hi)) != LR_OK) goto done;
  for (int64_t u = lo; u < hi; u++)
    ds->user_orig[u - lo] = (int64_t)le_get_u64(maps + 8 * u);
  for (int64_t i = 0; i <= I; i++)
    ds->item_orig[i] = (int64_t)le_get_u64(maps + 8 * (U + i));
  for (int64_t k = 0; k < f->h.n_blocks && rc == LR_OK; k++) {
    const bin_block *x = &f->blocks[k];
    if (x->first_user + x->n_users <= lo || x->first_user >= hi) continue;
    rc = read_block(f, k, goff, ds, lo, hi);
  }
done:
  free(maps);
  free(goff);
  if (rc != LR_OK) dataset_free(ds);
  return rc;
}

static int read_any(lr_dataset *ds, const char *path, int64_t lo, int64_t hi, int all) {
  memset(ds, 0, sizeof *ds);
  bin_file f;
  int rc = bin_open(&f, path);
  if (rc == LR_OK) rc = read_users(ds, &f, lo, hi, all);
  bin_close(&f);
  return rc;
}

int data_read_binary(lr_dataset *ds, const char *path) {
  LR_CALL(read_any(ds, path, 0, 0, 1));
  return LR_OK;
}

int data_read_binary_users(lr_dataset *ds, const char *path, int64_t user_lo, int64_t user_hi) {
  LR_CALL(read_any(ds, path, user_lo, user_hi, 0));
  return LR_OK;
}

int data_read_binary_shape(lr_data_shape *sh, const char *path) {
  memset(sh, 0, sizeof *sh);
  bin_file f;
  int rc = bin_open(&f, path);
  if (rc == LR_OK) rc = bin_read_lengths(&f);
  if (rc == LR_OK) {
    sh->offsets = global_offsets(&f);
    if (!sh->offsets)
      rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory for offsets", path);
  }
  if (rc == LR_OK) {
    sh->n_users = f.h.n_users;
    sh->n_items = f.h.n_items;
    sh->n_inter = f.h.n_inter;
  }
  bin_close(&f);
  if (rc != LR_OK) {
    data_shape_free(sh);
    lr_error_trace(__FILE__, __LINE__, __func__);
  }
  return rc;
}

void data_shape_free(lr_data_shape *sh) {
  if (!sh) return;
  free(sh->offsets);
  memset(sh, 0, sizeof *sh);
}
