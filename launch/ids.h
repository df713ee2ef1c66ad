// ids.h: original user and item ids on the command line and in JSON output
// (recommend, recommend --stream): lookup by original id, printing.
#ifndef LR_IDS_H
#define LR_IDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dataset.h" // lr_names, LR_ID_MAX_BYTES

// s as a JSON string (ids hold no control characters: only " and \ need
// escaping).
void print_json_str(FILE *f, const char *s);
// Name k of t as JSON: a string in quotes when str, else as it is (a
// decimal number).
void print_id(FILE *f, const lr_names *t, int64_t k, int str);
// The id as the maps hold it: a decimal integer without leading zeros
// ("007" is 7), any other string as it is. out has LR_ID_MAX_BYTES+1 bytes.
void canonical_id(const char *s, size_t n, char *out);
// Index of original id s (len bytes) in t (order from names_index), or -1.
int64_t find_id(const lr_names *t, const int64_t *order, const char *s, size_t len);

#endif
