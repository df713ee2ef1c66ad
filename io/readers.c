// readers.c: the text formats (io/README.md, "Data"), parsed line by line
// from a linestream into the raw buffer (data_internal.h).
//
//   movielens  user::item::rating::timestamp (ratings.dat of ML-1M/10M), or
//              the same four fields tab separated (u.data of ML-100K); the
//              separator is fixed by the first data line.
//   csv        header `userId,movieId,rating,timestamp` (required, checked),
//              then those four comma-separated fields (ML-20M/25M ratings.csv).
//   recbole    tab separated with a typed header `name:type` per column;
//              user_id and item_id required, rating and timestamp optional,
//              other columns ignored; found by name, in any order.
//   sasrec     `user item` separated by spaces/tabs, one interaction a line,
//              already in chronological order per user.
//
//   csv/recbole with data.columns: the named columns of any header (csv
//              with data.separator; fields in double quotes are unquoted).
//
// Ids are decimal integers 0 .. LR_DATA_ID_MAX (2^53-1), or else strings
// of 1..LR_ID_MAX_BYTES bytes without control characters (raw.c turns the
// column's map to strings at the first such id); ratings and
// timestamps are finite decimal numbers; blanks (spaces, tabs) around a
// field are ignored in every format ("   5" is 5). Lines holding only blanks
// are skipped (they still count in line numbers). In the formats with a
// header line (csv, recbole), a later line identical to the header (a
// leading UTF-8 byte order mark aside) is skipped too: files concatenated
// with their headers (by cat, or as gzip members or zstd frames appended to
// one another) read as one file; any other line that does not parse still
// fails. Every rejected line gives LR_ERR_DATA "path:line: reason" (a NUL
// byte in a line included: stream.h). Ratings below min_rating are dropped here.
// Not here: ordering, dedup, k-core, remapping (prep.c).
#include <errno.h>  // errno
#include <math.h>   // isfinite
#include <stdio.h>  // snprintf
#include <stdlib.h> // strtod, free
#include <string.h> // strcmp, strchr, strstr, strdup

#include "data_internal.h"
#include "lr.h"
#include "stream.h"

#define MAX_COLS 256

typedef struct {
  const char *path;
  lr_linestream *ls;
  lr_raw_ *raw;
  double min_rating;    // > 0: drop ratings below
  int64_t n_data_lines; // non-blank lines after any header
  char *header;         // (owned) the header line as read (csv, recbole), or NULL
} reader;

static long long lineno(const reader *r) { return (long long)linestream_lineno(r->ls); }

// ---------------------------------------------------------------------------
// fields and numbers

static int is_blank(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\t') return 0;
  return 1;
}

// Trim spaces and tabs in place; returns the start.
static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  return s;
}

// Keep a copy of the header line (before it is split in place). LR_ERR_NOMEM.
static int keep_header(reader *r, const char *line) {
  r->header = strdup(line);
  LR_CHECK(r->header, LR_ERR_NOMEM, "%s: out of memory", r->path);
  return LR_OK;
}

// 1 if line repeats the header line (a leading UTF-8 byte order mark aside).
static int is_header_again(const reader *r, const char *line) {
  if (!strncmp(line, "\xEF\xBB\xBF", 3)) line += 3;
  return r->header && !strcmp(line, r->header);
}

// Split in place at every `sep` (":" means the two-byte "::"). Stores up to
// maxf field pointers; returns the field count (may exceed maxf).
static int split(char *line, char sep, char **f, int maxf) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n < maxf) f[n] = p;
    n++;
    char *q = sep == ':' ? strstr(p, "::") : strchr(p, sep);
    if (!q) return n;
    *q = '\0';
    p = q + (sep == ':' ? 2 : 1);
  }
}

// Split at runs of spaces/tabs, ignoring leading and trailing ones.
static int split_ws(char *line, char **f, int maxf) {
  int n = 0;
  char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (!*p) return n;
    if (n < maxf) f[n] = p;
    n++;
    while (*p && *p != ' ' && *p != '\t')
      p++;
    if (*p) *p++ = '\0';
  }
}

