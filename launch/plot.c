// plot.c: `linrec plot RUN_DIR... --out FILE.png|svg [--csv FILE]`
// (README.md, "Watching a run"). Reads each run's metrics.jsonl (cJSON):
// the training loss of its `step` events (log.every_steps) and `epoch`
// events, validation NDCG@10 and Recall@10 of its `eval` events (split
// valid) by epoch, and throughput (seq_per_s of `epoch` events). After a
// resume a step may appear twice: the last occurrence wins (the file is in
// time order). The figure is drawn by gnuplot (Debian: gnuplot-nox), run
// with a script and data files in a temporary directory: three panels
// (loss by step, validation metrics by epoch, sequences/s by epoch), one
// line per run, the legend naming the runs. --csv writes the same numbers:
// run,step,epoch,loss,valid_ndcg@10,valid_recall@10,seq_per_s, one row per
// step (empty fields where a value is absent). The loss is the step events'
// when the run has them (log.every_steps), else each epoch's mean.
#include "plot.h"

#include <cjson/cJSON.h> // cJSON_Parse
#include <errno.h>       // errno
#include <stdio.h>       // FILE, getline
#include <stdlib.h>      // malloc, free, mkdtemp
#include <string.h>      // strcmp, strrchr, strerror
#include <sys/wait.h>    // waitpid
#include <unistd.h>      // fork, execvp, unlink, rmdir

#include "config.h" // LR_PATH_MAX
#include "lr.h"

// One row per distinct step: the values seen (NAN: none).
typedef struct {
  long long step;
  int epoch;
  double loss, eloss, ndcg, recall, speed; // loss: of a step event; eloss: an epoch's mean
} row;

typedef struct {
  const char *dir, *name; // the run directory and its legend name
  row *r;
  int64_t n, cap;
  int has_step; // step events: the loss curve is theirs, else the epochs' means
} run_data;

static const double NONE = -1e300; // no value (NAN would need -ffast-math care)

static row *row_at(run_data *d, long long step) {
  for (int64_t k = d->n - 1; k >= 0 && k >= d->n - 4; k--) // recent rows: the usual case
    if (d->r[k].step == step) return &d->r[k];
  for (int64_t k = 0; k < d->n; k++)
    if (d->r[k].step == step) return &d->r[k];
  if (d->n == d->cap) {
    int64_t nc = d->cap ? d->cap * 2 : 256;
    row *p = realloc(d->r, (size_t)nc * sizeof *p);
    if (!p) return NULL;
    d->r = p, d->cap = nc;
  }
  // keep rows sorted by step: a resume repeats earlier steps (found above)
  int64_t at = d->n;
  while (at > 0 && d->r[at - 1].step > step) at--;
  memmove(d->r + at + 1, d->r + at, (size_t)(d->n - at) * sizeof *d->r);
  d->r[at] = (row){step, 0, NONE, NONE, NONE, NONE, NONE};
  d->n++;
  return &d->r[at];
}

static double num(const cJSON *o, const char *k, int *ok) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  *ok = cJSON_IsNumber(v);
  return *ok ? v->valuedouble : NONE;
}

