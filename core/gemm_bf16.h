// gemm_bf16.h: matrix products with bf16 operands and fp32 accumulation, on
// the AVX512-BF16 dot-product instruction (VDPBF16PS), canonical like the
// fp32 product of gemm.h: the operands are rounded to bf16 (round to
// nearest even; an fp32 denormal becomes a signed zero) and every element
// of C is one chain over the pairs of k in order,
//   acc = 0;  for p = 0 .. ceil(K/2)-1:
//     acc = ftz(ftz(acc + a[2p+1] b[2p+1]) + a[2p] b[2p])   (a, b beyond K are 0)
//   C[i,j] = beta == 0 ? alpha * acc : fma(alpha, acc, beta * C[i,j])
// which is exactly what the instruction does per lane (the bf16 products are
// exact in fp32; each sum is rounded to nearest even and a denormal sum
// flushed to zero; measured on this CPU against lr_sgemm_bf16_ref, bitwise,
// tests/test_gemm_bf16.c). So an element's bits depend on its row, its
// column, K, alpha, beta and C[i,j] only, as with the fp32 product.
#ifndef LR_GEMM_BF16_H
#define LR_GEMM_BF16_H

#include <stdint.h>

// 1 when this CPU has AVX512-BF16 and the build has the kernel, else 0
// (also 0 when the environment sets LINREC_NO_BF16 to anything but "0": the
// tests' CPU without it). Cannot fail.
int lr_bf16_supported(void);

// x rounded to bf16 (nearest even; a denormal gives a signed zero, a NaN a
// quiet NaN), as its 16 bits; and the fp32 value of such bits. Cannot fail.
uint16_t lr_bf16_round(float x);
float lr_bf16_value(uint16_t h);

// C(M,N) = alpha * op(A) op(B) + beta * C, row-major, shapes as lr_sgemm
// (gemm.h), with the operands rounded to bf16 and the chain above.
// lr_sgemm_bf16 needs lr_bf16_supported() (asserted); lr_sgemm_bf16_ref is
// the same product by plain loops (the reference the kernel is tested
// against bitwise; it runs on any CPU). Cannot fail (a packing buffer that
// cannot grow falls back to the reference loops, which give the same bits).
void lr_sgemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                   int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void lr_sgemm_bf16_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);

// This thread's bf16 dot-product rate in GFLOP/s (2 per multiply-add): a
// loop of independent VDPBF16PS for at least `seconds` (the physical limit
// of a core, as lr_sgemm_peak_gflops is for fp32). 0 without AVX512-BF16.
double lr_bf16_peak_gflops(double seconds);
// The same loop of fp32 FMAs (for the ratio of the two limits; 0 where the
// bf16 loop is). Cannot fail.
double lr_fma_peak_gflops(double seconds);

#endif
