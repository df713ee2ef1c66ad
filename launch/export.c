// export.c: `linrec export --model M --out DIR` (launch/README.md): a model
// file's weights as NumPy .npy files and its id maps as text, so that a
// Python user loads a trained model with numpy alone (README.md, "Exporting
// a model"). Local: no MPI collective, rank 0's work only.
//
// DIR/
//   config.json        the config the model was trained with
//   items.npy          (I, d) float32: row r is the item on line r of items.txt
//   items.txt          the original item ids, one a line (internal item r+1)
//   users.npy          (U, width) float32, when the model has a "users" group
//   users.txt          the original user ids, one a line (internal user r)
//   <group>.npy        any other row group of the architecture, by its name
//   dense/<tensor>.npy the encoder's tensors by name: (elems,) or, for a
//                      per-layer tensor, (layers, elems/layers); empty
//                      tensors (attn_p of a kind without parameters) are left out
// The score of item r for a hidden state h (`recommend --hidden`) is
// h . items[r]: the final layer's scores.
#include "export.h"

#include <errno.h>    // errno
#include <stdio.h>    // FILE, fopen, fwrite
#include <stdlib.h>   // free
#include <string.h>   // strcmp, strlen, strerror
#include <sys/stat.h> // mkdir

#include "config.h"
#include "dataset.h" // lr_names
#include "lr.h"
#include "modelfile.h" // modelfile_read_config, modelfile_read, modelfile_read_ids
#include "state.h"     // state_dense_tensors

static int mkdir_p(const char *dir) {
  if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
    struct stat st;
    LR_CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), LR_ERR_IO, "%s: not a directory", dir);
    return LR_OK;
  }
  return lr_error(LR_ERR_IO, __FILE__, __LINE__, "mkdir %s: %s", dir, strerror(errno));
}

static int write_all(FILE *f, const void *p, size_t n, const char *path) {
  LR_CHECK(fwrite(p, 1, n, f) == n, LR_ERR_IO, "write %s: %s", path, strerror(errno));
  return LR_OK;
}

static int close_checked(FILE *f, int rc, const char *path) {
  if (fclose(f) != 0 && rc == LR_OK)
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "close %s: %s", path, strerror(errno));
  return rc;
}

