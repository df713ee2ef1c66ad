// test_io_binary.c: the binary dataset file. Round trip (whole file, user
// ranges across block boundaries, the shape), then damage: truncation at
// every length and a flipped byte at every position of a small file, flips
// in the payload, header and index of a multi-block file, wrong magic and
// version, trailing bytes, a well-formed file whose items are out of range,
// files with consistent checksums but impossible contents (no users, no
// items, a user without interactions, lengths that disagree with the count,
// repeated or out-of-range original ids). Then the writer under fault
// injection (test_fault.h) replacing an older file: every write, fsync,
// rename and allocation failing in turn and a crash at each write, fsync and
// rename leave the old file or the complete new one, and no temp file
// unless crashed; the last fsync is of the directory, after the rename.
// Every damaged read must be LR_ERR_CORRUPT with the path, a byte offset and
// a HINT, leave the dataset zeroed, and never crash (run it under ASan too).
#define _GNU_SOURCE   // nftw, mkdtemp
#include <ftw.h>      // nftw
#include <stdio.h>    // fopen
#include <stdlib.h>   // mkdtemp, malloc
#include <string.h>   // memcmp, strstr
#include <sys/stat.h> // mkdir
#include <zlib.h>     // crc32
#include <zstd.h>     // ZSTD_compress, ZSTD_decompress

#include "dataset.h"
#include "le.h" // le_put_u32, le_get_u64, ...
#include "lr.h"
#include "test_fault.h" // t_fault_sweep, t_replace, t_count_names
#include "test_util.h"

static char g_dir[64];

static const char *path_of(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n + 1);
  *n = fread(b, 1, *n, f);
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

static void fix_header_crc(unsigned char *b) { le_put_u32(b + 124, (uint32_t)crc32(0, b, 124)); }

static int equal(const lr_dataset *a, const lr_dataset *b) {
  return a->n_users == b->n_users && a->n_items == b->n_items && a->n_inter == b->n_inter &&
         a->user_first == b->user_first &&
         !memcmp(a->offsets, b->offsets, (size_t)(a->n_users + 1) * 8) &&
         !memcmp(a->items, b->items, (size_t)a->n_inter * 4) &&
         !memcmp(a->user_orig, b->user_orig, (size_t)a->n_users * 8) &&
         !memcmp(a->item_orig, b->item_orig, (size_t)(a->n_items + 1) * 8);
}

// Users [lo, hi) of full as a standalone dataset equal part.
static int equal_range(const lr_dataset *full, const lr_dataset *part, int64_t lo, int64_t hi) {
  if (part->n_users != hi - lo || part->user_first != lo || part->n_items != full->n_items ||
      part->n_inter != full->offsets[hi] - full->offsets[lo])
    return 0;
  for (int64_t u = lo; u <= hi; u++)
    if (part->offsets[u - lo] != full->offsets[u] - full->offsets[lo]) return 0;
  return !memcmp(part->items, full->items + full->offsets[lo], (size_t)part->n_inter * 4) &&
         !memcmp(part->user_orig, full->user_orig + lo, (size_t)part->n_users * 8) &&
         !memcmp(part->item_orig, full->item_orig, (size_t)(full->n_items + 1) * 8);
}

// Read `path`; 1 if LR_ERR_CORRUPT with path, "byte" and HINT in the message
// and ds zeroed.
static int read_is_corrupt(const char *path) {
  lr_dataset ds;
  lr_error_clear();
  int rc = data_read_binary(&ds, path);
  const char *m = lr_error_msg();
  int ok = rc == LR_ERR_CORRUPT && strstr(m, path) && strstr(m, "byte") && strstr(m, "HINT") &&
           ds.items == NULL && ds.offsets == NULL && ds.n_users == 0;
  if (!ok && rc == LR_OK) dataset_free(&ds);
  return ok;
}

// ---------------------------------------------------------------------------

