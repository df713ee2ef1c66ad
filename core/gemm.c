// gemm.c: the canonical single-precision GEMM of gemm.h.
//
// Every element of C is computed as one fused multiply-add chain in k order,
//   acc = 0;  for k = 0 .. K-1: acc = fma(op(A)[i,k], op(B)[k,j], acc)
//   C[i,j] = beta == 0 ? alpha * acc : fma(alpha, acc, beta * C[i,j])
// so its bits depend on row i of op(A), column j of op(B), K, alpha, beta
// and C[i,j] only: not on M or N, on where the row or column sits in the
// call, on blocking, alignment or threads. That is what makes a sequence's
// forward and backward independent of the sequences it shares a call with,
// and so training bitwise the same at any number of ranks, micro-batch and
// thread count (OpenBLAS's kernels give a row other bits depending on how
// many rows share the call). Every path below computes exactly this chain:
//
//   gemm_ref      plain loops with fmaf (the reference, and the path for
//                 tiny products and when the packing buffers cannot grow)
//   AVX-512       12 x 32 register tile (24 accumulators), packed panels
//   AVX2 + FMA    6 x 16 register tile (12 accumulators), packed panels
//
// The packed paths follow the BLIS layout: op(B) is packed into panels of
// NR columns (K x NR, k-major, zero-padded), op(A) into panels of MR rows
// (K x MR, k-major, zero-padded); the microkernel holds an MR x NR tile in
// registers for the whole K (K is never split, so no partial sum leaves a
// register) and writes only the valid rows and columns. Padding rows and
// columns are zeros and never reach a valid element.
//
// Large products are cut into row or column blocks over the thread team
// (core/par.h); each thread packs into its own buffers (thread-local, grown
// on first use and kept).
#include "gemm.h"

#include <cblas.h>  // cblas_dgemm (the double twin), openblas_set_num_threads
#include <limits.h> // INT_MAX
#include <math.h>   // fmaf
#include <stdlib.h> // aligned_alloc, free
#include <string.h> // memcpy, memset
#include <time.h>   // clock_gettime

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h> // AVX-512 / AVX2 intrinsics
#define LR_GEMM_X86 1 // both kernels are built; an ISA-pinned build uses one (hence "unused")
#endif

#include "lr.h"
#include "par.h" // lr_par_for, lr_par_threads

// Products of at least this many multiply-adds are split over the thread
// team, in blocks of rows or columns that are multiples of GEMM_SPLIT_ALIGN.
#define GEMM_SPLIT_MACS (1 << 21)
#define GEMM_SPLIT_ALIGN 48 // a multiple of both kernels' MR and NR
// Below this many multiply-adds the reference loops are as fast as packing.
#define GEMM_SMALL_MACS 512
// Packed blocks: op(A) rows per block so the block stays in L2, op(B)
// columns per block so the block stays in (a share of) L3.
#define GEMM_A_BLOCK_BYTES ((size_t)384 << 10)
#define GEMM_B_BLOCK_BYTES ((size_t)2 << 20)

// Declared by OpenBLAS's cblas.h; repeated here for clarity of what we use.
extern void openblas_set_num_threads(int);

// ---- the reference -------------------------------------------------------------------

static inline float op_a(int ta, const float *A, int64_t lda, int64_t i, int64_t k) {
  return ta ? A[k * lda + i] : A[i * lda + k];
}
static inline float op_b(int tb, const float *B, int64_t ldb, int64_t k, int64_t j) {
  return tb ? B[j * ldb + k] : B[k * ldb + j];
}

void lr_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; k++) acc = fmaf(op_a(ta, A, lda, i, k), op_b(tb, B, ldb, k, j), acc);
      float *c = C + i * ldc + j;
      *c = beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta * *c);
    }
}

// ---- packing ------------------------------------------------------------------------

// Transposing copies go through blocks of PACK_KB values of k, so the
// destination's cache lines stay in L1 while the MR or NR source rows are
// read.
#define PACK_KB 16

