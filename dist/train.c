// train.c: the training run of train.h: resume or a fresh start, epochs of
// steps (train_step.c) with their step boundaries (train_ckpt.c),
// validation after every epoch with early stopping and the best model, the
// test metrics of the best model and its model file; the events of
// metrics.jsonl (report.h) and the progress line.
#include "train.h"

#include <errno.h>    // errno, EEXIST
#include <stdio.h>    // snprintf
#include <stdlib.h>   // free, getenv
#include <string.h>   // memset, strlen
#include <sys/stat.h> // mkdir
#include <unistd.h>   // isatty, gethostname

#include "ckpt_resume.h"
#include "comm.h"
#include "eval.h"
#include "jobcheck.h"
#include "lr.h"
#include "par.h" // lr_par_threads
#include "train_internal.h"

#ifndef LR_VERSION
#define LR_VERSION "unknown"
#endif

int train_check_config(const lr_config *c) {
  const lr_attn_ops *k = attn_get(c->model_attention);
  LR_CHECK(k, LR_ERR_CONFIG, "key \"model.attention\": no attention kind has id %d",
           c->model_attention);
  LR_CHECK(model_arch_get(c->model_arch), LR_ERR_CONFIG,
           "key \"model.arch\": no architecture has id %d", c->model_arch);
  LR_CHECK(c->train_positions != LR_POS_ALL || k->causal, LR_ERR_CONFIG,
           "key \"train.positions\": \"all\" needs a causal attention kind; model.attention "
           "is \"%s\"",
           k->name);
  LR_CHECK(c->train_positions == LR_POS_ALL || !c->train_windows, LR_ERR_CONFIG,
           "key \"train.windows\": \"all\" needs train.positions \"all\" (with positions "
           "\"last\" every prefix is an example already)");
  const int augment = c->train_augment == LR_AUG_RANDOMPAD;
  const char *arch = model_arch_name(model_arch_get(c->model_arch));
  LR_CHECK((c->train_views == 1 && !augment) ||
               (c->train_positions == LR_POS_LAST && !strcmp(arch, "sasrec")),
           LR_ERR_CONFIG,
           "keys \"train.views\" 2 and \"train.augment\" randompad (Blin) need train.positions "
           "\"last\" and model.arch \"sasrec\"");
  LR_CHECK(c->model_ffn == LR_FFN_GELU || !strcmp(arch, "sasrec"), LR_ERR_CONFIG,
           "key \"model.ffn\": relu is built for model.arch \"sasrec\" only");
  LR_CHECK(c->train_views == 1 || c->train_objective != LR_OBJ_BCE, LR_ERR_CONFIG,
           "key \"train.views\": 2 views take train.objective ce or sampled, not bce");
  LR_CHECK(!augment || (k->fwd_km && k->bwd_km), LR_ERR_CONFIG,
           "key \"train.augment\": randompad needs an attention kind that takes a key mask "
           "(efficient, blin, blin_left, softmax); model.attention is \"%s\"",
           k->name);
  return LR_OK;
}

// mkdir -p: create dir and its missing parents.
static int make_dir(const char *dir) {
  char path[LR_PATH_MAX];
  LR_CHECK(strlen(dir) < sizeof path, LR_ERR_CONFIG, "--out: path too long: %.60s...", dir);
  strcpy(path, dir);
  for (char *p = path + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char saved = *p;
    *p = 0;
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return lr_error(LR_ERR_IO, __FILE__, __LINE__, "%s: cannot create directory: %s", path,
                      strerror(errno));
    *p = saved;
    if (!saved) break;
  }
  return LR_OK;
}

// ---- events ---------------------------------------------------------------------------------

#define HOST_MAX 64

