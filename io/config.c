// config.c: the key table of config.h and everything generated from it
// (defaults, JSON and --set parsing with per-key type and range checks, the
// --help listing, the canonical JSON dump and its hash).
#include "config.h"

#include <cJSON.h>  // cJSON_ParseWithOpts, cJSON_Print...
#include <errno.h>  // errno
#include <math.h>   // isfinite
#include <stddef.h> // offsetof
#include <stdlib.h> // strtoll, strtod, free
#include <string.h> // strcmp, strncpy, memchr
#include <sys/stat.h> // fstat

#include "lr.h"

typedef enum { T_INT, T_FLOAT, T_BOOL, T_STRING, T_ENUM, T_INTLIST } key_type;

typedef struct {
  const char *name;
  key_type type;
  size_t off;
  const char *def;     // default, as text
  double lo, hi;       // inclusive range for numbers / list elements
  const char *choices; // T_ENUM: '|' separated names, index = enum value (NULL: set at
                       // run time by config_set_choices)
  const char *help;
} key_def;

#define OFF(f) offsetof(lr_config, f)
#define BIG 1e18

// The one table. Keep the key names: scripts and other issues rely on them.
// Not const: the choices of run-time enums are filled in by config_set_choices.
static key_def KEYS[] = {
    {"data.path", T_STRING, OFF(data_path), "", 0, 0, NULL,
     "input file (ratings.dat, ratings.csv, .inter, SASRec lines, or a `linrec prep` binary); "
     "plain, .gz or .zst"},
    {"data.format", T_ENUM, OFF(data_format), "synthetic", 0, 0,
     "movielens|csv|recbole|sasrec|synthetic|binary", "how to read data.path"},
    {"data.min_rating", T_FLOAT, OFF(data_min_rating), "0", 0, 1e9, NULL,
     "keep interactions rated >= this (formats with ratings); 0 keeps all"},
    {"data.kcore", T_INT, OFF(data_kcore), "0", 0, 1e9, NULL,
     "repeatedly drop users and items with fewer interactions; 0 = off"},
    {"data.dedup", T_ENUM, OFF(data_dedup), "none", 0, 0, "none|first|last",
     "repeated (user,item) pairs: keep all, the first or the last"},
    {"data.columns", T_STRING, OFF(data_columns), "", 0, 0, NULL,
     "csv/recbole: the header's columns to read, `user=NAME,item=NAME[,time=NAME][,rating=NAME]` "
     "(other columns ignored); empty: csv needs `userId,movieId,rating,timestamp`, recbole "
     "`user_id`, `item_id` and optional `rating`, `timestamp`"},
    {"data.separator", T_STRING, OFF(data_separator), ",", 0, 0, NULL,
     "csv field separator: one character, or tab, comma, semicolon, pipe, space"},
    {"data.synthetic.users", T_INT, OFF(syn_users), "4000", 1, 1e9, NULL,
     "synthetic dataset: number of users"},
    {"data.synthetic.items", T_INT, OFF(syn_items), "1000", 3, 2e9, NULL,
     "synthetic dataset: number of items"},
    {"data.synthetic.mean_len", T_FLOAT, OFF(syn_mean_len), "40", 3, 1e6, NULL,
     "synthetic dataset: mean interactions per user (long-tailed)"},
    {"data.synthetic.interactions", T_INT, OFF(syn_inter), "0", 0, 1e12, NULL,
     "synthetic dataset: exact total interactions (lengths adjusted by one at a time over users, keeping their long tail); 0 = as drawn"},
    {"data.synthetic.zipf", T_FLOAT, OFF(syn_zipf), "1.0", 0, 5, NULL,
     "synthetic dataset: Zipf exponent of item popularity"},
    {"data.synthetic.seed", T_INT, OFF(syn_seed), "1", 0, 9e18, NULL,
     "synthetic dataset: generator seed"},
    {"model.attention", T_ENUM, OFF(model_attention), "linrec", 0, 0, NULL,
     "attention kind (the README's attention table)"},
    {"model.arch", T_ENUM, OFF(model_arch), "sasrec", 0, 0, NULL,
     "encoder architecture (block type): sasrec = post-LN SASRec/LinRec blocks with a position "
     "table; recgrela = pre-LN gated RecGRELA blocks (positions through the rela kinds' RoPE); "
     "recgrela_nogate, _noconv, _norope = RecGRELA without its gate, local shortcut or RoPE "
     "(ablations); ram = RAM, a query stream refined over fixed item representations, plus a "
     "users table"},
    {"model.drop_path", T_FLOAT, OFF(model_drop_path), "0", 0, 0.95, NULL,
     "recgrela: DropPath rate of each layer's attention branch, drawn per sequence (seed, "
     "epoch, example, layer); training only, applied when model.dropout > 0"},
    {"model.ram.emb_scale", T_BOOL, OFF(model_ram_emb_scale), "true", 0, 0, NULL,
     "ram: scale the item rows by sqrt(d) in E (as released)"},
    {"model.ram.pos_from", T_ENUM, OFF(model_ram_pos_from), "end", 0, 0, "end|start",
     "ram: position of a sequence's row counted from its end (the last item at max_len - 1: the "
     "released left-padding semantics) or from its start"},
    {"model.ram.users", T_BOOL, OFF(model_ram_users), "true", 0, 0, NULL,
     "ram: add the user's row of the users table to the final state (false: RAM-u)"},
    {"model.d", T_INT, OFF(model_d), "64", 2, 65536, NULL, "hidden size D"},
    {"model.heads", T_INT, OFF(model_heads), "2", 1, 1024, NULL, "attention heads (divide d)"},
    {"model.layers", T_INT, OFF(model_layers), "2", 1, 31, NULL, "transformer layers"},
    {"model.inner", T_INT, OFF(model_inner), "256", 1, 1048576, NULL, "FFN inner size"},
    {"model.max_len", T_INT, OFF(model_max_len), "50", 2, 1048576, NULL,
     "sequence length N (the most recent N items are kept)"},
    {"model.ffn", T_ENUM, OFF(model_ffn), "gelu", 0, 0, "gelu|relu",
     "sasrec: the FFN's activation (relu: Blin's, with model.inner = model.d as the paper)"},
    {"model.dropout", T_FLOAT, OFF(model_dropout), "0.2", 0, 0.95, NULL,
     "dropout on embeddings, attention output and FFN output"},
    {"model.ln_eps", T_FLOAT, OFF(model_ln_eps), "1e-12", 1e-30, 1, NULL, "LayerNorm epsilon"},
    {"train.epochs", T_INT, OFF(train_epochs), "20", 0, 1e9, NULL, "passes over the training data"},
    {"train.max_steps", T_INT, OFF(train_max_steps), "0", 0, 1e15, NULL,
     "stop after this many optimizer steps; 0 = no limit"},
    {"train.batch_size", T_INT, OFF(train_batch_size), "256", 1, 1e8, NULL,
     "global batch (examples per optimizer step)"},
    {"train.micro_batch", T_INT, OFF(train_micro_batch), "0", 0, 1e8, NULL,
     "examples per forward/backward chunk and per evaluation pass (bounds activation memory); 0 = one model chunk per thread (about 512 positions: 2 sequences at N=200), at least 16 with a sharded table on several ranks or with the full cross-entropy at the last position, at most the batch; evaluation passes then take up to `eval.batch_size` users within 256 MiB of activations. Results do not depend on it"},
    {"train.lr", T_FLOAT, OFF(train_lr), "1e-3", 0, 10, NULL, "Adam learning rate"},
    {"train.beta1", T_FLOAT, OFF(train_beta1), "0.9", 0, 0.999999, NULL, "Adam beta1"},
    {"train.beta2", T_FLOAT, OFF(train_beta2), "0.999", 0, 0.999999999, NULL, "Adam beta2"},
    {"train.adam_eps", T_FLOAT, OFF(train_adam_eps), "1e-8", 1e-30, 1, NULL, "Adam epsilon"},
    {"train.weight_decay", T_FLOAT, OFF(train_weight_decay), "0", 0, 10, NULL,
     "decoupled (AdamW) weight decay; 0 = off"},
    {"train.clip_norm", T_FLOAT, OFF(train_clip_norm), "0", 0, 1e9, NULL,
     "clip the global gradient norm to this; 0 = off"},
    {"train.positions", T_ENUM, OFF(train_positions), "last", 0, 0, "last|all",
     "loss at the last position of every prefix, or at all positions (causal kinds)"},
    {"train.windows", T_ENUM, OFF(train_windows), "last", 0, 0, "last|all",
     "train.positions all: one window per user (its last N training items), or the "
     "training items cut into consecutive windows of N from the end (every item a target "
     "once per epoch)"},
    {"train.objective", T_ENUM, OFF(train_objective), "ce", 0, 0, "ce|sampled|bce",
     "full-catalog cross-entropy, sampled softmax, or BCE with train.negatives negatives"},
    {"train.negatives", T_INT, OFF(train_negatives), "1", 1, 100000, NULL,
     "negatives per loss row (sampled, bce); at most the catalog size - 1"},
    {"train.sampler", T_ENUM, OFF(train_sampler), "uniform", 0, 0, "uniform|pop",
     "negative sampling distribution"},
    {"train.negatives_skip_history", T_BOOL, OFF(train_neg_skip_history), "false", 0, 0, NULL,
     "sampled, bce: draw again (up to 64 times) a negative that is in the user's training "
     "history (the released SASRec/RAM sampler)"},
    {"train.views", T_INT, OFF(train_views), "1", 1, 2, NULL,
     "sequences per example: 2 = Blin's two views (their own dropout keys and RandomPad "
     "draws), loss = mean of the two CEs + train.bkl_weight * bidirectional KL; needs "
     "train.positions last and model.arch sasrec"},
    {"train.bkl_weight", T_FLOAT, OFF(train_bkl_weight), "2", 0, 1e6, NULL,
     "train.views 2: lambda, the weight of the bidirectional KL between the two views' "
     "predictive distributions (0 = the mean of the two CEs only)"},
    {"train.augment", T_ENUM, OFF(train_augment), "none", 0, 0, "none|randompad",
     "training inputs: as they are, or RandomPad (Blin Eq. 4: the history repeated "
     "alpha+1 times with masked delimiters); randompad needs train.positions last and an "
     "attention kind that takes a key mask (efficient, blin, blin_left, softmax)"},
    {"train.seed", T_INT, OFF(train_seed), "42", 0, 9e18, NULL,
     "seed of initialisation, shuffling, dropout and negatives"},
    {"train.patience", T_INT, OFF(train_patience), "5", 0, 1e9, NULL,
     "stop after this many evaluations without a better validation NDCG@10; 0 = never"},
    {"train.precision", T_ENUM, OFF(train_precision), "fp32", 0, 0, "fp32|bf16",
     "the model's matrix products (projections, FFN, loss): fp32, or bf16 operands with fp32 "
     "accumulation on AVX512-BF16 (weights, gradients, Adam, norms, softmax, attention stay "
     "fp32; without AVX512-BF16 on every rank: fp32, with a message)"},
    {"train.threads", T_INT, OFF(train_threads), "0", 0, 1024, NULL,
     "threads per process (GEMMs split by blocks, element-wise work, attention); 0 = OPENBLAS_NUM_THREADS when set, else the node's cores shared by its ranks"},
    {"train.loss_tile", T_INT, OFF(train_loss_tile), "4096", 16, 1e8, NULL,
     "items per logits tile of the full cross-entropy"},
    {"train.checkpoint.every_steps", T_INT, OFF(ckpt_every_steps), "0", 0, 1e15, NULL,
     "write a checkpoint every this many optimizer steps (in the background); 0 = off"},
    {"train.checkpoint.every_epochs", T_INT, OFF(ckpt_every_epochs), "0", 0, 1e9, NULL,
     "write a checkpoint at the last step of every this many epochs; 0 = off"},
    {"train.checkpoint.keep_last", T_INT, OFF(ckpt_keep_last), "3", 1, 1e6, NULL,
     "complete checkpoints kept; older ones are deleted after each new one"},
    {"train.checkpoint.zstd_level", T_INT, OFF(ckpt_zstd_level), "1", 1, 19, NULL,
     "zstd level of checkpoint shards (1 is the fastest and compresses float state about "
     "as well as 9)"},
    {"train.checkpoint.dir", T_STRING, OFF(ckpt_dir), "", 0, 0, NULL,
     "checkpoint directory (shared by all ranks); \"\" = OUT/checkpoints, OUT = train --out"},
    {"eval.mode", T_ENUM, OFF(eval_mode), "full", 0, 0, "full|uni100|pop100",
     "rank the target against the whole catalog or 100 sampled negatives"},
    {"eval.k", T_INTLIST, OFF(eval_k), "10", 1, 100000, NULL,
     "cutoffs K of Recall/MRR/NDCG (list, at most 8)"},
    {"eval.exclude_history", T_BOOL, OFF(eval_exclude_history), "false", 0, 0, NULL,
     "full mode: do not rank items already in the user's history"},
    {"eval.batch_size", T_INT, OFF(eval_batch_size), "256", 1, 1e8, NULL,
     "users per evaluation forward pass"},
    {"dist.item_table", T_ENUM, OFF(dist_item_table), "auto", 0, 0, "auto|sharded|replicated",
     "item table layout across ranks: row-sharded, replicated, or auto (train: fewer bytes per step; eval/recommend --model: sharded above 256 MiB on several ranks)"},
    {"dist.timeout", T_FLOAT, OFF(dist_timeout), "5", 0, 1e6, NULL,
     "seconds without a heartbeat from a rank (stopped or hung, its host or link lost) before every rank stops with a message naming it (detection of a rank that dies is immediate); 0 = no heartbeats"},
    {"log.every_steps", T_INT, OFF(log_every_steps), "0", 0, 1e15, NULL,
     "write a step event to metrics.jsonl every this many steps; 0 = none"},
    {"bench.steps", T_INT, OFF(bench_steps), "20", 1, 1e9, NULL,
     "linrec bench: timed optimizer steps"},
    {"bench.warmup", T_INT, OFF(bench_warmup), "3", 0, 1e9, NULL,
     "linrec bench: untimed steps before them"},
    {"log.progress", T_ENUM, OFF(log_progress), "auto", 0, 0, "auto|plain|off",
     "progress line: auto redraws on a terminal (plain lines under mpirun or into a file), plain, or off"},
};
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static const char *g_src = "--set"; // where the value being parsed came from