// ap (K, MR) = rows i0 .. i0+mr-1 of op(A), zero rows up to MR.
static void pack_a(float *ap, int ta, const float *A, int64_t lda, int64_t i0, int64_t mr,
                   int64_t K, int64_t MR) {
  if (ta) {
    for (int64_t k = 0; k < K; k++) {
      memcpy(ap + k * MR, A + k * lda + i0, (size_t)mr * sizeof(float));
      for (int64_t r = mr; r < MR; r++) ap[k * MR + r] = 0.0f;
    }
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += PACK_KB) {
    const int64_t kn = K - k0 < PACK_KB ? K - k0 : PACK_KB;
    for (int64_t r = 0; r < MR; r++) {
      const float *a = A + (i0 + r) * lda + k0;
      float *d = ap + k0 * MR + r;
      if (r < mr)
        for (int64_t k = 0; k < kn; k++) d[k * MR] = a[k];
      else
        for (int64_t k = 0; k < kn; k++) d[k * MR] = 0.0f;
    }
  }
}

// bp (K, NR) = columns j0 .. j0+nr-1 of op(B), zero columns up to NR.
static void pack_b(float *bp, int tb, const float *B, int64_t ldb, int64_t j0, int64_t nr,
                   int64_t K, int64_t NR) {
  if (!tb) {
    for (int64_t k = 0; k < K; k++) {
      memcpy(bp + k * NR, B + k * ldb + j0, (size_t)nr * sizeof(float));
      for (int64_t c = nr; c < NR; c++) bp[k * NR + c] = 0.0f;
    }
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += PACK_KB) {
    const int64_t kn = K - k0 < PACK_KB ? K - k0 : PACK_KB;
    for (int64_t c = 0; c < NR; c++) {
      const float *b = B + (j0 + c) * ldb + k0;
      float *d = bp + k0 * NR + c;
      if (c < nr)
        for (int64_t k = 0; k < kn; k++) d[k * NR] = b[k];
      else
        for (int64_t k = 0; k < kn; k++) d[k * NR] = 0.0f;
    }
  }
}

// ---- microkernels -------------------------------------------------------------------
// kern(K, ap, bp, c, ldc, mr, nr, alpha, beta): the (mr <= MR, nr <= NR) tile
// at c from the packed panels ap (K, MR) and bp (K, NR).
typedef void (*gemm_kernel)(int64_t K, const float *ap, const float *bp, float *c, int64_t ldc,
                            int64_t mr, int64_t nr, float alpha, float beta);

#ifdef LR_GEMM_X86

#define K512_MR 12
#define K512_NR 32

// Lanes 0 .. n-1 of 16 (n <= 0: none).
static inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

// The lanes m of C's row segment at cr = alpha x + beta cr (beta 0: cr not
// read): the canonical epilogue of every AVX-512 kernel.
__attribute__((target("avx512f"), always_inline, unused)) static inline void
store16(float *cr, __mmask16 m, __m512 x, float alpha, float beta) {
  if (beta == 0.0f) {
    if (alpha != 1.0f) x = _mm512_mul_ps(_mm512_set1_ps(alpha), x);
  } else {
    x = _mm512_fmadd_ps(_mm512_set1_ps(alpha), x,
                        _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, cr)));
  }
  _mm512_mask_storeu_ps(cr, m, x);
}

