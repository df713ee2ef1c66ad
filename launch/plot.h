// plot.h: `linrec plot` (plot.c's top comment).
#ifndef LR_PLOT_H
#define LR_PLOT_H

// Plot the runs' metrics.jsonl (runs[0..n)) into out (.png or .svg) with
// gnuplot, and/or write them as CSV to csv (either may be NULL, not both).
// LR_ERR_IO (a file; gnuplot missing or failing, with a hint),
// LR_ERR_DATA (a bad metrics line: file and line), LR_ERR_CONFIG, LR_ERR_NOMEM.
int plot_runs(const char *const *runs, int n, const char *out, const char *csv);

#endif