static void test_round_trip(lr_dataset *ds, const char *p) {
  lr_error_clear();
  int rc = data_write_binary(ds, p);
  t_check(rc == LR_OK, "binary: write %lld users, %lld interactions", (long long)ds->n_users,
          (long long)ds->n_inter);
  lr_dataset back;
  rc = data_read_binary(&back, p);
  t_check(rc == LR_OK && equal(ds, &back), "binary: read back equals the dataset");
  dataset_free(&back);
  lr_data_opts o = {.path = p, .format = LR_FMT_BINARY};
  rc = data_load(&back, &o);
  t_check(rc == LR_OK && equal(ds, &back), "binary: data_load(format binary) equals too");
  dataset_free(&back);
  t_check(t_count_names(g_dir, ".tmp") == 0, "binary: no temp file left after the rename");
}

static void check_range_read(const lr_dataset *ds, const char *p, int64_t lo, int64_t hi) {
  lr_dataset part;
  lr_error_clear();
  int rc = data_read_binary_users(&part, p, lo, hi);
  t_check(rc == LR_OK && equal_range(ds, &part, lo, hi), "binary: users %lld..%lld", (long long)lo,
          (long long)hi);
  dataset_free(&part);
}

static void test_ranges(const lr_dataset *ds, const char *p) {
  int64_t U = ds->n_users;
  check_range_read(ds, p, 0, 0);
  check_range_read(ds, p, 0, 10);
  check_range_read(ds, p, U - 7, U);
  check_range_read(ds, p, U, U);
  check_range_read(ds, p, 1000, U - 1000);
  // around every block boundary (read from the index)
  size_t n;
  unsigned char *b = read_all(p, &n);
  int64_t nb = (int64_t)le_get_u64(b + 48);
  t_check(nb >= 3, "binary: %lld blocks", (long long)nb);
  for (int64_t k = 1; k < nb; k++) {
    int64_t first = (int64_t)le_get_u64(b + 128 + 48 * k + 16);
    check_range_read(ds, p, first - 3, first + 3);
    check_range_read(ds, p, first - 1, first);
    check_range_read(ds, p, first, first + 1);
  }
  free(b);
  lr_dataset part;
  lr_error_clear();
  int rc = data_read_binary_users(&part, p, 5, U + 1);
  t_check(rc == LR_ERR_ARG && part.items == NULL, "binary: user range past the end is an "
                                                  "argument error");
  lr_data_shape sh;
  rc = data_read_binary_shape(&sh, p);
  t_check(rc == LR_OK && sh.n_users == U && sh.n_items == ds->n_items &&
              sh.n_inter == ds->n_inter &&
              !memcmp(sh.offsets, ds->offsets, (size_t)(U + 1) * sizeof *sh.offsets),
          "binary: shape (counts and offsets) without items");
  data_shape_free(&sh);
}

