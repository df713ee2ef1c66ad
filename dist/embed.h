// embed.h: item-row access for a batch (dist/README.md, "The item table").
// Turns the item ids of a batch into (rows, idx): the rows (U,D) the encoder
// reads and idx (B*N) pointing into them (-1 at padding), and routes the
// rows' gradient back to the table. With the whole table local (one rank or
// dist.item_table=replicated) rows is the table itself and idx the item id.
#ifndef LR_EMBED_H
#define LR_EMBED_H

#include <stdint.h>

#include "itemtab.h"

// idx (n) = ids with 0 (padding) mapped to -1, for a table whose local rows
// start at global row tab->lo = 0. Returns the rows pointer (tab->w).
// Local; cannot fail.
const float *emb_lookup_local(int32_t *idx, const int32_t *ids, int64_t n,
                              const lr_itemtab *tab);

#endif
