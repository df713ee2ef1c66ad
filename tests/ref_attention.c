// ref_attention.c: naive double references for the attention kinds (see
// ref_attention.h). Every weight W_im is computed from its defining formula
// with plain loops; nothing is shared with core/attention.c.
#include "ref_attention.h"

#include <math.h>   // exp, expm1, sqrt, pow, cos, sin
#include <stdlib.h> // calloc, free
#include <string.h> // memset

#include "lr.h" // LR_ASSERT

static double elu(double x) { return x > 0 ? x : expm1(x); }
static double l2(double ss) { return sqrt(ss + (double)LR_ATTN_EPS); }

// Element j of row m of Q (which = 0), K (1) or V (2) of head h, sequence b.
static double at(const double *qkv, int which, int64_t b, int64_t m, int64_t j, int64_t h,
                 int64_t N, int64_t D, int64_t H) {
  return qkv[(b * N + m) * 3 * D + which * D + h * (D / H) + j];
}

// The kinds with a reference, by name.
enum {
  R_SOFTMAX,
  R_LINREC,
  R_LINREC_CODE,
  R_LINREC_CAUSAL,
  R_ELU1,
  R_EFFICIENT,
  R_RELA,
  R_RELA_CAUSAL,
  R_COUNT
};
static const char *const R_NAMES[R_COUNT] = {"softmax", "linrec",    "linrec_code", "linrec_causal",
                                             "elu1",    "efficient", "rela",        "rela_causal"};

// RecGRELA's maps of row t of Q (which = 0) or K (1), the whole width D:
// f = elu(x) + 1 and, rotate != 0, its RoPE rotation: pairs (2p, 2p+1) as
// complex numbers times e^(i t theta_p), theta_p = 10000^(-p/(D/2)) (libm
// per element; D odd: the last feature unrotated). f (D) written.
static void rela_row(double *f, const double *qkv, int which, int64_t b, int64_t t, int64_t N,
                     int64_t D, int rotate) {
  const double *x = qkv + (b * N + t) * 3 * D + which * D;
  for (int64_t j = 0; j < D; j++)
    f[j] = elu(x[j]) + 1;
  if (!rotate) return;
  for (int64_t p = 0; p < D / 2; p++) {
    const double ang = (double)t * pow(10000.0, -(double)p / (double)(D / 2));
    const double a = f[2 * p], c = f[2 * p + 1];
    f[2 * p] = a * cos(ang) - c * sin(ang);
    f[2 * p + 1] = a * sin(ang) + c * cos(ang);
  }
}

// W_im = (qr_i . kr_m) / (sum_{m' in S} qf_i . kf_m' + |S| 1e-6) over head h's
// features, S = 0..n-1 (rela) or 0..i (rela_causal).
static void rela_weights(double *w, const double *qkv, int64_t n, int causal, int64_t b,
                         int64_t h, int64_t i, int64_t N, int64_t D, int64_t H) {
  const int64_t d = D / H, last = causal ? i : n - 1;
  double *f = calloc((size_t)(4 * D), sizeof(double));
  LR_ASSERT(f != NULL);
  double *qf = f, *qr = f + D, *kf = f + 2 * D, *kr = f + 3 * D;
  rela_row(qf, qkv, 0, b, i, N, D, 0);
  rela_row(qr, qkv, 0, b, i, N, D, 1);
  double den = 0;
  for (int64_t m = 0; m <= last; m++) {
    rela_row(kf, qkv, 1, b, m, N, D, 0);
    rela_row(kr, qkv, 1, b, m, N, D, 1);
    double num = 0;
    for (int64_t j = h * d; j < (h + 1) * d; j++) {
      num += qr[j] * kr[j];
      den += qf[j] * kf[j];
    }
    w[m] = num;
  }
  den += (double)(last + 1) * 1e-6;
  for (int64_t m = 0; m <= last; m++)
    w[m] /= den;
  free(f);
}

static int ref_id(const char *kind) {
  for (int i = 0; i < R_COUNT; i++)
    if (!strcmp(kind, R_NAMES[i])) return i;
  return -1;
}

int ref_attn_known(const char *kind) { return ref_id(kind) >= 0; }