// Flips in a multi-block file: each section once.
static void test_flips(const char *p) {
  size_t n;
  unsigned char *b = read_all(p, &n);
  uint64_t len_off = le_get_u64(b + 64), maps_off = le_get_u64(b + 80);
  uint64_t n_blocks = le_get_u64(b + 48);
  uint64_t last_off = le_get_u64(b + 128 + (n_blocks - 1) * 48);
  struct {
    const char *what;
    size_t at;
  } flips[] = {{"header n_users", 20},
               {"header reserved", 110},
               {"header crc", 125},
               {"block index", 128 + 3},
               {"lengths section", (size_t)len_off + 20},
               {"maps section", (size_t)maps_off + 20},
               {"first block", (size_t)le_get_u64(b + 128) + 40},
               {"last block middle", (size_t)(last_off + (n - last_off) / 2)},
               {"last byte (zstd checksum)", n - 1}};
  const char *q = path_of("flip.lrd");
  for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
    b[flips[k].at] ^= 0x10;
    write_bytes(q, b, n);
    b[flips[k].at] ^= 0x10;
    t_check(read_is_corrupt(q), "binary: flipped byte in %s is corrupt", flips[k].what);
  }
  // magic and version
  memcpy(b, "LRDATA02", 8);
  write_bytes(q, b, n);
  t_check(read_is_corrupt(q) && strstr(lr_error_msg(), "magic"), "binary: wrong magic");
  memcpy(b, "LRDATA01", 8);
  b[8] = 3;
  write_bytes(q, b, n);
  t_check(read_is_corrupt(q) && strstr(lr_error_msg(), "version"), "binary: wrong version");
  fix_header_crc(b);
  write_bytes(q, b, n);
  t_check(read_is_corrupt(q) && strstr(lr_error_msg(), "version"),
          "binary: wrong version with a valid header crc");
  b[8] = 2;
  fix_header_crc(b);
  // trailing garbage and truncation
  unsigned char *longer = malloc(n + 5);
  memcpy(longer, b, n);
  memset(longer + n, 0, 5);
  write_bytes(q, longer, n + 5);
  t_check(read_is_corrupt(q) && strstr(lr_error_msg(), "file size"), "binary: trailing bytes");
  free(longer);
  const size_t cuts[] = {0, 1, 100, 128, 200, n / 2, n - 1};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
    write_bytes(q, b, cuts[k]);
    t_check(read_is_corrupt(q), "binary: truncated to %zu of %zu bytes", cuts[k], n);
  }
  lr_dataset ds;
  lr_error_clear();
  int rc = data_read_binary(&ds, path_of("absent.lrd"));
  t_check(rc == LR_ERR_IO && strstr(lr_error_msg(), "absent.lrd"), "binary: missing file is "
                                                                   "an I/O error");
  free(b);
}

// Every single-byte flip and every truncation of a small file is caught.
static void test_exhaustive_small(void) {
  static int64_t off[5] = {0, 3, 4, 8, 9}, uo[4] = {11, 12, 15, 40}, io[7] = {0, 5, 6, 7, 8, 9, 99};
  static int32_t it[9] = {1, 2, 3, 6, 4, 5, 6, 1, 2};
  lr_dataset ds = {.n_users = 4,
                   .n_items = 6,
                   .n_inter = 9,
                   .offsets = off,
                   .items = it,
                   .user_orig = uo,
                   .item_orig = io};
  const char *p = path_of("small.lrd"), *q = path_of("small_bad.lrd");
  int rc = data_write_binary(&ds, p);
  lr_dataset back;
  rc = rc ? rc : data_read_binary(&back, p);
  t_check(rc == LR_OK && equal(&ds, &back), "binary: small dataset round trip");
  if (rc == LR_OK) dataset_free(&back);
  size_t n;
  unsigned char *b = read_all(p, &n);
  size_t missed_flip = 0, missed_cut = 0;
  for (size_t at = 0; at < n; at++) {
    for (int bit = 0; bit < 8; bit += 3) {
      b[at] ^= (unsigned char)(1u << bit);
      write_bytes(q, b, n);
      b[at] ^= (unsigned char)(1u << bit);
      if (!read_is_corrupt(q)) missed_flip++;
    }
    write_bytes(q, b, at);
    if (!read_is_corrupt(q)) missed_cut++;
  }
  t_check(missed_flip == 0, "binary: all %zu bit flips of a %zu-byte file are corrupt (%zu missed)",
          3 * n, n, missed_flip);
  t_check(missed_cut == 0, "binary: all %zu truncations are corrupt (%zu missed)", n, missed_cut);
  free(b);
  // an empty dataset is not written
  static int64_t off0[1] = {0}, io0[1] = {0};
  lr_dataset empty = {.offsets = off0, .item_orig = io0};
  lr_error_clear();
  rc = data_write_binary(&empty, path_of("empty.lrd"));
  FILE *f = fopen(path_of("empty.lrd"), "rb");
  t_check(rc == LR_ERR_ARG && !f && strstr(lr_error_msg(), "0 users and 0 items"),
          "binary: writing an empty dataset is refused");
  if (f) fclose(f);
  // a dataset breaking its invariants is refused, nothing written
  static const char *const broken[] = {"an item id above n_items", "a user without interactions",
                                       "user ids not increasing", "item ids not increasing"};
  for (int k = 0; k < 4; k++) {
    int64_t save_off = off[1], save_uo = uo[1], save_io = io[3];
    int32_t save_it = it[2];
    if (k == 0) it[2] = 7;
    if (k == 1) off[1] = 0;
    if (k == 2) uo[1] = uo[0];
    if (k == 3) io[3] = io[2] - 1;
    lr_error_clear();
    rc = data_write_binary(&ds, path_of("never.lrd"));
    f = fopen(path_of("never.lrd"), "rb");
    t_check(rc == LR_ERR_ARG && !f, "binary: writing %s is refused", broken[k]);
    if (f) fclose(f);
    off[1] = save_off, uo[1] = save_uo, io[3] = save_io, it[2] = save_it;
  }
  lr_error_clear();
  rc = data_write_binary(&ds, "/nonexistent-dir/x.lrd");
  t_check(rc == LR_ERR_IO && strstr(lr_error_msg(), "/nonexistent-dir/x.lrd"),
          "binary: write into a missing directory is an I/O error");
}

