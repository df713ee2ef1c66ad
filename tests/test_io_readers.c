// test_io_readers.c: every text format on a small good file (plain, gzip and
// zstd), the same interactions giving the same dataset; every kind of bad
// input returning the right status with "path:line:" in the message (a NUL
// byte in a line included); ids padded with blanks; csv and recbole files
// concatenated with their headers (plain, gzip members, zstd frames); a
// missing file; damaged and truncated compressed streams; a file large
// enough to cross every buffer boundary.
#define _GNU_SOURCE // nftw, mkdtemp
#include <ftw.h>    // nftw
#include <stdio.h>  // fopen, snprintf
#include <stdlib.h> // mkdtemp, malloc
#include <string.h> // strstr, strlen
#include <unistd.h> // unlink, rmdir
#include <zlib.h>   // gzopen, gzwrite
#include <zstd.h>   // ZSTD_compress

#include "dataset.h"
#include "lr.h"
#include "test_util.h"

static char g_dir[64];

// ---------------------------------------------------------------------------
// files

static const char *path_of(const char *name) {
  static char buf[8][256];
  static int k;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n) {
    fprintf(stderr, "cannot write %s\n", path);
    t_check(0, "write test file %s", path);
  }
  if (f) fclose(f);
}

static void write_text(const char *path, const char *text) {
  write_bytes(path, text, strlen(text));
}

// gzip of text[0..n): one member, or two when cut < n (split at byte cut).
static void write_gz_cut(const char *path, const char *text, size_t n, size_t cut) {
  gzFile g = gzopen(path, "wb6");
  gzwrite(g, text, (unsigned)cut);
  gzclose(g);
  if (cut < n) {
    g = gzopen(path, "ab6");
    gzwrite(g, text + cut, (unsigned)(n - cut));
    gzclose(g);
  }
}

// gzip with `members` concatenated members (the text split between them).
static void write_gz(const char *path, const char *text, size_t n, int members) {
  write_gz_cut(path, text, n, members > 1 ? n / 2 : n);
}

// zstd of text[0..n): one frame, or two when cut < n; returns compressed size.
static size_t write_zst_cut(const char *path, const char *text, size_t n, size_t cut) {
  size_t cap = 2 * ZSTD_compressBound(n) + 64;
  char *out = malloc(cap);
  size_t a = ZSTD_compress(out, cap, text, cut, 3);
  size_t b = cut < n ? ZSTD_compress(out + a, cap - a, text + cut, n - cut, 3) : 0;
  write_bytes(path, out, a + b);
  free(out);
  return a + b;
}

