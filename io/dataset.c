// dataset.c: data_load (the one entry point of dataset.h that picks a
// source and runs preprocessing), dataset_free and the name tables.
// Not here: parsing (readers.c), preprocessing steps (prep.c), the binary
// file (dataset_bin.c), the generator (synth.c).
#include <math.h>    // isfinite
#include <stdio.h>   // snprintf
#include <stdlib.h>  // malloc, free, qsort
#include <string.h>  // memset, strlen, strcmp
#include <strings.h> // strcasecmp

#include "data_internal.h"
#include "dataset.h"
#include "lr.h"

static const char *const FORMAT_NAMES[LR_FMT_COUNT] = {"movielens", "csv",       "recbole",
                                                       "sasrec",    "synthetic", "binary"};
static const char *const DEDUP_NAMES[3] = {"none", "first", "last"};

const char *data_format_name(lr_data_format f) {
  return (unsigned)f < LR_FMT_COUNT ? FORMAT_NAMES[f] : "unknown";
}

int data_format_parse(const char *name) {
  for (int f = 0; name && f < LR_FMT_COUNT; f++)
    if (!strcasecmp(name, FORMAT_NAMES[f])) return f;
  return -1;
}

const char *data_dedup_name(lr_dedup d) { return (unsigned)d < 3 ? DEDUP_NAMES[d] : "unknown"; }

int data_dedup_parse(const char *name) {
  for (int d = 0; name && d < 3; d++)
    if (!strcasecmp(name, DEDUP_NAMES[d])) return d;
  return -1;
}

void dataset_free(lr_dataset *ds) {
  if (!ds) return;
  lr_free(ds->offsets);
  lr_free(ds->items);
  lr_free(ds->user_orig);
  lr_free(ds->item_orig);
  names_free(&ds->user_names);
  names_free(&ds->item_names);
  memset(ds, 0, sizeof *ds);
}

void names_free(lr_names *t) {
  if (!t) return;
  free(t->off);
  free(t->text);
  memset(t, 0, sizeof *t);
}

int names_build(lr_names *t, const char *const *s, int64_t n) {
  memset(t, 0, sizeof *t);
  size_t bytes = 0;
  for (int64_t k = 0; k < n; k++)
    bytes += strlen(s[k]) + 1;
  t->off = malloc((size_t)(n + 1) * sizeof *t->off);
  t->text = malloc(bytes ? bytes : 1);
  if (!t->off || !t->text) {
    names_free(t);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory for %lld id names",
                    (long long)n);
  }
  int64_t pos = 0;
  for (int64_t k = 0; k < n; k++) {
    size_t len = strlen(s[k]) + 1;
    t->off[k] = pos;
    memcpy(t->text + pos, s[k], len);
    pos += (int64_t)len;
  }
  t->off[n] = pos;
  t->n = n;
  return LR_OK;
}

// The names of one side: the string table when there is one, else the
// numbers orig[first..first+n) in decimal (items: [0] = "").
static int side_names(lr_names *t, const lr_names *str, const int64_t *orig, int64_t n,
                      int items) {
  memset(t, 0, sizeof *t);
  if (str->n) {
    const char **p = malloc((size_t)(str->n ? str->n : 1) * sizeof *p);
    LR_CHECK(p, LR_ERR_NOMEM, "out of memory for %lld id names", (long long)str->n);
    for (int64_t k = 0; k < str->n; k++)
      p[k] = names_get(str, k);
    int rc = names_build(t, p, str->n);
    free(p);
    return rc;
  }
  t->off = malloc((size_t)(n + 1) * sizeof *t->off);
  t->text = malloc((size_t)(n ? n : 1) * 17);
  if (!t->off || !t->text) {
    names_free(t);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory for %lld id names",
                    (long long)n);
  }
  int64_t pos = 0;
  for (int64_t k = 0; k < n; k++) {
    t->off[k] = pos;
    if (items && k == 0)
      t->text[pos++] = '\0';
    else
      pos += snprintf(t->text + pos, 17, "%lld", (long long)orig[k]) + 1;
  }
  t->off[n] = pos;
  t->n = n;
  return LR_OK;
}

