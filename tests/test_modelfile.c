// test_modelfile.c: the model file (io/modelfile.h). Round trip of the
// config and the payload (whole and row ranges); then every bit of every
// byte flipped, one at a time, and a truncation at every length: each must
// make reading the config or the payload LR_ERR_CORRUPT with the path and a
// byte offset (the config section included: a changed digit there used to
// give different results silently); a version 1 file is refused with a
// HINT to re-train; a directory or a FIFO in place of the file is an error
// without blocking. The id maps of version 4: round trip, every flip of
// their header fields and section caught, version 3 without them. Then the
// writer under fault injection (test_fault.h)
// replacing an older file, as in test_io_binary.c, and an abandoned writer.
#define _GNU_SOURCE   // memmem
#include <stdio.h>    // printf, perror
#include <stdlib.h>   // free
#include <string.h>   // memcmp, strstr
#include <sys/stat.h> // mkfifo, mkdir
#include <unistd.h>   // alarm
#include <zlib.h>     // crc32

#include "le.h" // le_put_u32
#include "lr.h"
#include "modelfile.h"
#include "test_fault.h" // t_fault_sweep, t_replace, t_count_names
#include "test_util.h"

#define N_DENSE 300
#define N_ROWS 41
#define D 8
static const char CONFIG[] = "{\"data.synthetic.users\":500,\"eval.k\":[10]}";
// The groups of the file: a dense arena and an item table, as the trainer's.
static const lr_mf_group GROUPS[2] = {{"dense", N_DENSE, 1}, {"items", N_ROWS, D}};

// Read the config and the whole payload of path; LR_OK or the first failure.
static int read_model(const char *path, float *dense, float *items) {
  char *json = NULL;
  int rc = modelfile_read_config(path, &json, NULL, NULL);
  const lr_mf_dest dest[2] = {{"dense", 0, N_DENSE, dense}, {"items", 0, N_ROWS, items}};
  if (rc == LR_OK) rc = modelfile_read(path, GROUPS, 2, dest, 2);
  free(json);
  return rc;
}

// rc is LR_ERR_CORRUPT with the path and ": byte " in the message; clears it.
static int is_corrupt(int rc, const char *path, const char *needle) {
  const char *m = lr_error_msg();
  int ok = rc == LR_ERR_CORRUPT && strstr(m, path) && strstr(m, ": byte ") &&
           (!needle || strstr(m, needle));
  if (!ok) printf("  (status %d, message: %s)\n", rc, m);
  lr_error_clear();
  return ok;
}

static int write_model(const char *path, const float *dense, const float *items) {
  lr_modelfile_writer *w;
  LR_CALL(modelfile_begin(&w, path, CONFIG, GROUPS, 2));
  int rc = modelfile_append(w, dense, N_DENSE);
  for (int r = 0; r < N_ROWS && rc == LR_OK; r++)
    rc = modelfile_append(w, items + r * D, D);
  if (rc != LR_OK) {
    modelfile_abandon(w);
    return rc;
  }
  return modelfile_commit(w);
}

// ---------------------------------------------------------------------------
// id maps (version 4, section 4)

static int read_all_ids(const char *path, lr_names *u, lr_names *i) {
  static float d2[N_DENSE], i2[N_ROWS * D];
  int rc = read_model(path, d2, i2);
  return rc ? rc : modelfile_read_ids(path, u, i);
}