// zstd with `frames` concatenated frames; returns compressed size.
static size_t write_zst(const char *path, const char *text, size_t n, int frames) {
  return write_zst_cut(path, text, n, frames > 1 ? n / 2 : n);
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(*n + 1);
  *n = fread(b, 1, *n, f);
  fclose(f);
  return b;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

// ---------------------------------------------------------------------------
// checks

static int load(lr_dataset *ds, lr_data_format fmt, const char *path) {
  lr_data_opts o = {.path = path, .format = fmt};
  lr_error_clear();
  return data_load(ds, &o);
}

// The dataset every good file below encodes:
// users 3 -> 0, 5 -> 1; items 7 -> 1, 42 -> 2, 100 -> 3;
// user 3: 100 (t200), 7 (t250); user 5: 7 (t100), 42 (t100, after 7 in the file), 100 (t300).
static int is_expected(const lr_dataset *ds) {
  static const int64_t off[3] = {0, 2, 5}, uo[2] = {3, 5}, io[4] = {0, 7, 42, 100};
  static const int32_t it[5] = {3, 1, 1, 2, 3};
  if (ds->n_users != 2 || ds->n_items != 3 || ds->n_inter != 5) return 0;
  return !memcmp(ds->offsets, off, sizeof off) && !memcmp(ds->items, it, sizeof it) &&
         !memcmp(ds->user_orig, uo, sizeof uo) && !memcmp(ds->item_orig, io, sizeof io);
}

static void good_file(const char *name, lr_data_format fmt, const char *text) {
  const char *variants[3] = {"plain", "gzip", "zstd"};
  for (int v = 0; v < 3; v++) {
    char fname[64];
    snprintf(fname, sizeof fname, "%s%s", name, v == 0 ? "" : v == 1 ? ".gz" : ".zst");
    const char *p = path_of(fname);
    if (v == 0) write_text(p, text);
    if (v == 1) write_gz(p, text, strlen(text), 1);
    if (v == 2) write_zst(p, text, strlen(text), 1);
    lr_dataset ds;
    int rc = load(&ds, fmt, p);
    if (rc) printf("  %s\n", lr_error_msg());
    t_check(rc == LR_OK && is_expected(&ds), "readers: %s %s (%s)", data_format_name(fmt), name,
            variants[v]);
    dataset_free(&ds);
  }
}

// Load the n bytes of text as `fmt` from file `name`; expect status `want`
// and a message holding the path and, if line > 0, ":line:".
static void bad_bytes(const char *name, lr_data_format fmt, const char *text, size_t n, int want,
                      int line, const char *what) {
  const char *p = path_of(name);
  write_bytes(p, text, n);
  lr_dataset ds;
  int rc = load(&ds, fmt, p);
  char tag[32] = "";
  if (line > 0) snprintf(tag, sizeof tag, "%s:%d:", name, line);
  const char *msg = lr_error_msg();
  int ok = rc == want && strstr(msg, p) && (!line || strstr(msg, tag)) && ds.n_users == 0 &&
           ds.items == NULL;
  if (!ok) printf("  got %d (%s): %s\n", rc, lr_status_str(rc), msg);
  t_check(ok, "readers: %s rejects %s (%s)", data_format_name(fmt), what, lr_status_str(want));
  dataset_free(&ds);
}

static void bad_file(const char *name, lr_data_format fmt, const char *text, int want, int line,
                     const char *what) {
  bad_bytes(name, fmt, text, strlen(text), want, line, what);
}

// ---------------------------------------------------------------------------

static void test_good_files(void) {
  good_file("ratings.dat", LR_FMT_MOVIELENS,
            "5::100::4::300\n5::7::5::100\n3::100::2::200\n5::42::3::100\n3::7::5::250\n");
  good_file("u.data", LR_FMT_MOVIELENS,
            "5\t100\t4\t300\n5\t7\t5\t100\n3\t100\t2\t200\n5\t42\t3\t100\n3\t7\t5\t250");
  good_file("ratings.csv", LR_FMT_CSV,
            "userId,movieId,rating,timestamp\r\n5,100,4.0,300\r\n5,7,5.0,100\r\n"
            "3,100,2.5,200\r\n\r\n5,42,3.5,100\r\n3,7,5.0,250\r\n\r\n");
  good_file("bom.csv", LR_FMT_CSV,
            "\xEF\xBB\xBFuserId,movieId,rating,timestamp\n5,100,4,300\n5,7,5,100\n3,100,2,200\n"
            "5,42,3,100\n3,7,5,250\n");
  good_file("full.inter", LR_FMT_RECBOLE,
            "timestamp:float\titem_id:token\tcomment:token\tuser_id:token\trating:float\n"
            "300\t100\tgood\t5\t4\n100.0\t7\t\t5\t5\n200\t100\tmeh film\t3\t2\n"
            "100\t42\tx\t5\t3\n250\t7\ty\t3\t5\n");
  good_file("bare.inter", LR_FMT_RECBOLE,
            "user_id:token\titem_id:token\n5\t7\n3\t100\n5\t42\n3\t7\n5\t100\n");
  good_file("seq.txt", LR_FMT_SASREC, "5 7\n3 100\n5  42\n3\t7\n5 100\n");
  // ids and numbers padded with blanks, as the separators are
  good_file("padded.dat", LR_FMT_MOVIELENS,
            "   5::100::4::300\n5 ::  7::5::100\n3::100:: 2 :: 200\n\t5::42::3::100\n"
            "3::7::5::250  \n");
  good_file("padded_tab.data", LR_FMT_MOVIELENS,
            " 5\t100\t4\t300\n5\t   7\t5\t100\n3 \t100\t2\t200\n5\t42\t3\t100\n3\t7\t5\t250\n");
  good_file("padded.csv", LR_FMT_CSV,
            "userId,movieId,rating,timestamp\n  5,100,4,300\n5,\t7,5,100\n3 ,100,2,200\n"
            "5,42 ,3,100\n3,7,5,  250\n");
  good_file("padded.inter", LR_FMT_RECBOLE,
            "user_id:token\titem_id:token\ttimestamp:float\n   5\t100\t300\n5 \t7\t100\n"
            "3\t 100 \t200\n5\t42\t100\n3\t7\t  250\n");
}

// text[0..n) as two files joined at byte cut: by cat (v 0), as two gzip
// members (1) or two zstd frames (2), in the file name.txt/.gz/.zst.
static const char *write_joined(const char *name, int v, const char *text, size_t n, size_t cut) {
  char f[64];
  snprintf(f, sizeof f, "%s.%s", name, v == 0 ? "txt" : v == 1 ? "gz" : "zst");
  const char *p = path_of(f);
  if (v == 0) write_bytes(p, text, n);
  if (v == 1) write_gz_cut(p, text, n, cut);
  if (v == 2) write_zst_cut(p, text, n, cut);
  return p;
}

// Files concatenated with their header lines (cat, gzip members, zstd
// frames): the repeated header is skipped; a different line there fails.
static void test_concatenated(void) {
  static const char *const heads[2] = {"userId,movieId,rating,timestamp\n",
                                       "user_id:token\titem_id:token\ttimestamp:float\n"};
  static const char *const rows[2][2] = {
      {"5,100,4,300\n5,7,5,100\n3,100,2,200\n", "5,42,3,100\n3,7,5,250\n"},
      {"5\t100\t300\n5\t7\t100\n3\t100\t200\n", "5\t42\t100\n3\t7\t250\n"}};
  static const lr_data_format fmts[2] = {LR_FMT_CSV, LR_FMT_RECBOLE};
  static const char *const how[3] = {"plain (cat)", "two gzip members", "two zstd frames"};
  char text[512];
  for (int f = 0; f < 2; f++)
    for (int v = 0; v < 3; v++) {
      for (int bom = 0; bom < 2; bom++) {
        size_t cut = (size_t)snprintf(text, sizeof text, "%s%s", heads[f], rows[f][0]);
        size_t n = cut + (size_t)snprintf(text + cut, sizeof text - cut, "%s%s%s",
                                          bom ? "\xEF\xBB\xBF" : "", heads[f], rows[f][1]);
        const char *p = write_joined("cat", v, text, n, cut);
        lr_dataset ds;
        int rc = load(&ds, fmts[f], p);
        if (rc) printf("  %s\n", lr_error_msg());
        t_check(rc == LR_OK && is_expected(&ds), "readers: %s, %s%s, each with its header",
                data_format_name(fmts[f]), how[v], bom ? " (byte order mark)" : "");
        dataset_free(&ds);
      }
      // another header in the middle is an error at its line
      size_t cut = (size_t)snprintf(text, sizeof text, "%s%s", heads[f], rows[f][0]);
      size_t n = cut + (size_t)snprintf(text + cut, sizeof text - cut, "%s%s",
                                        f == 0 ? "userId,itemId,rating,timestamp\n"
                                               : "user_id:token\titem_id:token\n",
                                        rows[f][1]);
      const char *p = write_joined("other", v, text, n, cut);
      lr_dataset ds;
      int rc = load(&ds, fmts[f], p);
      char tag[64];
      snprintf(tag, sizeof tag, "%s:5:", p);
      t_check(rc == LR_ERR_DATA && strstr(lr_error_msg(), tag),
              "readers: %s, %s, a different header line in the middle fails at line 5",
              data_format_name(fmts[f]), how[v]);
      dataset_free(&ds);
    }
}

static void test_bad_files(void) {
  const int D = LR_ERR_DATA;
  // movielens
  bad_file("fields.dat", LR_FMT_MOVIELENS, "1::2::3::4\n1::2::3\n", D, 2, "3 fields");
  bad_file("fields5.dat", LR_FMT_MOVIELENS, "1::2::3::4\n\n1::2::3::4::5\n", D, 3, "5 fields");
  bad_file("nosep.dat", LR_FMT_MOVIELENS, "1 2 3 4\n", D, 1, "no separator");
  bad_file("mixed.dat", LR_FMT_MOVIELENS, "1::2::3::4\n1\t2\t3\t4\n", D, 2, "mixed separators");
  { // ids are numbers or strings now; bad strings: too long, control characters
    char t[400];
    snprintf(t, sizeof t, "1::2::3::4\n1::%0257d::3::4\n", 0);
    t[strlen("1::2::3::4\n1::")] = 'x';
    bad_file("long.dat", LR_FMT_MOVIELENS, t, D, 2, "an id over 256 bytes");
  }
  bad_file("ctl.dat", LR_FMT_MOVIELENS, "1::2::3::4\n1::\x01b::3::4\n", D, 2,
           "an id holding a control character");
  bad_file("del.inter", LR_FMT_RECBOLE, "user_id:token\titem_id:token\n\x7f\t2\n", D, 2,
           "a DEL character in an id");
  bad_file("emptyid.dat", LR_FMT_MOVIELENS, "::1::3::4\n", D, 1, "empty user id");
  bad_file("rating.dat", LR_FMT_MOVIELENS, "1::2::3::4\n1::3::five::4\n", D, 2,
           "non-numeric rating");
  bad_file("nan.dat", LR_FMT_MOVIELENS, "1::2::nan::4\n", D, 1, "NaN rating");
  bad_file("ts.dat", LR_FMT_MOVIELENS, "1::2::3::4\n1::3::4::12abc\n", D, 2,
           "non-numeric timestamp");
  bad_file("tsempty.dat", LR_FMT_MOVIELENS, "1::2::3::\n", D, 1, "empty timestamp");
  bad_file("empty.dat", LR_FMT_MOVIELENS, "", D, 1, "an empty file");
  bad_file("blank.dat", LR_FMT_MOVIELENS, "\n  \n\n", D, 3, "a file of blank lines");
  // csv
  bad_file("nohead.csv", LR_FMT_CSV, "1,2,3.5,100\n", D, 1, "a missing header");
  bad_file("head.csv", LR_FMT_CSV, "user,item,rating,timestamp\n1,2,3,4\n", D, 1, "a wrong header");
  bad_file("head3.csv", LR_FMT_CSV, "userId,movieId,rating\n1,2,3\n", D, 1, "a 3-column header");
  bad_file("only.csv", LR_FMT_CSV, "userId,movieId,rating,timestamp\n", D, 1, "a header-only file");
  bad_file("empty.csv", LR_FMT_CSV, "", D, 1, "an empty file");
  bad_file("fields.csv", LR_FMT_CSV, "userId,movieId,rating,timestamp\n1,2,3,4\n1,2,3\n", D, 3,
           "3 fields");
  bad_file("inf.csv", LR_FMT_CSV, "userId,movieId,rating,timestamp\n1,2,inf,4\n", D, 2,
           "an infinite rating");
  // recbole
  bad_file("noitem.inter", LR_FMT_RECBOLE, "user_id:token\trating:float\n1\t2\n", D, 1,
           "a header without item_id");
  bad_file("notype.inter", LR_FMT_RECBOLE, "user_id:token\titem_id\n1\t2\n", D, 1,
           "a header column without type");
  bad_file("badtype.inter", LR_FMT_RECBOLE, "user_id:token\titem_id:int\n1\t2\n", D, 1,
           "an unknown column type");
  bad_file("dup.inter", LR_FMT_RECBOLE, "user_id:token\titem_id:token\tuser_id:token\n", D, 1,
           "a duplicate column");
  bad_file("fields.inter", LR_FMT_RECBOLE,
           "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n", D, 3, "a short line");
  bad_file("ts.inter", LR_FMT_RECBOLE,
           "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\tyesterday\n", D, 3,
           "a non-numeric timestamp");
  bad_file("only.inter", LR_FMT_RECBOLE, "user_id:token\titem_id:token\n", D, 1,
           "a header-only file");
  // sasrec
  bad_file("three.txt", LR_FMT_SASREC, "1 2\n1 2 3\n", D, 2, "3 fields");
  bad_file("one.txt", LR_FMT_SASREC, "1 2\n\n7\n", D, 3, "1 field");
  bad_file("empty.txt", LR_FMT_SASREC, "", D, 1, "an empty file");
  // a NUL byte inside a line (issue 14.4: it used to cut the line, reading
  // timestamp "2\0000" as 2)
  static const char nul[] = "1::10::5::100\n1::20::5::2\0000\n1::30::5::300\n";
  bad_bytes("nul.dat", LR_FMT_MOVIELENS, nul, sizeof nul - 1, D, 2, "a NUL byte in a line");
  static const char nul_last[] = "1 2\n1 3\0";
  bad_bytes("nul.txt", LR_FMT_SASREC, nul_last, sizeof nul_last - 1, D, 2,
            "a NUL byte in a last line without newline");
  static const char nul_head[] = "userId,movieId\0,rating,timestamp\n1,2,3,4\n";
  bad_bytes("nul.csv", LR_FMT_CSV, nul_head, sizeof nul_head - 1, D, 1, "a NUL byte in the header");
  // blanks around an id are trimmed; inside one they are not
  // min_rating on a format without ratings is a configuration error
  const char *p = path_of("seq_rating.txt");
  write_text(p, "1 2\n");
  lr_dataset ds;
  lr_data_opts o = {.path = p, .format = LR_FMT_SASREC, .min_rating = 4};
  lr_error_clear();
  int rc = data_load(&ds, &o);
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), p), "readers: sasrec with min_rating is "
                                                            "a configuration error");
}

