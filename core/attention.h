// attention.h: the attention kinds (`model.attention`) as units. Each kind is
// one file core/attn_<name>.c that defines an lr_attn_ops table (its name,
// whether it is causal, its per-sequence cache and scratch, its own
// parameters if any, its forward and backward in float and double, its
// FLOP count) and one line in the registry (attention.c). The config's
// choices, --help, the README list and the FLOP table all come from the
// registry. Adding a kind touches its file, the registry line and its tests;
// a test or an extension can also register a kind at run time.
//
// Per sequence and head h, Q, K, V are the columns h*Dh..(h+1)*Dh of the
// fused projection x (N,3D): Q at column 0, K at D, V at 2D (Dh = D/H).
// Sequences are right-padded: rows t >= n are padding; they never contribute
// keys or values, their outputs are written 0 (so their gradient is 0 too)
// and padded rows of x are never read. Every L2 norm a kind takes is
// sqrt(sum x^2 + LR_ATTN_EPS), so a zero row or column is safe.
#ifndef LR_ATTENTION_H
#define LR_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#define LR_ATTN_EPS 1e-12f
// elu1: the additive constant of the denominator (Katharopoulos et al.).
#define LR_ATTN_ELU1_EPS 1e-6f
// Causal linear kinds (linrec_causal, elu1) run in chunks of this many
// positions: a masked GEMM inside a chunk plus a carried Dh x Dh state.
#define LR_ATTN_CHUNK 32

// One sequence, n valid rows of N, hidden D, H heads:
//   fwd  out (N,D) rows 0..n-1 = attention of x (N,3D); cache: the kind's
//        per-sequence cache (cache_elems), written for bwd; prm: its own
//        parameters (param_elems; NULL when it has none); scratch:
//        scratch_elems, overwritten.
//   bwd  dx (N,3D) rows 0..n-1 += gradient of <dout, out> w.r.t. x; dprm
//        (param_elems) += w.r.t. prm. Reads what fwd cached.
typedef void (*lr_attn_fwd)(float *out, float *cache, const float *x, const float *prm,
                            int64_t n, int64_t N, int64_t D, int64_t H, float *scratch);
typedef void (*lr_attn_bwd)(float *dx, float *dprm, const float *dout, const float *x,
                            const float *prm, const float *cache, int64_t n, int64_t N, int64_t D,
                            int64_t H, float *scratch);
typedef void (*lr_attn_fwd_f64)(double *out, double *cache, const double *x, const double *prm,
                                int64_t n, int64_t N, int64_t D, int64_t H, double *scratch);
typedef void (*lr_attn_bwd_f64)(double *dx, double *dprm, const double *dout, const double *x,
                                const double *prm, const double *cache, int64_t n, int64_t N,
                                int64_t D, int64_t H, double *scratch);

// The same with a per-position key mask km (N; see lr_attn_ops.fwd_km).
typedef void (*lr_attn_fwd_km)(float *out, float *cache, const float *x, const float *prm,
                               const uint8_t *km, int64_t n, int64_t N, int64_t D, int64_t H,
                               float *scratch);
typedef void (*lr_attn_bwd_km)(float *dx, float *dprm, const float *dout, const float *x,
                               const float *prm, const uint8_t *km, const float *cache, int64_t n,
                               int64_t N, int64_t D, int64_t H, float *scratch);
typedef void (*lr_attn_fwd_km_f64)(double *out, double *cache, const double *x, const double *prm,
                                   const uint8_t *km, int64_t n, int64_t N, int64_t D, int64_t H,
                                   double *scratch);
typedef void (*lr_attn_bwd_km_f64)(double *dx, double *dprm, const double *dout, const double *x,
                                   const double *prm, const uint8_t *km, const double *cache,
                                   int64_t n, int64_t N, int64_t D, int64_t H, double *scratch);