static const key_def *find_key(const char *name) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (!strcmp(KEYS[i].name, name)) return &KEYS[i];
  return NULL;
}

static int enum_index(const char *choices, const char *name) {
  size_t n = strlen(name);
  int idx = 0;
  for (const char *p = choices; *p; idx++) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && !strncmp(p, name, n)) return idx;
    if (!bar) break;
    p = bar + 1;
  }
  return -1;
}

static void enum_name(const char *choices, int idx, char *out, size_t cap) {
  const char *p = choices;
  for (int i = 0; i < idx && p; i++) {
    p = strchr(p, '|');
    if (p) p++;
  }
  if (!p) p = "?";
  size_t len = strchr(p, '|') ? (size_t)(strchr(p, '|') - p) : strlen(p);
  if (len >= cap) len = cap - 1;
  memcpy(out, p, len);
  out[len] = 0;
}

#define CFG_ERR(...) lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, __VA_ARGS__)

static int check_range(const key_def *k, double x) {
  if (!isfinite(x) || x < k->lo || x > k->hi)
    return CFG_ERR("%s: key \"%s\": value %g out of range [%g, %g]", g_src, k->name, x, k->lo,
                   k->hi);
  return LR_OK;
}

static int parse_int(const key_def *k, const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno)
    return CFG_ERR("%s: key \"%s\": expected an integer, got \"%s\"", g_src, k->name, s);
  LR_CALL(check_range(k, (double)v));
  *out = v;
  return LR_OK;
}