static void test_long_line(void) {
  size_t n = (size_t)(1 << 20) + 100;
  char *text = malloc(n + 32);
  strcpy(text, "1::2::3::4\n");
  size_t k = strlen(text);
  memset(text + k, '7', n);
  strcpy(text + k + n, "::2::3::4\n");
  bad_file("long.dat", LR_FMT_MOVIELENS, text, LR_ERR_DATA, 2, "a line over 1 MiB");
  free(text);
}

static void test_missing_and_foreign(void) {
  lr_dataset ds;
  const char *p = path_of("does-not-exist.dat");
  int rc = load(&ds, LR_FMT_MOVIELENS, p);
  t_check(rc == LR_ERR_IO && strstr(lr_error_msg(), p) && strstr(lr_error_msg(), "No such file"),
          "readers: missing file is an I/O error naming path and reason");
  bad_file("x.bz2", LR_FMT_MOVIELENS, "BZh91AY&SY", LR_ERR_DATA, 1, "a bzip2 file");
  bad_file("x.lrd", LR_FMT_SASREC, "LRDATA01\x01\x00\x00\x00", LR_ERR_DATA, 1,
           "a binary dataset as text");
}

static void test_damaged_streams(void) {
  const char *text = "5::100::4::300\n5::7::5::100\n3::100::2::200\n5::42::3::100\n3::7::5::250\n";
  size_t n;
  lr_dataset ds;
  // truncated gzip
  const char *gz = path_of("t.dat.gz");
  write_gz(gz, text, strlen(text), 1);
  char *b = read_all(gz, &n);
  write_bytes(gz, b, n - 6);
  int rc = load(&ds, LR_FMT_MOVIELENS, gz);
  t_check(rc == LR_ERR_CORRUPT && strstr(lr_error_msg(), gz), "readers: truncated gzip is corrupt");
  // flipped byte inside the deflate data
  b[n / 2] ^= 0x55;
  write_bytes(gz, b, n);
  rc = load(&ds, LR_FMT_MOVIELENS, gz);
  t_check(rc == LR_ERR_CORRUPT && strstr(lr_error_msg(), gz), "readers: damaged gzip is corrupt");
  free(b);
  // truncated zstd
  const char *zs = path_of("t.dat.zst");
  write_zst(zs, text, strlen(text), 1);
  b = read_all(zs, &n);
  write_bytes(zs, b, n - 3);
  rc = load(&ds, LR_FMT_MOVIELENS, zs);
  t_check(rc == LR_ERR_CORRUPT && strstr(lr_error_msg(), zs), "readers: truncated zstd is corrupt");
  free(b);
  // concatenated gzip members and zstd frames read as one text
  write_gz(gz, text, strlen(text), 2);
  rc = load(&ds, LR_FMT_MOVIELENS, gz);
  t_check(rc == LR_OK && is_expected(&ds), "readers: two gzip members");
  dataset_free(&ds);
  write_zst(zs, text, strlen(text), 2);
  rc = load(&ds, LR_FMT_MOVIELENS, zs);
  t_check(rc == LR_OK && is_expected(&ds), "readers: two zstd frames");
  dataset_free(&ds);
}

