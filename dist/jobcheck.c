// jobcheck.c: the same-job checks of jobcheck.h.
#include "jobcheck.h"

#include <errno.h>  // errno
#include <stdio.h>  // fopen, snprintf
#include <stdlib.h> // free
#include <string.h> // memcpy, strlen, strerror
#include <unistd.h> // gethostname, getpid, readlink
#include <zlib.h>   // crc32

#include "comm.h" // dist_allgather(v), dist_agree, dist_rank, dist_size
#include "lr.h"

#define JC_ITEMS 3   // values compared per check, at most
#define JC_TEXT 8192 // bytes of one explanation, at most (a config's JSON is ~2 KB)
#define JC_HOST 64

// What every rank contributes to one check.
typedef struct {
  int64_t pid;
  char host[JC_HOST];
  uint64_t value[JC_ITEMS];
  int64_t text_len[JC_ITEMS]; // with the NUL
} jc_rec;

// One check: n items, each a value every rank must share, its name, and
// this rank's text for it (what a mismatch message shows).
typedef struct {
  int n;
  const char *name[JC_ITEMS];
  uint64_t value[JC_ITEMS];
  const char *text[JC_ITEMS];
} jc_check;

// Write why text a (rank 0's) and text b (rank r's) of item k differ into
// out[cap]. Local.
typedef void (*jc_explain)(int k, const char *a, const char *b, int r, char *out, size_t cap);

static void explain_plain(int k, const char *a, const char *b, int r, char *out, size_t cap) {
  snprintf(out, cap, "rank 0: %s; rank %d: %s", a, r, b);
}

// Compare ck across the ranks (see jobcheck.h). Collective.
static int jc_compare(const jc_check *ck, jc_explain explain, const char *hint) {
  const int P = dist_size(), me = dist_rank();
  if (P == 1) return LR_OK;
  jc_rec mine;
  memset(&mine, 0, sizeof mine);
  mine.pid = (int64_t)getpid();
  if (gethostname(mine.host, sizeof mine.host - 1) != 0) snprintf(mine.host, sizeof mine.host, "?");
  for (int k = 0; k < ck->n; k++) {
    mine.value[k] = ck->value[k];
    size_t n = strlen(ck->text[k]) + 1;
    mine.text_len[k] = (int64_t)(n < JC_TEXT ? n : JC_TEXT);
  }
  jc_rec *all = lr_calloc((size_t)P, sizeof *all, "job check records");
  LR_CALL(dist_agree(all ? LR_OK : LR_ERR_NOMEM));
  int rc = dist_allgather(all, &mine, (int64_t)sizeof mine, LR_DTYPE_BYTE);
  int r = -1, k = -1, n_diff = 0;
  for (int q = 1; rc == LR_OK && q < P; q++) {
    int kq = -1;
    for (int j = 0; j < ck->n && kq < 0; j++)
      if (all[q].value[j] != all[0].value[j]) kq = j;
    if (kq < 0) continue;
    n_diff++;
    if (r < 0) r = q, k = kq;
  }
  if (rc != LR_OK || r < 0) {
    lr_free(all);
    return rc;
  }
  // Every rank knows r and k: bring the texts of ranks 0 and r to everyone.
  char *texts = lr_calloc(2 * JC_TEXT, 1, "job check texts");
  int64_t *cnt = lr_calloc(2 * (size_t)P, sizeof *cnt, "job check counts");
  rc = dist_agree(texts && cnt ? LR_OK : LR_ERR_NOMEM);
  if (rc == LR_OK && texts && cnt) {
    int64_t *dsp = cnt + P;
    cnt[0] = all[0].text_len[k], cnt[r] = all[r].text_len[k];
    dsp[0] = 0, dsp[r] = JC_TEXT;
    char own[JC_TEXT];
    snprintf(own, sizeof own, "%s", ck->text[k]);
    rc = dist_allgatherv(texts, cnt, dsp, own, me == 0 || me == r ? cnt[me] : 0, LR_DTYPE_BYTE);
  }
  if (rc == LR_OK && texts) {
    texts[JC_TEXT - 1] = texts[2 * JC_TEXT - 1] = '\0';
    char why[1536];
    (explain ? explain : explain_plain)(k, texts, texts + JC_TEXT, r, why, sizeof why);
    char more[48] = "";
    if (n_diff > 1)
      snprintf(more, sizeof more, " (and %d more rank%s)", n_diff - 1, n_diff > 2 ? "s" : "");
    int mine_rc = me != 0
                      ? LR_OK
                      : lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                                 "rank %d of %d (host %s, pid %lld)%s does not run the same job "
                                 "as rank 0 (host %s, pid %lld): %s differs: %s\nHINT: %s",
                                 r, P, all[r].host, (long long)all[r].pid, more, all[0].host,
                                 (long long)all[0].pid, ck->name[k], why, hint);
    rc = dist_agree(mine_rc);
  }
  lr_free(cnt);
  lr_free(texts);
  lr_free(all);
  return rc;
}