// The attempt's first event: what runs (version, config, ranks, threads,
// host of every rank) and whether it resumes. Collective (the host names).
static int event_start(trainer *t, const char *from) {
  const int P = dist_size();
  char host[HOST_MAX] = "";
  gethostname(host, sizeof host - 1);
  char *hosts = lr_calloc((size_t)P, HOST_MAX, "host names");
  LR_CALL(dist_agree(hosts ? LR_OK : LR_ERR_NOMEM));
  int rc = dist_allgather(hosts, host, HOST_MAX, LR_DTYPE_BYTE);
  cJSON *ev = rc == LR_OK ? report_event(&t->rep, "start") : NULL;
  report_str(ev, "version", LR_VERSION);
  report_int(ev, "ranks", P);
  report_int(ev, "threads", lr_par_threads());
  cJSON *h = ev ? cJSON_AddArrayToObject(ev, "hosts") : NULL;
  for (int q = 0; h && q < P; q++)
    cJSON_AddItemToArray(h, cJSON_CreateString(hosts + q * HOST_MAX));
  report_str(ev, "resume", from);
  char *json = ev ? config_to_json(t->c) : NULL;
  cJSON *cfg = json ? cJSON_Parse(json) : NULL;
  if (ev && cfg) cJSON_AddItemToObject(ev, "config", cfg);
  free(json);
  report_emit(&t->rep, ev);
  lr_free(hosts);
  return rc;
}

static void event_eval(trainer *t, const char *split, int epoch, const lr_metrics *m) {
  cJSON *ev = report_event(&t->rep, "eval");
  report_str(ev, "split", split);
  report_int(ev, "epoch", epoch);
  report_int(ev, "users", m->n);
  for (int i = 0; i < m->nk; i++) {
    char k[3][32];
    snprintf(k[0], sizeof k[0], "recall@%d", m->k[i]);
    snprintf(k[1], sizeof k[1], "mrr@%d", m->k[i]);
    snprintf(k[2], sizeof k[2], "ndcg@%d", m->k[i]);
    report_fmt(ev, k[0], "%.6f", m->recall[i]);
    report_fmt(ev, k[1], "%.6f", m->mrr[i]);
    report_fmt(ev, k[2], "%.6f", m->ndcg[i]);
  }
  report_emit(&t->rep, ev);
}

// Communication by kind: lookup, gradient push, loss collectives, dense
// allreduce, replicated-table allreduce, users-placed row groups (state.h).
#define N_COMM 6
static const char *const COMM_NAMES[N_COMM] = {"lookup", "push", "loss", "dense",
                                               "table_allreduce", "users"};

static void comm_take(const trainer *t, dist_stats s[N_COMM]) {
  table_stats(&t->st.table, &s[0], &s[1], &s[2], &s[4]);
  s[3] = gradsync_stats(t->st.gsync);
  s[5] = state_rows_stats(&t->st);
}

// The epoch's event with its per-step traffic by kind between two
// snapshots; the same traffic as a log line (P > 1).
static void event_epoch(trainer *t, int epoch, int64_t step, double loss, double seq_s, double secs,
                        const dist_stats a[N_COMM], const dist_stats b[N_COMM], int64_t steps) {
  char line[512];
  size_t ln = (size_t)snprintf(line, sizeof line, "comm per step (rank 0):");
  cJSON *ev = report_event(&t->rep, "epoch");
  report_int(ev, "epoch", epoch);
  report_int(ev, "step", step);
  report_fmt(ev, "loss", "%.7g", loss);
  report_fmt(ev, "seq_per_s", "%.1f", seq_s);
  report_fmt(ev, "seconds", "%.3f", secs);
  cJSON *cm = ev ? cJSON_AddObjectToObject(ev, "comm_per_step") : NULL;
  const double st = steps > 0 ? (double)steps : 1.0;
  for (int k = 0; k < N_COMM; k++) {
    double bytes =
        (double)(b[k].bytes_sent + b[k].bytes_recv - a[k].bytes_sent - a[k].bytes_recv) / st;
    double ms = 1e3 * (b[k].seconds - a[k].seconds) / st;
    char key[48];
    snprintf(key, sizeof key, "%s_bytes", COMM_NAMES[k]);
    report_fmt(cm, key, "%.0f", bytes);
    snprintf(key, sizeof key, "%s_ms", COMM_NAMES[k]);
    report_fmt(cm, key, "%.3f", ms);
    if (ln < sizeof line)
      ln += (size_t)snprintf(line + ln, sizeof line - ln, " %s %.1f KiB %.2f ms%s", COMM_NAMES[k],
                             bytes / 1024, ms, k + 1 < N_COMM ? ";" : "");
  }
  report_emit(&t->rep, ev);
  if (dist_size() > 1) dist_log0("%s\n", line);
}

