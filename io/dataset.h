// dataset.h: interaction data in memory, the readers that make it, the
// preprocessing, and the binary dataset file (io/README.md, "Data" and
// "The binary dataset"). No MPI here.
//
// A dataset is a CSR of per-user sequences in chronological order, with ids
// remapped densely: users 0..n_users-1, items 1..n_items (0 = padding).
// The split is leave-one-out and implicit: for a user with n >= 3
// interactions, items[n-1] is the test target, items[n-2] the validation
// target and items[0..n-3] the training sequence; a user with n < 3 is
// training-only (all n items are training).
#ifndef LR_DATASET_H
#define LR_DATASET_H

#include <stddef.h> // size_t
#include <stdint.h>

// A table of id strings: name k is text + off[k], NUL-terminated, of
// off[k+1] - off[k] - 1 bytes. n == 0: no table.
typedef struct {
  int64_t n;
  int64_t *off; // (n+1)
  char *text;   // (off[n])
} lr_names;

// Longest original id string accepted (bytes).
#define LR_ID_MAX_BYTES 256

typedef struct {
  int64_t n_users;
  int64_t n_items;    // real items; ids 1..n_items
  int64_t n_inter;    // total interactions = offsets[n_users]
  int64_t *offsets;   // (n_users+1) user u's items are items[offsets[u] .. offsets[u+1])
  int32_t *items;     // (n_inter) remapped item ids, chronological within a user
  int64_t *user_orig; // (n_users) original user id of each remapped user
  int64_t *item_orig; // (n_items+1) original item id of each remapped item; [0] = 0
  int64_t user_first; // global id of local user 0: 0, or user_lo of data_read_binary_users
  // String ids (io/README.md, "Data"): when a column held an id that is not
  // a decimal integer, its ids are strings: user_names.n == n_users (name of
  // local user u) and user_orig[u] is u's rank in byte order (global); for
  // items item_names.n == n_items+1 ([0] = "") and item_orig[i] = i-1
  // (item_orig[0] = 0). n == 0: the ids are the numbers in *_orig.
  lr_names user_names, item_names;
} lr_dataset;

typedef enum {
  LR_FMT_MOVIELENS = 0, // ratings.dat: user::item::rating::timestamp
  LR_FMT_CSV,           // ratings.csv: header userId,movieId,rating,timestamp
  LR_FMT_RECBOLE,       // .inter: tab separated, typed header "user_id:token\titem_id:token..."
  LR_FMT_SASREC,        // "user item" per line, already chronological
  LR_FMT_SYNTHETIC,     // generated (lr_synth_opts)
  LR_FMT_BINARY,        // written by data_write_binary / `linrec prep`
  LR_FMT_COUNT
} lr_data_format;

typedef enum { LR_DEDUP_NONE = 0, LR_DEDUP_FIRST, LR_DEDUP_LAST } lr_dedup;

typedef struct {
  int64_t users, items; // catalog size
  double mean_len;      // mean interactions per user (long-tailed lengths)
  int64_t interactions; // > 0: exact total (lengths adjusted to it), 0: as drawn
  double zipf;          // item popularity exponent
  uint64_t seed;
} lr_synth_opts;

typedef struct {
  const char *path; // input file (not for synthetic)
  lr_data_format format;
  // csv and recbole: "user=NAME,item=NAME[,time=NAME][,rating=NAME]": the
  // header's columns to read (any order, other columns ignored); "" = the
  // format's default names. sep: csv's field separator ('\0' = ',').
  const char *columns;
  char sep;
  double min_rating; // keep ratings >= this (formats with ratings); <= 0 keeps all
  int64_t kcore;     // iteratively drop users and items with < kcore interactions; 0 = off
  lr_dedup dedup;    // repeated (user,item) pairs: keep all, first or last
  lr_synth_opts synth;
} lr_data_opts;

// Read (or generate) and preprocess into ds according to o: parse, rating
// threshold, dedup, k-core, chronological sort (stable on equal timestamps;
// file order for formats without timestamps), id remapping.
// Formats: movielens accepts `user::item::rating::timestamp` (ratings.dat)
// and the same four fields tab separated (ML-100K u.data); csv needs the
// header `userId,movieId,rating,timestamp`; recbole finds user_id, item_id
// and the optional rating and timestamp columns by name in its typed header;
// sasrec is `user item`, one a line, in time order; o->columns names the
// columns of csv (with o->sep) and recbole headers instead. Original ids
// are integers 0 .. 2^53-1, or strings (a column with one id that is not
// such an integer: user_names/item_names, io/README.md "Data"). Remapped
// ids: users 0..U-1 and items 1..I, both in increasing original id (byte
// order for strings; dense inputs keep their order: SASRec item k stays
// item k). Steps run as: rating threshold (while reading), stable
// chronological sort, dedup (first/last in that order), k-core (iterated to
// a fixpoint: every user and item keeps >= kcore interactions), remap.
// Synthetic data gets dedup and k-core too when asked; a binary dataset is
// read as written (its preprocessing was done by `linrec prep`).
// min_rating > 0 with a source that has no ratings is LR_ERR_CONFIG.
// Ratings and timestamps are finite decimal numbers; blank lines are
// skipped; a line over 1 MiB is an error. Memory: about 24 bytes per
// interaction at the peak (a 20M-line ratings.csv: about 8 s, 0.5 GB).
// Text files may be plain, gzip or zstd (detected by magic bytes) and are
// streamed. Errors: LR_ERR_IO (missing file), LR_ERR_DATA with
// "path:line: reason" for malformed input, LR_ERR_CORRUPT for a bad binary
// file. On failure ds is left zeroed.
int data_load(lr_dataset *ds, const lr_data_opts *o);