// ~6 MB of text: crosses the 256 KiB input and 2 MiB line buffers many times,
// with lines split across every boundary; all three encodings must agree.
static void test_big_file(void) {
  int64_t n_lines = 400000;
  size_t cap = (size_t)n_lines * 40, len = 0;
  char *text = malloc(cap);
  len += (size_t)sprintf(text, "userId,movieId,rating,timestamp\n");
  uint64_t sum = 0;
  for (int64_t k = 0; k < n_lines; k++) {
    int64_t u = k / 97, i = (k * 7919) % 5003 + 1;
    len += (size_t)sprintf(text + len, "%lld,%lld,%.1f,%lld\n", (long long)u, (long long)i,
                           (double)(k % 10) / 2, (long long)(1000000000 - k % 1000));
    sum += (uint64_t)i;
  }
  const char *names[3] = {"big.csv", "big.csv.gz", "big.csv.zst"};
  write_bytes(path_of(names[0]), text, len);
  write_gz(path_of(names[1]), text, len, 1);
  write_zst(path_of(names[2]), text, len, 1);
  lr_dataset ref = {0};
  for (int v = 0; v < 3; v++) {
    lr_dataset ds;
    int rc = load(&ds, LR_FMT_CSV, path_of(names[v]));
    uint64_t s = 0;
    for (int64_t k = 0; rc == LR_OK && k < ds.n_inter; k++)
      s += (uint64_t)ds.item_orig[ds.items[k]];
    int same = v == 0 || (ds.n_inter == ref.n_inter &&
                          !memcmp(ds.items, ref.items, (size_t)ds.n_inter * sizeof *ds.items));
    t_check(rc == LR_OK && ds.n_inter == n_lines && s == sum && same,
            "readers: %lld-line %s (%lld users)", (long long)n_lines, names[v],
            (long long)ds.n_users);
    if (v == 0)
      ref = ds;
    else
      dataset_free(&ds);
  }
  dataset_free(&ref);
  free(text);
}