// Set key k from text s (used by --set and for defaults).
static int set_text(lr_config *c, const key_def *k, const char *s) {
  char *base = (char *)c + k->off;
  switch (k->type) {
  case T_INT: return parse_int(k, s, (int64_t *)base);
  case T_FLOAT: {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno)
      return CFG_ERR("%s: key \"%s\": expected a number, got \"%s\"", g_src, k->name, s);
    LR_CALL(check_range(k, v));
    *(double *)base = v;
    return LR_OK;
  }
  case T_BOOL:
    if (!strcmp(s, "true") || !strcmp(s, "1")) *(int *)base = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "0")) *(int *)base = 0;
    else return CFG_ERR("%s: key \"%s\": expected true or false, got \"%s\"", g_src, k->name, s);
    return LR_OK;
  case T_STRING:
    if (strlen(s) >= LR_PATH_MAX)
      return CFG_ERR("%s: key \"%s\": value longer than %d bytes", g_src, k->name, LR_PATH_MAX - 1);
    strcpy(base, s);
    return LR_OK;
  case T_ENUM: {
    LR_ASSERT(k->choices); // a run-time enum whose choices were never set
    int idx = enum_index(k->choices, s);
    if (idx < 0)
      return CFG_ERR("%s: key \"%s\": expected one of %s, got \"%s\"", g_src, k->name,
                     k->choices, s);
    *(int *)base = idx;
    return LR_OK;
  }
  case T_INTLIST: {
    int *vals = (int *)base, n = 0;
    char buf[256];
    if (strlen(s) >= sizeof buf)
      return CFG_ERR("%s: key \"%s\": list too long", g_src, k->name);
    strcpy(buf, s);
    for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", ")) {
      if (n == LR_MAX_K_CFG)
        return CFG_ERR("%s: key \"%s\": at most %d values", g_src, k->name, LR_MAX_K_CFG);
      int64_t v;
      LR_CALL(parse_int(k, tok, &v));
      vals[n++] = (int)v;
    }
    if (n == 0) return CFG_ERR("%s: key \"%s\": empty list", g_src, k->name);
    c->eval_nk = n;
    return LR_OK;
  }
  }
  return CFG_ERR("%s: key \"%s\": unknown type", g_src, k->name);
}