// Two users (items 1 2 | 3) of three items: a dataset of one block. Its
// arrays are static; nobody changes them.
static lr_dataset tiny_dataset(void) {
  static int64_t off[3] = {0, 2, 3}, uo[2] = {1, 2}, io[4] = {0, 1, 2, 3};
  static int32_t it[3] = {1, 2, 3};
  return (lr_dataset){.n_users = 2,
                      .n_items = 3,
                      .n_inter = 3,
                      .offsets = off,
                      .items = it,
                      .user_orig = uo,
                      .item_orig = io};
}

// A file with valid checksums whose block holds item n_items+1: only the
// range check can catch it.
static void test_item_range(void) {
  lr_dataset ds = tiny_dataset();
  const char *p = path_of("range.lrd");
  data_write_binary(&ds, p);
  size_t n;
  unsigned char *b = read_all(p, &n);
  uint64_t boff = le_get_u64(b + 128);
  unsigned char raw[12];
  for (int k = 0; k < 3; k++)
    le_put_u32(raw + 4 * k, (uint32_t)(k == 2 ? 4 : ds.items[k]));
  size_t cap = ZSTD_compressBound(sizeof raw);
  unsigned char *out = malloc(boff + cap);
  memcpy(out, b, boff);
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  size_t z = ZSTD_compress2(cc, out + boff, cap, raw, sizeof raw);
  ZSTD_freeCCtx(cc);
  le_put_u64(out + 128 + 8, z);
  le_put_u32(out + 128 + 40, (uint32_t)crc32(0, out + boff, (uInt)z));
  le_put_u32(out + 96, (uint32_t)crc32(0, out + 128, 48));
  le_put_u64(out + 56, boff + z);
  fix_header_crc(out);
  write_bytes(p, out, boff + z);
  t_check(read_is_corrupt(p) && strstr(lr_error_msg(), "item id 4"),
          "binary: item id above n_items with valid checksums is corrupt");
  free(out);
  free(b);
}

