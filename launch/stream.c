// stream.c: `linrec recommend --stream` (stream.h; dist/serve.h has the windows).
#include "stream.h"

#include <stdlib.h> // free, realloc
#include <string.h> // memcpy, memset, strlen, strdup

#include "ids.h" // find_id, canonical_id, print_id, print_json_str
#include "lr.h"
#include "serve.h" // lr_server

// One user of the stream.
typedef struct {
  char *id;      // canonical original id; NULL: an empty slot of the map
  int64_t known; // the data's user, or -1
  int32_t *hist; // the history: the data's, then the events' items
  int64_t n, cap;
  lr_serve_window win; // the model's windows (serve.h)
} suser;

typedef struct {
  const lr_stream_opts *o;
  lr_server sv;
  suser *map; // open addressing on the id, capacity a power of 2
  int64_t cap, n_users;
  float *scores;
  int32_t *top;
} stream;

static uint64_t hash_id(const char *s) {
  uint64_t x = 1469598103934665603ull; // FNV-1a
  for (; *s; s++) x = (x ^ (uint8_t)*s) * 1099511628211ull;
  return x;
}

static suser *slot_of(suser *map, int64_t cap, const char *id) {
  for (uint64_t i = hash_id(id) & (uint64_t)(cap - 1);; i = (i + 1) & (uint64_t)(cap - 1))
    if (!map[i].id || !strcmp(map[i].id, id)) return &map[i];
}

static int map_grow(stream *S) {
  const int64_t nc = S->cap ? 2 * S->cap : 1024;
  suser *nm = lr_calloc((size_t)nc, sizeof *nm, "stream users");
  if (!nm) return LR_ERR_NOMEM;
  for (int64_t i = 0; i < S->cap; i++)
    if (S->map[i].id) *slot_of(nm, nc, S->map[i].id) = S->map[i];
  lr_free(S->map);
  S->map = nm, S->cap = nc;
  return LR_OK;
}

static int hist_push(suser *u, int32_t v) {
  if (u->n == u->cap) {
    const int64_t nc = u->cap ? 2 * u->cap : 64;
    int32_t *p = realloc(u->hist, (size_t)nc * sizeof *p);
    LR_CHECK(p, LR_ERR_NOMEM, "out of memory for a history of %lld items", (long long)nc);
    u->hist = p, u->cap = nc;
  }
  u->hist[u->n++] = v;
  return LR_OK;
}

// The user with canonical id `id`, created (with the data's history when the
// data knows it) if new. *out NULL with LR_OK: a new user this model cannot
// rank (it has a users table).
static int user_get(stream *S, const char *id, suser **out) {
  *out = NULL;
  if (2 * (S->n_users + 1) > S->cap) LR_CALL(map_grow(S));
  suser *u = slot_of(S->map, S->cap, id);
  if (u->id) {
    *out = u;
    return LR_OK;
  }
  const lr_stream_opts *o = S->o;
  const int64_t known = find_id(o->users, o->uorder, id, strlen(id));
  if (known < 0 && S->sv.users_table) return LR_OK;
  u->id = strdup(id);
  LR_CHECK(u->id, LR_ERR_NOMEM, "out of memory for a user id");
  u->known = known;
  S->n_users++;
  if (known >= 0)
    for (int64_t i = o->ds->offsets[known]; i < o->ds->offsets[known + 1]; i++)
      LR_CALL(hist_push(u, o->ds->items[i]));
  *out = u;
  return LR_OK;
}

static void print_user(FILE *f, const stream *S, const suser *u) {
  if (u->known >= 0) {
    print_id(f, S->o->users, u->known, S->o->ustr);
    return;
  }
  int digits = u->id[0] != '\0';
  for (const char *p = u->id; *p; p++) digits &= *p >= '0' && *p <= '9';
  if (digits && !S->o->ustr) fputs(u->id, f);
  else print_json_str(f, u->id);
}

static void print_answer(const stream *S, const suser *u, int32_t item) {
  const lr_stream_opts *o = S->o;
  FILE *f = o->out;
  fputs("{\"user\":", f);
  print_user(f, S, u);
  fputs(",\"item\":", f);
  print_id(f, o->items, item, o->istr);
  fputs(",\"items\":[", f);
  for (int j = 0, first = 1; j < o->k; j++)
    if (S->top[j]) {
      fputs(first ? "" : ",", f), first = 0;
      print_id(f, o->items, S->top[j], o->istr);
    }
  fputs("],\"scores\":[", f);
  for (int j = 0, first = 1; j < o->k; j++)
    if (S->top[j]) fprintf(f, "%s%.5f", first ? "" : ",", S->scores[j]), first = 0;
  fputs("]}\n", f);
  fflush(f);
}

