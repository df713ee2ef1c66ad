// config.h: every configuration key of linrec, declared once in a table
// (config.c) from which the JSON parser, `--set key=value`, `--help` and the
// README's key list are all produced (io/README.md, "The config"). No MPI
// here.
#ifndef LR_CONFIG_H
#define LR_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "dataset.h" // lr_data_format, lr_dedup

#define LR_PATH_MAX 1024
#define LR_MAX_K_CFG 8 // = LR_MAX_K of metrics.h
#define LR_CONFIG_CHOICES_MAX 1024 // bytes of a run-time enum's choices, '|' separated

typedef enum { LR_POS_LAST = 0, LR_POS_ALL } lr_positions;
typedef enum { LR_AUG_NONE = 0, LR_AUG_RANDOMPAD } lr_augment;
typedef enum { LR_FFN_GELU = 0, LR_FFN_RELU } lr_ffn;
typedef enum { LR_OBJ_CE = 0, LR_OBJ_SAMPLED, LR_OBJ_BCE } lr_objective;
typedef enum { LR_SAMPLER_UNIFORM = 0, LR_SAMPLER_POP } lr_sampler;
typedef enum { LR_EVAL_FULL = 0, LR_EVAL_UNI100, LR_EVAL_POP100 } lr_eval_mode;

typedef struct {
  // data.*
  char data_path[LR_PATH_MAX];
  int data_format; // lr_data_format
  double data_min_rating;
  int64_t data_kcore;
  int data_dedup; // lr_dedup
  char data_columns[LR_PATH_MAX];   // "user=NAME,item=NAME[,time=NAME][,rating=NAME]" or ""
  char data_separator[LR_PATH_MAX]; // csv field separator: one character, or tab|comma|semicolon|pipe|space
  int64_t syn_users, syn_items, syn_inter;
  double syn_mean_len, syn_zipf;
  int64_t syn_seed;
  // model.*
  int model_attention; // the attention kind's id (core/attention.h registry order)
  int model_arch;      // the architecture's id (core/model.h registry order)
  double model_drop_path;
  int model_ram_emb_scale, model_ram_pos_from, model_ram_users; // pos_from: 0 end, 1 start
  int64_t model_d, model_heads, model_layers, model_inner, model_max_len;
  int model_ffn; // lr_ffn
  double model_dropout, model_ln_eps;
  // train.*
  int64_t train_epochs, train_max_steps, train_batch_size, train_micro_batch;
  double train_lr, train_beta1, train_beta2, train_adam_eps, train_weight_decay, train_clip_norm;
  int train_positions; // lr_positions
  int train_precision; // 0 fp32, 1 bf16 (the model's products; lr_set_matmul_bf16)
  int train_windows;   // positions all: 0 the last window per user, 1 every window
  int train_objective; // lr_objective
  int64_t train_negatives;
  int train_sampler; // lr_sampler
  int train_neg_skip_history;
  int64_t train_views;     // 1 or 2 (Blin's two views)
  double train_bkl_weight; // lambda of the bidirectional KL (train.views 2)
  int train_augment;       // lr_augment
  int64_t train_seed, train_patience, train_threads, train_loss_tile;
  // train.checkpoint.*
  int64_t ckpt_every_steps, ckpt_every_epochs, ckpt_keep_last, ckpt_zstd_level;
  char ckpt_dir[LR_PATH_MAX]; // "" = OUT/checkpoints
  // eval.*
  int eval_mode; // lr_eval_mode
  int eval_k[LR_MAX_K_CFG];
  int eval_nk;
  int eval_exclude_history;
  int64_t eval_batch_size;
  // dist.*
  int dist_item_table; // 0 auto, 1 sharded, 2 replicated
  double dist_timeout;  // seconds without a heartbeat before a rank is lost (0 = off)
  // bench.*
  int64_t bench_steps, bench_warmup;
  // log.*
  int64_t log_every_steps;
  int log_progress; // 0 auto, 1 plain, 2 off
} lr_config;

