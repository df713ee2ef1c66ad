// main.c: the `linrec` command line (launch/README.md). Parses arguments, builds and
// validates the config, hands it to dist/, and is the only place that turns
// an error status into a message and an exit code:
//   0 success; 1 runtime failure (I/O, data, MPI, memory, a damaged
//   checkpoint); 2 usage or configuration error; 3 training diverged (a
//   non-finite or out-of-range loss or gradient); 75 (EX_TEMPFAIL) training
//   stopped on SIGTERM/SIGUSR1 after writing a checkpoint: resume it with
//   `--resume latest` (the Slurm script requeues on 75). With several ranks
//   an error every rank agreed on ends the job normally; any other aborts it.
#include <errno.h>    // errno
#include <signal.h>   // sigaction, SIGTERM, SIGUSR1, sig_atomic_t
#include <stdio.h>    // printf
#include <stdlib.h>   // free, strtoll
#include <string.h>   // strcmp
#include <sys/stat.h> // stat
#include <unistd.h>   // sysconf, write, _exit, gethostname

#include "attention.h" // attn_names, attn_get: the attention kinds
#include "ckpt.h"
#include "ckpt_resume.h"
#include "comm.h"
#include <cjson/cJSON.h> // cJSON_Parse: recommend --history -

#include "config.h"
#include "dataset.h"
#include "eval.h"
#include "export.h"
#include "gemm.h" // lr_set_threads
#include "jobcheck.h"
#include "state.h"
#include "lr.h"
#include "modelfile.h"
#include "train.h"
#include "watchdog.h"

#ifndef LR_VERSION
#define LR_VERSION "unknown"
#endif

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define EXIT_DIVERGED 3   // a non-finite loss or gradient: rerunning the same config repeats it
#define EXIT_PREEMPTED 75 // EX_TEMPFAIL: checkpointed on a signal, resume to continue

typedef struct {
  const char *cmd;
  const char *config_path, *out, *model, *users, *split, *resume, *hidden, *users_file, *history;
  const char *sets[256];
  int n_sets, k, include_history, help, markdown, allow_data_change;
} cli;

// ---- help -----------------------------------------------------------------------------

static void usage_main(FILE *f) {
  fprintf(f,
          "usage: linrec <command> [options]\n\n"
          "commands:\n"
          "  prep       read and preprocess a dataset, write the binary dataset file\n"
          "  train      train a model (under mpirun for several ranks)\n"
          "  bench      measure training speed on synthetic data (one JSON line)\n"
          "  eval       evaluate a trained model or the popularity baseline\n"
          "  recommend  print top-K items for users\n"
          "  export     write a model's embeddings and tensors as NumPy .npy files\n"
          "  ckpt       inspect or verify a training checkpoint\n\n"
          "`linrec <command> --help` describes each; exit codes: 0 ok, 1 runtime error\n"
          "(also: a damaged checkpoint), 2 usage or configuration error, 75 training\n"
          "stopped on SIGTERM/SIGUSR1 after writing a checkpoint (resume it).\n");
}

// The attention kinds of the registry (core/attention.h): name, whether
// causal, formula; as a Markdown table (the README's) or as plain lines.
static void print_kinds(FILE *f, int markdown) {
  if (markdown) fprintf(f, "| kind | formula | causal |\n|---|---|---|\n");
  for (int k = 0; k < attn_count(); k++) {
    const lr_attn_ops *a = attn_get(k);
    if (markdown) fprintf(f, "| `%s` | %s | %s |\n", a->name, a->formula, a->causal ? "yes" : "no");
    else fprintf(f, "  %-14s %s%s\n", a->name, a->formula, a->causal ? " (causal)" : "");
  }
}

static void usage_cmd(FILE *f, const char *cmd) {
  if (!strcmp(cmd, "prep"))
    fprintf(f, "usage: linrec prep --config FILE [--set key=value]... --out FILE\n"
               "  Reads data.path as data.format, applies data.min_rating, data.dedup and\n"
               "  data.kcore, and writes the binary dataset (use it with data.format=binary).\n");
  else if (!strcmp(cmd, "train"))
    fprintf(f, "usage: [mpirun -np P] linrec train [--config FILE] [--set key=value]... "
               "[--out DIR] [--resume latest|CKPT [--allow-data-change]]\n"
               "  Trains, validating every epoch with early stopping; writes DIR/metrics.jsonl\n"
               "  and DIR/model.lrm (the best model). DIR defaults to ./out.\n"
               "  Checkpoints (train.checkpoint.*) go to DIR/checkpoints; --resume latest\n"
               "  continues from the newest valid one (none: starts from scratch), --resume\n"
               "  CKPT from that checkpoint directory. A checkpoint records the training\n"
               "  data's fingerprint: resuming onto other data is an error (exit 2) unless\n"
               "  --allow-data-change. SIGTERM or SIGUSR1: checkpoint at the next step\n"
               "  boundary and exit 75.\n");
  else if (!strcmp(cmd, "bench"))
    fprintf(f, "usage: [mpirun -np P] linrec bench [--config FILE] [--set key=value]...\n"
               "  Trains the configured model on its data (normally data.format=synthetic)\n"
               "  for bench.warmup + bench.steps optimizer steps on examples with all\n"
               "  model.max_len positions real, without evaluation or files, then measures\n"
               "  the sgemm peak of the same ranks and threads. Prints one JSON line on\n"
               "  stdout: seq_per_s, gflops (analytic FLOPs x seq/s), sgemm_peak_gflops\n"
               "  (linrec's GEMM), blas_peak_gflops (OpenBLAS's, for comparison),\n"
               "  peak_rss_mib (largest rank) and phases (seconds per step by phase).\n");
  else if (!strcmp(cmd, "ckpt")) {
    fprintf(f, "usage: linrec ckpt inspect|verify DIR\n"
               "  DIR is a checkpoint (step-NNNNNNNN) or a checkpoint directory (then the one\n"
               "  its `latest` names). inspect prints the manifest, the training state and\n"
               "  the config; verify checks every checksum: exit 0 valid, 1 damaged (each\n"
               "  problem is printed with the file and the reason).\n");
    return;
  }
  else if (!strcmp(cmd, "eval"))
    fprintf(f, "usage: linrec eval [--config FILE] [--set key=value]... --model pop|FILE|DIR "
               "[--split valid|test|both]\n"
               "  Prints one JSON object per split on stdout. --model pop is the popularity\n"
               "  baseline; FILE is a model.lrm (DIR: DIR/model.lrm), whose stored config is\n"
               "  the base that --config and --set override.\n");
  else if (!strcmp(cmd, "recommend"))
    fprintf(f, "usage: linrec recommend --model FILE|DIR [--config FILE] [--set key=value]... "
               "--users all|ID[,ID...] | --users-file FILE | --history ID[,ID...]|-\n"
               "       [--k K] [--include-history] [--out FILE] [--hidden FILE.npy]\n"
               "  Prints one JSON line per user: original user id, top-K original item ids\n"
               "  and scores, predicting each user's next interaction from the whole history\n"
               "  (--users all: every user; --users-file: one id a line), in batches, to\n"
               "  stdout or --out FILE. --history ranks an ad-hoc history of original item\n"
               "  ids; --history - reads JSON lines {\"id\": ..., \"items\": [...]} from stdin\n"
               "  (one rank) and prints {\"id\": ..., \"items\": [...], \"scores\": [...]}.\n"
               "  Ids are the original ones (numbers, or strings in quotes); the model file's\n"
               "  id maps are used when it has them. --hidden writes each user's final\n"
               "  hidden state (users x model.d float32): an item's score is its dot\n"
               "  product with the item's row of `linrec export`'s items.npy.\n");
  else if (!strcmp(cmd, "export")) {
    fprintf(f, "usage: linrec export --model FILE|DIR --out DIR\n"
               "  Writes the model's item embeddings (items.npy, row r = line r of items.txt,\n"
               "  the original ids), the user table when the architecture has one (users.npy,\n"
               "  users.txt), other row groups (<name>.npy), the encoder's tensors by name\n"
               "  (dense/<tensor>.npy) and config.json: everything loads with numpy alone.\n");
    return;
  }
  fprintf(f, "\ncommon options:\n"
             "  --config FILE      JSON config (nested objects or dotted keys)\n"
             "  --set key=value    override one key (repeatable)\n"
             "  --out PATH         output directory (train) or file (prep)\n"
             "  --help [--markdown]  this text (--markdown: the key and attention tables\n"
             "                       as Markdown)\n\n"
             "config keys:\n");
  config_print_keys(f, 0);
  fprintf(f, "\nattention kinds (model.attention):\n");
  print_kinds(f, 0);
}