int config_set_choices(const char *key, const char *const *names) {
  // one buffer per key of the table (the choices stay for the process)
  static char bufs[sizeof KEYS / sizeof KEYS[0]][LR_CONFIG_CHOICES_MAX];
  key_def *k = NULL;
  char *buf = NULL;
  for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
    if (!strcmp(KEYS[i].name, key)) k = &KEYS[i], buf = bufs[i];
  LR_CHECK(k && k->type == T_ENUM, LR_ERR_ARG, "config_set_choices: %s is no enum key", key);
  size_t n = 0;
  buf[0] = 0;
  for (int i = 0; names[i]; i++) {
    LR_CHECK(!strchr(names[i], '|') && names[i][0], LR_ERR_ARG,
             "config_set_choices: %s: bad choice \"%s\"", key, names[i]);
    n += strlen(names[i]) + 1;
    LR_CHECK(n < LR_CONFIG_CHOICES_MAX, LR_ERR_ARG, "config_set_choices: %s: too many choices",
             key);
    if (i) strcat(buf, "|");
    strcat(buf, names[i]);
  }
  k->choices = buf;
  return LR_OK;
}

void config_defaults(lr_config *c) {
  memset(c, 0, sizeof *c);
  g_src = "defaults";
  for (size_t i = 0; i < N_KEYS; i++) LR_ASSERT(set_text(c, &KEYS[i], KEYS[i].def) == LR_OK);
  g_src = "--set";
}

