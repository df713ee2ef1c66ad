// dataset.c: data_load (the one entry point of dataset.h that picks a
// source and runs preprocessing), dataset_free and the name tables.
// Not here: parsing (readers.c), preprocessing steps (prep.c), the binary
// file (dataset_bin.c), the generator (synth.c).
#include <math.h>    // isfinite
#include <string.h>  // memset
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
  memset(ds, 0, sizeof *ds);
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
