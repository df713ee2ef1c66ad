// test_gemm_bf16.c: the bf16 product of core/gemm_bf16.h.
//   (a) rounding to bf16: nearest even (ties both ways), signed zeros for
//       denormals, quiet NaNs, infinities and overflow;
//   (b) the reference against the exact (double) product of the fp32
//       operands within the bound derived for bf16 operands and an fp32 sum:
//       |err| <= (2u + u^2 + g_K (1 + u)^2) sum_k |a_k b_k|, u = 2^-8 (bf16's
//       unit roundoff), g_K = K 2^-24 / (1 - K 2^-24);
//   (c) on a CPU with AVX512-BF16, the kernel against the reference bitwise
//       (so the reference is what the instruction does): shapes with odd K,
//       partial register tiles, transposes (both layouts of op(A)'s panels,
//       over one and two row blocks), alpha and beta, data spanning
//       many binades with denormal products and sums; and per element the
//       same bits whatever M and N around it (canonical) and whatever the
//       threads sharing its rows.
// Without AVX512-BF16 (c) is skipped with a message.
#include <math.h>   // fabs, ldexp
#include <stdlib.h> // calloc, free
#include <string.h> // memcmp, memcpy

#include "gemm.h"      // lr_set_threads
#include "gemm_bf16.h"
#include "test_util.h"

static uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

static void test_round(void) {
  const struct {
    uint32_t in;
    uint16_t out;
  } cases[] = {
      {0x3f800000u, 0x3f80}, // 1
      {0x3f808000u, 0x3f80}, // a tie to even (down)
      {0x3f818000u, 0x3f82}, // a tie to even (up)
      {0x3f808001u, 0x3f81}, // above the tie
      {0x3f807fffu, 0x3f80}, // below the tie
      {0x80000001u, 0x8000}, // a denormal: -0
      {0x007fffffu, 0x0000}, // the largest denormal: +0
      {0x7f800000u, 0x7f80}, // inf
      {0x7f7fffffu, 0x7f80}, // the largest float rounds to inf
      {0xff800000u, 0xff80}, // -inf
  };
  int ok = 1;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    ok &= lr_bf16_round(from_bits(cases[i].in)) == cases[i].out;
  const uint16_t nan = lr_bf16_round(from_bits(0x7f800001u)); // a signalling NaN
  ok &= (nan & 0x7f80) == 0x7f80 && (nan & 0x0040) && isnan(lr_bf16_value(nan));
  t_check(ok, "bf16 rounding: nearest even, denormals to signed zeros, NaN quiet, overflow to inf");
}

// Data spanning binades: uniform in [-1, 1) times 2^e, e in [-lo, hi].
static void fill(float *x, int64_t n, uint64_t seed, int lo, int hi) {
  t_fill_f(x, n, seed, 1.0f);
  float *e = calloc((size_t)n, sizeof *e);
  if (!e) return;
  t_fill_f(e, n, seed + 1, 1.0f);
  for (int64_t i = 0; i < n; i++)
    x[i] = ldexpf(x[i], (int)((e[i] * 0.5f + 0.5f) * (float)(lo + hi)) - lo);
  free(e);
}

typedef struct {
  int ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  int lo, hi; // binades of the data
} shape;

static const shape SHAPES[] = {
    {0, 0, 1, 1, 1, 1.0f, 0.0f, 2, 2},       {0, 0, 7, 33, 5, 1.0f, 0.0f, 2, 2},
    {0, 1, 13, 40, 64, 0.7f, 1.0f, 3, 3},    {1, 0, 9, 31, 63, 1.0f, 0.5f, 3, 3},
    {1, 1, 17, 48, 2, 1.0f, 1.0f, 3, 3},     {0, 0, 64, 256, 64, 1.0f, 0.0f, 4, 4},
    {0, 1, 200, 64, 256, 1.0f, 1.0f, 4, 4},  {1, 0, 64, 192, 200, 1.0f, 0.0f, 4, 4},
    {0, 0, 16, 32, 40, 1.0f, 0.0f, 70, 10},  // tiny values: denormal products and sums
    // op(A) in two row blocks (the second partial), both layouts of its panels
    {1, 0, 1500, 24, 91, 1.0f, 0.0f, 3, 3},  {0, 1, 1500, 40, 91, 1.0f, 1.0f, 3, 3},
};

