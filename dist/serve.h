// serve.h: ranking a user's history again after each new item
// (`recommend --stream`, launch/stream.c), and its benchmark (`bench
// --stream`). Local: one rank with the whole item table.
//
// For a model that can stream (core/model.h, model_stream_capable: sasrec
// with linrec_causal, recgrela with rela_causal) a user keeps the model's
// carried state of a window of its history, so an item costs one
// model_stream_step, O(L d^2) whatever the history's length, plus the
// catalog's scores. The window is the history's last min(n, N) items when the
// user is first ranked (N = model.max_len); each item adds to it; when it
// would pass N it restarts from the last `keep` items. The next window is
// built alongside (a second state started where it will begin), so the
// restart is a swap: at most two steps per item (keep <= N/2 + 1; a larger
// keep replays the next window's first items at the swap). Every answer is
// exactly (bitwise hidden state) the model's answer for the window's items as
// a history: while a user has at most N items, the whole history
// (tests/test_stream.c, tests/cli_stream.sh). Other models re-encode the
// history's last N items per item.
#ifndef LR_SERVE_H
#define LR_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h" // lr_config
#include "eval.h"   // lr_scorer

// One user's windows (zeroed: none yet).
typedef struct {
  int64_t w0, w1; // a holds the window hist[w0 .. n), b the next one hist[w1 .. n) if w1 < n
  float *a, *b;   // one allocation of two states (min(a, b) is its start)
} lr_serve_window;

typedef struct {
  const lr_config *c;
  const lr_scorer *sc;
  const char *arch, *kind; // the model's names (messages)
  int stepping;            // the model carries a state (else: re-encode)
  int users_table;         // the architecture reads a per-user row (model.arch=ram)
  int64_t N, D, rows, keep;
  size_t state_elems;      // floats of one state (a window holds two)
  uint8_t *skip;           // (rows) the ranked history's items
  float *h, *hb, *tile;
} lr_server;

// Ready to rank with sc's model (sc->model, the whole table on this rank),
// keep items kept at a restart (0: (N+1)/2). LR_ERR_CONFIG (keep outside
// 1..N), LR_ERR_NOMEM. Local.
int server_init(lr_server *s, const lr_scorer *sc, const lr_config *c, int64_t keep);
void server_free(lr_server *s);
void server_window_free(lr_serve_window *w);

// Top-K of the history hist[0..n) whose last item is new: items, scores (K)
// best first (item 0, -inf past the catalog), the history's items left out
// unless include_history. user: the data's user (its per-user row for a
// model with a users table), or -1. w: the user's windows (stepping models).
// LR_ERR_NOMEM; LR_ERR_ARG for user -1 with a users table. Local.
int server_rank(lr_server *s, lr_serve_window *w, const int32_t *hist, int64_t n, int64_t user,
                int K, int include_history, int32_t *items, float *scores);

// `linrec bench --stream`: c's model (random parameters, the synthetic
// catalog's size) serving random items to 8 users whose histories start N
// items long, each mode for `budget` seconds: step (the windows above,
// keep N/2) and reencode (a forward of the last N items, the fast path of
// the last row), both ranking the catalog's top 10. Prints a JSON line per
// mode (events/s, p50, p99 and max latency per event, p50 and p99 of the
// encoder alone) and their ratio. LR_ERR_CONFIG (the kind cannot step),
// LR_ERR_NOMEM. Local.
int bench_stream(const lr_config *c, double budget);

#endif