// Write a file in the dataset format with every checksum right, whatever
// its contents: U users (lens), I items, header and index interaction count
// n_inter, one block holding items[0..sum of lens) (none when U == 0).
static void write_crafted(const char *path, int64_t U, int64_t I, int64_t n_inter,
                          const uint32_t *lens, const uint64_t *user_orig,
                          const uint64_t *item_orig, const int32_t *items) {
  int64_t nb = U > 0, sum = 0;
  for (int64_t u = 0; u < U; u++)
    sum += lens[u];
  size_t cap = 1 << 16;
  unsigned char *b = calloc(cap, 1), raw[4096];
  size_t pos = 128 + (size_t)nb * 48, off[3], len[3];
  uint32_t crcs[3];
  for (int sec = 0; sec < 3; sec++) { // lengths, maps, block
    size_t n = 0;
    if (sec == 0)
      for (int64_t u = 0; u < U; u++)
        le_put_u32(raw + 4 * u, lens[u]), n += 4;
    if (sec == 1) {
      for (int64_t u = 0; u < U; u++)
        le_put_u64(raw + n, user_orig[u]), n += 8;
      for (int64_t i = 0; i <= I; i++)
        le_put_u64(raw + n, item_orig[i]), n += 8;
    }
    if (sec == 2)
      for (int64_t k = 0; k < sum; k++)
        le_put_u32(raw + 4 * k, (uint32_t)items[k]), n += 4;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    len[sec] = ZSTD_compress2(cc, b + pos, cap - pos, raw, n);
    ZSTD_freeCCtx(cc);
    off[sec] = pos;
    crcs[sec] = (uint32_t)crc32(0, b + pos, (uInt)len[sec]);
    pos += len[sec];
    if (sec == 1 && !nb) break;
  }
  memcpy(b, "LRDATA01", 8);
  le_put_u32(b + 8, 1);
  le_put_u32(b + 12, 128);
  le_put_u64(b + 16, (uint64_t)U);
  le_put_u64(b + 24, (uint64_t)I);
  le_put_u64(b + 32, (uint64_t)n_inter);
  le_put_u64(b + 48, (uint64_t)nb);
  le_put_u64(b + 56, pos);
  le_put_u64(b + 64, off[0]);
  le_put_u64(b + 72, len[0]);
  le_put_u64(b + 80, off[1]);
  le_put_u64(b + 88, len[1]);
  if (nb) {
    le_put_u64(b + 128, off[2]);
    le_put_u64(b + 136, len[2]);
    le_put_u64(b + 152, (uint64_t)U);
    le_put_u64(b + 160, (uint64_t)n_inter);
    le_put_u32(b + 168, crcs[2]);
  }
  le_put_u32(b + 96, (uint32_t)crc32(0, b + 128, (uInt)(nb * 48)));
  le_put_u32(b + 100, crcs[0]);
  le_put_u32(b + 104, crcs[1]);
  fix_header_crc(b);
  write_bytes(path, b, pos);
  free(b);
}