// ---- argument parsing -----------------------------------------------------------------

static int parse_args(cli *a, int argc, char **argv) {
  memset(a, 0, sizeof *a);
  a->k = 10;
  a->split = "both";
  if (argc < 2) return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, "missing command");
  a->cmd = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *o = argv[i];
#define NEED_VALUE                                                                           \
  if (i + 1 >= argc) return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, "%s needs a value", o);
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) a->help = 1;
    else if (!strcmp(o, "--include-history")) a->include_history = 1;
    else if (!strcmp(o, "--markdown")) a->markdown = 1;
    else if (!strcmp(o, "--allow-data-change")) a->allow_data_change = 1;
    else if (!strcmp(o, "--config")) { NEED_VALUE a->config_path = argv[++i]; }
    else if (!strcmp(o, "--out")) { NEED_VALUE a->out = argv[++i]; }
    else if (!strcmp(o, "--model")) { NEED_VALUE a->model = argv[++i]; }
    else if (!strcmp(o, "--users")) { NEED_VALUE a->users = argv[++i]; }
    else if (!strcmp(o, "--split")) { NEED_VALUE a->split = argv[++i]; }
    else if (!strcmp(o, "--resume")) { NEED_VALUE a->resume = argv[++i]; }
    else if (!strcmp(o, "--hidden")) { NEED_VALUE a->hidden = argv[++i]; }
    else if (!strcmp(o, "--users-file")) { NEED_VALUE a->users_file = argv[++i]; }
    else if (!strcmp(o, "--history")) { NEED_VALUE a->history = argv[++i]; }
    else if (!strcmp(o, "--k")) {
      NEED_VALUE
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 100000)
        return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, "--k: expected 1..100000, got %s", argv[i]);
      a->k = (int)v;
    } else if (!strcmp(o, "--set")) {
      NEED_VALUE
      if (a->n_sets == (int)(sizeof a->sets / sizeof a->sets[0]))
        return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, "too many --set options");
      a->sets[a->n_sets++] = argv[++i];
    } else {
      return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__, "%s: unknown option %s (see linrec %s --help)",
                      a->cmd, o, a->cmd);
    }
#undef NEED_VALUE
  }
  return LR_OK;
}

// Model file path: FILE, or DIR/model.lrm when --model names a directory
// (stat only: a FIFO named by mistake is refused by the reader, not opened
// here for a blocking read).
static void model_path(char *out, size_t cap, const char *m) {
  struct stat st;
  snprintf(out, cap, stat(m, &st) == 0 && S_ISDIR(st.st_mode) ? "%s/model.lrm" : "%s", m);
}

// defaults <- model file's config (if any) <- --config <- --set, then validate.
static int build_config(lr_config *c, const cli *a, const char *model_file) {
  config_defaults(c);
  if (model_file) {
    char *json;
    LR_CALL(modelfile_read_config(model_file, &json, NULL, NULL));
    int rc = config_load_json(c, json, model_file);
    free(json);
    LR_CALL(rc);
  }
  if (a->config_path) LR_CALL(config_load_file(c, a->config_path));
  for (int i = 0; i < a->n_sets; i++) LR_CALL(config_set(c, a->sets[i]));
  LR_CALL(config_validate(c));
  return train_check_config(c);
}

// ---- commands -------------------------------------------------------------------------