int config_set(lr_config *c, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return CFG_ERR("--set %s: expected key=value", assignment);
  char name[128];
  size_t len = (size_t)(eq - assignment);
  if (len >= sizeof name) return CFG_ERR("--set: key too long: %.40s...", assignment);
  memcpy(name, assignment, len);
  name[len] = 0;
  const key_def *k = find_key(name);
  if (!k) return CFG_ERR("--set: unknown config key \"%s\" (see `linrec train --help`)", name);
  g_src = "--set";
  return set_text(c, k, eq + 1);
}

// "an object", "a string", ... for messages about a value of the wrong type.
static const char *json_type(const cJSON *v) {
  return cJSON_IsObject(v)   ? "an object"
         : cJSON_IsArray(v)  ? "an array"
         : cJSON_IsString(v) ? "a string"
         : cJSON_IsBool(v)   ? "a boolean"
         : cJSON_IsNull(v)   ? "null"
         : cJSON_IsNumber(v) ? "a number"
                             : "an invalid value";
}

// Set key k from a JSON value, checking its JSON type.
static int set_json(lr_config *c, const key_def *k, const cJSON *v) {
  char buf[64];
  switch (k->type) {
  case T_INT:
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble)
      return CFG_ERR("%s: key \"%s\": expected an integer, got %s", g_src, k->name,
                     cJSON_IsNumber(v) ? "a fraction" : json_type(v));
    snprintf(buf, sizeof buf, "%lld", (long long)v->valuedouble);
    return set_text(c, k, buf);
  case T_FLOAT:
    if (!cJSON_IsNumber(v))
      return CFG_ERR("%s: key \"%s\": expected a number, got %s", g_src, k->name, json_type(v));
    snprintf(buf, sizeof buf, "%.17g", v->valuedouble);
    return set_text(c, k, buf);
  case T_BOOL:
    if (!cJSON_IsBool(v))
      return CFG_ERR("%s: key \"%s\": expected true or false, got %s", g_src, k->name,
                     json_type(v));
    *(int *)((char *)c + k->off) = cJSON_IsTrue(v);
    return LR_OK;
  case T_STRING:
  case T_ENUM:
    if (!cJSON_IsString(v))
      return CFG_ERR("%s: key \"%s\": expected a string, got %s", g_src, k->name, json_type(v));
    return set_text(c, k, v->valuestring);
  case T_INTLIST: {
    if (cJSON_IsNumber(v)) {
      if (v->valuedouble != (double)(int64_t)v->valuedouble)
        return CFG_ERR("%s: key \"%s\": expected an integer or a list of integers", g_src,
                       k->name);
      snprintf(buf, sizeof buf, "%lld", (long long)v->valuedouble);
      return set_text(c, k, buf);
    }
    if (!cJSON_IsArray(v))
      return CFG_ERR("%s: key \"%s\": expected an integer or a list of integers", g_src, k->name);
    char list[256] = "";
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
      if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int64_t)e->valuedouble)
        return CFG_ERR("%s: key \"%s\": list elements must be integers", g_src, k->name);
      size_t n = strlen(list);
      snprintf(list + n, sizeof list - n, "%s%lld", n ? "," : "", (long long)e->valuedouble);
    }
    return set_text(c, k, list);
  }
  }
  return CFG_ERR("%s: key \"%s\": unknown type", g_src, k->name);
}