typedef enum { ID_OK = 0, ID_EMPTY, ID_NOT_INT, ID_NEGATIVE, ID_OVERFLOW, ID_TOO_BIG } id_err;

static id_err parse_id(const char *s, int64_t *out) {
  *out = 0;
  if (!*s) return ID_EMPTY;
  int neg = *s == '-';
  const char *p = s + neg;
  if (!*p) return ID_NOT_INT;
  uint64_t v = 0;
  int overflow = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return ID_NOT_INT;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      overflow = 1;
    else
      v = v * 10 + d;
  }
  if (neg) return ID_NEGATIVE;
  if (overflow || v > (uint64_t)INT64_MAX) return ID_OVERFLOW;
  if (v > (uint64_t)LR_DATA_ID_MAX) return ID_TOO_BIG;
  *out = (int64_t)v;
  return ID_OK;
}

// An id field: a decimal integer within 0..LR_DATA_ID_MAX is a number,
// anything else a string (at most LR_ID_MAX_BYTES bytes, no control
// characters); empty is an error.
static int read_id(const reader *r, const char *what, const char *s, lr_id_ *out) {
  int64_t v;
  id_err e = parse_id(s, &v);
  *out = (lr_id_){NULL, v};
  if (e == ID_OK) return LR_OK;
  LR_CHECK(e != ID_EMPTY, LR_ERR_DATA, "%s:%lld: %s id is empty", r->path, lineno(r), what);
  size_t n = strlen(s);
  LR_CHECK(n <= LR_ID_MAX_BYTES, LR_ERR_DATA, "%s:%lld: %s id '%.40s...' is %zu bytes, at most %d",
           r->path, lineno(r), what, s, n, LR_ID_MAX_BYTES);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    LR_CHECK(*p >= 0x20 && *p != 0x7f, LR_ERR_DATA,
             "%s:%lld: %s id '%.40s' holds the control character 0x%02x", r->path, lineno(r),
             what, s, *p);
  out->s = s;
  return LR_OK;
}

static const double POW10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

// A finite decimal number (the whole string). Fast path for digits[.digits]
// with <= 15 digits (exact: m / 10^k with m < 2^53 rounds once), strtod
// otherwise. Returns 1 if ok.
static int parse_num(const char *s, double *out) {
  uint64_t m = 0;
  int nd = 0, frac = -1;
  const char *p = s;
  for (; *p; p++) {
    if (*p >= '0' && *p <= '9') {
      m = m * 10 + (uint64_t)(*p - '0');
      if (++nd > 15) break;
      if (frac >= 0) frac++;
    } else if (*p == '.' && frac < 0) {
      frac = 0;
    } else {
      break;
    }
  }
  if (!*p && nd > 0 && nd <= 15) {
    *out = (double)m / POW10[frac > 0 ? frac : 0];
    return 1;
  }
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v)) return 0;
  while (*end == ' ')
    end++;
  if (*end) return 0;
  *out = v;
  return 1;
}

static int bad_num(const reader *r, const char *what, const char *s) {
  return lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s:%lld: %s '%.40s' is not a number", r->path,
                  lineno(r), what, *s ? s : "(empty)");
}

// Parse and store one interaction from its field strings (trimmed in place
// first; rating_s and ts_s may be NULL when the format lacks them).
static int take(reader *r, char *user_s, char *item_s, char *rating_s, char *ts_s) {
  user_s = trim(user_s), item_s = trim(item_s);
  if (rating_s) rating_s = trim(rating_s);
  if (ts_s) ts_s = trim(ts_s);
  lr_id_ u, i;
  double rating = 0, ts = 0;
  LR_CALL(read_id(r, "user", user_s, &u));
  LR_CALL(read_id(r, "item", item_s, &i));
  if (rating_s && !parse_num(rating_s, &rating)) return bad_num(r, "rating", rating_s);
  if (ts_s && !parse_num(ts_s, &ts)) return bad_num(r, "timestamp", ts_s);
  r->n_data_lines++;
  if (rating_s && r->min_rating > 0 && rating < r->min_rating) return LR_OK;
  return raw_push_(r->raw, u, i, ts);
}