static void test_shape(const shape *s, int have) {
  const int64_t M = s->M, N = s->N, K = s->K;
  const int64_t la = s->ta ? M : K, lb = s->tb ? K : N;
  const int64_t na = s->ta ? K * M : M * K, nb = s->tb ? N * K : K * N;
  float *A = calloc((size_t)na, 4), *B = calloc((size_t)nb, 4), *C0 = calloc((size_t)(M * N), 4);
  float *C1 = calloc((size_t)(M * N), 4), *C2 = calloc((size_t)(M * N), 4);
  if (!A || !B || !C0 || !C1 || !C2) {
    t_check(0, "out of memory");
    goto done;
  }
  fill(A, na, 3 + (uint64_t)M, s->lo, s->hi);
  fill(B, nb, 5 + (uint64_t)N, s->lo, s->hi);
  t_fill_f(C0, M * N, 9, 1.0f);
  memcpy(C1, C0, (size_t)(M * N) * 4);
  memcpy(C2, C0, (size_t)(M * N) * 4);
  lr_sgemm_bf16_ref(s->ta, s->tb, M, N, K, s->alpha, A, la, B, lb, s->beta, C1, N);
  // (b) the bound (beta 0 only: the product itself)
  if (s->beta == 0.0f && s->lo < 10) {
    const double u = ldexp(1.0, -8), e = ldexp(1.0, -24), g = (double)K * e / (1 - (double)K * e);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double exact = 0, mag = 0;
        for (int64_t k = 0; k < K; k++) {
          const double a = s->ta ? A[k * la + i] : A[i * la + k];
          const double b = s->tb ? B[j * lb + k] : B[k * lb + j];
          exact += a * b, mag += fabs(a * b);
        }
        const double bound = (2 * u + u * u + g * (1 + u) * (1 + u)) * mag * fabs(s->alpha);
        const double err = fabs((double)C1[i * N + j] - s->alpha * exact);
        if (bound > 0 && err / bound > worst) worst = err / bound;
      }
    t_check(worst <= 1.0, "ref %lldx%lldx%lld: within the bf16 bound (worst error %.3f of it)",
            (long long)M, (long long)N, (long long)K, worst);
  }
  if (have) { // (c)
    lr_sgemm_bf16(s->ta, s->tb, M, N, K, s->alpha, A, la, B, lb, s->beta, C2, N);
    int64_t diff = 0;
    for (int64_t i = 0; i < M * N; i++)
      diff += bits(C1[i]) != bits(C2[i]);
    t_check(diff == 0, "kernel %lldx%lldx%lld ta=%d tb=%d alpha=%g beta=%g: the reference, "
                       "bitwise (%lld elements differ)",
            (long long)M, (long long)N, (long long)K, s->ta, s->tb, s->alpha, s->beta,
            (long long)diff);
  }
done:
  free(A), free(B), free(C0), free(C1), free(C2);
}

// (c) canonical: row 3 and column 5 of a product alone give the full product's bits.
static void test_canonical(void) {
  const int64_t M = 37, N = 70, K = 45;
  float *A = calloc((size_t)(M * K), 4), *B = calloc((size_t)(K * N), 4);
  float *C = calloc((size_t)(M * N), 4), *r = calloc((size_t)N, 4), *c = calloc((size_t)M, 4);
  if (!A || !B || !C || !r || !c) {
    t_check(0, "out of memory");
    goto done;
  }
  fill(A, M * K, 21, 3, 3);
  fill(B, K * N, 22, 3, 3);
  lr_sgemm_bf16(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
  lr_sgemm_bf16(0, 0, 1, N, K, 1.0f, A + 3 * K, K, B, N, 0.0f, r, N);
  lr_sgemm_bf16(0, 0, M, 1, K, 1.0f, A, K, B + 5, N, 0.0f, c, 1);
  int ok = memcmp(r, C + 3 * N, (size_t)N * 4) == 0;
  for (int64_t i = 0; i < M; i++)
    ok &= bits(c[i]) == bits(C[i * N + 5]);
  t_check(ok, "kernel: a row or a column alone gives the full product's bits (canonical)");
done:
  free(A), free(B), free(C), free(r), free(c);
}

// (c) threads: a product split over a team of 3 gives the one-thread bits.
static void test_threads(void) {
  const int64_t M = 301, N = 96, K = 130;
  float *A = calloc((size_t)(M * K), 4), *B = calloc((size_t)(N * K), 4);
  float *C1 = calloc((size_t)(M * N), 4), *C3 = calloc((size_t)(M * N), 4);
  if (!A || !B || !C1 || !C3) {
    t_check(0, "out of memory");
    goto done;
  }
  fill(A, M * K, 31, 3, 3);
  fill(B, N * K, 32, 3, 3);
  lr_sgemm_bf16(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N);
  int ok = lr_set_threads(3) == 0;
  lr_sgemm_bf16(0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C3, N);
  ok &= lr_set_threads(1) == 0;
  t_check(ok && memcmp(C1, C3, (size_t)(M * N) * 4) == 0,
          "kernel: %lldx%lldx%lld split over 3 threads = 1 thread, bitwise", (long long)M,
          (long long)N, (long long)K);
done:
  free(A), free(B), free(C1), free(C3);
}

int main(void) {
  test_round();
  const int have = lr_bf16_supported();
  if (!have) printf("no AVX512-BF16 on this CPU: the kernel checks are skipped\n");
  for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
    test_shape(&SHAPES[i], have);
  if (have) {
    test_canonical();
    test_threads();
    printf("bf16 dot-product peak of this core: %.1f GFLOP/s\n", lr_bf16_peak_gflops(0.2));
  }
  return t_done();
}