// Binary dataset (format in dataset_bin.c's top comment): written atomically
// (temp file + rename). Reading checks magic, version, sizes and checksums.
// write: LR_ERR_ARG (ds breaks its invariants), LR_ERR_IO (names the failed
// operation; the temp file is removed), LR_ERR_NOMEM. read: LR_ERR_IO,
// LR_ERR_CORRUPT (path, byte offset, expected vs found, and a HINT to re-run
// `linrec prep`), LR_ERR_NOMEM; ds zeroed on failure.
int data_write_binary(const lr_dataset *ds, const char *path);
int data_read_binary(lr_dataset *ds, const char *path);

// Global shape of a binary dataset without its items: counts and the
// per-user offsets, for partitioning users by interaction count before each
// rank reads its range. Errors as data_read_binary; sh zeroed on failure.
typedef struct {
  int64_t n_users, n_items, n_inter;
  int64_t *offsets; // (n_users+1) global CSR offsets
} lr_data_shape;
int data_read_binary_shape(lr_data_shape *sh, const char *path);
void data_shape_free(lr_data_shape *sh);

// Read only users [user_lo, user_hi) of a binary dataset, decompressing only
// the blocks that hold them. ds->n_users = user_hi - user_lo, local user j is
// global user user_lo + j (ds->user_first = user_lo), n_items and item_orig
// are global. LR_ERR_ARG when not 0 <= user_lo <= user_hi <= n_users; else
// as data_read_binary.
int data_read_binary_users(lr_dataset *ds, const char *path, int64_t user_lo, int64_t user_hi);

// Synthetic generator (learnable structure: drifting latent interest plus
// item-to-item transitions; Zipf popularity). Deterministic in o->seed.
// Every user gets >= 3 distinct items; lengths are long-tailed with mean
// about o->mean_len. user_orig[u] = u+1, item_orig[i] = i. The model is in
// synth.c's top comment. LR_ERR_CONFIG for options out of range
// (users >= 1, items >= 3, 3 <= mean_len <= items, 0 <= zipf <= 5) and,
// before anything is allocated, for sizes whose memory estimate (4 bytes
// per interaction, 16 per user, 40 per item) exceeds the memory available
// (MemAvailable, or ulimit -v if lower): the message gives both;
// LR_ERR_NOMEM.
int data_synthesize(lr_dataset *ds, const lr_synth_opts *o);

// The fingerprint of loaded data: its counts and a 64-bit hash of the CSR
// (offsets and items: every interaction and its order within the user) and
// of both id maps, so another file, another preprocessing or one changed,
// added or reordered interaction gives another hash. The ranks of a job
// compare it (they must all have loaded the same data) and checkpoints
// record it (a resume onto other data is refused). Computed over whole
// datasets (user_first = 0): about 10 ms per 10M interactions. Local;
// cannot fail.
typedef struct {
  int64_t n_users, n_items, n_inter;
  uint64_t hash;
} lr_data_fp;
void data_fingerprint(const lr_dataset *ds, lr_data_fp *fp);
// "U users, I items, N interactions, content hash H" into out[size]. Local;
// cannot fail.
void data_fp_text(const lr_data_fp *fp, char *out, size_t size);
// 1 when a and b are the same fingerprint. Local; cannot fail.
int data_fp_equal(const lr_data_fp *a, const lr_data_fp *b);

// Frees and zeroes; accepts a zeroed or half-built dataset.
void dataset_free(lr_dataset *ds);

// Every id of ds as text, numeric ids in decimal: users (n_users names) and
// items (n_items+1 names, [0] = ""). LR_ERR_NOMEM; both zeroed on failure.
int data_id_names(const lr_dataset *ds, lr_names *users, lr_names *items);
// Name k of t (k < t->n).
static inline const char *names_get(const lr_names *t, int64_t k) { return t->text + t->off[k]; }
// Frees and zeroes (accepts a zeroed table).
void names_free(lr_names *t);
// Builds t from n strings; LR_ERR_NOMEM.
int names_build(lr_names *t, const char *const *s, int64_t n);
// Index lookup over a table: an order of its names (sorted by bytes) for
// names_find. LR_ERR_NOMEM.
int names_index(const lr_names *t, int64_t **order);
// k with name s, or -1 (order from names_index).
int64_t names_find(const lr_names *t, const int64_t *order, const char *s);

// Names <-> enums ("movielens", ...; "none"/"first"/"last"), matched
// case-insensitively. parse returns -1 for an unknown name.
const char *data_format_name(lr_data_format f);
int data_format_parse(const char *name);
const char *data_dedup_name(lr_dedup d);
int data_dedup_parse(const char *name);

#endif