// ---------------------------------------------------------------------------
// formats

static int read_movielens(reader *r) {
  char *line, *f[5];
  size_t len;
  char sep = 0;
  r->raw->has_ts = 1;
  for (;;) {
    LR_CALL(linestream_next(r->ls, &line, &len));
    if (!line) return LR_OK;
    if (is_blank(line)) continue;
    if (!sep) {
      sep = strstr(line, "::") ? ':' : strchr(line, '\t') ? '\t' : 0;
      LR_CHECK(sep, LR_ERR_DATA,
               "%s:%lld: expected 'user::item::rating::timestamp' (ratings.dat) or four "
               "tab-separated fields (u.data), got '%.60s'",
               r->path, lineno(r), line);
    }
    int n = split(line, sep, f, 5);
    LR_CHECK(n == 4, LR_ERR_DATA,
             "%s:%lld: expected 4 %s fields user%sitem%srating%stimestamp, got %d", r->path,
             lineno(r), sep == ':' ? "'::'-separated" : "tab-separated", sep == ':' ? "::" : "\\t",
             sep == ':' ? "::" : "\\t", sep == ':' ? "::" : "\\t", n);
    LR_CALL(take(r, f[0], f[1], f[2], f[3]));
  }
}

// ---------------------------------------------------------------------------
// named columns (data.columns)

static const char *const ROLES[4] = {"user", "item", "rating", "time"};

// Parse `user=NAME,item=NAME[,time=NAME][,rating=NAME]` into name[role]
// ("" = not read). LR_ERR_CONFIG naming the problem.
static int parse_columns(const char *spec, char name[4][LR_ID_MAX_BYTES + 1]) {
  for (int k = 0; k < 4; k++)
    name[k][0] = '\0';
  const char *p = spec;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *eq = memchr(p, '=', len);
    LR_CHECK(eq, LR_ERR_CONFIG,
             "data.columns: '%.*s' is not role=NAME (roles user, item, time, rating; e.g. "
             "user=userId,item=itemId,time=ts)",
             (int)len, p);
    size_t rl = (size_t)(eq - p), nl = len - rl - 1;
    int role = -1;
    for (int k = 0; k < 4; k++)
      if (strlen(ROLES[k]) == rl && !strncmp(p, ROLES[k], rl)) role = k;
    if (rl == 9 && !strncmp(p, "timestamp", 9)) role = 3;
    LR_CHECK(role >= 0, LR_ERR_CONFIG,
             "data.columns: unknown role '%.*s' (user, item, time, rating)", (int)rl, p);
    LR_CHECK(!name[role][0], LR_ERR_CONFIG, "data.columns: role %s given twice", ROLES[role]);
    LR_CHECK(nl >= 1 && nl <= LR_ID_MAX_BYTES, LR_ERR_CONFIG,
             "data.columns: role %s has %s column name", ROLES[role], nl ? "a too long" : "an empty");
    memcpy(name[role], eq + 1, nl);
    name[role][nl] = '\0';
    p += len + (end ? 1 : 0);
  }
  LR_CHECK(name[0][0] && name[1][0], LR_ERR_CONFIG,
           "data.columns: '%s' needs user=NAME and item=NAME (time=NAME and rating=NAME are "
           "optional)",
           spec);
  return LR_OK;
}

