// stream.h: `linrec recommend --stream`: events `user item` (original ids)
// read a line at a time; after each, the user's new top-K (dist/serve.h
// ranks; here: the users by id, their histories, reading and printing).
//
// Every user seen keeps its history (the data's, for a user the data knows,
// then the stream's events) and its windows of the model's state (serve.h
// has the policy and its exactness). The users are kept by original id in
// an open-addressing map.
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

#endif