void ref_attn_matrix(double *W, const double *qkv, int64_t n, const char *kind_name, int64_t b,
                     int64_t h, int64_t N, int64_t D, int64_t H) {
  const int64_t d = D / H;
  const int kind = ref_id(kind_name);
  LR_ASSERT(kind >= 0 && n >= 0 && n <= N);
#define Q(m, j) at(qkv, 0, b, m, j, h, N, D, H)
#define K(m, j) at(qkv, 1, b, m, j, h, N, D, H)
  memset(W, 0, (size_t)(N * N) * sizeof(double));
  for (int64_t i = 0; i < n; i++) {
    double *w = W + i * N;
    // rho1(phi(q_i)) = phi(q_i) / (sqrt(d) ||phi(q_i)||), used by the LinRec kinds
    double qss = 0;
    for (int64_t j = 0; j < d; j++)
      qss += elu(Q(i, j)) * elu(Q(i, j));
    double qscale = 1.0 / (sqrt((double)d) * l2(qss));
    switch (kind) {
    case R_SOFTMAX: { // softmax_m<=i (q_i.k_m / sqrt(d))
      double mx = -INFINITY, sum = 0;
      for (int64_t m = 0; m <= i; m++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
          s += Q(i, j) * K(m, j);
        w[m] = s / sqrt((double)d);
        if (w[m] > mx) mx = w[m];
      }
      for (int64_t m = 0; m <= i; m++)
        sum += (w[m] = exp(w[m] - mx));
      for (int64_t m = 0; m <= i; m++)
        w[m] /= sum;
      break;
    }
    case R_LINREC: // sum_j rho1(phi(Q))_ij rho2(phi(K))_mj, m < n (Eq. 9)
      for (int64_t j = 0; j < d; j++) {
        double kss = 0;
        for (int64_t m = 0; m < n; m++)
          kss += elu(K(m, j)) * elu(K(m, j));
        double kscale = 1.0 / (sqrt((double)n) * l2(kss));
        for (int64_t m = 0; m < n; m++)
          w[m] += elu(Q(i, j)) * qscale * elu(K(m, j)) * kscale;
      }
      break;
    case R_LINREC_CODE: // rownorm(phi(q_i)) . rownorm(phi(k_m)) / sqrt(d), m < n
      for (int64_t m = 0; m < n; m++) {
        double kss = 0, dot = 0;
        for (int64_t j = 0; j < d; j++)
          kss += elu(K(m, j)) * elu(K(m, j));
        for (int64_t j = 0; j < d; j++)
          dot += elu(Q(i, j)) * elu(K(m, j));
        w[m] = dot * qscale / l2(kss); // qscale already holds 1/(sqrt(d) ||phi(q_i)||)
      }
      break;
    case R_LINREC_CAUSAL: // sum_j rho1(phi(Q))_ij c_ij phi(K)_mj, m <= i
      for (int64_t j = 0; j < d; j++) {
        double kss = 0; // prefix norm over positions 0..i
        for (int64_t m = 0; m <= i; m++)
          kss += elu(K(m, j)) * elu(K(m, j));
        double c = 1.0 / (sqrt((double)(i + 1)) * l2(kss));
        for (int64_t m = 0; m <= i; m++)
          w[m] += elu(Q(i, j)) * qscale * c * elu(K(m, j));
      }
      break;
    case R_ELU1: { // (phi+1)(q_i).(phi+1)(k_m) / (sum_m' ... + 1e-6), m <= i
      double den = 0;
      for (int64_t m = 0; m <= i; m++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++)
          s += (elu(Q(i, j)) + 1) * (elu(K(m, j)) + 1);
        w[m] = s;
        den += s;
      }
      den += (double)LR_ATTN_ELU1_EPS;
      for (int64_t m = 0; m <= i; m++)
        w[m] /= den;
      break;
    }
    case R_EFFICIENT: { // sum_j softmax_j(q_i)_j softmax_m(K_:j)_m, m < n
      double qmx = -INFINITY, qsum = 0;
      for (int64_t j = 0; j < d; j++)
        qmx = Q(i, j) > qmx ? Q(i, j) : qmx;
      for (int64_t j = 0; j < d; j++)
        qsum += exp(Q(i, j) - qmx);
      for (int64_t j = 0; j < d; j++) {
        double kmx = -INFINITY, ksum = 0;
        for (int64_t m = 0; m < n; m++)
          kmx = K(m, j) > kmx ? K(m, j) : kmx;
        for (int64_t m = 0; m < n; m++)
          ksum += exp(K(m, j) - kmx);
        for (int64_t m = 0; m < n; m++)
          w[m] += exp(Q(i, j) - qmx) / qsum * exp(K(m, j) - kmx) / ksum;
      }
      break;
    }
    case R_RELA:
    case R_RELA_CAUSAL:
      rela_weights(w, qkv, n, kind == R_RELA_CAUSAL, b, h, i, N, D, H);
      break;
    default: break; // unreachable: kind checked above
    }
  }
#undef Q
#undef K
}

void ref_attn_forward(double *out, const double *qkv, const int32_t *lens, const char *kind,
                      int64_t B, int64_t N, int64_t D, int64_t H) {
  const int64_t d = D / H;
  double *W = calloc((size_t)(N * N), sizeof(double));
  LR_ASSERT(W != NULL);
  memset(out, 0, (size_t)(B * N * D) * sizeof(double));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      LR_ASSERT(lens[b] >= 0 && lens[b] <= N);
      ref_attn_matrix(W, qkv, lens[b], kind, b, h, N, D, H);
      for (int64_t i = 0; i < lens[b]; i++)
        for (int64_t m = 0; m < lens[b]; m++)
          for (int64_t j = 0; j < d; j++)
            out[(b * N + i) * D + h * d + j] += W[i * N + m] * at(qkv, 2, b, m, j, h, N, D, H);
    }
  free(W);
}