// Files whose checksums are all consistent but whose contents are
// impossible for a dataset `linrec prep` writes: refused by the reader
// (and so by prep, train and eval, which read through data_load).
static void test_impossible(void) {
  const char *p = path_of("impossible.lrd");
  static const uint64_t uo[3] = {4, 7, 9}, io[4] = {0, 10, 20, 30};
  static const int32_t it[6] = {1, 2, 3, 3, 2, 1};
  static const uint32_t lens[3] = {2, 3, 1}, zero[3] = {3, 0, 3}, shifted[3] = {2, 2, 1};
  static const uint64_t uo_dup[3] = {4, 4, 9}, io_big[4] = {0, 10, 20, (uint64_t)1 << 60},
                        io_pad[4] = {5, 10, 20, 30};
  write_crafted(p, 3, 3, 6, lens, uo, io, it);
  lr_dataset ds;
  int rc = data_read_binary(&ds, p);
  t_check(rc == LR_OK && ds.n_users == 3 && ds.n_inter == 6,
          "impossible: the crafting helper writes a valid file");
  if (rc == LR_OK) dataset_free(&ds);
  struct {
    int64_t U, I, n_inter;
    const uint32_t *lens;
    const uint64_t *uo, *io;
    const char *needle, *what;
  } cases[] = {
      {0, 3, 0, lens, uo, io, "impossible contents: 0 users", "no users"},
      {3, 0, 6, lens, uo, io, "impossible contents: 3 users, 0 items", "no items"},
      {3, 3, 2, lens, uo, io, "2 interactions", "fewer interactions than users"},
      {3, 3, 6, zero, uo, io, "user 1 has no interactions", "a user with no interactions"},
      {3, 3, 6, shifted, uo, io, "sum to 5, index says 6", "lengths that disagree with the count"},
      {3, 3, 6, lens, uo_dup, io, "user 1 has original id 4", "a repeated user id"},
      {3, 3, 6, lens, uo, io_big, "item 3 has original id 1152921504606846976",
       "an item id beyond 2^53-1"},
      {3, 3, 6, lens, uo, io_pad, "padding item 0 maps to original id 5", "item 0 not 0"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    write_crafted(p, cases[k].U, cases[k].I, cases[k].n_inter, cases[k].lens, cases[k].uo,
                  cases[k].io, it);
    lr_data_opts o = {.path = p, .format = LR_FMT_BINARY};
    lr_error_clear();
    rc = data_load(&ds, &o);
    const char *m = lr_error_msg();
    int ok = rc == LR_ERR_CORRUPT && strstr(m, p) && strstr(m, ": byte ") &&
             strstr(m, cases[k].needle) && strstr(m, "HINT") && !ds.offsets;
    if (!ok) printf("  (status %d: %s)\n", rc, m);
    t_check(ok, "impossible: %s is refused by data_load (prep, train, eval)", cases[k].what);
    if (rc == LR_OK) dataset_free(&ds);
  }
  lr_error_clear();
}

// ---------------------------------------------------------------------------
// faults: data_write_binary over an older dataset, every wrapped call failing
// or crashing in turn (test_fault.h)

typedef struct {
  t_replace r;          // first: the target's after and reset use it
  const lr_dataset *ds; // what is written
} fault_ctx;

static int fault_write(void *arg) {
  const fault_ctx *c = arg;
  return data_write_binary(c->ds, c->r.path);
}

static void test_faults(void) {
  // two blocks (65536 users close the first): every section is written
  lr_synth_opts so = {.users = 70000, .items = 500, .mean_len = 3, .zipf = 1.0, .seed = 5};
  lr_dataset small = tiny_dataset(), ds;
  fault_ctx c = {.ds = &ds};
  int rc = data_synthesize(&ds, &so);
  if (rc != LR_OK) printf("  (%s)\n", lr_error_msg());
  int ok = rc == LR_OK && t_replace_init(&c.r, path_of("flt"), "d.lrd") &&
           data_write_binary(&small, c.r.path) == LR_OK && t_replace_take(&c.r, 0) &&
           data_write_binary(&ds, c.r.path) == LR_OK && t_replace_take(&c.r, 1);
  t_check(ok, "binary faults: the files to replace");
  if (ok) {
    t_replace_reset(&c.r);
    t_fault_target t = {"binary dataset", c.r.dir,         fault_write,
                        t_replace_after,  t_replace_reset, &c};
    int64_t n[LR_FAULT_N_KINDS];
    t_fault_sweep(&t, n);
    t_check(n[LR_FAULT_WRITE] >= 5 && n[LR_FAULT_FSYNC] == 2 && n[LR_FAULT_RENAME] == 1,
            "binary faults: sections written through the hooks, fsync of the file and of its "
            "directory, one rename");
  }
  if (rc == LR_OK) dataset_free(&ds);
  t_replace_free(&c.r);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/lr_test_io_binary_XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  // 140,000 users with 20 interactions on average: blocks are closed by
  // their interaction count (2^20) before they reach 65536 users
  lr_synth_opts so = {.users = 140000, .items = 3000, .mean_len = 20, .zipf = 1.0, .seed = 9};
  lr_dataset ds;
  int rc = data_synthesize(&ds, &so);
  t_check(rc == LR_OK, "binary: synthetic dataset to write");
  if (rc == LR_OK) {
    const char *p = path_of("data.lrd");
    test_round_trip(&ds, p);
    test_ranges(&ds, p);
    test_flips(p);
    dataset_free(&ds);
  }
  test_exhaustive_small();
  test_item_range();
  test_impossible();
  test_faults();
  nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return t_done();
}