static void test_names(void) {
  int ok = 1;
  for (int f = 0; f < LR_FMT_COUNT; f++)
    ok &= data_format_parse(data_format_name(f)) == f;
  ok &= data_format_parse("SASRec") == LR_FMT_SASREC && data_format_parse("parquet") == -1;
  ok &= data_dedup_parse("none") == LR_DEDUP_NONE && data_dedup_parse("first") == LR_DEDUP_FIRST &&
        data_dedup_parse("last") == LR_DEDUP_LAST && data_dedup_parse("all") == -1;
  t_check(ok, "readers: format and dedup names round-trip");
}

// ---------------------------------------------------------------------------
// string ids and named columns (issue 19)

// Load text as fmt (columns, sep as given); the status.
static int load_as(lr_dataset *ds, const char *name, lr_data_format fmt, const char *text,
                   const char *columns, char sep) {
  const char *p = path_of(name);
  write_text(p, text);
  lr_data_opts o = {.path = p, .format = fmt, .columns = columns, .sep = sep};
  lr_error_clear();
  return data_load(ds, &o);
}

static int names_are(const lr_names *t, const char *const *want, int64_t n) {
  if (t->n != n) return 0;
  for (int64_t k = 0; k < n; k++)
    if (strcmp(names_get(t, k), want[k])) return 0;
  return 1;
}