static void test_ids(const float *dense, const float *items) {
  const char *p = t_path("ids.lrm"), *q = t_path("ids-bad.lrm");
  const char *un[3] = {"A1B2C3", "7", "u\"q\\"};
  const char *in[N_ROWS];
  static char buf[N_ROWS][16];
  in[0] = "";
  for (int k = 1; k < N_ROWS; k++) snprintf(buf[k], sizeof buf[k], "B00X%02d", k), in[k] = buf[k];
  lr_names U, I, U2, I2;
  int rc = names_build(&U, un, 3);
  if (rc == LR_OK) rc = names_build(&I, in, N_ROWS);
  lr_modelfile_writer *w;
  if (rc == LR_OK) rc = modelfile_begin(&w, p, CONFIG, GROUPS, 2);
  if (rc == LR_OK) rc = modelfile_set_ids(w, &U, &I);
  if (rc == LR_OK) rc = modelfile_append(w, dense, N_DENSE);
  if (rc == LR_OK) rc = modelfile_append(w, items, N_ROWS * D);
  if (rc == LR_OK) rc = modelfile_commit(w);
  rc = rc ? rc : read_all_ids(p, &U2, &I2);
  int same = rc == LR_OK && U2.n == 3 && I2.n == N_ROWS;
  for (int k = 0; same && k < 3; k++) same = !strcmp(names_get(&U2, k), un[k]);
  for (int k = 0; same && k < N_ROWS; k++) same = !strcmp(names_get(&I2, k), in[k]);
  t_check(same, "model file v4: the id maps round trip (users and items 1..I, [0] = \"\")");
  if (rc == LR_OK) names_free(&U2), names_free(&I2);
  // every bit of the header's id fields and of section 4 flipped: caught
  size_t n;
  unsigned char *b = t_read_file(p, &n);
  const uint64_t z = b ? le_get_u64(b + 32) : 0;
  size_t missed = 0, tried = 0;
  for (size_t at = 0; b && at < n; at++) {
    if (!((at >= 32 && at < 48) || at >= n - z)) continue;
    for (int bit = 0; bit < 8; bit++, tried++) {
      b[at] ^= (unsigned char)(1u << bit);
      t_write_file(q, b, n);
      b[at] ^= (unsigned char)(1u << bit);
      rc = read_all_ids(q, &U2, &I2);
      if (rc == LR_OK) names_free(&U2), names_free(&I2);
      missed += !is_corrupt(rc, q, NULL);
    }
  }
  t_check(b && z > 0 && missed == 0,
          "model file v4: all %zu flips of the id fields and the %llu-byte id section are corrupt "
          "(%zu missed)",
          tried, (unsigned long long)z, missed);
  free(b);
  // an empty id: refused by the writer
  const char *bad[3] = {"a", "", "c"};
  lr_names B;
  rc = names_build(&B, bad, 3);
  if (rc == LR_OK) rc = modelfile_begin(&w, q, CONFIG, GROUPS, 2);
  if (rc == LR_OK) rc = modelfile_set_ids(w, &B, &I);
  t_check(rc == LR_ERR_ARG, "model file v4: an empty user id is refused by the writer");
  lr_error_clear();
  names_free(&B);
  // version 3 (tests/fixtures/v1/model-v3.lrm): no id maps, loads
  rc = modelfile_read_ids(LR_TEST_DIR "/fixtures/v1/model-v3.lrm", &U2, &I2);
  t_check(rc == LR_OK && U2.n == 0 && I2.n == 0, "model file v3: loads, without id maps");
  names_free(&U);
  names_free(&I);
}

// ---------------------------------------------------------------------------
// faults: a model file written over an older one, every wrapped call failing
// or crashing in turn (test_fault.h); abandoning a writer

typedef struct {
  t_replace r;                // first: the target's after and reset use it
  const float *dense, *items; // what is written
} fault_ctx;

static int fault_write(void *arg) {
  const fault_ctx *c = arg;
  return write_model(c->r.path, c->dense, c->items);
}