// Find the columns of name[] among the header fields f[0..n) (recbole:
// `name:type`, matched on name). col[role] = index or -1 when not asked.
static int find_columns(const reader *r, char **f, int n, int recbole,
                        char name[4][LR_ID_MAX_BYTES + 1], int col[4]) {
  for (int k = 0; k < 4; k++) {
    col[k] = -1;
    if (!name[k][0]) continue;
    for (int c = 0; c < n && col[k] < 0; c++) {
      const char *h = f[c];
      size_t hl = strlen(h);
      if (recbole) {
        const char *colon = strrchr(h, ':');
        if (colon) hl = (size_t)(colon - h);
      }
      if (hl == strlen(name[k]) && !strncmp(h, name[k], hl)) col[k] = c;
    }
    if (col[k] < 0) {
      char found[256];
      size_t w = 0;
      found[0] = '\0';
      for (int c = 0; c < n && w < sizeof found - 4; c++) {
        int m = snprintf(found + w, sizeof found - w, "%s%s", c ? ", " : "", f[c]);
        w += m > 0 ? (size_t)m : 0;
      }
      if (w >= sizeof found) snprintf(found + sizeof found - 4, 4, "...");
      return lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                      "%s:%lld: no column '%s' (data.columns %s=%s) in the header; its columns: %s",
                      r->path, lineno(r), name[k], ROLES[k], name[k], found);
    }
  }
  return LR_OK;
}

// Strip one pair of surrounding double quotes (CSV quoting of a field
// without separators or quotes inside).
static char *unquote(char *s) {
  size_t n = strlen(s);
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    s[n - 1] = '\0';
    return s + 1;
  }
  return s;
}

static int split_sep(char *line, char sep, char **f, int maxf) {
  return sep == ' ' ? split_ws(line, f, maxf) : split(line, sep, f, maxf);
}

// csv with data.columns (or another separator): columns by name.
static int read_csv_named(reader *r, const char *spec, char sep) {
  char name[4][LR_ID_MAX_BYTES + 1];
  LR_CALL(parse_columns(spec && spec[0] ? spec : "user=userId,item=movieId,rating=rating,time=timestamp",
                        name));
  char *line, *f[MAX_COLS];
  size_t len;
  int col[4];
  LR_CALL(linestream_next(r->ls, &line, &len));
  if (!line) return LR_OK;
  if (!strncmp(line, "\xEF\xBB\xBF", 3)) line += 3;
  LR_CALL(keep_header(r, line));
  int n_cols = split_sep(line, sep, f, MAX_COLS);
  LR_CHECK(n_cols <= MAX_COLS, LR_ERR_DATA, "%s:1: bad header: %d columns, at most %d supported",
           r->path, n_cols, MAX_COLS);
  for (int c = 0; c < n_cols; c++)
    f[c] = unquote(trim(f[c]));
  LR_CALL(find_columns(r, f, n_cols, 0, name, col));
  r->raw->has_ts = col[3] >= 0;
  LR_CHECK(col[2] >= 0 || r->min_rating <= 0, LR_ERR_CONFIG,
           "%s: min_rating %g given, but data.columns names no rating column", r->path,
           r->min_rating);
  for (;;) {
    LR_CALL(linestream_next(r->ls, &line, &len));
    if (!line) return LR_OK;
    if (is_blank(line) || is_header_again(r, line)) continue;
    int n = split_sep(line, sep, f, MAX_COLS);
    LR_CHECK(n == n_cols, LR_ERR_DATA,
             "%s:%lld: expected %d fields separated by '%s' (as the header), got %d", r->path,
             lineno(r), n_cols, sep == '\t' ? "\\t" : (char[2]){sep, 0}, n);
    for (int k = 0; k < 4; k++)
      if (col[k] >= 0) f[col[k]] = unquote(trim(f[col[k]]));
    LR_CALL(take(r, f[col[0]], f[col[1]], col[2] >= 0 ? f[col[2]] : NULL,
                 col[3] >= 0 ? f[col[3]] : NULL));
  }
}

