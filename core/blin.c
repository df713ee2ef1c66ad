// blin.c: RandomPad (blin.h; Blin Eq. 4). The convolution is in attn_blin.c.
#include "blin.h"

#include "lr.h"  // LR_ASSERT
#include "rng.h" // lr_philox, lr_below

int32_t blin_randompad_alpha(int64_t len, int64_t N, uint64_t seed, uint64_t epoch,
                             uint64_t example, uint32_t view) {
  if (len <= 0 || len >= N) return 0;
  const int64_t amax = N / len; // >= 1
  const lr_rng4 r = lr_philox(seed, LR_STREAM_AUGMENT, (uint32_t)example, (uint32_t)(example >> 32),
                              (uint32_t)epoch, view);
  return (int32_t)(1 + lr_below(r.v[0], r.v[1], (uint64_t)amax));
}

int64_t blin_randompad(int32_t *out, uint8_t *km, int32_t *alpha, const int32_t *s, int64_t len,
                       int64_t N, uint64_t seed, uint64_t epoch, uint64_t example, uint32_t view) {
  LR_ASSERT(len >= 0 && N >= 1);
  const int32_t a = blin_randompad_alpha(len, N, seed, epoch, example, view);
  if (alpha) *alpha = a;
  // The full padded sequence [S 0 S 0 ... S]: (a+1) copies, a delimiters;
  // keep its last n positions. Full position q is a delimiter when
  // q mod (len+1) = len, else item s[q mod (len+1)].
  const int64_t full = (int64_t)(a + 1) * len + a, n = full < N ? full : N;
  for (int64_t p = 0; p < n; p++) {
    const int64_t q = full - n + p, r = q % (len + 1);
    out[p] = r == len ? 0 : s[r];
    km[p] = r != len;
  }
  return n;
}