static int items_are(const lr_dataset *ds, int64_t u, const int32_t *want, int64_t n) {
  if (ds->offsets[u + 1] - ds->offsets[u] != n) return 0;
  return !memcmp(ds->items + ds->offsets[u], want, (size_t)n * sizeof *want);
}

static void test_string_ids(void) {
  lr_dataset ds;
  // a non-numeric user after numeric ones: the column turns to strings
  int ok = !load_as(&ds, "su.dat", LR_FMT_MOVIELENS,
                    "1::2::3::4\nabc::2::3::5\nabc::3::3::1\n", NULL, 0);
  static const char *const users1[] = {"1", "abc"};
  t_check(ok && names_are(&ds.user_names, users1, 2) && ds.user_orig[1] == 1 &&
              ds.item_names.n == 0 && ds.item_orig[2] == 3,
          "string ids: a non-numeric user id turns the users to strings, the items stay numeric");
  dataset_free(&ds);
  // items: numbers first ("007" is 7), then strings, in byte order
  ok = !load_as(&ds, "si.txt", LR_FMT_SASREC, "u1 10\nu1 9\nu2 B0\nu2 007\nu2 7\n", NULL, 0);
  static const char *const items[] = {"", "10", "7", "9", "B0"};
  static const char *const users[] = {"u1", "u2"};
  const int32_t h1[] = {1, 3}, h2[] = {4, 2, 2};
  t_check(ok && names_are(&ds.item_names, items, 5) && names_are(&ds.user_names, users, 2) &&
              items_are(&ds, 0, h1, 2) && items_are(&ds, 1, h2, 3) && ds.item_orig[0] == 0 &&
              ds.item_orig[1] == 0 && ds.item_orig[4] == 3,
          "string ids: mixed item ids remapped in byte order, integers canonical (007 = 7)");
  // the binary dataset keeps them; a user range keeps its users' names
  const char *bin = path_of("si.lrd");
  lr_dataset rd, part;
  ok = ok && data_write_binary(&ds, bin) == LR_OK && data_read_binary(&rd, bin) == LR_OK;
  lr_data_fp a, b;
  data_fingerprint(&ds, &a);
  if (ok) data_fingerprint(&rd, &b);
  t_check(ok && names_are(&rd.item_names, items, 5) && names_are(&rd.user_names, users, 2) &&
              items_are(&rd, 1, h2, 3) && data_fp_equal(&a, &b),
          "string ids: the binary dataset reads back the same names and fingerprint");
  int okp = ok && data_read_binary_users(&part, bin, 1, 2) == LR_OK;
  t_check(okp && part.user_names.n == 1 && !strcmp(names_get(&part.user_names, 0), "u2") &&
              names_are(&part.item_names, items, 5),
          "string ids: data_read_binary_users keeps the names of its users and every item");
  if (okp) dataset_free(&part);
  if (ok) {
    rd.user_names.text[rd.user_names.off[1] + 1] = '3'; // "u3"
    data_fingerprint(&rd, &b);
    t_check(!data_fp_equal(&a, &b), "string ids: another user name is another fingerprint");
    dataset_free(&rd);
  }
  if (ds.user_names.n) {
    ds.user_names.text[0] = 'v'; // "v1" > "u2"
    lr_error_clear();
    t_check(data_write_binary(&ds, path_of("bad.lrd")) == LR_ERR_ARG &&
                strstr(lr_error_msg(), "byte order"),
            "string ids: the writer refuses names out of byte order");
  }
  dataset_free(&ds);
  // RecBole token ids as the Amazon atomic files have them
  ok = !load_as(&ds, "amz.inter", LR_FMT_RECBOLE,
                "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                "A1YJEY40\tB00X\t5\t3\nA1YJEY40\tB00A\t4\t1\nA0Z\tB00X\t2\t2\n",
                NULL, 0);
  static const char *const ru[] = {"A0Z", "A1YJEY40"}, *const ri[] = {"", "B00A", "B00X"};
  const int32_t r1[] = {1, 2};
  t_check(ok && names_are(&ds.user_names, ru, 2) && names_are(&ds.item_names, ri, 3) &&
              items_are(&ds, 1, r1, 2),
          "string ids: RecBole token ids (Amazon-like), chronological");
  dataset_free(&ds);
}