__attribute__((target("avx512f"), unused)) static void kern_avx512(int64_t K, const float *ap,
                                                            const float *bp, float *c, int64_t ldc,
                                                            int64_t mr, int64_t nr, float alpha,
                                                            float beta) {
  __m512 acc[K512_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < K512_MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    const __m512 b0 = _mm512_load_ps(bp + k * K512_NR), b1 = _mm512_load_ps(bp + k * K512_NR + 16);
    const float *a = ap + k * K512_MR;
#pragma GCC unroll 12
    for (int r = 0; r < K512_MR; r++) {
      const __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  // Through memory once, so the loop above indexes acc by constants only
  // (a variable index below would keep acc on the stack inside the loop).
  float tile[K512_MR][K512_NR] __attribute__((aligned(64)));
#pragma GCC unroll 12
  for (int r = 0; r < K512_MR; r++) {
    _mm512_store_ps(tile[r], acc[r][0]);
    _mm512_store_ps(tile[r] + 16, acc[r][1]);
  }
  for (int64_t r = 0; r < mr; r++) {
    store16(c + r * ldc, mask16(nr), _mm512_load_ps(tile[r]), alpha, beta);
    if (nr > 16)
      store16(c + r * ldc + 16, mask16(nr - 16), _mm512_load_ps(tile[r] + 16), alpha, beta);
  }
}

// ---- transposing packs through registers ------------------------------------------
// pack_a of untransposed A and pack_b of transposed B copy lines (rows of
// A, rows of B) that run along k into k-major panels: a transpose. With
// AVX-512 it goes 16 lines x 16 values at a time through registers instead
// of element by element (the scalar copy was most of the time of the
// loss's logits, whose op(B) is a tile of item rows). A copy: the same bits.

// t[i] = element i of the 16 vectors t[0..16): after the two unpack stages
// u[4g + c] holds, in its 128-bit lane L, element 4L + c of vectors
// 4g .. 4g+3; the lane shuffles then gather the four lanes of an element.
__attribute__((target("avx512f"), always_inline, unused)) static inline void
transpose16(__m512i t[16]) {
  __m512i u[16];
#pragma GCC unroll 4
  for (int g = 0; g < 16; g += 4) {
    const __m512i a0 = _mm512_unpacklo_epi32(t[g], t[g + 1]);
    const __m512i a1 = _mm512_unpackhi_epi32(t[g], t[g + 1]);
    const __m512i a2 = _mm512_unpacklo_epi32(t[g + 2], t[g + 3]);
    const __m512i a3 = _mm512_unpackhi_epi32(t[g + 2], t[g + 3]);
    u[g] = _mm512_unpacklo_epi64(a0, a2), u[g + 1] = _mm512_unpackhi_epi64(a0, a2);
    u[g + 2] = _mm512_unpacklo_epi64(a1, a3), u[g + 3] = _mm512_unpackhi_epi64(a1, a3);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) {
    const __m512i v = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88); // lanes 0, 2 of each
    const __m512i w = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd); // lanes 1, 3 of each
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i w2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
    t[c] = _mm512_shuffle_i32x4(v, v2, 0x88);
    t[4 + c] = _mm512_shuffle_i32x4(w, w2, 0x88);
    t[8 + c] = _mm512_shuffle_i32x4(v, v2, 0xdd);
    t[12 + c] = _mm512_shuffle_i32x4(w, w2, 0xdd);
  }
}

// dst (K, W) = lines c0 .. c0+nc-1 of X (line c at X + c * ldx, K values
// along k) as columns, zero columns from nc up to W (W = MR or NR).
__attribute__((target("avx512f"), unused)) static void
pack_lines(float *dst, int64_t W, const float *X, int64_t ldx, int64_t c0, int64_t nc, int64_t K) {
  for (int64_t g = 0; g < W; g += 16) {
    const int64_t valid = nc - g;
    const __mmask16 ms = mask16(W - g);
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const __mmask16 mk = mask16(K - k0);
      __m512i t[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        t[i] = i < valid
                   ? _mm512_castps_si512(_mm512_maskz_loadu_ps(mk, X + (c0 + g + i) * ldx + k0))
                   : _mm512_setzero_si512();
      transpose16(t);
      const int64_t nk = K - k0 < 16 ? K - k0 : 16;
      for (int64_t q = 0; q < nk; q++)
        _mm512_mask_storeu_ps(dst + (k0 + q) * W + g, ms, _mm512_castsi512_ps(t[q]));
    }
  }
}

