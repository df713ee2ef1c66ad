// gemm_bf16.c: the canonical bf16 product of gemm_bf16.h.
//
//   lr_sgemm_bf16_ref   plain loops emulating one lane of VDPBF16PS (the
//                       reference; also the fallback when packing buffers
//                       cannot grow)
//   AVX512-BF16         8 x 32 register tile (16 accumulators), packed
//                       panels of bf16 pairs
//
// Packing rounds the fp32 operands to bf16 and stores k in pairs: op(B)'s
// panel of NR columns as P x NR 32-bit words (word = b[2p] | b[2p+1] << 16,
// P = ceil(K/2), zero past K and past the valid columns), op(A) as panels of
// MR rows: row-major (MR x P words) when A is stored untransposed, so rows
// convert with plain vector stores, p-major (P x MR) when transposed (pack_a).
// The microkernel holds its tile for the whole K (no partial sum leaves a
// register) and writes the valid rows and columns.
#include "gemm_bf16.h"

#include <float.h>  // FLT_MIN
#include <stdatomic.h> // atomic_load_explicit (lr_bf16_supported)
#include <math.h>   // fabsf, copysignf, fmaf
#include <stdlib.h> // aligned_alloc, free, getenv
#include <string.h> // memcpy, memset, strcmp
#include <time.h>   // clock_gettime

#include "gemm.h" // lr_sgemm
#include "lr.h"
#include "par.h" // lr_par_for, lr_par_threads

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LR_BF16_X86 1
#endif

#define MR 8
#define NR 32
#define BF16_SPLIT_MACS (1 << 21) // products at least this large are split over the team
#define BF16_A_BLOCK_BYTES ((size_t)256 << 10) // op(A) rows per block: this many bytes packed

static inline uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static inline float float_of(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

uint16_t lr_bf16_round(float x) {
  uint32_t u = bits_of(x);
  if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); // zero, denormal: +-0
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); // NaN: quiet
  u += 0x7fffu + ((u >> 16) & 1u); // nearest even; the largest finite values round to inf
  return (uint16_t)(u >> 16);
}

float lr_bf16_value(uint16_t h) { return float_of((uint32_t)h << 16); }

static inline float q(float x) { return lr_bf16_value(lr_bf16_round(x)); }

// ---- the model's products (gemm.h) ------------------------------------------------------

static int g_matmul_bf16;

void lr_set_matmul_bf16(int on) {
  LR_ASSERT(!on || lr_bf16_supported());
  g_matmul_bf16 = on != 0;
}

int lr_matmul_is_bf16(void) { return g_matmul_bf16; }

void lr_matmul(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (g_matmul_bf16) lr_sgemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else lr_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ---- the reference -------------------------------------------------------------------

static inline float ftz(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

// One lane of VDPBF16PS: t + a1 b1, then + a0 b0, each sum rounded once (the
// bf16 products are exact; double holds them and the sum before the one
// rounding to float) and flushed to zero when denormal; a denormal t is 0.
static inline float dp_lane(float t, float a0, float a1, float b0, float b1) {
  t = ftz(t);
  t = ftz((float)((double)t + (double)a1 * (double)b1));
  return ftz((float)((double)t + (double)a0 * (double)b0));
}

static inline float op_a(int ta, const float *A, int64_t lda, int64_t i, int64_t k) {
  return ta ? A[k * lda + i] : A[i * lda + k];
}
static inline float op_b(int tb, const float *B, int64_t ldb, int64_t k, int64_t j) {
  return tb ? B[j * ldb + k] : B[k * ldb + j];
}

void lr_sgemm_bf16_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; k += 2) {
        const int two = k + 1 < K;
        acc = dp_lane(acc, q(op_a(ta, A, lda, i, k)), two ? q(op_a(ta, A, lda, i, k + 1)) : 0.0f,
                      q(op_b(tb, B, ldb, k, j)), two ? q(op_b(tb, B, ldb, k + 1, j)) : 0.0f);
      }
      float *c = C + i * ldc + j;
      *c = beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta * *c);
    }
}

// ---- the AVX512-BF16 kernel ------------------------------------------------------------

#ifdef LR_BF16_X86

// Asked on every product (its assertion): the answer is looked up once.
int lr_bf16_supported(void) {
  static _Atomic int known = -1;
  int v = atomic_load_explicit(&known, memory_order_relaxed);
  if (v >= 0) return v;
  const char *off = getenv("LINREC_NO_BF16"); // tests: act as a CPU without it
  __builtin_cpu_init();
  v = !(off && *off && strcmp(off, "0")) && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bf16");
  atomic_store_explicit(&known, v, memory_order_relaxed);
  return v;
}

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))