// ---- start-up -------------------------------------------------------------------------

// Identity of the running binary: path, size and CRC-32 of /proc/self/exe.
static uint64_t binary_identity(char *text, size_t cap) {
  char path[1024];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  path[n > 0 ? n : 0] = '\0';
  FILE *f = fopen("/proc/self/exe", "rb");
  if (!f) {
    snprintf(text, cap, "%s (unreadable: %s)", path, strerror(errno));
    return 0;
  }
  static unsigned char buf[1 << 16];
  uLong crc = crc32(0L, Z_NULL, 0);
  uint64_t size = 0;
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
    crc = crc32(crc, buf, (uInt)got);
    size += got;
  }
  fclose(f);
  snprintf(text, cap, "%s (%llu bytes, crc32 %08lx)", path, (unsigned long long)size,
           (unsigned long)crc);
  return size << 32 ^ (uint64_t)crc;
}

static uint64_t text_hash(const char *s) { return config_hash_text(s); }

// A config mismatch: the keys that differ, with both values.
static void explain_start(int k, const char *a, const char *b, int r, char *out, size_t cap) {
  if (k != 2) {
    explain_plain(k, a, b, r, out, cap);
    return;
  }
  lr_config ca, cb;
  config_defaults(&ca);
  config_defaults(&cb);
  if (config_load_json(&ca, a, "rank 0's config") != LR_OK ||
      config_load_json(&cb, b, "the other rank's config") != LR_OK) {
    snprintf(out, cap, "%s", lr_error_msg());
    lr_error_clear();
    return;
  }
  char r_name[32];
  snprintf(r_name, sizeof r_name, "rank %d", r);
  if (!config_diff(&ca, &cb, 0, "rank 0", r_name, 6, out, cap))
    snprintf(out, cap, "the config texts differ in form only");
}

int jobcheck_start(const lr_config *c, const char *command) {
  if (dist_size() == 1) return LR_OK;
  char bin[1280];
  char *json = config_to_json(c);
  LR_CALL(dist_agree(json ? LR_OK : LR_ERR_NOMEM));
  jc_check ck = {
      3, {"the linrec binary", "the command", "the config"}, {0, 0, 0}, {bin, command, json}};
  ck.value[0] = binary_identity(bin, sizeof bin);
  ck.value[1] = text_hash(command);
  ck.value[2] = text_hash(json);
  int rc = jc_compare(&ck, explain_start,
                      "every rank must run the same linrec binary with the same arguments (an "
                      "MPMD launch `mpirun ... : ...`, or nodes with another build or config "
                      "file?)");
  free(json);
  return rc;
}

// ---- data and resume ------------------------------------------------------------------

static uint64_t fp_value(const lr_data_fp *fp) {
  uint64_t h = fp->hash;
  h = (h ^ (uint64_t)fp->n_users) * 0x9e3779b97f4a7c15ull;
  h = (h ^ (uint64_t)fp->n_items) * 0x9e3779b97f4a7c15ull;
  return (h ^ (uint64_t)fp->n_inter) * 0x9e3779b97f4a7c15ull;
}

int jobcheck_data(const lr_data_fp *fp, const lr_config *c) {
  if (dist_size() == 1) return LR_OK;
  char text[160];
  data_fp_text(fp, text, sizeof text);
  char name[LR_PATH_MAX + 32];
  snprintf(name, sizeof name, "the data loaded from %s",
           c->data_format == LR_FMT_SYNTHETIC ? "synthetic data" : c->data_path);
  jc_check ck = {1, {name}, {fp_value(fp)}, {text}};
  return jc_compare(&ck, NULL,
                    "every rank must read the same data: the file at data.path differs "
                    "between the hosts (copy it again, or put it on a shared file system)");
}

int jobcheck_resume(const char *dir, const ckpt_manifest *m) {
  if (dist_size() == 1) return LR_OK;
  char text[LR_PATH_MAX + 256];
  snprintf(text, sizeof text,
           "step %lld written by %d ranks, config hash %016llx, data hash %016llx",
           (long long)m->step, m->world_size, (unsigned long long)m->config_hash,
           (unsigned long long)m->data.hash);
  uint64_t v = text_hash(text);
  char name[LR_PATH_MAX + 32];
  snprintf(name, sizeof name, "the checkpoint read from %s", dir);
  jc_check ck = {1, {name}, {v}, {text}};
  return jc_compare(&ck, NULL,
                    "every rank must see the same checkpoint directory: put "
                    "train.checkpoint.dir on a file system shared by all hosts");
}