typedef struct {
  const char *name;    // the config value
  const char *formula; // one line, for --help and the README
  int causal;          // output at row t depends only on rows <= t
  // Elements (floats or doubles) of one sequence's cache and of one
  // thread's scratch; of the kind's own parameters per layer (NULL: none).
  size_t (*cache_elems)(int64_t N, int64_t D, int64_t H);
  size_t (*scratch_elems)(int64_t N, int64_t D, int64_t H);
  size_t (*param_elems)(int64_t D, int64_t H);
  // Initial values of the own parameters of layer `layer` (NULL: zeros);
  // counter-based randomness only (rng.h, keyed by seed and layer).
  void (*param_init)(float *prm, int64_t D, int64_t H, int64_t layer, uint64_t seed);
  lr_attn_fwd fwd;
  lr_attn_bwd bwd;
  lr_attn_fwd_f64 fwd_f64;
  lr_attn_bwd_f64 bwd_f64;
  // Multiply-adds of one forward of a sequence of N real rows (backward is
  // counted as twice that by the model's FLOP formula).
  double (*flops)(int64_t N, int64_t D, int64_t H);
  // Optional (NULL: the kind takes no key mask): fwd and bwd honouring a
  // per-position key mask km (N bytes; km[t] = 0 makes row t a masked key:
  // it gives no key and no value to any output, its own output row is still
  // computed as a query). km NULL means every valid row is a key, exactly
  // fwd/bwd. A masked call to a kind without these is a bug (asserted).
  lr_attn_fwd_km fwd_km;
  lr_attn_bwd_km bwd_km;
  lr_attn_fwd_km_f64 fwd_km_f64;
  lr_attn_bwd_km_f64 bwd_km_f64;
  // Optional (NULL: the kind cannot stream; recommend --stream re-encodes
  // the window instead): a causal kind one row at a time, with the carried
  // state of one sequence (step_elems floats, zeroed = empty) and a
  // workspace (step_ws_elems floats for sequences up to N rows, set once by
  // step_ws_init when not NULL, otherwise scratch). step: out (D) = row t of
  // fwd's output for the sequence whose rows 0..t-1 went through st, given
  // row t of x (3D); updates st. Bitwise fwd's row t (tests/test_stream.c).
  size_t (*step_elems)(int64_t D, int64_t H);
  size_t (*step_ws_elems)(int64_t N, int64_t D, int64_t H);
  void (*step_ws_init)(float *ws, int64_t N, int64_t D, int64_t H);
  void (*step)(float *out, float *st, float *ws, const float *x, const float *prm, int64_t t,
               int64_t D, int64_t H);
} lr_attn_ops;

// ---- the registry ------------------------------------------------------------------------
// Kinds in registration order: the built-in ones (attention.c's table), then
// any registered at run time. Ids are indices in that order. Local; cannot
// fail.
int attn_count(void);
const lr_attn_ops *attn_get(int id);          // NULL outside 0..count-1
const lr_attn_ops *attn_find(const char *name); // NULL if unknown
int attn_id(const lr_attn_ops *ops);          // -1 if not registered
// The kinds' names in id order (for the config's choices). Cannot fail.
const char *const *attn_names(void);
// Add a kind (tests, extensions): its id, or LR_ERR_ARG (a name in use, a
// missing function, the registry full; message set). Not thread safe; call
// before any config is parsed.
int attn_register(const lr_attn_ops *ops);

// ---- running a kind over a batch ------------------------------------------------------------
// Elements of the cache of B sequences and of one thread's scratch; of the
// kind's own parameters of one layer (0 when it has none). Cannot fail.
size_t attn_cache_elems(const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H);
size_t attn_scratch_elems(const lr_attn_ops *k, int64_t N, int64_t D, int64_t H);
size_t attn_param_elems(const lr_attn_ops *k, int64_t D, int64_t H);