static int cmd_prep(const cli *a) {
  lr_config c;
  LR_CALL(build_config(&c, a, NULL));
  LR_CHECK(a->out, LR_ERR_CONFIG, "prep: --out FILE is required");
  lr_data_opts o = config_data_opts(&c);
  lr_dataset ds;
  double t0 = dist_wtime();
  LR_CALL(data_load(&ds, &o));
  int rc = data_write_binary(&ds, a->out);
  if (rc == LR_OK)
    printf("{\"event\":\"prep\",\"users\":%lld,\"items\":%lld,\"interactions\":%lld,"
           "\"seconds\":%.3f,\"out\":\"%s\"}\n",
           (long long)ds.n_users, (long long)ds.n_items, (long long)ds.n_inter,
           dist_wtime() - t0, a->out);
  dataset_free(&ds);
  return rc;
}

// Set by SIGTERM/SIGUSR1 (train checkpoints and stops at the next step
// boundary). Another signal while the checkpoint is written only sets it
// again: nothing is interrupted, and an uncommitted checkpoint is never
// trusted anyway (io/ckpt.h), so even SIGKILL cannot damage a committed one.
static volatile sig_atomic_t g_stop;

static void on_stop_signal(int sig) { g_stop = sig; }

static int install_stop_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  LR_CHECK(sigaction(SIGTERM, &sa, NULL) == 0 && sigaction(SIGUSR1, &sa, NULL) == 0, LR_ERR_IO,
           "sigaction: %s", strerror(errno));
  return LR_OK;
}

// Threads per rank (lr_set_threads): train.threads; 0 = OPENBLAS_NUM_THREADS
// when set, else the node's cores shared by its ranks. Collective.
static int set_threads(const lr_config *c) {
  int ranks = dist_node_ranks();
  if (ranks < 0) return ranks;
  int n = (int)c->train_threads;
  const char *env = getenv("OPENBLAS_NUM_THREADS");
  if (n == 0 && env) n = atoi(env);
  if (n <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > ranks ? (int)(cores / ranks) : 1;
  }
  return lr_set_threads(n);
}

// The command line's words that are not config, which every rank must share
// (jobcheck_start). Cannot fail.
static void command_text(const cli *a, char *out, size_t size) {
  snprintf(out, size,
           "%s --out %s --resume %s%s --model %s --split %s --users %s --users-file %s --history %s "
           "--k %d%s",
           a->cmd, a->out ? a->out : "-", a->resume ? a->resume : "-",
           a->allow_data_change ? " --allow-data-change" : "", a->model ? a->model : "-",
           a->split, a->users ? a->users : "-", a->users_file ? a->users_file : "-",
           a->history ? a->history : "-", a->k, a->include_history ? " --include-history" : "");
}

// Started by a launcher (mpirun, srun): its environment, seen before MPI_Init
// (a singleton's MPI_Init adds PMIx variables of its own).
static int g_launched;

// The watchdog's verdict (dist/watchdog.h): a rank, host or launcher of this
// job is lost. Nobody is left to agree with: print and end this process at
// once (the checkpoints committed so far stay valid, `latest` among them).
static void on_lost(const char *msg) {
  char host[64] = "?", line[1400];
  gethostname(host, sizeof host - 1);
  int n = snprintf(line, sizeof line, "[rank %d/%d on %s] linrec: %s: stopping (exit %d)\n",
                   dist_rank(), dist_size(), host, msg, EXIT_RUNTIME);
  if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  _exit(EXIT_RUNTIME);
}

// The config every rank built: agreed on (alike errors reported once),
// checked to be the same job on every rank (jobcheck.h); then the watchdog
// starts (dist.timeout). Collective.
static int config_agreed(lr_config *c, const cli *a, const char *model_file) {
  LR_CALL(dist_agree(build_config(c, a, model_file)));
  char cmd[LR_PATH_MAX * 3];
  command_text(a, cmd, sizeof cmd);
  LR_CALL(jobcheck_start(c, cmd));
  dist_watchdog_cfg wd = {c->dist_timeout, g_launched, on_lost};
  return dist_watchdog_start(&wd);
}

static int cmd_train(const cli *a, int *exit_code) {
  lr_config c;
  LR_CALL(config_agreed(&c, a, NULL));
  LR_CALL(set_threads(&c));
  LR_CALL(install_stop_handlers());
  lr_train_result r;
  lr_train_opts o = {a->resume, &g_stop, a->allow_data_change};
  LR_CALL(train_run(&c, a->out ? a->out : "out", &o, &r));
  if (r.stop_signal) {
    dist_log0("stopped on signal %d after step %lld; checkpoint %s\n"
              "continue with: linrec train ... --resume latest (exit code %d)\n",
              r.stop_signal, (long long)r.steps, r.checkpoint[0] ? r.checkpoint : "(none)",
              EXIT_PREEMPTED);
    *exit_code = EXIT_PREEMPTED;
    return LR_OK;
  }
  for (int i = 0; i < r.test.nk; i++)
    dist_log0("test: recall@%d %.4f  mrr@%d %.4f  ndcg@%d %.4f  (best epoch %d, %lld steps, "
              "%.1f s)\n",
              r.test.k[i], r.test.recall[i], r.test.k[i], r.test.mrr[i], r.test.k[i],
              r.test.ndcg[i], r.best_epoch, (long long)r.steps, r.seconds);
  return LR_OK;
}

// linrec bench: progress lines to stderr, one JSON line on stdout.
static int cmd_bench(const cli *a) {
  lr_config c;
  LR_CALL(config_agreed(&c, a, NULL));
  LR_CALL(set_threads(&c));
  dist_log0_stream(stderr);
  lr_bench_result r;
  LR_CALL(train_bench(&c, &r));
  if (dist_rank() != 0) return LR_OK;
  printf("{\"event\":\"bench\",\"attention\":\"%s\",\"positions\":\"%s\",\"objective\":"
         "\"%s\",\"d\":%lld,\"heads\":%lld,\"layers\":%lld,\"inner\":%lld,\"N\":%lld,"
         "\"items\":%lld,\"batch\":%lld,\"ranks\":%d,\"threads\":%d,\"table\":\"%s\","
         "\"warmup\":%lld,\"steps\":%lld,\"step_s\":%.5f,\"seq_per_s\":%.1f,"
         "\"flops_per_seq\":%.0f,\"gflops\":%.2f,\"sgemm_peak_gflops\":%.2f,"
         "\"blas_peak_gflops\":%.2f,\"peak_frac\":%.3f,\"peak_rss_mib\":%.1f,\"phases\":{",
         attn_get(c.model_attention)->name,
         c.train_positions == LR_POS_ALL ? "all" : "last",
         c.train_objective == LR_OBJ_CE ? "ce" : c.train_objective == LR_OBJ_BCE ? "bce" : "sampled",
         (long long)c.model_d, (long long)c.model_heads, (long long)c.model_layers,
         (long long)c.model_inner, (long long)c.model_max_len, (long long)c.syn_items,
         (long long)r.batch, dist_size(), r.blas_threads, r.table_sharded ? "sharded" : "replicated",
         (long long)r.warmup, (long long)r.steps, r.step_s, r.seq_per_s, r.flops_per_seq,
         r.gflops, r.sgemm_peak_gflops, r.blas_peak_gflops, r.gflops / r.sgemm_peak_gflops,
         r.peak_rss_mib);
  for (int k = 0; k < LR_BENCH_PHASES; k++)
    printf("%s\"%s\":%.5f", k ? "," : "", LR_BENCH_PHASE_NAMES[k], r.phase_s[k]);
  printf("},\"phases_unit\":\"seconds per step, mean over ranks\"}\n");
  fflush(stdout);
  return LR_OK;
}

