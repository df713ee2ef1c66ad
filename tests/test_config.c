// test_config.c: the config file parser's refusals (io/config.h): a key or
// a section given twice (repeated, nested and dotted), unknown keys nested
// under a key or a section named in full, key names matched
// case-sensitively, values of the wrong JSON type named, a NUL byte with its
// offset, files over 1 MiB refused before they are read (a 100 MB file and
// an endless stream, each well under a second), and train.negatives against
// the catalog. Every refusal is LR_ERR_CONFIG naming the source and the key.
#define _GNU_SOURCE // truncate
#include <stdio.h>  // fopen, perror
#include <string.h> // strstr
#include <time.h>   // clock_gettime
#include <unistd.h> // truncate, unlink

#include "attention.h" // attn_names
#include "config.h"
#include "lr.h"
#include "state.h" // state_config_choices
#include "test_util.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// JSON texts and what loading each must give: LR_OK, or LR_ERR_CONFIG with
// the source and `needle` in the message.
typedef struct {
  const char *text, *needle, *what;
} json_case;

static const json_case CASES[] = {
    // a key or a section given twice
    {"{\"model\": {\"d\": 32, \"d\": 48}}", "key \"model.d\" given twice",
     "a key repeated inside its section is an error naming it"},
    {"{\"model.d\": 32, \"model\": {\"d\": 48}}", "key \"model.d\" given twice",
     "a key given dotted and nested is an error naming it"},
    {"{\"model.d\": 32, \"model.d\": 48}", "key \"model.d\" given twice",
     "a dotted key repeated is an error naming it"},
    {"{\"model\": {\"d\": 32}, \"model\": {\"heads\": 2}}", "section \"model\" given twice",
     "a section given twice is an error naming it"},
    {"{\"data.synthetic\": {\"users\": 5}, \"data\": {\"synthetic\": {\"items\": 9}}}",
     "section \"data.synthetic\" given twice",
     "a section given dotted and nested is an error naming it"},
    {"{\"model\": {\"d\": 32}, \"train\": {\"lr\": 0.1}, \"data\": {\"synthetic\": "
     "{\"users\": 5}}, \"data.format\": \"synthetic\"}",
     NULL, "distinct keys of distinct sections load"},
    // unknown keys, case, types
    {"{\"model\": {\"d\": {\"x\": 1}}}", "unknown config key \"model.d.x\"",
     "an unknown key under a key is named in full"},
    {"{\"model\": {\"d\": {}}}", "\"model.d\": expected an integer, got an object",
     "an empty object for an integer key names the type found"},
    {"{\"foo\": {}}", "unknown config key \"foo\"", "an empty unknown section is an unknown key"},
    {"{\"foo\": {\"bar\": {\"baz\": 1}}}", "unknown config key \"foo.bar\"",
     "an unknown section is named"},
    {"{\"Model\": {\"d\": 3}}", "unknown config key \"Model.d\"", "key names are case-sensitive"},
    {"{\"model\": {\"D\": 3}}", "unknown config key \"model.D\"", "... inside a section too"},
    {"{\"model\": {\"d\": \"64\"}}", "expected an integer, got a string",
     "a string for an integer names the type found"},
    {"{\"model\": {\"d\": 6.5}}", "expected an integer, got a fraction",
     "a fraction for an integer is named"},
    {"{\"train\": {\"lr\": [1]}}", "\"train.lr\": expected a number, got an array",
     "an array for a number names the type found"},
};

static void test_json(void) {
  for (size_t k = 0; k < sizeof CASES / sizeof *CASES; k++) {
    const json_case *t = &CASES[k];
    lr_config c;
    config_defaults(&c);
    lr_error_clear();
    int rc = config_load_json(&c, t->text, "cfg.json");
    const char *m = lr_error_msg();
    printf("  %s -> %s\n", t->text, rc ? m : "ok");
    t_check(t->needle ? rc == LR_ERR_CONFIG && strstr(m, "cfg.json") && strstr(m, t->needle)
                      : rc == LR_OK,
            "config: %s", t->what);
    lr_error_clear();
  }
  // --set after the file overrides it: that is not a duplicate
  lr_config c;
  config_defaults(&c);
  int rc = config_load_json(&c, "{\"model\": {\"d\": 32}}", "cfg.json");
  rc = rc ? rc : config_set(&c, "model.d=48");
  t_check(rc == LR_OK && c.model_d == 48, "config: --set overrides a key of the file");
}

