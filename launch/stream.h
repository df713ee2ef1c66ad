// stream.h: `linrec recommend --stream`: events `user item` (original ids)
// read a line at a time; after each, the user's new top-K.
//
// Every user seen keeps its history (the data's, for a user the data knows,
// then the stream's events) and, for a model that can stream (model.h,
// model_stream_capable: sasrec with linrec_causal, recgrela with
// rela_causal), the model's carried state of a window of that history: an
// event costs one model_stream_step, O(L d^2) whatever the history's length,
// plus the catalog's scores. The window is the history's last min(n, N)
// items when the user is first seen (N = model.max_len); each event adds its
// item; when the window would pass N items it restarts from the last `keep`
// items (re-encoded by `keep` steps) and grows again. So every answer is
// exactly (bitwise) the model's answer for the window's items as a history
// (`recommend --history` of them): while a user has at most N items, the
// whole history. Other models re-encode the history's last N items per event.
#ifndef LR_STREAM_H
#define LR_STREAM_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"  // lr_config
#include "dataset.h" // lr_dataset, lr_names
#include "eval.h"    // lr_scorer

typedef struct {
  const lr_config *c;
  const lr_scorer *sc;        // a model's, the whole item table on this rank
  const lr_dataset *ds;       // the data: known users start from their history
  const lr_names *users, *items; // the id maps (model file's or data's)
  const int64_t *uorder, *iorder; // their names_index orders
  int ustr, istr;             // the ids print as JSON strings
  int k, include_history;
  int64_t keep;               // items kept when a window passes N (0: N/2)
  FILE *in, *out;
  const char *in_name;        // for messages ("stdin")
} lr_stream_opts;

// Run until end of input. A bad event (not two fields, an item the model
// does not know, a new user of a model with a users table) is reported on
// stderr with its line and skipped; at the end they make the result
// LR_ERR_DATA (counted). Also LR_ERR_NOMEM, LR_ERR_IO, LR_ERR_CONFIG (keep
// out of range). Local.
int recommend_stream(const lr_stream_opts *o);

// `linrec bench --stream`: the configured model (random parameters, the
// synthetic catalog's size) serving a stream of random events of 8 users
// whose histories start N items long, each mode for `budget` seconds: step
// (the window policy above, keep N/2) and reencode (a forward of the last N
// items, the fast path of the last row), both ranking the catalog's top 10.
// Prints a JSON line per mode (events/s, p50 and p99 latency per event, the
// same for the encoder alone) and their ratio. LR_ERR_CONFIG (the model
// cannot step), LR_ERR_NOMEM. Local.
int bench_stream(const lr_config *c, double budget);

#endif