static void print_eval(const char *split, const char *model, const lr_metrics *m) {
  if (dist_rank() != 0) return;
  printf("{\"event\":\"eval\",\"split\":\"%s\",\"model\":\"%s\",\"users\":%lld", split, model,
         (long long)m->n);
  for (int i = 0; i < m->nk; i++)
    printf(",\"recall@%d\":%.6f,\"mrr@%d\":%.6f,\"ndcg@%d\":%.6f", m->k[i], m->recall[i], m->k[i],
           m->mrr[i], m->k[i], m->ndcg[i]);
  printf("}\n");
  fflush(stdout);
}

// A loaded scorer: dataset, and the model's state (dist/state.h) unless pop.
typedef struct {
  lr_config c;
  lr_dataset ds;
  lr_state st;
  float *pop;
  lr_scorer sc;
} loaded;

static void loaded_free(loaded *l) {
  dataset_free(&l->ds);
  state_free(&l->st);
  lr_free(l->pop);
}

static int load_scorer(loaded *l, const cli *a) {
  memset(l, 0, sizeof *l);
  LR_CHECK(a->model, LR_ERR_CONFIG, "%s: --model pop|FILE is required", a->cmd);
  int pop = !strcmp(a->model, "pop");
  char path[LR_PATH_MAX];
  if (!pop) model_path(path, sizeof path, a->model);
  LR_CALL(config_agreed(&l->c, a, pop ? NULL : path));
  lr_data_opts o = config_data_opts(&l->c);
  LR_CALL(dist_agree(data_load(&l->ds, &o)));
  lr_data_fp fp;
  data_fingerprint(&l->ds, &fp);
  LR_CALL(jobcheck_data(&fp, &l->c));
  l->pop = eval_popularity(&l->ds);
  LR_CALL(dist_agree(l->pop ? LR_OK : LR_ERR_NOMEM));
  // recommend scores any user on any rank: then every rank holds every user's rows
  if (!pop) LR_CALL(state_open_model(&l->st, &l->c, &l->ds, path, !strcmp(a->cmd, "recommend")));
  l->sc = eval_scorer(pop ? NULL : &l->st, l->pop, l->ds.n_users);
  return LR_OK;
}

static int cmd_eval(const cli *a) {
  LR_CHECK(!strcmp(a->split, "valid") || !strcmp(a->split, "test") || !strcmp(a->split, "both"),
           LR_ERR_CONFIG, "eval: --split must be valid, test or both, got %s", a->split);
  loaded l;
  int rc = load_scorer(&l, a);
  const char *name = a->model && !strcmp(a->model, "pop") ? "pop" : "model";
  lr_metrics m;
  if (rc == LR_OK && strcmp(a->split, "test")) {
    rc = eval_split(&m, &l.sc, &l.ds, LR_SPLIT_VALID, &l.c);
    if (rc == LR_OK) print_eval("valid", name, &m);
  }
  if (rc == LR_OK && strcmp(a->split, "valid")) {
    rc = eval_split(&m, &l.sc, &l.ds, LR_SPLIT_TEST, &l.c);
    if (rc == LR_OK) print_eval("test", name, &m);
  }
  loaded_free(&l);
  return rc;
}

// s as a JSON string (ids hold no control characters: only " and \\ need escaping).
static void print_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

// The id as the maps hold it: a decimal integer without leading zeros
// ("007" is 7), any other string as it is. out has LR_ID_MAX_BYTES+1 bytes.
static void canonical_id(const char *s, size_t n, char *out) {
  size_t k = 0;
  int digits = n > 0;
  for (size_t j = 0; j < n; j++) digits &= s[j] >= '0' && s[j] <= '9';
  if (digits) while (k + 1 < n && s[k] == '0') k++;
  n -= k;
  if (n > LR_ID_MAX_BYTES) n = LR_ID_MAX_BYTES;
  memcpy(out, s + k, n);
  out[n] = '\0';
}

// The model's id maps (section 4 of its file) when it has them, else the
// data's; the model's must match the data's counts.
static int id_maps(const loaded *l, const char *model_file, lr_names *users, lr_names *items) {
  LR_CALL(modelfile_read_ids(model_file, users, items));
  if (users->n == 0 && items->n == 0) return data_id_names(&l->ds, users, items);
  if (users->n != l->ds.n_users || items->n != l->ds.n_items + 1) {
    int64_t u = users->n, i = items->n - 1;
    names_free(users);
    names_free(items);
    return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                    "%s: the model's id maps have %lld users and %lld items, the data %lld and %lld: "
                    "not the data it was trained on",
                    model_file, (long long)u, (long long)i, (long long)l->ds.n_users,
                    (long long)l->ds.n_items);
  }
  return LR_OK;
}

// What recommend ranks: n inputs, each a known user (ds = the data) or an
// ad-hoc history (ds = own, a dataset of the histories alone).
typedef struct {
  int64_t n;
  int64_t *users;     // (n) index into *ds
  int64_t *row_users; // (n) the state's user (per-user rows), or NULL = users
  char **label;       // (n) ad-hoc: the id to print as given (JSON text), or NULL
  lr_dataset own;     // ad-hoc histories
  int adhoc;
} rec_inputs;