static int read_csv(reader *r) {
  static const char *const want[4] = {"userId", "movieId", "rating", "timestamp"};
  char *line, *f[5];
  size_t len;
  r->raw->has_ts = 1;
  LR_CALL(linestream_next(r->ls, &line, &len));
  if (!line) return LR_OK; // empty file: reported by the caller
  char shown[81];
  snprintf(shown, sizeof shown, "%s", line);
  LR_CALL(keep_header(r, line));
  int n = split(line, ',', f, 5);
  int ok = n == 4;
  for (int k = 0; ok && k < 4; k++)
    ok = !strcmp(trim(f[k]), want[k]);
  LR_CHECK(ok, LR_ERR_DATA,
           "%s:%lld: bad header: expected 'userId,movieId,rating,timestamp', got '%s'", r->path,
           lineno(r), shown);
  for (;;) {
    LR_CALL(linestream_next(r->ls, &line, &len));
    if (!line) return LR_OK;
    if (is_blank(line) || is_header_again(r, line)) continue;
    n = split(line, ',', f, 5);
    LR_CHECK(n == 4, LR_ERR_DATA,
             "%s:%lld: expected 4 comma-separated fields userId,movieId,rating,timestamp, "
             "got %d",
             r->path, lineno(r), n);
    LR_CALL(take(r, f[0], f[1], f[2], f[3]));
  }
}

// Parse the typed header of a RecBole .inter file: column index of user_id,
// item_id, rating, timestamp (-1 if absent) and the column count.
static int recbole_header(reader *r, char *line, int col[4], int *n_cols) {
  static const char *const names[4] = {"user_id", "item_id", "rating", "timestamp"};
  char *f[MAX_COLS];
  int n = split(line, '\t', f, MAX_COLS);
  LR_CHECK(n <= MAX_COLS, LR_ERR_DATA, "%s:1: bad header: %d columns, at most %d supported",
           r->path, n, MAX_COLS);
  for (int k = 0; k < 4; k++)
    col[k] = -1;
  for (int c = 0; c < n; c++) {
    char *colon = strrchr(f[c], ':');
    LR_CHECK(colon && colon != f[c], LR_ERR_DATA,
             "%s:1: bad header: column %d '%.40s' is not 'name:type' (RecBole header like "
             "user_id:token<TAB>item_id:token<TAB>timestamp:float)",
             r->path, c + 1, f[c]);
    *colon = '\0';
    const char *type = colon + 1;
    int scalar = !strcmp(type, "token") || !strcmp(type, "float");
    int seq = !strcmp(type, "token_seq") || !strcmp(type, "float_seq");
    LR_CHECK(scalar || seq, LR_ERR_DATA,
             "%s:1: bad header: column '%.40s' has unknown type '%.20s' (token, float, "
             "token_seq or float_seq)",
             r->path, f[c], type);
    for (int k = 0; k < 4; k++) {
      if (strcmp(f[c], names[k]) != 0) continue;
      LR_CHECK(col[k] < 0, LR_ERR_DATA, "%s:1: bad header: column '%s' appears twice", r->path,
               names[k]);
      LR_CHECK(scalar, LR_ERR_DATA, "%s:1: bad header: column '%s' must be token or float, not %s",
               r->path, names[k], type);
      col[k] = c;
    }
  }
  LR_CHECK(col[0] >= 0 && col[1] >= 0, LR_ERR_DATA,
           "%s:1: bad header: needs columns user_id and item_id (found %s%s)", r->path,
           col[0] >= 0 ? "user_id" : "", col[1] >= 0 ? "item_id" : "neither");
  *n_cols = n;
  return LR_OK;
}