// The choices of a run-time enum key (model.attention: the attention kinds,
// which io/ does not know): names in id order, NULL-terminated. Call before
// any config is parsed (the program does at start-up, with the registry of
// core/attention.h). LR_ERR_ARG for a key that is no enum or bad names.
int config_set_choices(const char *key, const char *const *names);

// Defaults of every key. Cannot fail.
void config_defaults(lr_config *c);

// Largest config file accepted (bytes): a config is a few KiB; anything
// much larger is not one, and is refused before it is parsed.
#define CONFIG_MAX_BYTES (1 << 20)

// Merge a JSON file into c: nested objects name dotted keys ({"model":{"d":64}}
// is model.d); dotted names may also appear directly. Unknown keys (nested
// ones named in full: "model.d.x"), wrong types, out-of-range values and a
// key or section given twice in the file (nested, dotted or repeated) are
// LR_ERR_CONFIG naming the file and the key; so are a file over
// CONFIG_MAX_BYTES (refused before reading it whole) and a NUL byte (with
// its offset); an unreadable file is LR_ERR_IO; bad JSON names the file
// and the position.
int config_load_file(lr_config *c, const char *path);

// Same, from JSON text; `source` names it in messages.
int config_load_json(lr_config *c, const char *text, const char *source);

// Apply one "key=value" override (value parsed by the key's type; a list
// key takes "5,10,20"). LR_ERR_CONFIG naming the key on failure.
int config_set(lr_config *c, const char *assignment);

// Cross-key checks (heads divide d, positions=all needs a causal kind, data.path
// needed for file formats, config_check_catalog for synthetic data, ...).
// LR_ERR_CONFIG naming the keys.
int config_validate(const lr_config *c);

// Checks against the catalog of the data actually loaded (n_items real
// items): train.negatives at most n_items - 1 when the objective samples
// negatives (more would only repeat work: each row holds 1 + negatives
// candidates). LR_ERR_CONFIG naming the key and the catalog size.
int config_check_catalog(const lr_config *c, int64_t n_items);

// The whole config as a JSON object string (canonical key order; caller frees
// with free()). NULL and LR_ERR_NOMEM on allocation failure.
char *config_to_json(const lr_config *c);
// FNV-1a 64 of config_to_json's text. Cannot fail.
uint64_t config_hash(const lr_config *c);
// FNV-1a 64 of any text (the hash checkpoints record of their config). Cannot fail.
uint64_t config_hash_text(const char *text);

// Keys that may differ between a checkpoint and the run resuming from it,
// because they change how long to train, where to write and what to log,
// or how the work is spread over ranks and threads (which changes no bit
// of the results), never what is computed: log.*, train.checkpoint.*,
// train.epochs, train.max_steps, train.threads, eval.batch_size, dist.*,
// bench.*; and train.precision, which changes the rounding of the products
// from the resumed step on but not the state (fp32 in both), so a bf16 run
// resumes an fp32 checkpoint and back. 1 if `key` is one of them. Cannot fail.
int config_key_resume_free(const char *key);
// config_to_json without the resume-free keys: the config a checkpoint
// records and checks on resume. Caller frees with free(); NULL and
// LR_ERR_NOMEM on allocation failure.
char *config_to_json_trajectory(const lr_config *c);
// Write "key (A x, B y); ..." for the keys whose values differ between a and
// b (only the trajectory keys when trajectory_only; A and B are a_name and
// b_name) into out[size], at most max_keys of them. Returns how many keys
// differ. Cannot fail (the text is cut short if out is too small).
int config_diff(const lr_config *a, const lr_config *b, int trajectory_only, const char *a_name,
                const char *b_name, int max_keys, char *out, size_t size);

// Print the key table (name, type, default, meaning) for --help, or as a
// Markdown table for the README when markdown != 0. Cannot fail.
void config_print_keys(FILE *f, int markdown);

// Data options of the config (pointers into c). Cannot fail.
lr_data_opts config_data_opts(const lr_config *c);
// data.separator as a character, or -1 when it names none. Cannot fail.
int config_separator(const lr_config *c);

#endif