static void rec_inputs_free(rec_inputs *r) {
  lr_free(r->users);
  lr_free(r->row_users);
  for (int64_t i = 0; r->label && i < r->n; i++) free(r->label[i]);
  lr_free(r->label);
  dataset_free(&r->own);
  memset(r, 0, sizeof *r);
}

// Index of original id s (len bytes) in t (order from names_index), or -1.
static int64_t find_id(const lr_names *t, const int64_t *order, const char *s, size_t len) {
  char id[LR_ID_MAX_BYTES + 1];
  if (len == 0 || len > LR_ID_MAX_BYTES) return -1;
  canonical_id(s, len, id);
  return names_find(t, order, id);
}

// Append one id to the user list (grown as needed).
static int push_user(rec_inputs *r, int64_t *cap, int64_t u) {
  if (r->n == *cap) {
    int64_t nc = *cap ? *cap * 2 : 64;
    int64_t *p = lr_calloc((size_t)nc, sizeof *p, "user list");
    if (!p) return LR_ERR_NOMEM;
    if (r->n) memcpy(p, r->users, (size_t)r->n * sizeof *p);
    lr_free(r->users);
    r->users = p, *cap = nc;
  }
  r->users[r->n++] = u;
  return LR_OK;
}

// --users all | ID,ID,... and --users-file FILE (one id a line).
static int known_users(rec_inputs *r, const cli *a, const loaded *l, const lr_names *un,
                       const int64_t *order) {
  int64_t cap = 0;
  if (a->users && !strcmp(a->users, "all")) {
    for (int64_t u = 0; u < l->ds.n_users; u++) LR_CALL(push_user(r, &cap, u));
    return LR_OK;
  }
  if (a->users) {
    for (const char *p = a->users;;) {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      int64_t u = find_id(un, order, p, len);
      LR_CHECK(u >= 0, LR_ERR_CONFIG, "--users: user '%.*s' is not in the dataset",
               (int)(len > 80 ? 80 : len), p);
      LR_CALL(push_user(r, &cap, u));
      if (!end) return LR_OK;
      p = end + 1;
    }
  }
  FILE *f = fopen(a->users_file, "r");
  LR_CHECK(f, LR_ERR_IO, "--users-file %s: %s", a->users_file, strerror(errno));
  char line[LR_ID_MAX_BYTES + 8];
  long long ln = 0;
  int rc = LR_OK;
  while (rc == LR_OK && fgets(line, sizeof line, f)) {
    ln++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s:%lld: id longer than %d bytes",
                    a->users_file, ln, LR_ID_MAX_BYTES);
      break;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                   line[len - 1] == '\t'))
      line[--len] = '\0';
    char *s = line;
    while (*s == ' ' || *s == '\t') s++, len--;
    if (!len) continue;
    int64_t u = find_id(un, order, s, len);
    if (u < 0)
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s:%lld: user '%.80s' is not in the dataset",
                    a->users_file, ln, s);
    else
      rc = push_user(r, &cap, u);
  }
  if (rc == LR_OK && ferror(f))
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "read %s: %s", a->users_file, strerror(errno));
  fclose(f);
  if (rc == LR_OK && r->n == 0)
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s: no user ids", a->users_file);
  return rc;
}

// One ad-hoc history: items (n original ids), its label (JSON text or NULL)
// and, when given, a known user whose per-user rows it uses.
typedef struct {
  int64_t n_hist, cap_hist, n_items_total, cap_items;
  int64_t *len;      // (n_hist)
  int32_t *items;    // all histories back to back
  int64_t *row_user; // (n_hist) known user or -1
  char **label;      // (n_hist)
} adhoc_buf;

static int adhoc_grow(adhoc_buf *b, int64_t more_items) {
  if (b->n_hist == b->cap_hist) {
    int64_t nc = b->cap_hist ? b->cap_hist * 2 : 16;
    int64_t *len = realloc(b->len, (size_t)nc * sizeof *len);
    if (len) b->len = len;
    int64_t *ru = realloc(b->row_user, (size_t)nc * sizeof *ru);
    if (ru) b->row_user = ru;
    char **lb = realloc(b->label, (size_t)nc * sizeof *lb);
    if (lb) b->label = lb;
    LR_CHECK(len && ru && lb, LR_ERR_NOMEM, "out of memory for %lld histories", (long long)nc);
    b->cap_hist = nc;
  }
  if (b->n_items_total + more_items > b->cap_items) {
    int64_t nc = b->cap_items ? b->cap_items : 256;
    while (nc < b->n_items_total + more_items) nc *= 2;
    int32_t *it = realloc(b->items, (size_t)nc * sizeof *it);
    LR_CHECK(it, LR_ERR_NOMEM, "out of memory for %lld history items", (long long)nc);
    b->items = it, b->cap_items = nc;
  }
  return LR_OK;
}

static void adhoc_free(adhoc_buf *b) {
  for (int64_t i = 0; i < b->n_hist; i++) free(b->label[i]);
  free(b->len), free(b->items), free(b->row_user), free(b->label);
  memset(b, 0, sizeof *b);
}

// An item id of a JSON history: a string, or an integer number.
static int json_item_id(const cJSON *v, char *out, size_t cap) {
  if (cJSON_IsString(v)) {
    if (strlen(v->valuestring) >= cap) return 0;
    snprintf(out, cap, "%s", v->valuestring);
    return 1;
  }
  if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740991.0 &&
      v->valuedouble == (double)(int64_t)v->valuedouble) {
    snprintf(out, cap, "%lld", (long long)v->valuedouble);
    return 1;
  }
  return 0;
}

