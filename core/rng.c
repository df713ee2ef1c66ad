// rng.c: Philox4x32-10, the counter-based generator of rng.h.
#include "rng.h"

#include <math.h> // log, sqrt, cos

lr_rng4 lr_philox(uint64_t seed, uint32_t stream, uint32_t c0, uint32_t c1, uint32_t c2,
                  uint32_t c3) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  const uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  // Key: the seed folded with the stream id, so streams are independent.
  uint32_t k0 = (uint32_t)seed ^ (stream * 0x85EBCA6Bu);
  uint32_t k1 = (uint32_t)(seed >> 32) ^ (stream * 0xC2B2AE35u);
  uint32_t x0 = c0, x1 = c1, x2 = c2, x3 = c3;
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)M0 * x0, p1 = (uint64_t)M1 * x2;
    uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
    uint32_t y1 = (uint32_t)p1;
    uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
    uint32_t y3 = (uint32_t)p0;
    x0 = y0, x1 = y1, x2 = y2, x3 = y3;
    k0 += W0, k1 += W1;
  }
  lr_rng4 r = {{x0, x1, x2, x3}};
  return r;
}

double lr_normal(lr_rng4 r) {
  double u1 = lr_u01d(r.v[0], r.v[1]), u2 = lr_u01d(r.v[2], r.v[3]);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