// The narrow kernels: a product whose op(B) is at most 16 or 32 columns
// (the attention's per-head products: (n,d) x (d,d) and (d,n) x (n,d) with
// d = D / heads) spends more time packing op(A) and padding op(B) to 32
// columns than multiplying. Here op(A) is not packed: its elements are
// broadcast from where they are (row r's k-th at A + r * ars + k * aks), and
// op(B) is read in place, row k at B + k * ldb masked to the nr valid
// columns (untransposed, or a K x 32 panel of the transposed one). Rows go
// NARROW_ROWS(NV) at a time with NV accumulators each (8 or 12 chains): the
// same chain per element as kern_avx512, so the same bits.
#define NARROW_ROWS(NV) ((NV) == 1 ? 8 : 6)

// Rows 0 .. mr-1 (mr <= NARROW_ROWS(NV)) of C; rows past mr repeat row
// mr-1's reads (never a row of op(A) past the product's) and are not stored.
__attribute__((target("avx512f"), always_inline, unused)) static inline void
narrow_rows(const int NV, int64_t K, const float *A, int64_t ars, int64_t aks, const float *B,
            int64_t ldb, float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
  enum { RMAX = 8 };
  const int R = NARROW_ROWS(NV);
  const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
  const float *a[RMAX];
  __m512 acc[RMAX][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    a[r] = A + (r < mr ? r : mr - 1) * ars;
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; k++) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
    const __m512 b1 = NV == 2 ? _mm512_maskz_loadu_ps(m1, B + k * ldb + 16) : b0;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m512 av = _mm512_set1_ps(a[r][k * aks]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      if (NV == 2) acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    if (r >= mr) break;
    store16(c + r * ldc, m0, acc[r][0], alpha, beta);
    if (NV == 2) store16(c + r * ldc + 16, m1, acc[r][1], alpha, beta);
  }
}

// All M rows of a narrow product of nr <= 16 * NV columns.
#define NARROW_KERNEL(NAME, NV)                                                                   \
  __attribute__((target("avx512f"), unused)) static void NAME(                                  \
      int64_t M, int64_t K, const float *A, int64_t ars, int64_t aks, const float *B,              \
      int64_t ldb, float *C, int64_t ldc, int64_t nr, float alpha, float beta) {                  \
    for (int64_t i = 0; i < M; i += NARROW_ROWS(NV))                                             \
      narrow_rows(NV, K, A + i * ars, ars, aks, B, ldb, C + i * ldc, ldc,                        \
                  M - i < NARROW_ROWS(NV) ? M - i : NARROW_ROWS(NV), nr, alpha, beta);           \
  }
NARROW_KERNEL(narrow16, 1)
NARROW_KERNEL(narrow32, 2)

#define K256_MR 6
#define K256_NR 16

__attribute__((target("avx2,fma"), unused)) static void kern_avx2(int64_t K, const float *ap,
                                                           const float *bp, float *c, int64_t ldc,
                                                           int64_t mr, int64_t nr, float alpha,
                                                           float beta) {
  __m256 acc[K256_MR][2];
#pragma GCC unroll 6
  for (int r = 0; r < K256_MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    const __m256 b0 = _mm256_load_ps(bp + k * K256_NR), b1 = _mm256_load_ps(bp + k * K256_NR + 8);
    const float *a = ap + k * K256_MR;
#pragma GCC unroll 6
    for (int r = 0; r < K256_MR; r++) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  float tile[K256_MR][K256_NR] __attribute__((aligned(32))); // see kern_avx512
#pragma GCC unroll 6
  for (int r = 0; r < K256_MR; r++) {
    _mm256_store_ps(tile[r], acc[r][0]);
    _mm256_store_ps(tile[r] + 8, acc[r][1]);
  }
  // Lane masks for the column tail: lane l of half h is valid iff 8h + l < nr.
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lanes);
  const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lanes);
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int64_t r = 0; r < mr; r++) {
    float *cr = c + r * ldc;
    __m256 x0 = _mm256_load_ps(tile[r]), x1 = _mm256_load_ps(tile[r] + 8);
    if (beta == 0.0f) {
      if (alpha != 1.0f) x0 = _mm256_mul_ps(va, x0), x1 = _mm256_mul_ps(va, x1);
    } else {
      x0 = _mm256_fmadd_ps(va, x0, _mm256_mul_ps(vb, _mm256_maskload_ps(cr, m0)));
      if (nr > 8) x1 = _mm256_fmadd_ps(va, x1, _mm256_mul_ps(vb, _mm256_maskload_ps(cr + 8, m1)));
    }
    _mm256_maskstore_ps(cr, m0, x0);
    if (nr > 8) _mm256_maskstore_ps(cr + 8, m1, x1);
  }
}