int data_id_names(const lr_dataset *ds, lr_names *users, lr_names *items) {
  memset(items, 0, sizeof *items);
  LR_CALL(side_names(users, &ds->user_names, ds->user_orig, ds->n_users, 0));
  int rc = side_names(items, &ds->item_names, ds->item_orig, ds->n_items + 1, 1);
  if (rc != LR_OK) names_free(users);
  return rc;
}

static const lr_names *g_sort_names; // qsort has no context argument

static int by_name(const void *a, const void *b) {
  return strcmp(names_get(g_sort_names, *(const int64_t *)a),
                names_get(g_sort_names, *(const int64_t *)b));
}

int names_index(const lr_names *t, int64_t **order) {
  *order = malloc((size_t)(t->n ? t->n : 1) * sizeof **order);
  LR_CHECK(*order, LR_ERR_NOMEM, "out of memory indexing %lld id names", (long long)t->n);
  for (int64_t k = 0; k < t->n; k++)
    (*order)[k] = k;
  g_sort_names = t;
  qsort(*order, (size_t)t->n, sizeof **order, by_name);
  g_sort_names = NULL;
  return LR_OK;
}

int64_t names_find(const lr_names *t, const int64_t *order, const char *s) {
  int64_t lo = 0, hi = t->n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(names_get(t, order[mid]), s);
    if (c == 0) return order[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

static int load_text(lr_dataset *ds, const lr_data_opts *o) {
  lr_raw_ raw;
  lr_csr_ csr;
  LR_CALL(data_read_text_(&raw, o));
  LR_CALL(prep_group_(&csr, &raw));
  LR_CALL(prep_run_(ds, &csr, o->dedup, o->kcore, o->path));
  return LR_OK;
}

static int load_synthetic(lr_dataset *ds, const lr_data_opts *o) {
  LR_CHECK(o->min_rating <= 0, LR_ERR_CONFIG,
           "synthetic data: min_rating %g given, but synthetic data has no ratings", o->min_rating);
  LR_CALL(data_synthesize(ds, &o->synth));
  if (o->dedup == LR_DEDUP_NONE && o->kcore <= 1) return LR_OK;
  lr_csr_ csr;
  LR_CALL(prep_from_dataset_(&csr, ds));
  LR_CALL(prep_run_(ds, &csr, o->dedup, o->kcore, "synthetic data"));
  return LR_OK;
}

int data_load(lr_dataset *ds, const lr_data_opts *o) {
  memset(ds, 0, sizeof *ds);
  LR_CHECK(o, LR_ERR_ARG, "data_load: no options");
  LR_CHECK((unsigned)o->format < LR_FMT_COUNT, LR_ERR_CONFIG, "data format %d is unknown",
           (int)o->format);
  LR_CHECK((unsigned)o->dedup <= LR_DEDUP_LAST, LR_ERR_CONFIG, "dedup policy %d is unknown",
           (int)o->dedup);
  LR_CHECK(o->kcore >= 0, LR_ERR_CONFIG, "kcore must be >= 0, got %lld", (long long)o->kcore);
  LR_CHECK(isfinite(o->min_rating), LR_ERR_CONFIG, "min_rating must be a finite number");
  if (o->format == LR_FMT_SYNTHETIC) {
    LR_CALL(load_synthetic(ds, o));
    return LR_OK;
  }
  LR_CHECK(o->path && o->path[0], LR_ERR_CONFIG, "data format %s needs a path",
           data_format_name(o->format));
  if (o->format == LR_FMT_BINARY) {
    LR_CALL(data_read_binary(ds, o->path)); // preprocessing was applied by `linrec prep`
    return LR_OK;
  }
  LR_CALL(load_text(ds, o));
  return LR_OK;
}
