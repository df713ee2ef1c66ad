// report.c: metrics.jsonl and the progress line (report.h).
#include "report.h"

#include <errno.h>    // errno, EIO, ENOENT
#include <stdlib.h>   // malloc, free
#include <string.h>   // strcmp, strerror
#include <sys/time.h> // gettimeofday

#include "afile.h" // afile_write_whole
#include "comm.h"  // dist_rank, dist_wtime
#include "lr.h"

// ---- moving superseded lines out ---------------------------------------------------------

typedef struct {
  char *text;   // the line with its newline
  int kind;     // below
  int64_t step; // its step (or steps), -1 if none
  int drop;
} mline;

enum { K_OTHER, K_ATTEMPT, K_EVAL_VALID, K_EVAL_TEST, K_EPOCH, K_DONE, K_BROKEN };

static void classify(mline *l) {
  l->step = -1;
  cJSON *o = cJSON_Parse(l->text);
  if (!o) {
    l->kind = K_BROKEN; // a line cut short by a crash
    return;
  }
  const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
  const cJSON *sp = cJSON_GetObjectItemCaseSensitive(o, "split");
  const char *kind = cJSON_IsString(ev) ? ev->valuestring : "";
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
  if (!cJSON_IsNumber(s)) s = cJSON_GetObjectItemCaseSensitive(o, "steps");
  if (cJSON_IsNumber(s)) l->step = (int64_t)s->valuedouble;
  l->kind =
      !strcmp(kind, "start") || !strcmp(kind, "started") || !strcmp(kind, "resume") ? K_ATTEMPT
      : !strcmp(kind, "eval")
          ? (cJSON_IsString(sp) && !strcmp(sp->valuestring, "test") ? K_EVAL_TEST : K_EVAL_VALID)
      : !strcmp(kind, "epoch") ? K_EPOCH
      : !strcmp(kind, "done")  ? K_DONE
                               : K_OTHER;
  cJSON_Delete(o);
}

// Which lines a resume from `step` supersedes: those about later steps; a
// validation line goes with the epoch line before it, a test line with the
// done line after it (none: the run did not finish, superseded).
static void mark(mline *l, size_t n, int64_t step) {
  int drop_valid = 0;
  for (size_t i = 0; i < n; i++) {
    switch (l[i].kind) {
    case K_ATTEMPT: l[i].drop = 0; break;
    case K_BROKEN: l[i].drop = 1; break;
    case K_EVAL_VALID: l[i].drop = drop_valid; break;
    case K_EVAL_TEST: {
      l[i].drop = 1;
      for (size_t j = i + 1; j < n; j++)
        if (l[j].kind == K_DONE) {
          l[i].drop = l[j].step > step;
          break;
        }
      break;
    }
    default: l[i].drop = l[i].step > step; break;
    }
    if (l[i].kind == K_EPOCH) drop_valid = l[i].drop;
  }
}

// Rewrite path keeping the lines not superseded by a resume from `step`;
// append the others to OUT/metrics.superseded.jsonl.
static int move_superseded(const char *path, int64_t step) {
  FILE *in = fopen(path, "r");
  if (!in && errno == ENOENT) return LR_OK; // nothing written yet
  LR_CHECK(in, LR_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  mline *l = NULL;
  size_t n = 0, cap = 0, lcap = 0;
  char *line = NULL;
  ssize_t k;
  int rc = LR_OK;
  while ((k = getline(&line, &lcap, in)) > 0) {
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      mline *p = realloc(l, cap * sizeof *l);
      if (!p) break;
      l = p;
    }
    const int nl = line[k - 1] != '\n'; // a last line without its newline
    if (!(l[n].text = malloc((size_t)k + 2))) break;
    memcpy(l[n].text, line, (size_t)k);
    if (nl) l[n].text[k++] = '\n';
    l[n].text[k] = 0;
    classify(&l[n++]);
  }
  if (k > 0 || (k < 0 && ferror(in)))
    rc = ferror(in) ? lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: read: %s", path, strerror(errno))
                    : lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  fclose(in);
  free(line);
  mark(l, n, step);
  size_t bytes = 1, n_drop = 0;
  for (size_t i = 0; i < n; i++)
    bytes += strlen(l[i].text), n_drop += l[i].drop;
  char *keep = rc == LR_OK && n_drop ? malloc(bytes) : NULL;
  if (rc == LR_OK && n_drop && !keep)
    rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  if (rc == LR_OK && n_drop) {
    char side[LR_PATH_MAX + 64];
    snprintf(side, sizeof side, "%.*s.superseded.jsonl", (int)(strlen(path) - 6), path);
    FILE *s = fopen(side, "a");
    size_t nk = 0;
    for (size_t i = 0; s && i < n; i++)
      if (l[i].drop)
        fputs(l[i].text, s);
      else
        memcpy(keep + nk, l[i].text, strlen(l[i].text)), nk += strlen(l[i].text);
    if (!s || fflush(s) != 0 || ferror(s))
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: write: %s", side, strerror(errno));
    if (s) fclose(s);
    if (rc == LR_OK) rc = afile_write_whole(path, keep, nk, 0, NULL);
  }
  for (size_t i = 0; i < n; i++)
    free(l[i].text);
  free(l);
  free(keep);
  return rc;
}

