// itemtab.h: the item embedding table as its own arena, outside the model's
// dense one (core/README.md, "The model"): weights, gradient and Adam moments
// of the global rows [lo, hi) this process owns.
// A single process owns every row (lo = 0, hi = I+1); dist/ gives each rank a
// contiguous range. Row 0 (padding) stays zero: it never receives gradient.
#ifndef LR_ITEMTAB_H
#define LR_ITEMTAB_H

#include <stdint.h>

#include "xsum.h"

typedef struct {
  int64_t lo, hi, D;    // global rows lo..hi-1, D features
  float *w, *g, *m, *v; // ((hi-lo), D) each; g: the float gradient the optimizer reads
  lr_xs *gx;            // ((hi-lo), D) the gradient as summed, exactly (xsum.h)
} lr_itemtab;

// Allocate and initialise rows lo..hi-1 (model_init_item_rows: keyed by global
// row id, so every partition gives the same values). LR_ERR_NOMEM on failure
// (t zeroed).
int itemtab_init(lr_itemtab *t, int64_t lo, int64_t hi, int64_t D, uint64_t seed);
// Free; accepts a zeroed struct.
void itemtab_free(lr_itemtab *t);
// Local row count. Cannot fail.
static inline int64_t itemtab_rows(const lr_itemtab *t) { return t->hi - t->lo; }

#endif