// out (B,N,D) = the heads' outputs concatenated (head h at columns h*Dh..),
// padded rows 0. qkv (B,N,3D); lens (B) valid rows (0 <= lens <= N); prm the
// kind's parameters (NULL if none). scratch: parts x attn_scratch_elems; with
// parts >= lr_par_threads() the sequences are shared out over the thread team
// (core/par.h), each range on its own scratch copy; the result is bitwise the
// same for any split.
void attn_forward(float *out, float *cache, const float *qkv, const int32_t *lens,
                  const lr_attn_ops *k, const float *prm, int64_t B, int64_t N, int64_t D,
                  int64_t H, float *scratch, int64_t parts);
// dqkv (B,N,3D) += gradient of <dout, out> w.r.t. qkv; dprm += w.r.t. prm
// (the sequences in order; with parts > 1 dprm must be NULL: kinds with
// parameters run through the model's lanes, which stage them per sequence).
void attn_backward(float *dqkv, float *dprm, const float *dout, const float *qkv,
                   const float *prm, const float *cache, const int32_t *lens,
                   const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H,
                   float *scratch, int64_t parts);

// The same for sequences b0..b1-1 of the B only (qkv and the cache laid out
// for B; out, dqkv and dout start at sequence b0's rows), on the calling
// thread with `scratch` (one copy). For callers that share a batch out
// themselves (the model's lanes); bitwise as above.
void attn_forward_range(float *out, float *cache, const float *qkv, const int32_t *lens,
                        const lr_attn_ops *k, const float *prm, int64_t B, int64_t b0, int64_t b1,
                        int64_t N, int64_t D, int64_t H, float *scratch);
void attn_backward_range(float *dqkv, float *dprm, const float *dout, const float *qkv,
                         const float *prm, const float *cache, const int32_t *lens,
                         const lr_attn_ops *k, int64_t B, int64_t b0, int64_t b1, int64_t N,
                         int64_t D, int64_t H, float *scratch);

// The range forms with a key mask km (B,N) (km[b*N+t] = 0: row t of
// sequence b is a masked key; NULL: none, exactly the calls above). The kind
// must have fwd_km/bwd_km when km is not NULL (asserted).
void attn_forward_range_km(float *out, float *cache, const float *qkv, const int32_t *lens,
                           const uint8_t *km, const lr_attn_ops *k, const float *prm, int64_t B,
                           int64_t b0, int64_t b1, int64_t N, int64_t D, int64_t H,
                           float *scratch);
void attn_backward_range_km(float *dqkv, float *dprm, const float *dout, const float *qkv,
                            const float *prm, const float *cache, const int32_t *lens,
                            const uint8_t *km, const lr_attn_ops *k, int64_t B, int64_t b0,
                            int64_t b1, int64_t N, int64_t D, int64_t H, float *scratch);

// Double-precision twins for the gradient tests: the same kernels and
// contracts, every count in doubles.
void attn_forward_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                      const lr_attn_ops *k, const double *prm, int64_t B, int64_t N, int64_t D,
                      int64_t H, double *scratch);
void attn_backward_f64(double *dqkv, double *dprm, const double *dout, const double *qkv,
                       const double *prm, const double *cache, const int32_t *lens,
                       const lr_attn_ops *k, int64_t B, int64_t N, int64_t D, int64_t H,
                       double *scratch);
// ... and with a key mask km (B,N) as above (NULL: none).
void attn_forward_km_f64(double *out, double *cache, const double *qkv, const int32_t *lens,
                         const uint8_t *km, const lr_attn_ops *k, const double *prm, int64_t B,
                         int64_t N, int64_t D, int64_t H, double *scratch);
void attn_backward_km_f64(double *dqkv, double *dprm, const double *dout, const double *qkv,
                          const double *prm, const double *cache, const int32_t *lens,
                          const uint8_t *km, const lr_attn_ops *k, int64_t B, int64_t N,
                          int64_t D, int64_t H, double *scratch);

#endif