static void test_files(void) {
  const char *p = t_path("c.json");
  lr_config c;
  config_defaults(&c);
  // a NUL byte, named with its offset
  static const char nul[] = "{\"model\": {\"d\": 32}}\0{\"model\": {\"d\": 8}}";
  FILE *f = fopen(p, "wb");
  fwrite(nul, 1, sizeof nul - 1, f);
  fclose(f);
  lr_error_clear();
  int rc = config_load_file(&c, p);
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), p) &&
              strstr(lr_error_msg(), "byte 20: NUL byte"),
          "config: a NUL byte in the file is an error with its offset (%s)", lr_error_msg());
  // exactly 1 MiB (a config padded with spaces) loads
  f = fopen(p, "wb");
  fputs("{\"model\": {\"d\": 32}}", f);
  for (long k = 20; k < CONFIG_MAX_BYTES; k++) fputc(' ', f);
  fclose(f);
  lr_error_clear();
  rc = config_load_file(&c, p);
  t_check(rc == LR_OK && c.model_d == 32, "config: a file of exactly 1 MiB loads");
  // 100 MB (sparse): refused up front by its size
  rc = truncate(p, 100 << 20);
  double t0 = now();
  lr_error_clear();
  rc = rc ? rc : config_load_file(&c, p);
  double dt = now() - t0;
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "104857600 bytes") &&
              strstr(lr_error_msg(), "at most 1048576 bytes") && dt < 0.5,
          "config: a 100 MB file is refused by its size in %.3f s (%s)", dt, lr_error_msg());
  unlink(p);
  // a stream with no end (not a regular file): refused after 1 MiB
  t0 = now();
  lr_error_clear();
  rc = config_load_file(&c, "/dev/zero");
  dt = now() - t0;
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "more than 1048576 bytes") && dt < 0.5,
          "config: an endless stream is refused after 1 MiB in %.3f s", dt);
  lr_error_clear();
}

static void test_negatives(void) {
  lr_config c;
  config_defaults(&c);
  int rc = config_set(&c, "data.synthetic.items=6");
  rc = rc ? rc : config_set(&c, "train.negatives=100000");
  rc = rc ? rc : config_validate(&c); // objective ce: negatives unused
  t_check(rc == LR_OK, "negatives: unused by the ce objective, not checked");
  rc = config_set(&c, "train.objective=sampled");
  lr_error_clear();
  rc = rc ? rc : config_validate(&c);
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "\"train.negatives\"") &&
              strstr(lr_error_msg(), "catalog has 6 items") && strstr(lr_error_msg(), "at most 5"),
          "negatives: 100000 over a synthetic catalog of 6 items is refused up front (%s)",
          lr_error_msg());
  lr_error_clear();
  rc = config_set(&c, "train.negatives=5");
  rc = rc ? rc : config_validate(&c);
  t_check(rc == LR_OK, "negatives: 5 over 6 items is fine");
  rc = config_set(&c, "train.objective=bce");
  rc = rc ? rc : config_check_catalog(&c, 5);
  t_check(rc == LR_ERR_CONFIG && strstr(lr_error_msg(), "catalog has 5 items"),
          "negatives: checked against the catalog actually loaded (bce)");
  lr_error_clear();
}

int main(void) {
  state_config_choices(); // the attention kinds and architectures (dist/state.h)
  const char *dir = t_tmpdir("lr_test_config");
  if (!dir) {
    perror("mkdtemp");
    return 1;
  }
  test_json();
  test_files();
  test_negatives();
  t_rm_tree(dir);
  return t_done();
}