// NDCG at the cutoff used for early stopping: K=10 if requested, else the first K.
static double stop_metric(const lr_metrics *m) {
  for (int i = 0; i < m->nk; i++)
    if (m->k[i] == 10) return m->ndcg[i];
  return m->ndcg[0];
}

// The step diverged (every rank knows it alike): commit a checkpoint still
// pending (written before the step, sound), then report once where the
// last checkpoint is. Collective.
static int diverged(trainer *t, lr_train_result *res) {
  char what[512];
  snprintf(what, sizeof what, "%s", lr_error_msg());
  lr_error_clear();
  LR_CALL(ckpt_commit(t, res));
  char last[LR_PATH_MAX + 96] = "no checkpoint yet";
  if (t->ckpt_last >= 0)
    snprintf(last, sizeof last, "the last checkpoint is %s/step-%08lld", t->ckpt_root,
             (long long)t->ckpt_last);
  return dist_agree(lr_error(LR_ERR_DIVERGED, __FILE__, __LINE__,
                             "%s (%s; lower train.lr or set train.clip_norm)", what, last));
}

// ---- the run --------------------------------------------------------------------------------

static int run(trainer *t, const lr_config *c, const char *out_dir, const lr_train_opts *o,
               lr_train_result *res) {
  const int P = dist_size();
  const double t_enter = dist_wtime();
  LR_CALL(make_dir(out_dir));
  // Which checkpoint, if any: before the data, so a damaged or mismatching
  // one fails fast.
  t->c = c;
  LR_CALL(ckpt_root_path(t->ckpt_root, sizeof t->ckpt_root, c, out_dir));
  t->traj_json = config_to_json_trajectory(c);
  LR_CALL(dist_agree(t->traj_json ? LR_OK : LR_ERR_NOMEM));
  char from[LR_PATH_MAX + 64] = "";
  if (o && o->resume)
    LR_CALL(ckpt_resume_find(t->ckpt_root, o->resume, from, sizeof from));
  else
    LR_CALL(ckpt_resume_check_fresh(t->ckpt_root));
  const int resuming = from[0] != 0;
  if (resuming) {
    LR_CALL(ckpt_resume_open(from, c, &t->resume_from));
    LR_CALL(jobcheck_resume(from, &t->resume_from));
  }
  // metrics.jsonl: the attempt's start event before the data, so that an
  // attempt that fails loading it is on record too
  LR_CALL(dist_agree(report_open(&t->rep, out_dir, resuming ? t->resume_from.step : -1)));
  LR_CALL(event_start(t, from));
  LR_CALL(dist_agree(report_status(&t->rep)));
  LR_CALL(trainer_init(t, c));
  if (resuming) LR_CALL(dist_agree(ckpt_check_data(t, from, o && o->allow_data_change)));
  LR_CALL(ckpt_setup(t));
  lr_scorer sc = eval_scorer(&t->st, t->pop, t->ds.n_users);
  int64_t G = c->train_batch_size;
  int64_t steps_per_epoch = (t->ex.n_examples + G - 1) / G;
  int64_t total_steps = steps_per_epoch * c->train_epochs;
  if (c->train_max_steps && c->train_max_steps < total_steps) total_steps = c->train_max_steps;
  dist_log0("train: %lld examples, batch %lld (micro %lld x %d ranks), %lld steps/epoch, %lld "
            "steps\n",
            (long long)t->ex.n_examples, (long long)G, (long long)t->Bm, P,
            (long long)steps_per_epoch, (long long)total_steps);
  // Open MPI gives ranks a pseudo-terminal even when mpirun's output goes to a
  // file, so under mpirun "auto" prints plain lines.
  int redraw = isatty(1) && !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK");
  lr_progress pg = {c->log_progress == 0 ? (redraw ? 0 : 1) : c->log_progress, 0};
  double t_start = dist_wtime();
  ckpt_loop ls = {0, -1, 0, 0};
  int valid_known = 0, epoch0 = 1, stop_sig = 0, started = 0;
  int64_t step = 0, cursor0 = 0;
  if (resuming) {
    LR_CALL(ckpt_restore(t, from, steps_per_epoch));
    const ckpt_manifest *m = &t->resume_from;
    ls = m->loop;
    step = m->step, epoch0 = (int)m->epoch, cursor0 = m->cursor;
    LR_CALL(ckpt_resume_adopt(t->ckpt_root, from, step));
    t->ckpt_last = step;
    res->resumed_step = step;
    res->best_epoch = (int)ls.best_epoch;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%s", from);
    dist_log0("resume: step %lld (epoch %d, %lld of its %lld steps done) from %s, written by %d "
              "rank%s%s\n",
              (long long)step, epoch0, (long long)cursor0, (long long)steps_per_epoch, from,
              m->world_size, m->world_size == 1 ? "" : "s",
              m->world_size != P ? ": rows re-cut for this run's ranks" : "");
    cJSON *ev = report_event(&t->rep, "resume");
    report_int(ev, "step", m->step);
    report_int(ev, "epoch", m->epoch);
    report_int(ev, "cursor", m->cursor);
    report_str(ev, "from", from);
    report_int(ev, "written_by_ranks", m->world_size);
    report_int(ev, "ranks", P);
    report_emit(&t->rep, ev);
  } else {
    state_snapshot_best(&t->st);
  }
  for (int epoch = epoch0; epoch <= c->train_epochs; epoch++) {
    // A resumed epoch (cursor > 0) is finished even when no step is left:
    // its validation is still due.
    int64_t s0 = epoch == epoch0 ? cursor0 : 0;
    if (s0 == 0 && step >= total_steps) break;
    examples_shuffle(&t->ex, (uint64_t)c->train_seed, (uint32_t)epoch);
    dist_stats comm0[N_COMM], comm1[N_COMM];
    comm_take(t, comm0);
    double ep_t0 = dist_wtime();
    if (s0 == 0) ls.epoch_loss = 0; // else: the loss sum of the steps before the cursor
    int64_t ep_steps = s0, new_steps = 0, new_seqs = 0;
    for (int64_t s = s0; s < steps_per_epoch && step < total_steps; s++) {
      int64_t start = s * G, g = t->ex.n_examples - start < G ? t->ex.n_examples - start : G;
      double loss;
      const int rc_step = train_step(t, start, g, (uint32_t)epoch, step + 1, &loss);
      if (rc_step == LR_ERR_DIVERGED) return diverged(t, res);
      LR_CALL(rc_step);
      step++, ep_steps++, new_steps++, new_seqs += g;
      ls.epoch_loss += loss;
      if (!started) { // this attempt trains (the Slurm script tells launch failures by it)
        started = 1;
        cJSON *ev = report_event(&t->rep, "started");
        report_int(ev, "step", step);
        report_fmt(ev, "seconds", "%.3f", dist_wtime() - t_enter);
        report_emit(&t->rep, ev);
      }
      if (c->log_every_steps && step % c->log_every_steps == 0) {
        cJSON *ev = report_event(&t->rep, "step");
        report_int(ev, "step", step);
        report_int(ev, "epoch", epoch);
        report_exact(ev, "loss", loss);
        report_emit(&t->rep, ev);
      }
      double el = dist_wtime() - ep_t0;
      progress_show(&pg, epoch, c->train_epochs, step, total_steps,
                    ls.epoch_loss / (double)ep_steps, (double)new_seqs / el, total_steps - step,
                    el / (double)new_steps, 0);
      LR_CALL(ckpt_boundary(t, o, step, epoch, s + 1, steps_per_epoch, &ls, res, &stop_sig));
      if (stop_sig) goto stopped;
    }
    double ep_s = dist_wtime() - ep_t0, seq_s = new_steps ? (double)new_seqs / ep_s : 0.0;
    double ep_mean = ep_steps ? ls.epoch_loss / (double)ep_steps : 0.0;
    progress_show(&pg, epoch, c->train_epochs, step, total_steps, ep_mean, seq_s,
                  total_steps - step, new_steps ? ep_s / (double)new_steps : 0.0, 1);
    comm_take(t, comm1);
    event_epoch(t, epoch, step, ep_mean, seq_s, ep_s, comm0, comm1, new_steps);
    lr_metrics vm;
    LR_CALL(eval_split(&vm, &sc, &t->ds, LR_SPLIT_VALID, c));
    event_eval(t, "valid", epoch, &vm);
    double score = stop_metric(&vm);
    dist_log0("epoch %d: loss %.4f, valid ndcg@%d %.4f recall@%d %.4f%s\n", epoch, ep_mean, vm.k[0],
              vm.ndcg[0], vm.k[0], vm.recall[0], score > ls.best_score ? " (best)" : "");
    if (score > ls.best_score) {
      ls.best_score = score, ls.since_best = 0, ls.best_epoch = epoch;
      res->valid = vm, valid_known = 1;
      res->best_epoch = epoch;
      LR_CALL(ckpt_commit(t, res)); // a writer may still be reading the best rows
      state_snapshot_best(&t->st);
    } else if (c->train_patience && ++ls.since_best >= c->train_patience) {
      dist_log0("early stop: no better validation NDCG for %lld evaluations\n",
                (long long)ls.since_best);
      break;
    }
  }
  LR_CALL(ckpt_commit(t, res));
  LR_CALL(state_hash(&t->st, &res->state_hash));
  state_restore_best(&t->st);
  if (!valid_known) LR_CALL(eval_split(&res->valid, &sc, &t->ds, LR_SPLIT_VALID, c));
  LR_CALL(eval_split(&res->test, &sc, &t->ds, LR_SPLIT_TEST, c));
  event_eval(t, "test", res->best_epoch, &res->test);
  res->steps = step;
  res->seconds = dist_wtime() - t_start;
  cJSON *ev = report_event(&t->rep, "done");
  char hash[24];
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)res->state_hash);
  report_int(ev, "steps", step);
  report_int(ev, "best_epoch", res->best_epoch);
  report_fmt(ev, "seconds", "%.3f", res->seconds);
  report_int(ev, "ranks", P);
  report_str(ev, "state_hash", hash);
  for (int i = 0; i < res->test.nk; i++) {
    char k[2][40];
    snprintf(k[0], sizeof k[0], "test_ndcg@%d", res->test.k[i]);
    snprintf(k[1], sizeof k[1], "test_recall@%d", res->test.k[i]);
    report_fmt(ev, k[0], "%.6f", res->test.ndcg[i]);
    report_fmt(ev, k[1], "%.6f", res->test.recall[i]);
  }
  report_emit(&t->rep, ev);
  LR_CALL(dist_agree(report_status(&t->rep)));
  char path[LR_PATH_MAX + 64], *json = config_to_json(c);
  snprintf(path, sizeof path, "%s/model.lrm", out_dir);
  int rc = json ? state_save_model(&t->st, path, json, &t->ds) : LR_ERR_NOMEM;
  free(json);
  return dist_agree(rc);
stopped:
  // The checkpoint is committed; no final evaluation, no model file (the
  // run is not finished).
  res->stop_signal = stop_sig;
  res->steps = step;
  res->seconds = dist_wtime() - t_start;
  ev = report_event(&t->rep, "stopped");
  report_int(ev, "signal", stop_sig);
  report_int(ev, "step", step);
  report_str(ev, "checkpoint", res->checkpoint);
  report_fmt(ev, "seconds", "%.3f", res->seconds);
  report_emit(&t->rep, ev);
  return dist_agree(report_status(&t->rep));
}

int train_run(const lr_config *c, const char *out_dir, const lr_train_opts *opts,
              lr_train_result *res) {
  memset(res, 0, sizeof *res);
  trainer t;
  memset(&t, 0, sizeof t);
  int rc = run(&t, c, out_dir, opts, res);
  trainer_free(&t);
  return rc;
}
