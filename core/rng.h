// rng.h: counter-based randomness (Philox4x32-10, Salmon et al. SC'11).
//
// There is no generator state: every random number is a pure function of a
// key (the run's seed and a stream id) and a 128-bit counter made from where
// the number is used (epoch, example id, layer, position, element). So a run
// on P ranks draws exactly the numbers a run on 1 rank draws, and a resumed
// run continues the same stream (core/README.md, "Bitwise reproducibility",
// lists every stream and its counters).
#ifndef LR_RNG_H
#define LR_RNG_H

#include <stdint.h>

// Streams: one per use, so two uses never share numbers.
enum {
  LR_STREAM_SHUFFLE = 1,
  LR_STREAM_DROPOUT = 2,
  LR_STREAM_NEGATIVES = 3,
  LR_STREAM_INIT = 4,
  LR_STREAM_SYNTH = 5,
  LR_STREAM_EVAL = 6,
  LR_STREAM_AUGMENT = 7, // Blin's RandomPad (core/blin.h)
};

typedef struct {
  uint32_t v[4];
} lr_rng4;

// Four independent uniform 32-bit words for (seed, stream) and counter c0..c3.
// Cannot fail.
lr_rng4 lr_philox(uint64_t seed, uint32_t stream, uint32_t c0, uint32_t c1, uint32_t c2,
                  uint32_t c3);

// Uniform float in [0, 1) from a 32-bit word (24 random bits). Cannot fail.
static inline float lr_u01(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }
// Uniform double in [0, 1) from two words (53 random bits). Cannot fail.
static inline double lr_u01d(uint32_t hi, uint32_t lo) {
  return (double)(((uint64_t)hi << 21) ^ (lo >> 11)) * (1.0 / 9007199254740992.0);
}
// Uniform integer in [0, n) for n >= 1 (Lemire's multiply; bias < n/2^64).
static inline uint64_t lr_below(uint32_t hi, uint32_t lo, uint64_t n) {
  unsigned __int128 x = ((unsigned __int128)(((uint64_t)hi << 32) | lo)) * n;
  return (uint64_t)(x >> 64);
}

// Standard normal by Box-Muller from the first two words of r. Cannot fail.
double lr_normal(lr_rng4 r);

#endif
