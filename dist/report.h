// report.h: what a training run tells its user as it goes: the events of
// OUT/metrics.jsonl (one JSON object per line, built with cJSON, written by
// rank 0) and the progress line on stdout. The README's event table lists
// every event kind and its members.
//
// Every event has "event" (its kind) first, then its own members, and last
// "time" (when it was written: wall clock, Unix seconds with milliseconds). A write that fails (a
// full disk, an I/O error) is remembered, not retried (report_status): the trainer agrees on it at
// the next step boundary and stops cleanly, naming the file, instead of going on without its
// record.
//
// Resuming: the file is appended to, after its superseded lines are moved
// out. Those are the lines an earlier attempt wrote about steps after the
// checkpoint resumed from (its step, epoch, eval, checkpoint, stopped and
// done events; the start, started and resume lines of every attempt stay),
// so each step, epoch and evaluation appears once, as the attempt that
// carried the run on computed it. The superseded lines go to
// OUT/metrics.superseded.jsonl (appended), nothing is lost.
#ifndef LR_REPORT_H
#define LR_REPORT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h" // LR_PATH_MAX

typedef struct {
  FILE *f; // rank 0: OUT/metrics.jsonl (NULL elsewhere, and for bench)
  char path[LR_PATH_MAX + 32];
  int err; // errno of the first failed write (sticky; 0: none)
} lr_report;

// Rank 0: open OUT/metrics.jsonl, created anew, or with resume_step >= 0
// appended to after moving the lines superseded by a resume from that step
// out (see above). Local; LR_ERR_IO naming the file. The other ranks: LR_OK,
// nothing opened.
int report_open(lr_report *r, const char *out_dir, int64_t resume_step);
void report_close(lr_report *r);

// A new event of `kind` with its time, or NULL when this rank writes none
// (not rank 0, no file, a write failed before, or no memory: the event is
// then skipped and the failure recorded). Local.
cJSON *report_event(lr_report *r, const char *kind);
// Members: numbers, integers, strings, booleans; NULL ev is a no-op. A
// double added with report_exact prints all 17 significant digits (a loss
// to compare bitwise).
void report_exact(cJSON *ev, const char *key, double x);
// A double printed with a printf format of one conversion ("%.6f": the
// metrics, as `linrec eval` prints them); null when not finite.
void report_fmt(cJSON *ev, const char *key, const char *fmt, double x);
void report_int(cJSON *ev, const char *key, int64_t x);
void report_str(cJSON *ev, const char *key, const char *s);
void report_bool(cJSON *ev, const char *key, int b);
// Write ev as one line, flush, free it. Local.
void report_emit(lr_report *r, cJSON *ev);
// LR_OK, or LR_ERR_IO for the first failed write with a HINT. Local.
int report_status(const lr_report *r);

// The progress line: redrawn in place on a terminal (mode 0), plain lines
// every 5 s (mode 1), or off (2). Rank 0 only.
typedef struct {
  int mode;
  double last_print;
} lr_progress;
void progress_show(lr_progress *p, int epoch, int64_t epochs, int64_t step, int64_t total,
                   double loss, double seq_per_s, int64_t steps_left, double step_s, int final);

#endif