static void test_faults(const float *dense, const float *items) {
  fault_ctx c = {.dense = dense, .items = items};
  static float zeros[N_ROWS * D];
  int ok = t_replace_init(&c.r, t_path("flt"), "model.lrm") &&
           write_model(c.r.path, zeros, zeros) == LR_OK && t_replace_take(&c.r, 0) &&
           write_model(c.r.path, dense, items) == LR_OK && t_replace_take(&c.r, 1) &&
           (c.r.n_old != c.r.n_new || memcmp(c.r.old, c.r.new, c.r.n_new));
  t_check(ok, "model file faults: the files to replace");
  if (!ok) {
    t_replace_free(&c.r);
    return;
  }
  t_replace_reset(&c.r);
  t_fault_target t = {"model file", c.r.dir, fault_write, t_replace_after, t_replace_reset, &c};
  int64_t n[LR_FAULT_N_KINDS];
  t_fault_sweep(&t, n);
  t_check(n[LR_FAULT_WRITE] >= 3 && n[LR_FAULT_FSYNC] == 2 && n[LR_FAULT_RENAME] == 1 &&
              n[LR_FAULT_MALLOC] >= 2,
          "model file faults: header, config and payload written through the hooks, fsync of the "
          "file and of its directory, one rename, buffers from the hooks");

  // abandoned after some payload: no temp file, the old file untouched
  lr_modelfile_writer *w;
  int rc = modelfile_begin(&w, c.r.path, CONFIG, GROUPS, 2);
  if (rc == LR_OK) rc = modelfile_append(w, dense, N_DENSE);
  if (rc == LR_OK) modelfile_abandon(w);
  t_check(rc == LR_OK && t_replace_after(&c, 0) && t_count_names(c.r.dir, "model") == 1,
          "model file: an abandoned writer leaves the old file and no temp file");
  lr_error_clear();
  t_replace_free(&c.r);
}