// Add one history from ids (a JSON array, or NULL and a comma list).
static int adhoc_add(adhoc_buf *b, const cJSON *arr, const char *list, const char *where,
                     const lr_names *in, const int64_t *iorder, int64_t row_user, char *label) {
  int64_t n = 0;
  if (arr) n = cJSON_GetArraySize(arr);
  else for (const char *p = list; *p; p++) n += *p == ',';
  if (!arr) n += 1;
  int rc = adhoc_grow(b, n);
  if (rc != LR_OK) {
    free(label);
    return rc;
  }
  b->label[b->n_hist] = label; // owned from here
  b->row_user[b->n_hist] = row_user;
  b->len[b->n_hist++] = 0;
  int64_t *len = &b->len[b->n_hist - 1];
  char id[LR_ID_MAX_BYTES + 1];
  const char *p = list;
  for (int64_t k = 0; k < n; k++) {
    int64_t i;
    if (arr) {
      const cJSON *v = cJSON_GetArrayItem(arr, (int)k);
      LR_CHECK(json_item_id(v, id, sizeof id), LR_ERR_DATA,
               "%s: item %lld of \"items\" is not an id (a string, or an integer)", where,
               (long long)k + 1);
      i = find_id(in, iorder, id, strlen(id));
      LR_CHECK(i > 0, LR_ERR_DATA, "%s: item '%.80s' is not in the model's catalog", where, id);
    } else {
      const char *end = strchr(p, ',');
      size_t l = end ? (size_t)(end - p) : strlen(p);
      i = find_id(in, iorder, p, l);
      LR_CHECK(i > 0, LR_ERR_CONFIG, "%s: item '%.*s' is not in the model's catalog", where,
               (int)(l > 80 ? 80 : l), p);
      p = end ? end + 1 : p + l;
    }
    b->items[b->n_items_total++] = (int32_t)i;
    (*len)++;
  }
  LR_CHECK(*len > 0, LR_ERR_DATA, "%s: an empty history", where);
  return LR_OK;
}

// JSON lines on stdin: {"id": ..., "items": [...]} ("id" optional: printed
// back; when it is a known user, that user's per-user rows are used).
static int adhoc_stdin(adhoc_buf *b, const lr_names *un, const int64_t *uorder,
                       const lr_names *in, const int64_t *iorder) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  long long ln = 0;
  int rc = LR_OK;
  while (rc == LR_OK && (got = getline(&line, &cap, stdin)) >= 0) {
    ln++;
    char where[48];
    snprintf(where, sizeof where, "stdin:%lld", ln);
    if (got > (1 << 20)) {
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "%s: line over 1 MiB", where);
      break;
    }
    const char *s = line;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    if (!*s) continue;
    cJSON *o = cJSON_Parse(line);
    const cJSON *items = o ? cJSON_GetObjectItemCaseSensitive(o, "items") : NULL;
    const cJSON *idv = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
    if (!cJSON_IsObject(o) || !cJSON_IsArray(items)) {
      rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__,
                    "%s: expected a JSON object {\"id\": ..., \"items\": [ids...]}, got '%.60s'",
                    where, s);
      cJSON_Delete(o);
      break;
    }
    char *label = NULL;
    int64_t row_user = -1;
    if (idv && !cJSON_IsNull(idv)) {
      char id[LR_ID_MAX_BYTES + 1];
      label = cJSON_PrintUnformatted(idv);
      if (!label) rc = lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
      else if (json_item_id(idv, id, sizeof id)) row_user = find_id(un, uorder, id, strlen(id));
    }
    if (rc == LR_OK) rc = adhoc_add(b, items, NULL, where, in, iorder, row_user, label);
    else free(label);
    cJSON_Delete(o);
  }
  free(line);
  if (rc == LR_OK && ferror(stdin))
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "read stdin: %s", strerror(errno));
  if (rc == LR_OK && b->n_hist == 0)
    rc = lr_error(LR_ERR_DATA, __FILE__, __LINE__, "stdin: no histories");
  return rc;
}

// The histories as a dataset of their own (items within the model's catalog).
static int adhoc_inputs(rec_inputs *r, adhoc_buf *b, const loaded *l) {
  r->adhoc = 1;
  r->n = b->n_hist;
  lr_dataset *d = &r->own;
  d->n_users = b->n_hist, d->n_items = l->ds.n_items, d->n_inter = b->n_items_total;
  d->offsets = lr_calloc((size_t)d->n_users + 1, sizeof *d->offsets, "history offsets");
  d->items = lr_calloc((size_t)d->n_inter, sizeof *d->items, "history items");
  r->users = lr_calloc((size_t)r->n, sizeof *r->users, "history list");
  r->row_users = lr_calloc((size_t)r->n, sizeof *r->row_users, "history users");
  r->label = lr_calloc((size_t)r->n, sizeof *r->label, "history ids");
  if (!d->offsets || !d->items || !r->users || !r->row_users || !r->label) return LR_ERR_NOMEM;
  memcpy(d->items, b->items, (size_t)d->n_inter * sizeof *d->items);
  for (int64_t h = 0; h < r->n; h++) {
    d->offsets[h + 1] = d->offsets[h] + b->len[h];
    r->users[h] = h;
    r->label[h] = b->label[h], b->label[h] = NULL;
    if (b->row_user[h] < 0 && l->st.n_rows_groups > 0)
      return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                      "history %lld: this model (model.arch with a users table) needs the \"id\" "
                      "of a known user for an ad-hoc history",
                      (long long)h + 1);
    r->row_users[h] = b->row_user[h] < 0 ? 0 : b->row_user[h]; // 0: no per-user rows to read
  }
  return LR_OK;
}