#endif // LR_GEMM_X86

// lines(dst, W, X, ldx, c0, nc, K): the transposing pack (see pack_lines).
typedef void (*gemm_lines)(float *dst, int64_t W, const float *X, int64_t ldx, int64_t c0,
                           int64_t nc, int64_t K);

typedef struct {
  gemm_kernel kern; // NULL: the reference only
  int64_t MR, NR;
  const char *name;
  gemm_lines lines; // NULL: pack_a / pack_b copy element by element
} gemm_isa;

// The kernel this process uses: the widest the CPU (or, with LR_NO_CLONES,
// the build's target) has. Cannot fail.
static const gemm_isa *isa(void) {
  static gemm_isa chosen;
  static int done;
  if (done) return &chosen;
  chosen = (gemm_isa){NULL, 1, 1, "reference", NULL};
#ifdef LR_GEMM_X86
#ifdef LR_NO_CLONES
#if defined(__AVX512F__)
  chosen = (gemm_isa){kern_avx512, K512_MR, K512_NR, "avx512", pack_lines};
#elif defined(__AVX2__) && defined(__FMA__)
  chosen = (gemm_isa){kern_avx2, K256_MR, K256_NR, "avx2", NULL};
#endif
#else
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    chosen = (gemm_isa){kern_avx512, K512_MR, K512_NR, "avx512", pack_lines};
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    chosen = (gemm_isa){kern_avx2, K256_MR, K256_NR, "avx2", NULL};
#endif
#endif
  done = 1; // a benign race: every thread computes the same value
  return &chosen;
}

const char *lr_sgemm_kernel_name(void) { return isa()->name; }

// ---- the packed path ----------------------------------------------------------------