// 1 if name (no trailing '.') is a section: a proper prefix of some key
// ("data", "data.synthetic", "train.checkpoint", ...). Cannot fail.
static int is_section(const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < N_KEYS; i++)
    if (!strncmp(KEYS[i].name, name, n) && KEYS[i].name[n] == '.') return 1;
  return 0;
}

// What one JSON document has set so far: each key and each section may
// appear once (a second value, nested or dotted, is an error, not a
// silent override).
typedef struct {
  unsigned char key_seen[N_KEYS];
  char sections[16][64]; // sections entered (at most the table's few)
  int n_sections;
} walk_state;

static int walk_json(lr_config *c, const cJSON *obj, const char *prefix, walk_state *w) {
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    char name[256];
    snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", it->string);
    const key_def *k = find_key(name);
    if (!k && cJSON_IsObject(it) && is_section(name)) {
      for (int i = 0; i < w->n_sections; i++)
        if (!strcmp(w->sections[i], name))
          return CFG_ERR("%s: section \"%s\" given twice (nested or dotted): each key may "
                         "be set once",
                         g_src, name);
      LR_ASSERT(w->n_sections < 16 && strlen(name) < sizeof w->sections[0]);
      strcpy(w->sections[w->n_sections++], name);
      LR_CALL(walk_json(c, it, name, w));
      continue;
    }
    if (!k && cJSON_IsObject(it) && it->child)
      return CFG_ERR("%s: unknown config key \"%s.%s\"", g_src, name, it->child->string);
    if (!k) return CFG_ERR("%s: unknown config key \"%s\"", g_src, name);
    if (cJSON_IsObject(it) && it->child)
      return CFG_ERR("%s: unknown config key \"%s.%s\" (\"%s\" is a key, not a section)", g_src,
                     name, it->child->string, name);
    if (w->key_seen[k - KEYS])
      return CFG_ERR("%s: key \"%s\" given twice (nested or dotted): each key may be set once",
                     g_src, name);
    w->key_seen[k - KEYS] = 1;
    LR_CALL(set_json(c, k, it));
  }
  return LR_OK;
}

int config_load_json(lr_config *c, const char *text, const char *source) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
  if (!root) {
    int line = 1, col = 1;
    for (const char *p = text; end && p < end; p++) {
      if (*p == '\n') line++, col = 1;
      else col++;
    }
    return CFG_ERR("%s:%d:%d: invalid JSON", source, line, col);
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return CFG_ERR("%s: the config must be a JSON object", source);
  }
  g_src = source;
  walk_state w;
  memset(&w, 0, sizeof w);
  int rc = walk_json(c, root, "", &w);
  g_src = "--set";
  cJSON_Delete(root);
  return rc;
}

int config_load_file(lr_config *c, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > CONFIG_MAX_BYTES) {
    fclose(f);
    return CFG_ERR("%s: %lld bytes: a config file may hold at most %d bytes (1 MiB); this "
                   "is not a linrec config",
                   path, (long long)st.st_size, CONFIG_MAX_BYTES);
  }
  // One byte more than the limit tells a longer stream (a pipe) apart.
  char *text = malloc((size_t)CONFIG_MAX_BYTES + 2);
  if (!text) {
    fclose(f);
    return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory", path);
  }
  size_t len = fread(text, 1, (size_t)CONFIG_MAX_BYTES + 1, f);
  int rc = LR_OK;
  const char *nul = NULL;
  if (ferror(f))
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: read error: %s", path, strerror(errno));
  else if (len > CONFIG_MAX_BYTES)
    rc = CFG_ERR("%s: more than %d bytes: a config file may hold at most 1 MiB; this is not a "
                 "linrec config",
                 path, CONFIG_MAX_BYTES);
  else if ((nul = memchr(text, '\0', len)))
    rc = CFG_ERR("%s: byte %lld: NUL byte in the config file (JSON text holds none)", path,
                 (long long)(nul - text));
  if (rc == LR_OK) {
    text[len] = 0;
    rc = config_load_json(c, text, path);
  }
  free(text);
  fclose(f);
  return rc;
}

