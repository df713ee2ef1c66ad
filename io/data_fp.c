// data_fp.c: data_fingerprint of dataset.h: a dataset's counts and a 64-bit
// hash of its contents. Not a cryptographic hash: it tells apart data that
// differ by accident (another file, another preprocessing, a changed line),
// not data made to collide.
#include <stdio.h>  // snprintf
#include <string.h> // memcpy

#include "dataset.h"

#define FP_MUL 0x9e3779b97f4a7c15ull

// One 64-bit word into the running hash (a bijection of h for a given w).
static uint64_t fp_word(uint64_t h, uint64_t w) {
  h = (h ^ w) * FP_MUL;
  return h ^ (h >> 29);
}

// n bytes into the hash, 8 at a time (the tail zero-padded), then n itself.
static uint64_t fp_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = fp_word(h, w);
  }
  if (i < n) {
    uint64_t w = 0;
    memcpy(&w, b + i, n - i);
    h = fp_word(h, w);
  }
  return fp_word(h, (uint64_t)n);
}

void data_fingerprint(const lr_dataset *ds, lr_data_fp *fp) {
  fp->n_users = ds->n_users;
  fp->n_items = ds->n_items;
  fp->n_inter = ds->n_inter;
  uint64_t h = 0x6c696e7265632d31ull; // "linrec-1"
  h = fp_word(h, (uint64_t)ds->n_users);
  h = fp_word(h, (uint64_t)ds->n_items);
  h = fp_word(h, (uint64_t)ds->n_inter);
  const size_t U = ds->n_users > 0 ? (size_t)ds->n_users : 0;
  const size_t I = ds->n_items > 0 ? (size_t)ds->n_items : 0;
  const size_t N = ds->n_inter > 0 ? (size_t)ds->n_inter : 0;
  if (ds->offsets) h = fp_bytes(h, ds->offsets, (U + 1) * sizeof *ds->offsets);
  if (ds->items) h = fp_bytes(h, ds->items, N * sizeof *ds->items);
  if (ds->user_orig) h = fp_bytes(h, ds->user_orig, U * sizeof *ds->user_orig);
  if (ds->item_orig) h = fp_bytes(h, ds->item_orig, (I + 1) * sizeof *ds->item_orig);
  // string ids (none: the hash of numeric data is what it always was)
  const lr_names *t[2] = {&ds->user_names, &ds->item_names};
  for (int k = 0; k < 2; k++)
    if (t[k]->n) {
      h = fp_word(h, 0x6e616d6573ull + (uint64_t)k); // "names"
      h = fp_bytes(h, t[k]->text, (size_t)t[k]->off[t[k]->n]);
    }
  // final avalanche (splitmix64's)
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
  fp->hash = h ^ (h >> 31);
}

void data_fp_text(const lr_data_fp *fp, char *out, size_t size) {
  snprintf(out, size, "%lld users, %lld items, %lld interactions, content hash %016llx",
           (long long)fp->n_users, (long long)fp->n_items, (long long)fp->n_inter,
           (unsigned long long)fp->hash);
}

int data_fp_equal(const lr_data_fp *a, const lr_data_fp *b) {
  return a->n_users == b->n_users && a->n_items == b->n_items && a->n_inter == b->n_inter &&
         a->hash == b->hash;
}