static int read_run(run_data *d) {
  char path[LR_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/metrics.jsonl", d->dir);
  FILE *f = fopen(path, "r");
  LR_CHECK(f, LR_ERR_IO, "%s: %s (is %s a run directory of linrec train?)", path, strerror(errno),
           d->dir);
  char *line = NULL;
  size_t cap = 0;
  long long ln = 0, epoch_step[4096] = {0};
  int rc = LR_OK, ok;
  while (rc == LR_OK && getline(&line, &cap, f) >= 0) {
    ln++;
    cJSON *o = cJSON_Parse(line);
    const cJSON *ev = o ? cJSON_GetObjectItemCaseSensitive(o, "event") : NULL;
    if (!cJSON_IsString(ev)) {
      // a line cut by a kill is the only one that may be incomplete: the last
      if (!feof(f) && fgetc(f) != EOF)
        rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s:%lld: not a JSON event", path, ln);
      cJSON_Delete(o);
      break;
    }
    const char *e = ev->valuestring;
    row *r = NULL;
    if (!strcmp(e, "step") || !strcmp(e, "epoch")) {
      const double step = num(o, "step", &ok);
      if (ok && !(r = row_at(d, (long long)step))) rc = LR_ERR_NOMEM;
      if (r) {
        const double loss = num(o, "loss", &ok);
        if (ok && !strcmp(e, "step")) r->loss = loss, d->has_step = 1;
        if (ok && !strcmp(e, "epoch")) r->eloss = loss;
        const double ep = num(o, "epoch", &ok);
        if (ok && !strcmp(e, "epoch")) {
          r->epoch = (int)ep;
          if (ep >= 1 && ep < 4096) epoch_step[(int)ep] = (long long)step;
          const double sp = num(o, "seq_per_s", &ok);
          if (ok) r->speed = sp;
        }
      }
    } else if (!strcmp(e, "eval")) {
      const cJSON *split = cJSON_GetObjectItemCaseSensitive(o, "split");
      const double ep = num(o, "epoch", &ok);
      // validation by epoch: at the step its epoch ended
      if (ok && cJSON_IsString(split) && !strcmp(split->valuestring, "valid") && ep >= 1 &&
          ep < 4096 && epoch_step[(int)ep] > 0) {
        r = row_at(d, epoch_step[(int)ep]);
        if (!r) rc = LR_ERR_NOMEM;
        else {
          r->epoch = (int)ep;
          double v = num(o, "ndcg@10", &ok);
          if (ok) r->ndcg = v;
          v = num(o, "recall@10", &ok);
          if (ok) r->recall = v;
        }
      }
    }
    cJSON_Delete(o);
  }
  free(line);
  fclose(f);
  if (rc == LR_OK && d->n == 0)
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s: no step or epoch events yet (log.every_steps adds step events)", path);
  return rc;
}

static void put(FILE *f, double v, const char *fmt) {
  if (v != NONE) fprintf(f, fmt, v);
}

static int write_csv(const char *csv, run_data *d, int n) {
  FILE *f = fopen(csv, "w");
  LR_CHECK(f, LR_ERR_IO, "create %s: %s", csv, strerror(errno));
  fprintf(f, "run,step,epoch,loss,valid_ndcg@10,valid_recall@10,seq_per_s\n");
  for (int k = 0; k < n; k++)
    for (int64_t i = 0; i < d[k].n; i++) {
      const row *r = &d[k].r[i];
      fprintf(f, "%s,%lld,", d[k].name, r->step);
      if (r->epoch) fprintf(f, "%d", r->epoch);
      fputc(',', f), put(f, d[k].has_step ? r->loss : r->eloss, "%.9g");
      fputc(',', f), put(f, r->ndcg, "%.6f");
      fputc(',', f), put(f, r->recall, "%.6f");
      fputc(',', f), put(f, r->speed, "%.1f");
      fputc('\n', f);
    }
  int bad = ferror(f);
  if (fclose(f) != 0 || bad)
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s", csv, strerror(errno));
  return LR_OK;
}

// gnuplot's string quoting: '...' with '' for a quote.
static void gp_str(FILE *f, const char *s) {
  fputc('\'', f);
  for (; *s; s++) {
    if (*s == '\'') fputc('\'', f);
    fputc(*s, f);
  }
  fputc('\'', f);
}

static int run_gnuplot(const char *script) {
  fflush(NULL);
  pid_t pid = fork();
  LR_CHECK(pid >= 0, LR_ERR_IO, "fork: %s", strerror(errno));
  if (pid == 0) {
    execlp("gnuplot", "gnuplot", script, (char *)NULL);
    _exit(errno == ENOENT ? 127 : 126);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    LR_CHECK(errno == EINTR, LR_ERR_IO, "waitpid: %s", strerror(errno));
  LR_CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 127), LR_ERR_IO,
           "linrec plot draws with gnuplot, which is not installed\nHINT: install it (Debian: "
           "apt-get install gnuplot-nox), or use --csv FILE");
  LR_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, LR_ERR_IO,
           "gnuplot failed (status %d) drawing %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1, script);
  return LR_OK;
}