static void test_named_columns(void) {
  lr_dataset ds;
  const char *cols = "user=userId,item=itemId,time=ts,rating=stars";
  int ok = !load_as(&ds, "named.csv", LR_FMT_CSV,
                    "\xEF\xBB\xBFts;userId;extra;itemId;stars\n3;\"A1\";x;B9;5\n1;A1;y;B2;4\n"
                    "2;A2;z;7;1\n",
                    cols, ';');
  static const char *const u[] = {"A1", "A2"}, *const i[] = {"", "7", "B2", "B9"};
  const int32_t h1[] = {2, 3};
  t_check(ok && names_are(&ds.user_names, u, 2) && names_are(&ds.item_names, i, 4) &&
              items_are(&ds, 0, h1, 2),
          "named columns: any order, extra columns, ';' separator, quotes, BOM");
  dataset_free(&ds);
  lr_data_opts o = {.format = LR_FMT_CSV, .columns = cols, .sep = ';', .min_rating = 3};
  o.path = path_of("named.csv");
  t_check(data_load(&ds, &o) == LR_OK && ds.n_inter == 2,
          "named columns: the rating column filters");
  dataset_free(&ds);
  // a missing column: the file, line 1, the column and the header's columns
  int rc = load_as(&ds, "miss.csv", LR_FMT_CSV, "userId,itemId,ts\n1,2,3\n", cols, ',');
  t_check(rc == LR_ERR_DATA && strstr(lr_error_msg(), "miss.csv:1:") &&
              strstr(lr_error_msg(), "no column 'stars'") && strstr(lr_error_msg(), "rating=stars") &&
              strstr(lr_error_msg(), "userId, itemId, ts"),
          "named columns: a missing column names the file, line, column and the header");
  rc = load_as(&ds, "short.csv", LR_FMT_CSV, "u\tit\n1\t2\n3\n", "user=u,item=it", '\t');
  t_check(rc == LR_ERR_DATA && strstr(lr_error_msg(), "short.csv:3:") &&
              strstr(lr_error_msg(), "expected 2"),
          "named columns: a short line names its line");
  const char *bad_specs[] = {"user=u", "user=u,item=i,color=c", "user=u,user=v,item=i", "user",
                             "user=,item=i"};
  for (int k = 0; k < 5; k++) {
    rc = load_as(&ds, "spec.csv", LR_FMT_CSV, "u,i\n1,2\n", bad_specs[k], ',');
    t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "data.columns"),
            "named columns: spec '%s' is a config error naming data.columns", bad_specs[k]);
  }
  // recbole with its own names
  ok = !load_as(&ds, "own.inter", LR_FMT_RECBOLE,
                "uid:token\tiid:token\tt:float\n5\t100\t2\n5\t7\t1\n", "user=uid,item=iid,time=t",
                0);
  const int32_t r[] = {1, 2};
  t_check(ok && ds.n_users == 1 && ds.item_orig[1] == 7 && items_are(&ds, 0, r, 2),
          "named columns: recbole columns by name");
  dataset_free(&ds);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/lr_test_io_readers_XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_good_files();
  test_bad_files();
  test_concatenated();
  test_long_line();
  test_missing_and_foreign();
  test_damaged_streams();
  test_big_file();
  test_names();
  test_string_ids();
  test_named_columns();
  nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return t_done();
}