int main(void) {
  const char *dir0 = t_tmpdir("lr_test_modelfile");
  if (!dir0) {
    perror("mkdtemp");
    return 1;
  }
  static float dense[N_DENSE], items[N_ROWS * D], d2[N_DENSE], i2[N_ROWS * D];
  t_fill_f(dense, N_DENSE, 1, 1.0f);
  t_fill_f(items, N_ROWS * D, 2, 1.0f);
  const char *p = t_path("model.lrm"), *q = t_path("bad.lrm");
  int rc = write_model(p, dense, items);
  char *json = NULL;
  lr_mf_group got[LR_MF_MAX_GROUPS];
  int n_got = 0;
  rc = rc ? rc : modelfile_read_config(p, &json, got, &n_got);
  t_check(rc == LR_OK && json && !strcmp(json, CONFIG), "model file: config round trip");
  t_check(rc == LR_OK && n_got == 2 && !memcmp(got, GROUPS, sizeof GROUPS),
          "model file: the group table round trip");
  free(json);
  rc = read_model(p, d2, i2);
  t_check(rc == LR_OK && !memcmp(d2, dense, sizeof dense) && !memcmp(i2, items, sizeof items),
          "model file: payload round trip");
  memset(i2, 0, sizeof i2);
  const lr_mf_dest part[1] = {{"items", 7, 27, i2}};
  rc = modelfile_read(p, GROUPS, 2, part, 1);
  t_check(rc == LR_OK && !memcmp(i2, items + 7 * D, 20 * D * sizeof(float)),
          "model file: rows 7..26 alone");
  // another shape (a config that needs 40 item rows): named by group
  const lr_mf_group other[2] = {{"dense", N_DENSE, 1}, {"items", N_ROWS - 1, D}};
  rc = modelfile_read(p, other, 2, part, 0);
  t_check(is_corrupt(rc, p, "group 1 of the file is items (41 x 8), the config needs items (40 x 8)"),
          "model file: another shape is refused, naming the group and both shapes");
  // a version 2 file written by an earlier linrec (tests/fixtures/v1): its
  // two groups are read from the old header fields
  const char *v2 = LR_TEST_DIR "/fixtures/v1/model.lrm";
  rc = modelfile_read_config(v2, &json, got, &n_got);
  t_check(rc == LR_OK && n_got == 2 && !strcmp(got[0].name, "dense") && got[0].width == 1 &&
              !strcmp(got[1].name, "items") && got[1].n_rows == 61 && got[1].width == 8,
          "model file: version 2 (fixtures/v1/model.lrm) reads as groups dense and items 61 x 8");
  free(json);
  json = NULL;
  if (rc == LR_OK) {
    float *vd = calloc((size_t)got[0].n_rows, sizeof(float)), *vi = calloc(61 * 8, sizeof(float));
    const lr_mf_dest vdest[2] = {{"dense", 0, got[0].n_rows, vd}, {"items", 0, 61, vi}};
    rc = vd && vi ? modelfile_read(v2, got, 2, vdest, 2) : LR_ERR_NOMEM;
    t_check(rc == LR_OK && vi[0] == 0.0f && vi[8] != 0.0f,
            "model file: version 2 payload loads (padding row 0, item rows set)");
    free(vd), free(vi);
  }

  size_t n;
  unsigned char *b = t_read_file(p, &n);
  size_t missed = 0, first_miss = n, config_hits = 0;
  for (size_t at = 0; at < n; at++)
    for (int bit = 0; bit < 8; bit++) {
      b[at] ^= (unsigned char)(1u << bit);
      t_write_file(q, b, n);
      b[at] ^= (unsigned char)(1u << bit);
      rc = read_model(q, d2, i2);
      int ok = is_corrupt(rc, q, NULL);
      if (!ok && first_miss == n) first_miss = at;
      missed += !ok;
      config_hits += ok && at >= 64 && at < 64 + sizeof CONFIG - 1;
    }
  t_check(missed == 0,
          "model file: all %zu single-bit flips of a %zu-byte file are corrupt "
          "(%zu missed, first at byte %zu)",
          8 * n, n, missed, first_miss);
  t_check(config_hits == 8 * (sizeof CONFIG - 1),
          "model file: ... the %zu flips in the config section among them",
          8 * (sizeof CONFIG - 1));
  missed = 0;
  for (size_t len = 0; len < n; len++) {
    t_write_file(q, b, len);
    missed += !is_corrupt(read_model(q, d2, i2), q, NULL);
  }
  t_check(missed == 0, "model file: all %zu truncations are corrupt (%zu missed)", n, missed);

  // e.g. users 500 -> 400 in the stored config: named as the config section
  unsigned char *c = (unsigned char *)memmem(b, n, "500", 3);
  c[0] = '4';
  t_write_file(q, b, n);
  json = NULL;
  rc = modelfile_read_config(q, &json, NULL, NULL);
  t_check(is_corrupt(rc, q, "config section") && !json,
          "model file: a changed digit of the config is caught, naming the config section");
  c[0] = '5';

  // version 1 (reserved bytes 12 and 56, no CRC of the config): refused
  unsigned char v1[64];
  memcpy(v1, b, 64);
  v1[8] = 1;
  memset(v1 + 12, 0, 4);
  memset(v1 + 56, 0, 4);
  le_put_u32(v1 + 60, (uint32_t)crc32(0, v1, 60));
  memcpy(b, v1, 64);
  t_write_file(q, b, n);
  rc = modelfile_read_config(q, &json, NULL, NULL);
  t_check(strstr(lr_error_msg(), "HINT: re-train") && is_corrupt(rc, q, "format version 1") &&
              !json,
          "model file: version 1 is refused, with a HINT to re-train");

  // not regular files: refused, never blocking (alarm: a hang fails the test)
  alarm(30);
  const char *fifo = t_path("fifo.lrm"), *dir = t_path("dir.lrm");
  mkfifo(fifo, 0644);
  mkdir(dir, 0755);
  rc = modelfile_read_config(fifo, &json, NULL, NULL);
  t_check(rc == LR_ERR_IO && strstr(lr_error_msg(), "is a FIFO, not a model file"),
          "model file: a FIFO is refused without blocking");
  lr_error_clear();
  rc = modelfile_read_config(dir, &json, NULL, NULL);
  t_check(rc == LR_ERR_IO && strstr(lr_error_msg(), "is a directory"),
          "model file: a directory is refused");
  lr_error_clear();
  alarm(0);
  free(b);
  test_faults(dense, items);
  test_ids(dense, items);
  t_rm_tree(dir0);
  return t_done();
}
