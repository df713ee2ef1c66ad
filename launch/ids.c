// ids.c: see ids.h.
#include "ids.h"

#include <string.h> // memcpy

void print_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

void print_id(FILE *f, const lr_names *t, int64_t k, int str) {
  if (str) print_json_str(f, names_get(t, k));
  else fputs(names_get(t, k), f);
}

void canonical_id(const char *s, size_t n, char *out) {
  size_t k = 0;
  int digits = n > 0;
  for (size_t j = 0; j < n; j++) digits &= s[j] >= '0' && s[j] <= '9';
  if (digits) while (k + 1 < n && s[k] == '0') k++;
  n -= k;
  if (n > LR_ID_MAX_BYTES) n = LR_ID_MAX_BYTES;
  memcpy(out, s + k, n);
  out[n] = '\0';
}

int64_t find_id(const lr_names *t, const int64_t *order, const char *s, size_t len) {
  char id[LR_ID_MAX_BYTES + 1];
  if (len == 0 || len > LR_ID_MAX_BYTES) return -1;
  canonical_id(s, len, id);
  return names_find(t, order, id);
}