int config_validate(const lr_config *c) {
  if (c->model_d % c->model_heads)
    return CFG_ERR("key \"model.heads\": must divide model.d (%lld), got %lld",
                   (long long)c->model_d, (long long)c->model_heads);
  if (c->data_format != LR_FMT_SYNTHETIC && !c->data_path[0])
    return CFG_ERR("key \"data.path\": required for data.format \"%s\"",
                   data_format_name(c->data_format));
  if (c->train_micro_batch > c->train_batch_size)
    return CFG_ERR("key \"train.micro_batch\": %lld exceeds train.batch_size %lld",
                   (long long)c->train_micro_batch, (long long)c->train_batch_size);
  if (c->data_format == LR_FMT_SYNTHETIC && c->syn_items < 3)
    return CFG_ERR("key \"data.synthetic.items\": need at least 3 items");
  if (c->data_format == LR_FMT_SYNTHETIC) LR_CALL(config_check_catalog(c, c->syn_items));
  if (config_separator(c) < 0)
    return CFG_ERR("key \"data.separator\": expected one character (not a quote, newline or NUL) "
                   "or tab, comma, semicolon, pipe, space; got \"%s\"",
                   c->data_separator);
  if (c->data_columns[0] && c->data_format != LR_FMT_CSV && c->data_format != LR_FMT_RECBOLE)
    return CFG_ERR("key \"data.columns\": applies to data.format csv and recbole, not \"%s\"",
                   data_format_name(c->data_format));
  if (strcmp(c->data_separator, ",") && c->data_format != LR_FMT_CSV)
    return CFG_ERR("key \"data.separator\": applies to data.format csv, not \"%s\"",
                   data_format_name(c->data_format));
  return LR_OK;
}

int config_separator(const lr_config *c) {
  static const char *const names[5] = {"tab", "comma", "semicolon", "pipe", "space"};
  static const char chars[5] = {'\t', ',', ';', '|', ' '};
  const char *s = c->data_separator;
  for (int k = 0; k < 5; k++)
    if (!strcmp(s, names[k])) return chars[k];
  if (!strcmp(s, "\\t")) return '\t';
  if (strlen(s) != 1 || s[0] == '"' || s[0] == '\n' || s[0] == '\r') return -1;
  return (unsigned char)s[0];
}

int config_check_catalog(const lr_config *c, int64_t n_items) {
  if (c->train_objective == LR_OBJ_CE || c->train_negatives <= n_items - 1) return LR_OK;
  return CFG_ERR("key \"train.negatives\": %lld negatives per loss row, but the catalog has %lld "
                 "items: at most %lld (every item but the target)",
                 (long long)c->train_negatives, (long long)n_items,
                 (long long)(n_items > 1 ? n_items - 1 : 0));
}

static cJSON *key_json(const lr_config *c, const key_def *k) {
  const char *base = (const char *)c + k->off;
  char buf[64];
  switch (k->type) {
  case T_INT: return cJSON_CreateNumber((double)*(const int64_t *)base);
  case T_FLOAT: return cJSON_CreateNumber(*(const double *)base);
  case T_BOOL: return cJSON_CreateBool(*(const int *)base);
  case T_STRING: return cJSON_CreateString(base);
  case T_ENUM: enum_name(k->choices, *(const int *)base, buf, sizeof buf); return cJSON_CreateString(buf);
  case T_INTLIST: return cJSON_CreateIntArray((const int *)base, c->eval_nk);
  }
  return NULL;
}

static char *to_json(const lr_config *c, int trajectory_only) {
  cJSON *root = cJSON_CreateObject();
  if (!root) goto nomem;
  for (size_t i = 0; i < N_KEYS; i++) {
    if (trajectory_only && config_key_resume_free(KEYS[i].name)) continue;
    cJSON *v = key_json(c, &KEYS[i]);
    if (!v || !cJSON_AddItemToObject(root, KEYS[i].name, v)) {
      cJSON_Delete(v);
      cJSON_Delete(root);
      goto nomem;
    }
  }
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!s) goto nomem;
  return s;
nomem:
  lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "config_to_json: out of memory");
  return NULL;
}