static int cmd_recommend(const cli *a) {
  const int modes = (a->users != NULL) + (a->users_file != NULL) + (a->history != NULL);
  LR_CHECK(modes == 1, LR_ERR_CONFIG,
           "recommend: give one of --users all|ID[,ID...], --users-file FILE, --history "
           "ID[,ID...]|-");
  LR_CHECK(a->model && strcmp(a->model, "pop"), LR_ERR_CONFIG,
           "recommend: --model FILE is required (a trained model)");
  LR_CHECK(!(a->history && !strcmp(a->history, "-")) || dist_size() == 1, LR_ERR_CONFIG,
           "recommend --history -: reads stdin, run it on one rank");
  loaded l;
  int rc = load_scorer(&l, a);
  int64_t *uorder = NULL, *iorder = NULL;
  int32_t *items = NULL;
  float *scores = NULL, *hidden = NULL;
  lr_names un = {0}, in = {0};
  rec_inputs r = {0};
  adhoc_buf b = {0};
  FILE *out = stdout;
  char path[LR_PATH_MAX];
  if (rc) goto done;
  model_path(path, sizeof path, a->model);
  if ((rc = id_maps(&l, path, &un, &in)) != LR_OK || (rc = names_index(&un, &uorder)) != LR_OK ||
      (rc = names_index(&in, &iorder)) != LR_OK)
    goto done;
  if (a->history) {
    rc = !strcmp(a->history, "-")
             ? adhoc_stdin(&b, &un, uorder, &in, iorder)
             : adhoc_add(&b, NULL, a->history, "--history", &in, iorder, -1, NULL);
    if (rc == LR_OK) rc = adhoc_inputs(&r, &b, &l);
  } else {
    rc = known_users(&r, a, &l, &un, uorder);
  }
  if (rc) goto done;
  const lr_dataset *ds = r.adhoc ? &r.own : &l.ds;
  if (a->out && dist_rank() == 0 && !(out = fopen(a->out, "w"))) {
    out = stdout;
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "create %s: %s", a->out, strerror(errno));
    goto done;
  }
  // in batches: memory bounded whatever the number of users
  const int64_t BATCH = 8192, K = a->k, D = l.c.model_d;
  items = lr_calloc((size_t)(BATCH * K), sizeof *items, "recommendations");
  scores = lr_calloc((size_t)(BATCH * K), sizeof *scores, "recommendation scores");
  if (a->hidden) hidden = lr_calloc((size_t)(r.n * D), sizeof *hidden, "hidden states");
  if (!items || !scores || (a->hidden && !hidden)) { rc = LR_ERR_NOMEM; goto done; }
  // numeric ids print as JSON numbers (as always), string ids as strings
  const int ustr = l.ds.user_names.n > 0, istr = l.ds.item_names.n > 0;
  for (int64_t s = 0; s < r.n && rc == LR_OK; s += BATCH) {
    const int64_t nb = r.n - s < BATCH ? r.n - s : BATCH;
    rc = eval_topk_hidden(items, scores, hidden ? hidden + s * D : NULL, &l.sc, ds, r.users + s,
                          r.row_users ? r.row_users + s : NULL, nb, a->k, !a->include_history,
                          &l.c);
    for (int64_t i = 0; rc == LR_OK && i < nb && dist_rank() == 0; i++) {
      if (r.adhoc) {
        fprintf(out, "{\"id\":%s", r.label[s + i] ? r.label[s + i] : "null");
      } else {
        fprintf(out, "{\"user\":");
        if (ustr) print_json_str(out, names_get(&un, r.users[s + i]));
        else fputs(names_get(&un, r.users[s + i]), out);
      }
      fprintf(out, ",\"items\":[");
      for (int j = 0; j < a->k; j++) {
        if (!items[i * K + j]) continue;
        fputs(j ? "," : "", out);
        if (istr) print_json_str(out, names_get(&in, items[i * K + j]));
        else fputs(names_get(&in, items[i * K + j]), out);
      }
      fprintf(out, "],\"scores\":[");
      for (int j = 0; j < a->k; j++)
        if (items[i * K + j]) fprintf(out, "%s%.5f", j ? "," : "", scores[i * K + j]);
      fprintf(out, "]}\n");
    }
  }
  if (rc == LR_OK && hidden && dist_rank() == 0) rc = export_npy(a->hidden, hidden, r.n, D);
done:
  if (out != stdout && fclose(out) != 0 && rc == LR_OK)
    rc = lr_error(LR_ERR_IO, __FILE__, __LINE__, "write %s: %s", a->out, strerror(errno));
  fflush(stdout);
  free(uorder);
  free(iorder);
  lr_free(items);
  lr_free(scores);
  lr_free(hidden);
  names_free(&un);
  names_free(&in);
  rec_inputs_free(&r);
  adhoc_free(&b);
  loaded_free(&l);
  return rc;
}

// linrec export: local, on rank 0 only.
static int cmd_export(const cli *a) {
  LR_CHECK(a->model && a->out, LR_ERR_CONFIG, "export: --model FILE|DIR and --out DIR are required");
  if (dist_rank() != 0) return LR_OK;
  char path[LR_PATH_MAX];
  model_path(path, sizeof path, a->model);
  return export_model(path, a->out, 0);
}

// ---- ckpt -----------------------------------------------------------------------------

// A checkpoint directory: arg itself, or the one arg/latest names.
static int ckpt_resolve(const char *arg, char *dir, size_t size) {
  char p[LR_PATH_MAX + 64];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", arg, CKPT_MANIFEST_NAME);
  const char *base = strrchr(arg, '/');
  base = base && base[1] ? base + 1 : arg;
  if (stat(p, &st) == 0 || !strncmp(base, "step-", 5) || stat(arg, &st) != 0) {
    LR_CHECK(strlen(arg) < size, LR_ERR_CONFIG, "ckpt: path too long: %.60s...", arg);
    memcpy(dir, arg, strlen(arg) + 1);
    return LR_OK;
  }
  char name[64];
  LR_CALL(ckpt_read_latest(arg, name, sizeof name));
  LR_CHECK(name[0], LR_ERR_IO,
           "%s: neither a checkpoint (no manifest.json) nor a directory of checkpoints (no "
           "`latest`)",
           arg);
  LR_CHECK(snprintf(dir, size, "%s/%s", arg, name) < (int)size, LR_ERR_CONFIG,
           "ckpt: path too long: %.60s...", arg);
  printf("%s: `latest` names %s\n", arg, name);
  return LR_OK;
}

static int ckpt_inspect(const char *dir) {
  ckpt_manifest m;
  LR_CALL(ckpt_manifest_read(dir, &m));
  printf("%s\n", dir);
  ckpt_inspect_print(stdout, &m);
  if (ckpt_loop_read(dir, &m) == LR_OK) {
    const ckpt_loop ls = m.loop;
    if (ls.best_epoch > 0)
      printf("training     best epoch %lld (validation NDCG@10 %.6f), %lld evaluation%s since",
             (long long)ls.best_epoch, ls.best_score, (long long)ls.since_best,
             ls.since_best == 1 ? "" : "s");
    else
      printf("training     no validation yet");
    printf("; loss sum of the epoch's %lld steps so far %.7g\n", (long long)m.cursor,
           ls.epoch_loss);
  } else {
    printf("training     state unreadable: %s\n", lr_error_msg());
    lr_error_clear();
  }
  printf("config       %s\n", m.config_json);
  ckpt_manifest_free(&m);
  return LR_OK;
}