int export_npy(const char *path, const float *x, int64_t rows, int64_t cols) {
  char hdr[256];
  int n = cols >= 0 ? snprintf(hdr, sizeof hdr,
                              "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                              (long long)rows, (long long)cols)
                   : snprintf(hdr, sizeof hdr,
                              "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld,), }",
                              (long long)rows);
  // magic (6) + version (2) + length (2) + header, padded with spaces to a
  // multiple of 64 and ended by '\n' (NPY format 1.0)
  int total = (10 + n + 1 + 63) / 64 * 64;
  while (10 + n < total - 1) hdr[n++] = ' ';
  hdr[n++] = '\n';
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           (unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
  FILE *f = fopen(path, "wb");
  LR_CHECK(f, LR_ERR_IO, "create %s: %s", path, strerror(errno));
  int rc = write_all(f, pre, sizeof pre, path);
  if (rc == LR_OK) rc = write_all(f, hdr, (size_t)n, path);
  const int64_t elems = rows * (cols >= 0 ? cols : 1);
  // floats little-endian (the x86-64 and ARM hosts linrec runs on)
  if (rc == LR_OK) rc = write_all(f, x, (size_t)elems * sizeof(float), path);
  return close_checked(f, rc, path);
}

// names first..t->n-1, one a line.
static int write_ids(const char *path, const lr_names *t, int64_t first) {
  FILE *f = fopen(path, "w");
  LR_CHECK(f, LR_ERR_IO, "create %s: %s", path, strerror(errno));
  int rc = LR_OK;
  for (int64_t k = first; k < t->n && rc == LR_OK; k++)
    if (fprintf(f, "%s\n", names_get(t, k)) < 0)
      rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s", path, strerror(errno));
  return close_checked(f, rc, path);
}

int export_model(const char *model_file, const char *out_dir, int quiet) {
  char *json = NULL;
  lr_mf_group g[LR_MF_MAX_GROUPS];
  int ng = 0;
  LR_CALL(modelfile_read_config(model_file, &json, g, &ng));
  lr_config c;
  config_defaults(&c);
  int rc = config_load_json(&c, json, model_file);
  float *w[LR_MF_MAX_GROUPS] = {0};
  lr_names un = {0}, in = {0};
  char path[LR_PATH_MAX + 64];
  int items = -1, dense = -1;
  for (int i = 0; i < ng; i++) {
    if (!strcmp(g[i].name, "items")) items = i;
    if (!strcmp(g[i].name, "dense")) dense = i;
  }
  if (rc == LR_OK && (items < 0 || dense < 0 || g[dense].width != 1))
    rc = lr_error(LR_ERR_CORRUPT, __FILE__, __LINE__, "%s: no \"items\" or \"dense\" group",
                  model_file);
  lr_dense_tensor t[LR_MAX_TENSORS];
  int nt = 0;
  int64_t layers = 0;
  if (rc == LR_OK) rc = state_dense_tensors(&c, g[items].n_rows - 1, t, &nt, &layers);
  if (rc == LR_OK) {
    size_t sum = 0;
    for (int k = 0; k < nt; k++) sum += t[k].elems;
    if ((int64_t)sum != g[dense].n_rows)
      rc = lr_error(LR_ERR_CORRUPT, __FILE__, __LINE__,
                    "%s: the dense group has %lld floats, the config's tensors %zu", model_file,
                    (long long)g[dense].n_rows, sum);
  }
  lr_mf_dest d[LR_MF_MAX_GROUPS];
  for (int i = 0; rc == LR_OK && i < ng; i++) {
    w[i] = lr_calloc((size_t)(g[i].n_rows * g[i].width), sizeof(float), g[i].name);
    if (!w[i]) rc = LR_ERR_NOMEM;
    d[i] = (lr_mf_dest){g[i].name, 0, g[i].n_rows, w[i]};
  }
  if (rc == LR_OK) rc = modelfile_read(model_file, g, ng, d, ng);
  if (rc == LR_OK) rc = modelfile_read_ids(model_file, &un, &in);
  if (rc == LR_OK) rc = mkdir_p(out_dir);
  if (rc == LR_OK) {
    snprintf(path, sizeof path, "%s/dense", out_dir);
    rc = mkdir_p(path);
  }
  if (rc == LR_OK) {
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    FILE *f = fopen(path, "w");
    if (!f) rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "create %s: %s", path, strerror(errno));
    else rc = close_checked(f, write_all(f, json, strlen(json), path), path);
  }
  for (int i = 0; rc == LR_OK && i < ng; i++) {
    if (i == dense) continue;
    snprintf(path, sizeof path, "%s/%s.npy", out_dir, g[i].name);
    if (i == items) // without the padding row 0: row r is item r+1
      rc = export_npy(path, w[i] + g[i].width, g[i].n_rows - 1, g[i].width);
    else
      rc = export_npy(path, w[i], g[i].n_rows, g[i].width);
  }
  size_t off = 0;
  for (int k = 0; rc == LR_OK && k < nt; k++) {
    snprintf(path, sizeof path, "%s/dense/%s.npy", out_dir, t[k].name);
    const int64_t L = t[k].per_layer ? layers : 0;
    if (t[k].elems) // an attention kind without parameters has an empty attn_p
      rc = L ? export_npy(path, w[dense] + off, L, (int64_t)t[k].elems / L)
             : export_npy(path, w[dense] + off, (int64_t)t[k].elems, -1);
    off += t[k].elems;
  }
  if (rc == LR_OK && in.n) {
    snprintf(path, sizeof path, "%s/items.txt", out_dir);
    rc = write_ids(path, &in, 1);
    snprintf(path, sizeof path, "%s/users.txt", out_dir);
    if (rc == LR_OK) rc = write_ids(path, &un, 0);
  }
  if (rc == LR_OK && !quiet) {
    printf("{\"event\":\"export\",\"model\":\"%s\",\"out\":\"%s\",\"items\":%lld,\"tensors\":%d,"
           "\"groups\":%d,\"ids\":%s}\n",
           model_file, out_dir, (long long)(g[items].n_rows - 1), nt, ng, in.n ? "true" : "false");
    if (!in.n)
      fprintf(stderr, "linrec export: %s has no id maps (written before model file version 4): "
                      "rows are internal ids (item r+1, user r), no items.txt/users.txt\n",
              model_file);
  }
  for (int i = 0; i < ng; i++) lr_free(w[i]);
  names_free(&un);
  names_free(&in);
  free(json);
  return rc;
}