char *config_to_json(const lr_config *c) { return to_json(c, 0); }

int config_diff(const lr_config *a, const lr_config *b, int trajectory_only, const char *a_name,
                const char *b_name, int max_keys, char *out, size_t size) {
  int n = 0;
  size_t len = 0;
  if (size) out[0] = '\0';
  for (size_t i = 0; i < N_KEYS; i++) {
    if (trajectory_only && config_key_resume_free(KEYS[i].name)) continue;
    cJSON *x = key_json(a, &KEYS[i]), *y = key_json(b, &KEYS[i]);
    if (x && y && !cJSON_Compare(x, y, 1)) {
      if (n++ < max_keys && len < size) {
        char *vx = cJSON_PrintUnformatted(x), *vy = cJSON_PrintUnformatted(y);
        int k = snprintf(out + len, size - len, "%s%s (%s %.60s, %s %.60s)", len ? "; " : "",
                         KEYS[i].name, a_name, vx ? vx : "?", b_name, vy ? vy : "?");
        len += k > 0 ? (size_t)k : 0;
        cJSON_free(vx);
        cJSON_free(vy);
      }
    }
    cJSON_Delete(x);
    cJSON_Delete(y);
  }
  if (n > max_keys && len < size) snprintf(out + len, size - len, "; and %d more", n - max_keys);
  return n;
}
char *config_to_json_trajectory(const lr_config *c) { return to_json(c, 1); }

uint64_t config_hash_text(const char *text) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = text ? text : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return h;
}

uint64_t config_hash(const lr_config *c) {
  char *s = config_to_json(c);
  uint64_t h = config_hash_text(s);
  free(s);
  return h;
}

// Prefixes (ending in '.') or whole names of the resume-free keys (config.h).
static const char *const RESUME_FREE[] = {"log.",           "train.checkpoint.", "train.epochs",
                                          "train.max_steps", "train.threads",     "train.precision", "eval.batch_size",
                                          "dist.",           "bench."};

int config_key_resume_free(const char *key) {
  for (size_t i = 0; i < sizeof RESUME_FREE / sizeof RESUME_FREE[0]; i++) {
    const char *f = RESUME_FREE[i];
    size_t n = strlen(f);
    if (f[n - 1] == '.' ? !strncmp(key, f, n) : !strcmp(key, f)) return 1;
  }
  return 0;
}

static const char *type_name(const key_def *k) {
  switch (k->type) {
  case T_INT: return "int";
  case T_FLOAT: return "float";
  case T_BOOL: return "bool";
  case T_STRING: return "string";
  case T_ENUM: return "enum";
  case T_INTLIST: return "int list";
  }
  return "?";
}

void config_print_keys(FILE *f, int markdown) {
  if (markdown) fprintf(f, "| key | type | default | meaning |\n|---|---|---|---|\n");
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_def *k = &KEYS[i];
    if (markdown) {
      char choices[256] = ""; // '|' would split the Markdown cell
      for (const char *p = k->choices; p && *p && strlen(choices) < sizeof choices - 3; p++)
        strncat(choices, *p == '|' ? ", " : (char[]){*p, 0}, sizeof choices - strlen(choices) - 1);
      fprintf(f, "| `%s` | %s%s%s%s | `%s` | %s |\n", k->name, type_name(k),
              k->choices ? " (" : "", choices, k->choices ? ")" : "",
              k->def[0] ? k->def : "\"\"", k->help);
    } else {
      fprintf(f, "  %-30s %-7s default %-10s %s%s%s%s\n", k->name, type_name(k),
              k->def[0] ? k->def : "\"\"", k->help, k->choices ? " [" : "",
              k->choices ? k->choices : "", k->choices ? "]" : "");
    }
  }
}

lr_data_opts config_data_opts(const lr_config *c) {
  lr_data_opts o = {0};
  o.path = c->data_path;
  o.format = (lr_data_format)c->data_format;
  o.min_rating = c->data_min_rating;
  o.kcore = c->data_kcore;
  o.dedup = (lr_dedup)c->data_dedup;
  o.columns = c->data_columns;
  o.sep = config_separator(c) > 0 ? (char)config_separator(c) : ',';
  o.synth.users = c->syn_users;
  o.synth.items = c->syn_items;
  o.synth.mean_len = c->syn_mean_len;
  o.synth.interactions = c->syn_inter;
  o.synth.zipf = c->syn_zipf;
  o.synth.seed = (uint64_t)c->syn_seed;
  return o;
}
