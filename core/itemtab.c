// itemtab.c: allocation and initialisation of the item table arena.
#include "itemtab.h"

#include <string.h> // memset

#include "lr.h"
#include "model.h" // model_init_item_rows

void itemtab_free(lr_itemtab *t) {
  lr_free(t->w);
  lr_free(t->g);
  lr_free(t->m);
  lr_free(t->v);
  lr_free(t->gx);
  memset(t, 0, sizeof *t);
}

int itemtab_init(lr_itemtab *t, int64_t lo, int64_t hi, int64_t D, uint64_t seed) {
  memset(t, 0, sizeof *t);
  LR_CHECK(lo >= 0 && hi >= lo && D > 0, LR_ERR_ARG, "item table: bad row range [%lld, %lld)",
           (long long)lo, (long long)hi);
  t->lo = lo, t->hi = hi, t->D = D;
  size_t n = (size_t)(hi - lo) * (size_t)D;
  t->w = lr_calloc(n, sizeof(float), "item table");
  t->g = lr_calloc(n, sizeof(float), "item table gradient");
  t->m = lr_calloc(n, sizeof(float), "item table Adam m");
  t->v = lr_calloc(n, sizeof(float), "item table Adam v");
  t->gx = lr_calloc(n, sizeof(lr_xs), "item table exact gradient");
  if (!t->w || !t->g || !t->m || !t->v || !t->gx) {
    itemtab_free(t);
    lr_error_trace(__FILE__, __LINE__, __func__);
    return LR_ERR_NOMEM;
  }
  model_init_item_rows(t->w, lo, hi, D, seed);
  return LR_OK;
}