static int ckpt_verify_cmd(const char *dir) {
  ckpt_report r;
  int rc = ckpt_verify(dir, 1, &r);
  if (rc != LR_OK) {
    printf("%s: DAMAGED\n", dir);
    for (int k = 0; k < r.n; k++) printf("  %s\n", r.line[k]);
    if (r.n_dropped) printf("  (%d more problems)\n", r.n_dropped);
    return rc;
  }
  ckpt_manifest m;
  LR_CALL(ckpt_manifest_read(dir, &m));
  double bytes = 0;
  for (int k = 0; k < m.n_shards; k++) bytes += (double)m.shards[k].bytes;
  printf("%s: OK (step %lld, %d shard files, %.0f bytes: manifest and every checksum verify)\n",
         dir, (long long)m.step, m.n_shards, bytes);
  ckpt_manifest_free(&m);
  return LR_OK;
}

// linrec ckpt inspect|verify DIR. Local (no MPI); returns the exit code.
static int cmd_ckpt(int argc, char **argv) {
  if (argc >= 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
    usage_cmd(stdout, "ckpt");
    return 0;
  }
  if (argc != 4 || (strcmp(argv[2], "inspect") && strcmp(argv[2], "verify"))) {
    fprintf(stderr, "linrec ckpt: expected `inspect DIR` or `verify DIR`\n");
    usage_cmd(stderr, "ckpt");
    return EXIT_USAGE;
  }
  char dir[LR_PATH_MAX + 64];
  int rc = ckpt_resolve(argv[3], dir, sizeof dir);
  if (rc == LR_OK) rc = !strcmp(argv[2], "inspect") ? ckpt_inspect(dir) : ckpt_verify_cmd(dir);
  fflush(stdout);
  if (rc == LR_OK) return 0;
  fprintf(stderr, "linrec ckpt %s: %s: %s\n", argv[2], lr_status_str(rc), lr_error_msg());
  if (getenv("LINREC_TRACEBACK")) fprintf(stderr, "traceback:\n%s", lr_error_traceback());
  return rc == LR_ERR_CONFIG ? EXIT_USAGE : EXIT_RUNTIME;
}

// ---- main -----------------------------------------------------------------------------

int main(int argc, char **argv) {
  // the choices of model.attention and model.arch: core's registries
  if (state_config_choices() != LR_OK) {
    fprintf(stderr, "linrec: %s\n", lr_error_msg());
    return EXIT_RUNTIME;
  }
  if (argc >= 2 && !strcmp(argv[1], "ckpt")) return cmd_ckpt(argc, argv);
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("linrec %s\n", LR_VERSION);
    return 0;
  }
  cli a;
  int rc = parse_args(&a, argc, argv);
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
    usage_main(stdout);
    return 0;
  }
  if (rc != LR_OK && argc < 2) {
    usage_main(stderr);
    return EXIT_USAGE;
  }
  int known = a.cmd && (!strcmp(a.cmd, "prep") || !strcmp(a.cmd, "train") ||
                        !strcmp(a.cmd, "bench") ||
                        !strcmp(a.cmd, "eval") || !strcmp(a.cmd, "recommend") ||
                        !strcmp(a.cmd, "export"));
  if (!known) {
    fprintf(stderr, "linrec: unknown command '%s'\n\n", a.cmd ? a.cmd : "");
    usage_main(stderr);
    return EXIT_USAGE;
  }
  if (rc == LR_OK && a.help && a.markdown) { // the README's key and attention tables
    config_print_keys(stdout, 1);
    printf("\n");
    print_kinds(stdout, 1);
    return 0;
  }
  if (rc == LR_OK && a.help) {
    usage_cmd(stdout, a.cmd);
    return 0;
  }
  if (rc != LR_OK) {
    fprintf(stderr, "linrec: %s\n", lr_error_msg());
    return EXIT_USAGE;
  }
  if (rc == LR_OK && (a.resume || a.allow_data_change) && strcmp(a.cmd, "train")) {
    fprintf(stderr, "linrec %s: %s is an option of train\n", a.cmd,
            a.resume ? "--resume" : "--allow-data-change");
    return EXIT_USAGE;
  }
  int ok_code = 0;
  g_launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK");
  rc = dist_init(&argc, &argv);
  if (rc == LR_OK) {
    if (!strcmp(a.cmd, "prep")) rc = cmd_prep(&a);
    else if (!strcmp(a.cmd, "train")) rc = cmd_train(&a, &ok_code);
    else if (!strcmp(a.cmd, "eval")) rc = cmd_eval(&a);
    else if (!strcmp(a.cmd, "bench")) rc = cmd_bench(&a);
    else if (!strcmp(a.cmd, "export")) rc = cmd_export(&a);
    else rc = cmd_recommend(&a);
  }
  lr_set_threads(1); // join the thread team's workers
  dist_watchdog_stop(); // goodbye: this rank's end is no loss (also before an abort)
  if (rc == LR_OK) {
    dist_finalize();
    return ok_code;
  }
  int status = rc == LR_ERR_PEER ? dist_failure_status() : rc;
  int code = status == LR_ERR_CONFIG     ? EXIT_USAGE
             : status == LR_ERR_DIVERGED ? EXIT_DIVERGED
                                         : EXIT_RUNTIME;
  if (rc != LR_ERR_PEER) { // the failing rank reports; the others stop quietly
    if (dist_size() > 1) fprintf(stderr, "[rank %d/%d] ", dist_rank(), dist_size());
    fprintf(stderr, "linrec %s: %s: %s\n", a.cmd, lr_status_str(rc), lr_error_msg());
    if (getenv("LINREC_TRACEBACK")) fprintf(stderr, "traceback:\n%s", lr_error_traceback());
    fflush(stderr);
  }
  // An error every rank agreed on ends the job cleanly; any other error may
  // leave ranks waiting in a collective: abort them.
  if (dist_size() > 1 && !dist_failure_agreed()) dist_abort(code);
  dist_finalize();
  return code;
}