// The first two fields of a line (separated by blanks or commas): [*a, *a+*na), [*b, *b+*nb).
static int two_fields(const char *s, const char **a, size_t *na, const char **b, size_t *nb) {
  const char *p = s;
  const char *f[2];
  size_t n[2];
  for (int k = 0; k < 2; k++) {
    while (*p == ' ' || *p == '\t' || *p == ',') p++;
    if (!*p || *p == '\n' || *p == '\r') return 0;
    f[k] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '\n' && *p != '\r') p++;
    n[k] = (size_t)(p - f[k]);
  }
  *a = f[0], *na = n[0], *b = f[1], *nb = n[1];
  return 1;
}

static void stream_free(stream *S) {
  for (int64_t i = 0; i < S->cap; i++) {
    free(S->map[i].id);
    free(S->map[i].hist);
    server_window_free(&S->map[i].win);
  }
  lr_free(S->map), lr_free(S->scores);
  lr_free(S->top);
  server_free(&S->sv);
}

int recommend_stream(const lr_stream_opts *o) {
  stream S = {0};
  S.o = o;
  LR_CALL(server_init(&S.sv, o->sc, o->c, o->keep));
  S.scores = lr_calloc((size_t)o->k, sizeof(float), "stream scores");
  S.top = lr_calloc((size_t)o->k, sizeof(int32_t), "stream top-K");
  int rc = S.scores && S.top ? LR_OK : LR_ERR_NOMEM;
  if (rc == LR_OK && S.sv.stepping)
    fprintf(stderr,
            "stream: %s/%s steps an event at a time (%.1f KiB of state per user); windows of "
            "at most %lld items, restarted from the last %lld\n",
            S.sv.arch, S.sv.kind, (double)S.sv.state_elems / 128.0, (long long)S.sv.N,
            (long long)S.sv.keep);
  else if (rc == LR_OK)
    fprintf(stderr, "stream: %s/%s cannot step: each event re-encodes the history's last %lld items\n",
            S.sv.arch, S.sv.kind, (long long)S.sv.N);
  char *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  long long ln = 0, bad = 0, events = 0;
  while (rc == LR_OK && (got = getline(&line, &lcap, o->in)) >= 0) {
    ln++;
    const char *a, *b;
    size_t na, nb;
    const char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\n' || *s == '\r' || !*s) continue;
    if (!two_fields(line, &a, &na, &b, &nb)) {
      size_t len = strcspn(s, "\r\n");
      fprintf(stderr, "linrec: %s:%lld: expected `user item`, got '%.*s': event skipped\n",
              o->in_name, ln, (int)(len > 60 ? 60 : len), s);
      bad++;
      continue;
    }
    const int64_t item = find_id(o->items, o->iorder, b, nb);
    if (item <= 0) {
      fprintf(stderr, "linrec: %s:%lld: item '%.*s' is not in the model's catalog: event skipped\n",
              o->in_name, ln, (int)(nb > 80 ? 80 : nb), b);
      bad++;
      continue;
    }
    char id[LR_ID_MAX_BYTES + 1];
    if (na > LR_ID_MAX_BYTES) {
      fprintf(stderr, "linrec: %s:%lld: user id longer than %d bytes: event skipped\n",
              o->in_name, ln, LR_ID_MAX_BYTES);
      bad++;
      continue;
    }
    canonical_id(a, na, id);
    suser *u;
    if ((rc = user_get(&S, id, &u)) != LR_OK) break;
    if (!u) {
      fprintf(stderr,
              "linrec: %s:%lld: user '%s' is not in the data, and this model (model.arch=%s) "
              "needs a known user's row: event skipped\n",
              o->in_name, ln, id, S.sv.arch);
      bad++;
      continue;
    }
    if ((rc = hist_push(u, (int32_t)item)) != LR_OK ||
        (rc = server_rank(&S.sv, &u->win, u->hist, u->n, u->known, o->k, o->include_history,
                          S.top, S.scores)) != LR_OK)
      break;
    print_answer(&S, u, (int32_t)item);
    if (ferror(o->out)) rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write the answers: error");
    events++;
  }
  free(line);
  if (rc == LR_OK && ferror(o->in))
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "read %s: error", o->in_name);
  if (rc == LR_OK && bad)
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                  "%s: %lld of %lld events skipped (each reported above)", o->in_name, bad,
                  bad + events);
  stream_free(&S);
  return rc;
}