// The words of pairs of a run of x contiguous along k (K values, zero past
// K): word p = bf16(x[2p]) | bf16(x[2p+1]) << 16, stored at dst[p * stride].
// The hardware conversion rounds as lr_bf16_round (tests/test_gemm_bf16.c).
BF16_TARGET static void words_along_k(uint32_t *dst, int64_t stride, const float *x, int64_t K) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
                                                          3, 2, 1, 0),
                                         _mm512_set1_epi32((int)stride));
  for (int64_t k = 0; k < K; k += 32) {
    const int64_t n = K - k < 32 ? K - k : 32;
    const __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? (__mmask16)0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + k + 16),
                                                   _mm512_maskz_loadu_ps(m0, x + k));
    const int64_t np = (n + 1) / 2;
    const __mmask16 mw = np >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << np) - 1);
    uint32_t *d = dst + (k / 2) * stride;
    if (stride == 1) _mm512_mask_storeu_epi32(d, mw, w);
    else _mm512_mask_i32scatter_epi32(d, mw, idx, w, 4);
  }
}

// 16 words of the pairs of two runs x0, x1 (x1 NULL: zeros), the lanes of
// mask m loaded (the rest zero): word i = bf16(x0[i]) | bf16(x1[i]) << 16.
BF16_TARGET static inline __m512i pair_words16(const float *x0, const float *x1, __mmask16 m) {
  const __m512i lo =
      _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x0)));
  if (!x1) return lo;
  const __m512i hi =
      _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x1)));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// n consecutive words of the pairs of two runs x0, x1 (x1 NULL: zeros):
// dst[i] = bf16(x0[i]) | bf16(x1[i]) << 16.
BF16_TARGET static void words_of_rows(uint32_t *dst, const float *x0, const float *x1, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t c = n - i < 16 ? n - i : 16;
    const __mmask16 m = c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1);
    _mm512_mask_storeu_epi32(dst + i, m, pair_words16(x0 + i, x1 ? x1 + i : NULL, m));
  }
}

// A panel of nc lines (rows of op(A), columns of op(B)) c0 .. c0+nc-1 of
// width W (nc <= W): word (p, c) at p * W + c, zero past nc. contig: line c
// is contiguous along k in X (row c0+c of X: op(B) transposed); else rows
// k, k+1 of X hold the pair for every line.
static void pack_panel(uint32_t *dst, int64_t W, int contig, const float *X, int64_t ldx,
                       int64_t K, int64_t c0, int64_t nc) {
  const int64_t P = (K + 1) / 2;
  if (nc < W)
    for (int64_t p = 0; p < P; p++)
      memset(dst + p * W + nc, 0, (size_t)(W - nc) * sizeof *dst);
  if (contig)
    for (int64_t c = 0; c < nc; c++)
      words_along_k(dst + c, W, X + (c0 + c) * ldx, K);
  else
    for (int64_t p = 0; p < P; p++)
      words_of_rows(dst + p * W, X + 2 * p * ldx + c0,
                    2 * p + 1 < K ? X + (2 * p + 1) * ldx + c0 : NULL, nc);
}

// op(A)'s panels of rows i0 .. i0+m-1, one per MR rows at dst + r0 * P, rows
// past m zero. Untransposed A (rows contiguous along k): row-major, row r's
// P words at r * P (plain vector stores). Transposed A (row k of A holds
// the k-th value of every row of op(A)): p-major, word (p, r) at p * MR + r,
// each pair of A's rows converted in runs of 16 rows of op(A) (two panels).
BF16_TARGET static void pack_a(uint32_t *dst, int ta, const float *A, int64_t lda, int64_t K,
                               int64_t i0, int64_t m) {
  const int64_t P = (K + 1) / 2, mp = (m + MR - 1) / MR * MR;
  if (!ta) {
    for (int64_t r = 0; r < m; r++) words_along_k(dst + r * P, 1, A + (i0 + r) * lda, K);
    memset(dst + m * P, 0, (size_t)((mp - m) * P) * sizeof *dst);
    return;
  }
  for (int64_t p = 0; p < P; p++) {
    const float *x0 = A + 2 * p * lda + i0, *x1 = 2 * p + 1 < K ? x0 + lda : NULL;
    for (int64_t i = 0; i < mp; i += 16) {
      const int64_t c = m - i <= 0 ? 0 : m - i < 16 ? m - i : 16;
      const __mmask16 mk = c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << c) - 1);
      const __m512i w = pair_words16(x0 + i, x1 ? x1 + i : NULL, mk);
      _mm256_storeu_si256((__m256i *)(dst + i * P + p * MR), _mm512_castsi512_si256(w));
      if (i + MR < mp)
        _mm256_storeu_si256((__m256i *)(dst + (i + MR) * P + p * MR),
                            _mm512_extracti64x4_epi64(w, 1));
    }
  }
}