static int read_recbole(reader *r, const char *spec) {
  char *line, *f[MAX_COLS];
  size_t len;
  int col[4] = {-1, -1, -1, -1}, n_cols = 0;
  LR_CALL(linestream_next(r->ls, &line, &len));
  if (!line) return LR_OK;
  LR_CALL(keep_header(r, line));
  if (spec && spec[0]) {
    char name[4][LR_ID_MAX_BYTES + 1];
    LR_CALL(parse_columns(spec, name));
    n_cols = split(line, '\t', f, MAX_COLS);
    LR_CHECK(n_cols <= MAX_COLS, LR_ERR_DATA, "%s:1: bad header: %d columns, at most %d supported",
             r->path, n_cols, MAX_COLS);
    LR_CALL(find_columns(r, f, n_cols, 1, name, col));
  } else {
    LR_CALL(recbole_header(r, line, col, &n_cols));
  }
  r->raw->has_ts = col[3] >= 0;
  LR_CHECK(col[2] >= 0 || r->min_rating <= 0, LR_ERR_CONFIG,
           "%s: min_rating %g given, but the file has no rating column", r->path, r->min_rating);
  for (;;) {
    LR_CALL(linestream_next(r->ls, &line, &len));
    if (!line) return LR_OK;
    if (is_blank(line) || is_header_again(r, line)) continue;
    int n = split(line, '\t', f, MAX_COLS);
    LR_CHECK(n == n_cols, LR_ERR_DATA,
             "%s:%lld: expected %d tab-separated fields (as the header), got %d", r->path,
             lineno(r), n_cols, n);
    LR_CALL(take(r, f[col[0]], f[col[1]], col[2] >= 0 ? f[col[2]] : NULL,
                 col[3] >= 0 ? f[col[3]] : NULL));
  }
}

static int read_sasrec(reader *r) {
  char *line, *f[3];
  size_t len;
  r->raw->has_ts = 0;
  LR_CHECK(r->min_rating <= 0, LR_ERR_CONFIG,
           "%s: min_rating %g given, but SASRec 'user item' files have no ratings", r->path,
           r->min_rating);
  for (;;) {
    LR_CALL(linestream_next(r->ls, &line, &len));
    if (!line) return LR_OK;
    if (is_blank(line)) continue;
    int n = split_ws(line, f, 3);
    LR_CHECK(n == 2, LR_ERR_DATA, "%s:%lld: expected 2 fields 'user item', got %d", r->path,
             lineno(r), n);
    LR_CALL(take(r, f[0], f[1], NULL, NULL));
  }
}

// ---------------------------------------------------------------------------

int data_read_text_(lr_raw_ *raw, const lr_data_opts *o) {
  memset(raw, 0, sizeof *raw);
  reader r = {.path = o->path, .raw = raw, .min_rating = o->min_rating};
  LR_CALL(linestream_open(&r.ls, o->path));
  int rc;
  switch (o->format) {
  case LR_FMT_MOVIELENS: rc = read_movielens(&r); break;
  case LR_FMT_CSV:
    rc = (o->columns && o->columns[0]) || (o->sep && o->sep != ',')
             ? read_csv_named(&r, o->columns, o->sep)
             : read_csv(&r);
    break;
  case LR_FMT_RECBOLE: rc = read_recbole(&r, o->columns); break;
  case LR_FMT_SASREC: rc = read_sasrec(&r); break;
  default:
    rc = lr_error(LR_ERR_ARG, __FILE__, __LINE__, "%s: format %d is not a text format", o->path,
                  (int)o->format);
  }
  long long last = lineno(&r);
  linestream_close(&r.ls);
  free(r.header);
  if (rc == LR_OK && raw->n == 0) {
    if (r.n_data_lines == 0)
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s:%lld: no interactions: the file %s",
                    o->path, last > 0 ? last : 1,
                    last == 0 ? "is empty"
                    : (o->format == LR_FMT_CSV || o->format == LR_FMT_RECBOLE)
                        ? "has only a header"
                        : "has only blank lines");
    else
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                    "%s:%lld: no interactions left: all %lld ratings are below min_rating %g",
                    o->path, last, (long long)r.n_data_lines, o->min_rating);
  }
  if (rc != LR_OK) {
    lr_error_trace(__FILE__, __LINE__, __func__);
    raw_free_(raw);
  }
  return rc;
}