static int draw(const char *out, run_data *d, int n) {
  const char *ext = strrchr(out, '.');
  const int svg = ext && !strcmp(ext, ".svg");
  LR_CHECK(ext && (svg || !strcmp(ext, ".png")), LR_ERR_CONFIG,
           "plot: --out %s: the name must end in .png or .svg", out);
  char dir[] = "/tmp/linrec-plot-XXXXXX", path[sizeof dir + 64], script[sizeof dir + 16];
  LR_CHECK(mkdtemp(dir), LR_ERR_IO, "mkdtemp %s: %s", dir, strerror(errno));
  int rc = LR_OK;
  // data: per run, three files of "x y" lines
  static const char *const kinds[3] = {"loss", "valid", "speed"};
  for (int k = 0; k < n && rc == LR_OK; k++)
    for (int q = 0; q < 3 && rc == LR_OK; q++) {
      snprintf(path, sizeof path, "%s/%d-%s.dat", dir, k, kinds[q]);
      FILE *f = fopen(path, "w");
      if (!f) {
        rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "create %s: %s", path, strerror(errno));
        break;
      }
      for (int64_t i = 0; i < d[k].n; i++) {
        const row *r = &d[k].r[i];
        const double loss = d[k].has_step ? r->loss : r->eloss;
        if (q == 0 && loss != NONE) fprintf(f, "%lld %.9g\n", r->step, loss);
        if (q == 1 && r->ndcg != NONE) fprintf(f, "%d %.6f %.6f\n", r->epoch, r->ndcg, r->recall);
        if (q == 2 && r->speed != NONE) fprintf(f, "%d %.1f\n", r->epoch, r->speed);
      }
      fprintf(f, "nan nan nan\n"); // never empty: gnuplot refuses an empty file
      if (fclose(f) != 0)
        rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s", path, strerror(errno));
    }
  snprintf(script, sizeof script, "%s/plot.gp", dir);
  FILE *g = rc == LR_OK ? fopen(script, "w") : NULL;
  if (rc == LR_OK && !g)
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "create %s: %s", script, strerror(errno));
  if (g) {
    fprintf(g, "set terminal %s size 1500,450 %s\nset output ", svg ? "svg" : "pngcairo",
            svg ? "dynamic background rgb 'white'" : "background rgb 'white'");
    gp_str(g, out);
    fprintf(g, "\nset termoption noenhanced\nset datafile missing 'nan'\nset key outside bottom center horizontal noenhanced\n"
               "set grid\nset multiplot layout 1,3\n");
    static const char *const title[3] = {"training loss", "validation NDCG@10 (solid), Recall@10 (dashed)",
                                         "throughput (sequences/s)"};
    static const char *const xl[3] = {"step", "epoch", "epoch"};
    for (int q = 0; q < 3; q++) {
      fprintf(g, "set title '%s'\nset xlabel '%s'\nplot ", title[q], xl[q]);
      for (int k = 0; k < n; k++) {
        snprintf(path, sizeof path, "%s/%d-%s.dat", dir, k, kinds[q]);
        fprintf(g, "%s", k ? ", " : "");
        gp_str(g, path);
        fprintf(g, " using 1:2 with linespoints lc %d pt 7 ps 0.5 title ", k + 1);
        gp_str(g, d[k].name);
        if (q == 1) {
          fprintf(g, ", ");
          gp_str(g, path);
          fprintf(g, " using 1:3 with linespoints lc %d dt 2 pt 7 ps 0.5 notitle", k + 1);
        }
      }
      fprintf(g, "\n");
    }
    fprintf(g, "unset multiplot\n");
    if (fclose(g) != 0 && rc == LR_OK)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s", script, strerror(errno));
  }
  if (rc == LR_OK) rc = run_gnuplot(script);
  for (int k = 0; k < n; k++)
    for (int q = 0; q < 3; q++) {
      snprintf(path, sizeof path, "%s/%d-%s.dat", dir, k, kinds[q]);
      unlink(path);
    }
  unlink(script);
  rmdir(dir);
  return rc;
}

int plot_runs(const char *const *runs, int n, const char *out, const char *csv) {
  LR_CHECK(n >= 1 && n <= 64, LR_ERR_CONFIG, "plot: give 1 to 64 run directories, not %d", n);
  LR_CHECK(out || csv, LR_ERR_CONFIG, "plot: --out FILE.png|svg and/or --csv FILE is required");
  run_data *d = lr_calloc((size_t)n, sizeof *d, "plot runs");
  if (!d) return LR_ERR_NOMEM;
  int rc = LR_OK;
  for (int k = 0; k < n && rc == LR_OK; k++) {
    d[k].dir = runs[k];
    const char *s = runs[k] + strlen(runs[k]);
    while (s > runs[k] && s[-1] == '/') s--; // the name: the last path component
    const char *b = s;
    while (b > runs[k] && b[-1] != '/') b--;
    static char names[64][128];
    snprintf(names[k % 64], sizeof names[0], "%.*s", (int)(s - b), b);
    d[k].name = names[k % 64];
    rc = read_run(&d[k]);
  }
  if (rc == LR_OK && csv) rc = write_csv(csv, d, n);
  if (rc == LR_OK && out) rc = draw(out, d, n);
  for (int k = 0; k < n; k++) free(d[k].r);
  lr_free(d);
  return rc;
}
