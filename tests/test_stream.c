// test_stream.c: a sequence grown an item at a time (core/model.h,
// model_stream_step; recommend --stream) gives, after each item, bitwise the
// final hidden state the evaluation forward gives for the whole prefix
// (model_forward with lens = t+1, dropout off), for every architecture and
// attention kind that can stream: sasrec with linrec_causal (GELU and ReLU
// FFN), recgrela and its three ablations with rela_causal. Sequences of 80
// rows cross two chunk boundaries of the causal kinds (32, 64) and the conv's
// start-up rows; one of 5 rows stays inside the first chunk. The kinds and
// architectures that cannot step say so (model_stream_capable, and
// model_stream_open refuses with a message).
#include <stdlib.h> // calloc, free
#include <string.h> // memcmp

#include "lr.h"    // LR_ERR_ARG, lr_error_msg
#include "model.h" // model_*
#include "test_util.h"

#define NI 23

typedef struct {
  const char *arch, *kind;
  int relu;
  int64_t N, D, H, L;
} stream_case;

static void check(const stream_case *k) {
  const lr_attn_ops *kind = attn_find(k->kind);
  const lr_model_cfg c = {.n_items = NI, .max_len = k->N, .d = k->D, .heads = k->H,
                          .layers = k->L, .inner = 3 * k->D, .dropout = 0.1f, .ln_eps = 1e-12f,
                          .attn = kind, .arch = model_arch_find(k->arch), .drop_path = 0.1f,
                          .ffn_relu = k->relu};
  char name[96];
  snprintf(name, sizeof name, "%s/%s%s N=%lld H=%lld", k->arch, k->kind, k->relu ? " relu" : "",
           (long long)k->N, (long long)k->H);
  lr_model m;
  if (!kind || !c.arch || model_init(&m, &c, 1, 7) != LR_OK) {
    t_check(0, "%s: model_init: %s", name, lr_error_msg());
    return;
  }
  // parameters drawn large on purpose: every op's rounding shows
  t_fill_f(m.params_mem, (int64_t)m.n_params, 11, 0.3f);
  const int64_t N = k->N, D = k->D;
  float *rows = calloc((size_t)((NI + 1) * D), sizeof(float));
  float *st = calloc(model_stream_elems(&m) + 1, sizeof(float));
  float *h = calloc((size_t)D, sizeof(float));
  int32_t *idx = calloc((size_t)N, sizeof(int32_t)), *seq = calloc((size_t)N, sizeof(int32_t));
  if (!rows || !st || !h || !idx || !seq) {
    t_check(0, "%s: out of memory", name);
    goto done;
  }
  t_fill_f(rows + D, NI * D, 13, 1.0f);
  for (int64_t t = 0; t < N; t++)
    seq[t] = 1 + (int32_t)((t * 7 + t / 3) % NI);
  t_check(model_stream_capable(&m), "%s: can stream", name);
  if (model_stream_open(&m) != LR_OK) {
    t_check(0, "%s: model_stream_open: %s", name, lr_error_msg());
    goto done;
  }
  int64_t bad = -1;
  const lr_dropout off = {0};
  for (int64_t t = 0; t < N; t++) {
    model_stream_step(&m, st, rows + (size_t)seq[t] * (size_t)D, t, h);
    for (int64_t i = 0; i < N; i++)
      idx[i] = i <= t ? seq[i] : -1;
    const int32_t len = (int32_t)(t + 1);
    const float *out = model_forward(&m, idx, rows, &len, NULL, 1, off, NULL);
    if (bad < 0 && memcmp(h, out + t * D, (size_t)D * sizeof(float)) != 0) bad = t;
  }
  if (bad < 0)
    t_check(1, "%s: after each of %lld items the stream's hidden state is the prefix forward's, "
               "bitwise", name, (long long)N);
  else
    t_check(0, "%s: the stream's hidden state differs from the prefix forward's at t = %lld",
            name, (long long)bad);
done:
  free(rows), free(st), free(h), free(idx), free(seq);
  model_free(&m);
}

static void refuses(const char *arch, const char *kind_name) {
  const lr_model_cfg c = {.n_items = NI, .max_len = 8, .d = 16, .heads = 2, .layers = 1,
                          .inner = 16, .ln_eps = 1e-12f, .attn = attn_find(kind_name),
                          .arch = model_arch_find(arch)};
  lr_model m;
  if (!c.attn || !c.arch || model_init(&m, &c, 1, 7) != LR_OK) {
    t_check(0, "%s/%s: model_init: %s", arch, kind_name, lr_error_msg());
    return;
  }
  lr_error_clear();
  const int rc = model_stream_open(&m);
  t_check(!model_stream_capable(&m) && model_stream_elems(&m) == 0 && rc == LR_ERR_ARG,
          "%s/%s: cannot stream, and model_stream_open says so (%s)", arch, kind_name,
          rc ? lr_error_msg() : "no error");
  model_free(&m);
}

int main(void) {
  static const stream_case cases[] = {
      {"sasrec", "linrec_causal", 0, 80, 32, 2, 2},
      {"sasrec", "linrec_causal", 1, 80, 32, 4, 2},
      {"sasrec", "linrec_causal", 0, 5, 16, 2, 1},
      {"recgrela", "rela_causal", 0, 80, 32, 4, 2},
      {"recgrela", "rela_causal", 0, 5, 16, 1, 1},
      {"recgrela_nogate", "rela_causal", 0, 80, 32, 2, 2},
      {"recgrela_noconv", "rela_causal", 0, 80, 32, 2, 2},
      {"recgrela_norope", "rela_causal", 0, 80, 32, 2, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check(&cases[i]);
  refuses("sasrec", "softmax");
  refuses("sasrec", "linrec");
  refuses("recgrela", "rela");
  refuses("ram", "linrec_causal");
  return t_done();
}