// The 8 x 32 tile C[0..mr) x [0..nr) = alpha op(A) op(B) + beta C over P
// pairs. op(A)'s panel holds row r's pair p at Ap[r * ars + p * aps]: p-major
// (ars 1, aps MR) or row-major (ars P, aps 1); both as packed by pack_a.
__attribute__((target("avx512f,avx512bf16"), always_inline)) static inline void
kernel_body(const uint32_t *Ap, int64_t ars, int64_t aps, const uint32_t *Bp, int64_t P, float *C,
            int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; r++)
    c0[r] = _mm512_setzero_ps(), c1[r] = _mm512_setzero_ps();
  for (int64_t p = 0; p < P; p++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + p * NR);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(Bp + p * NR + 16);
    const uint32_t *a = Ap + p * aps;
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r * ars]);
      c0[r] = _mm512_dpbf16_ps(c0[r], ar, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], ar, b1);
    }
  }
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t r = 0; r < mr; r++) {
    float *cr = C + r * ldc;
    if (beta == 0.0f) {
      _mm512_mask_storeu_ps(cr, m0, _mm512_mul_ps(va, c0[r]));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_mul_ps(va, c1[r]));
    } else {
      const __m512 o0 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, cr));
      const __m512 o1 = _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16));
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(va, c0[r], o0));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(va, c1[r], o1));
    }
  }
}

// The two panel layouts, each with its strides known to the compiler.
__attribute__((target("avx512f,avx512bf16"))) static void
kernel_pmajor(const uint32_t *Ap, const uint32_t *Bp, int64_t P, float *C, int64_t ldc, int64_t mr,
              int64_t nr, float alpha, float beta) {
  kernel_body(Ap, 1, MR, Bp, P, C, ldc, mr, nr, alpha, beta);
}

__attribute__((target("avx512f,avx512bf16"))) static void
kernel_rmajor(const uint32_t *Ap, const uint32_t *Bp, int64_t P, float *C, int64_t ldc, int64_t mr,
              int64_t nr, float alpha, float beta) {
  kernel_body(Ap, P, 1, Bp, P, C, ldc, mr, nr, alpha, beta);
}

// This thread's packing buffers (grown on first use, kept).
static _Thread_local uint32_t *g_pack;
static _Thread_local size_t g_pack_words;

static uint32_t *pack_buffer(size_t words) {
  if (words <= g_pack_words) return g_pack;
  size_t bytes = (words * sizeof(uint32_t) + 63) & ~(size_t)63;
  uint32_t *p = aligned_alloc(64, bytes);
  if (!p) return NULL;
  free(g_pack);
  g_pack = p, g_pack_words = words;
  return p;
}

static void gemm_rows(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);

// A share of the rows of a product split over the thread team.
typedef struct {
  int ta, tb;
  int64_t N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} rows_job;

static void rows_part(void *ctx, int64_t lo, int64_t hi) {
  const rows_job *j = ctx;
  gemm_rows(j->ta, j->tb, hi - lo, j->N, j->K, j->alpha, j->ta ? j->A + lo : j->A + lo * j->lda,
            j->lda, j->B, j->ldb, j->beta, j->C + lo * j->ldc, j->ldc);
}

