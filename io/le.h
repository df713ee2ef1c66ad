// le.h: the little-endian codec of every binary format linrec writes
// (checkpoint shards, binary datasets, model files, the loop-state block of
// a checkpoint's dense arrays) and of the tests that build or damage them:
// fixed-width integers and IEEE floats stored at p[0..width) with the least
// significant byte first, whatever the host's byte order. Unaligned p is fine.
//
// Not here: whole float arrays (the formats store those by memcpy; the
// checkpoint code refuses to build on a big-endian target), checksums.
#ifndef LR_LE_H
#define LR_LE_H

#include <stdint.h> // uint32_t, uint64_t
#include <string.h> // memcpy (float <-> bits)

// p[0..4) := v, least significant byte first. Cannot fail.
static inline void le_put_u32(unsigned char *p, uint32_t v) {
  for (int k = 0; k < 4; k++)
    p[k] = (unsigned char)(v >> (8 * k));
}

// p[0..8) := v, least significant byte first. Cannot fail.
static inline void le_put_u64(unsigned char *p, uint64_t v) {
  for (int k = 0; k < 8; k++)
    p[k] = (unsigned char)(v >> (8 * k));
}

// The value le_put_u32 stored at p. Cannot fail.
static inline uint32_t le_get_u32(const unsigned char *p) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++)
    v |= (uint32_t)p[k] << (8 * k);
  return v;
}

// The value le_put_u64 stored at p. Cannot fail.
static inline uint64_t le_get_u64(const unsigned char *p) {
  uint64_t v = 0;
  for (int k = 0; k < 8; k++)
    v |= (uint64_t)p[k] << (8 * k);
  return v;
}

// The float whose IEEE-754 bits le_put_u32 stored at p. Cannot fail.
static inline float le_get_f32(const unsigned char *p) {
  uint32_t u = le_get_u32(p);
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// p[0..8) := the IEEE-754 bits of d, as le_put_u64. Cannot fail.
static inline void le_put_f64(unsigned char *p, double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  le_put_u64(p, u);
}

// The double le_put_f64 stored at p. Cannot fail.
static inline double le_get_f64(const unsigned char *p) {
  uint64_t u = le_get_u64(p);
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

#endif