// ---- the file -------------------------------------------------------------------------------

int report_open(lr_report *r, const char *out_dir, int64_t resume_step) {
  memset(r, 0, sizeof *r);
  if (dist_rank() != 0) return LR_OK;
  int n = snprintf(r->path, sizeof r->path, "%s/metrics.jsonl", out_dir);
  LR_CHECK(n > 0 && (size_t)n < sizeof r->path, LR_ERR_CONFIG, "--out: path too long");
  if (resume_step >= 0) LR_CALL(move_superseded(r->path, resume_step));
  r->f = fopen(r->path, resume_step >= 0 ? "a" : "w");
  LR_CHECK(r->f, LR_ERR_IO, "%s: cannot create: %s", r->path, strerror(errno));
  return LR_OK;
}

void report_close(lr_report *r) {
  if (r->f) fclose(r->f);
  r->f = NULL;
}

cJSON *report_event(lr_report *r, const char *kind) {
  if (!r->f || r->err) return NULL;
  cJSON *ev = cJSON_CreateObject();
  if (!ev || !cJSON_AddStringToObject(ev, "event", kind)) {
    cJSON_Delete(ev);
    r->err = ENOMEM;
    return NULL;
  }
  return ev;
}

void report_fmt(cJSON *ev, const char *key, const char *fmt, double x) {
  if (!ev) return;
  char b[64];
  if (x == x && x - x == 0) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(b, sizeof b, fmt, x);
#pragma GCC diagnostic pop
  } else {
    snprintf(b, sizeof b, "null"); // JSON has no NaN or infinity
  }
  cJSON_AddRawToObject(ev, key, b);
}

void report_exact(cJSON *ev, const char *key, double x) { report_fmt(ev, key, "%.17g", x); }

void report_int(cJSON *ev, const char *key, int64_t x) {
  if (!ev) return;
  char b[24];
  snprintf(b, sizeof b, "%lld", (long long)x);
  cJSON_AddRawToObject(ev, key, b);
}

void report_str(cJSON *ev, const char *key, const char *s) {
  if (ev) cJSON_AddStringToObject(ev, key, s);
}

void report_bool(cJSON *ev, const char *key, int b) {
  if (ev) cJSON_AddBoolToObject(ev, key, b);
}

void report_emit(lr_report *r, cJSON *ev) {
  if (!ev) return;
  struct timeval tv; // the event's time: when it is written, its last member
  gettimeofday(&tv, NULL);
  char t[32];
  snprintf(t, sizeof t, "%lld.%03d", (long long)tv.tv_sec, (int)(tv.tv_usec / 1000));
  char *s =
      r->f && !r->err && cJSON_AddRawToObject(ev, "time", t) ? cJSON_PrintUnformatted(ev) : NULL;
  cJSON_Delete(ev);
  if (!r->f || r->err) return;
  if (!s) {
    r->err = ENOMEM;
    return;
  }
  errno = 0;
  if (fputs(s, r->f) == EOF || fputc('\n', r->f) == EOF || fflush(r->f) != 0 || ferror(r->f))
    r->err = errno ? errno : EIO;
  cJSON_free(s);
}

int report_status(const lr_report *r) {
  if (!r->err) return LR_OK;
  return lr_error(LR_ERR_IO, __FILE__, __LINE__,
                  "%s: write failed: %s\nHINT: the run stops here (the last committed "
                  "checkpoint is `latest`); free space on its file system or fix it, then resume "
                  "with --resume latest",
                  r->path, strerror(r->err));
}

// ---- the progress line --------------------------------------------------------------------

void progress_show(lr_progress *p, int epoch, int64_t epochs, int64_t step, int64_t total,
                   double loss, double seq_per_s, int64_t steps_left, double step_s, int final) {
  if (dist_rank() != 0 || p->mode == 2) return;
  double now = dist_wtime();
  if (!final && now - p->last_print < (p->mode == 0 ? 0.2 : 5.0)) return;
  p->last_print = now;
  double eta = (double)steps_left * step_s;
  char line[256];
  snprintf(line, sizeof line,
           "epoch %d/%lld  step %lld/%lld  loss %.4f  %.0f seq/s  ETA %02d:%02d:%02d", epoch,
           (long long)epochs, (long long)step, (long long)total, loss, seq_per_s, (int)(eta / 3600),
           (int)(eta / 60) % 60, (int)eta % 60);
  if (p->mode == 0)
    printf("\r%-78s%s", line, final ? "\n" : "");
  else
    printf("%s\n", line);
  fflush(stdout);
}