void lr_sgemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  LR_ASSERT(M >= 0 && N >= 0 && K >= 0 && ldc >= N);
  LR_ASSERT(lda >= (ta ? M : K) && ldb >= (tb ? K : N));
  LR_ASSERT(lr_bf16_supported());
  if (M == 0 || N == 0) return;
  // large products: rows shared out over the team (each element's chain is
  // the same wherever its row goes, so the bits are too)
  if (lr_par_threads() > 1 && (double)M * (double)N * (double)K >= BF16_SPLIT_MACS) {
    const rows_job j = {ta, tb, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
    lr_par_for(M, MR, rows_part, (void *)&j);
    return;
  }
  gemm_rows(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// lr_sgemm_bf16 on the calling thread.
static void gemm_rows(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
  // op(B) packed whole (its panels stay in L3), op(A) by blocks of mc rows
  // sized for L2; each column panel then meets every row panel of the block
  const int64_t P = (K + 1) / 2, nb = (N + NR - 1) / NR;
  int64_t mc = (int64_t)(BF16_A_BLOCK_BYTES / (4 * (size_t)(P > 0 ? P : 1))) / MR * MR;
  if (mc < MR) mc = MR;
  if (mc > (M + MR - 1) / MR * MR) mc = (M + MR - 1) / MR * MR;
  uint32_t *buf = pack_buffer((size_t)((nb * NR + mc) * (P > 0 ? P : 1)));
  if (!buf || K == 0) { // the same bits, by the loops
    lr_sgemm_bf16_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  uint32_t *Bp = buf, *Ap = buf + nb * NR * P;
  for (int64_t jb = 0; jb < nb; jb++) {
    const int64_t j0 = jb * NR;
    pack_panel(Bp + jb * NR * P, NR, tb, B, ldb, K, j0, N - j0 < NR ? N - j0 : NR);
  }
  for (int64_t i1 = 0; i1 < M; i1 += mc) {
    const int64_t m1 = M - i1 < mc ? M - i1 : mc;
    pack_a(Ap, ta, A, lda, K, i1, m1);
    for (int64_t jb = 0; jb < nb; jb++) {
      const int64_t j0 = jb * NR, nr = N - j0 < NR ? N - j0 : NR;
      for (int64_t r0 = 0; r0 < m1; r0 += MR)
        (ta ? kernel_pmajor : kernel_rmajor)(Ap + r0 * P, Bp + jb * NR * P, P,
                                             C + (i1 + r0) * ldc + j0, ldc,
                                             m1 - r0 < MR ? m1 - r0 : MR, nr, alpha, beta);
    }
  }
}

// A loop of 24 independent accumulators in registers (named, so none is
// spilled) doing OP(acc) per step: fp32 FMAs or bf16 dot products. 24, not
// the 12 that keep the FMA pipes full: the dot product's longer latency needs
// more chains in flight (with 12 it measured 5% below its limit on Zen 5).
#define PEAK_ACCS(X)                                                                               \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)     \
  X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define PEAK_LOOP(name, OP)                                                                        \
  BF16_TARGET static double name(int64_t iters) {                                                \
    const __m512 fa = _mm512_set1_ps(1.0001f), fb = _mm512_set1_ps(0.9999f);                      \
    const __m512bh ba = (__m512bh)_mm512_set1_epi32(0x3f803f80);                                  \
    const __m512bh bb = (__m512bh)_mm512_set1_epi32(0x3c003c00);                                  \
    (void)fa, (void)fb, (void)ba, (void)bb;                                                        \
    PEAK_ACCS(PEAK_DECL)                                                                           \
    for (int64_t i = 0; i < iters; i++) {                                                          \
      PEAK_ACCS(OP)                                                                                \
      PEAK_ACCS(PEAK_KEEP)                                                                         \
    }                                                                                              \
    __m512 s = _mm512_setzero_ps();                                                                \
    PEAK_ACCS(PEAK_SUM)                                                                            \
    return (double)_mm512_reduce_add_ps(s);                                                        \
  }
#define PEAK_SUM(r) s = _mm512_add_ps(s, c##r);
#define PEAK_ONE(r) +1
enum { PEAK_CHAINS = 0 PEAK_ACCS(PEAK_ONE) }; // instructions per step
#define PEAK_DECL(r) __m512 c##r = _mm512_setzero_ps();
#define PEAK_KEEP(r) __asm__ volatile("" : "+v"(c##r));
#define PEAK_DP(r) c##r = _mm512_dpbf16_ps(c##r, ba, bb);
#define PEAK_FMA(r) c##r = _mm512_fmadd_ps(fa, fb, c##r);
PEAK_LOOP(peak_run_bf16, PEAK_DP)
PEAK_LOOP(peak_run_fma, PEAK_FMA)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Flops per second of `run` (PEAK_CHAINS instructions of `flops` each per step).
static double peak_of(double (*run)(int64_t), double flops, double seconds) {
  volatile double sink = run(1000);
  int64_t iters = 1 << 20, done = 0;
  const double t0 = now();
  double t;
  do {
    sink += run(iters);
    done += iters;
  } while ((t = now() - t0) < seconds);
  (void)sink;
  return (double)done * PEAK_CHAINS * flops / t * 1e-9;
}

double lr_bf16_peak_gflops(double seconds) {
  if (!lr_bf16_supported()) return 0.0;
  return peak_of(peak_run_bf16, 64.0, seconds); // 16 lanes x 2 multiply-adds x 2 flops
}

double lr_fma_peak_gflops(double seconds) {
  if (!lr_bf16_supported()) return 0.0;
  return peak_of(peak_run_fma, 32.0, seconds); // 16 lanes x 2 flops
}

#else // not x86-64: no kernel

int lr_bf16_supported(void) { return 0; }

void lr_sgemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  LR_ASSERT(lr_bf16_supported());
  (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
  (void)ldb, (void)beta, (void)C, (void)ldc;
}

double lr_bf16_peak_gflops(double seconds) {
  (void)seconds;
  return 0.0;
}

double lr_fma_peak_gflops(double seconds) {
  (void)seconds;
  return 0.0;
}

#endif
