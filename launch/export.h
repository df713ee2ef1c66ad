// export.h: `linrec export` (export.c's top comment has the layout).
#ifndef LR_EXPORT_H
#define LR_EXPORT_H

#include <stdint.h>

// x (rows, cols) float32 as a NumPy .npy file (format 1.0); cols < 0: a
// 1-D array of rows. LR_ERR_IO naming the operation and path.
int export_npy(const char *path, const float *x, int64_t rows, int64_t cols);

// Export model_file into out_dir (created if missing). LR_ERR_IO,
// LR_ERR_CORRUPT, LR_ERR_NOMEM, LR_ERR_CONFIG. Local.
int export_model(const char *model_file, const char *out_dir, int quiet);

#endif