// This thread's packing buffer, at least n floats, 64-byte aligned; NULL if
// it cannot grow (the caller then takes the reference path).
static float *pack_buffer(size_t n) {
  static _Thread_local float *buf;
  static _Thread_local size_t cap;
  if (n <= cap) return buf;
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
  if (!p) return NULL;
  free(buf);
  buf = p;
  cap = n;
  return buf;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The product through the packed panels of f; returns 0 if the buffers
// cannot grow (nothing written), 1 when done.
static int gemm_packed(const gemm_isa *f, int ta, int tb, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                       float beta, float *C, int64_t ldc) {
  const int64_t MR = f->MR, NR = f->NR;
  int64_t mc = (int64_t)(GEMM_A_BLOCK_BYTES / ((size_t)K * sizeof(float))) / MR * MR;
  int64_t nc = (int64_t)(GEMM_B_BLOCK_BYTES / ((size_t)K * sizeof(float))) / NR * NR;
  mc = mc < MR ? MR : mc > round_up(M, MR) ? round_up(M, MR) : mc;
  nc = nc < NR ? NR : nc > round_up(N, NR) ? round_up(N, NR) : nc;
  float *bpack = pack_buffer((size_t)(mc + nc) * (size_t)K);
  if (!bpack) return 0;
  float *apack = bpack + nc * K;
  for (int64_t jc = 0; jc < N; jc += nc) {
    const int64_t nb = N - jc < nc ? N - jc : nc;
    for (int64_t p = 0; p < nb; p += NR) {
      const int64_t nr = nb - p < NR ? nb - p : NR;
      if (tb && f->lines) f->lines(bpack + p * K, NR, B, ldb, jc + p, nr, K);
      else pack_b(bpack + p * K, tb, B, ldb, jc + p, nr, K, NR);
    }
    for (int64_t ic = 0; ic < M; ic += mc) {
      const int64_t mb = M - ic < mc ? M - ic : mc;
      for (int64_t q = 0; q < mb; q += MR) {
        const int64_t mr = mb - q < MR ? mb - q : MR;
        if (!ta && f->lines) f->lines(apack + q * K, MR, A, lda, ic + q, mr, K);
        else pack_a(apack + q * K, ta, A, lda, ic + q, mr, K, MR);
      }
      for (int64_t p = 0; p < nb; p += NR)
        for (int64_t q = 0; q < mb; q += MR)
          f->kern(K, apack + q * K, bpack + p * K, C + (ic + q) * ldc + jc + p, ldc,
                  mb - q < MR ? mb - q : MR, nb - p < NR ? nb - p : NR, alpha, beta);
    }
  }
  return 1;
}

// The product through a narrow kernel when op(B) has at most 32 columns and
// the CPU has AVX-512; returns 0 when it does not apply (nothing written).
// Transposed op(A) is read K times a row block, so only while its K cache
// lines stay in L1/L2.
static int gemm_narrow(const gemm_isa *f, int ta, int tb, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                       float beta, float *C, int64_t ldc) {
#ifdef LR_GEMM_X86
  if (f->kern != kern_avx512 || N > 32 || (ta && K > 2048)) return 0;
  if (tb) { // op(B) into one K x 32 panel
    float *bp = pack_buffer((size_t)K * 32);
    if (!bp) return 0;
    if (f->lines) f->lines(bp, 32, B, ldb, 0, N, K);
    else pack_b(bp, tb, B, ldb, 0, N, K, 32);
    B = bp, ldb = 32;
  }
  const int64_t ars = ta ? 1 : lda, aks = ta ? lda : 1;
  (N <= 16 ? narrow16 : narrow32)(M, K, A, ars, aks, B, ldb, C, ldc, N, alpha, beta);
  return 1;
#else
  (void)f, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
  (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
  return 0;
#endif
}

// One product (or a row / column block of one) on this thread.
static void gemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
  const gemm_isa *f = isa();
  if (f->kern && K > 0 && (double)M * (double)N * (double)K >= GEMM_SMALL_MACS &&
      (gemm_narrow(f, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) ||
       gemm_packed(f, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)))
    return;
  lr_sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// One GEMM cut into row (M) or column (N) blocks over the thread team.
typedef struct {
  int ta, tb, by_rows;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
  const float *A, *B;
  float *C;
} gemm_job;

static void gemm_part(void *vj, int64_t lo, int64_t hi) {
  const gemm_job *j = vj;
  if (j->by_rows) // C rows lo..hi: rows lo..hi of op(A)
    gemm_serial(j->ta, j->tb, hi - lo, j->N, j->K, j->alpha, j->A + (j->ta ? lo : lo * j->lda),
                j->lda, j->B, j->ldb, j->beta, j->C + lo * j->ldc, j->ldc);
  else // C columns lo..hi: columns lo..hi of op(B)
    gemm_serial(j->ta, j->tb, j->M, hi - lo, j->K, j->alpha, j->A, j->lda,
                j->B + (j->tb ? lo * j->ldb : lo), j->ldb, j->beta, j->C + lo, j->ldc);
}

void lr_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  LR_ASSERT(M >= 0 && N >= 0 && K >= 0);
  LR_ASSERT(lda >= (ta ? (M > 0 ? M : 1) : (K > 0 ? K : 1)));
  LR_ASSERT(ldb >= (tb ? (K > 0 ? K : 1) : (N > 0 ? N : 1)));
  LR_ASSERT(ldc >= (N > 0 ? N : 1));
  if (M == 0 || N == 0) return;
  gemm_job j = {ta, tb, M >= N, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  // Large products go over the thread team; small ones, and those made
  // inside a parallel range, run here.
  if (lr_par_threads() > 1 && (double)M * (double)N * (double)K >= GEMM_SPLIT_MACS)
    lr_par_for(j.by_rows ? M : N, GEMM_SPLIT_ALIGN, gemm_part, &j);
  else
    gemm_part(&j, 0, j.by_rows ? M : N);
}

void lr_sgemm_batched(int64_t batch, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      float alpha, const float *A, int64_t lda, int64_t sA, const float *B,
                      int64_t ldb, int64_t sB, float beta, float *C, int64_t ldc, int64_t sC) {
  for (int64_t i = 0; i < batch; i++)
    lr_sgemm(ta, tb, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

// ---- double (tests) -----------------------------------------------------------------

void lr_dgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, double alpha, const double *A,
              int64_t lda, const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
  LR_ASSERT(M >= 0 && N >= 0 && K >= 0);
  LR_ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
  LR_ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
  LR_ASSERT(lda >= (ta ? (M > 0 ? M : 1) : (K > 0 ? K : 1)));
  LR_ASSERT(ldb >= (tb ? (K > 0 ? K : 1) : (N > 0 ? N : 1)));
  LR_ASSERT(ldc >= (N > 0 ? N : 1));
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0 ? 0.0 : beta * C[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

// ---- peak ---------------------------------------------------------------------------

// Square (n,n) products repeated for at least `seconds` through gemm (after
// one untimed product): GFLOP/s, or -1 out of memory.
static double peak_of(void (*gemm)(int, int, int64_t, int64_t, int64_t, float, const float *,
                                   int64_t, const float *, int64_t, float, float *, int64_t),
                      int64_t n, double seconds) {
  size_t nn = (size_t)(n * n);
  float *a = lr_calloc(nn, sizeof(float), "sgemm peak A");
  float *b = lr_calloc(nn, sizeof(float), "sgemm peak B");
  float *c = lr_calloc(nn, sizeof(float), "sgemm peak C");
  double rate = -1;
  if (a && b && c) {
    for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.01f, b[i] = (float)(i % 5) * 0.01f;
    gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double el = 0;
    int64_t reps = 0;
    do {
      gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
      reps++;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    } while (el < seconds);
    rate = 2.0 * (double)n * (double)n * (double)n * (double)reps / el / 1e9;
  }
  lr_free(a);
  lr_free(b);
  lr_free(c);
  return rate;
}

double lr_sgemm_peak_gflops(int64_t n, double seconds) { return peak_of(lr_sgemm, n, seconds); }

// OpenBLAS's sgemm over the same thread team, for comparison.
static void blas_part(void *vj, int64_t lo, int64_t hi) {
  const gemm_job *j = vj;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(hi - lo), (int)j->N, (int)j->K,
              j->alpha, j->A + lo * j->lda, (int)j->lda, j->B, (int)j->ldb, j->beta,
              j->C + lo * j->ldc, (int)j->ldc);
}

static void blas_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
  LR_ASSERT(!ta && !tb && M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
  gemm_job j = {0, 0, 1, M, N, K, lda, ldb, ldc, alpha, beta, A, B, C};
  lr_par_for(M, GEMM_SPLIT_ALIGN, blas_part, &j);
}

double lr_blas_sgemm_peak_gflops(int64_t n, double seconds) { return peak_of(blas_gemm, n, seconds); }

int lr_set_threads(int n) {
  if (n < 1) n = 1;
  openblas_set_num_threads(1);
  return lr_par_set_threads(n);
}
