// train_ckpt.c: the trainer's checkpoints (train_internal.h).
//
// What a checkpoint holds (io/ckpt.h, written by ckpt_writer.h): every
// parameter group of the state (state.h: weights, Adam moments and the best
// model's weights), the loop state (epoch loss so far, best score, patience
// counter, best epoch), the Adam step (= the step), the step, epoch and
// cursor (steps done in that epoch), rng seed = train.seed, rng counters =
// (epoch, step, 0, 0): every random stream is counter-based on (seed,
// epoch, example id, ...), so this is the whole RNG state; the trajectory
// config (config_to_json_trajectory) and the data's fingerprint.
// Checkpoints are taken at step boundaries: every train.checkpoint.every_steps
// steps, at the last step of every every_epochs-th epoch (before its
// validation, which a resumed run redoes), and when a stop is requested.
// Resuming recomputes the epoch's permutation from (seed, epoch) and skips
// the first `cursor` steps, so the resumed run computes exactly what the
// uninterrupted one would have, bit for bit, at any P.
#include <stdio.h>  // snprintf
#include <string.h> // memset

#include "comm.h"
#include "lr.h"
#include "train_internal.h"

int ckpt_root_path(char *root, size_t size, const lr_config *c, const char *out_dir) {
  int n = c->ckpt_dir[0] ? snprintf(root, size, "%s", c->ckpt_dir)
                         : snprintf(root, size, "%s/checkpoints", out_dir);
  LR_CHECK(n > 0 && (size_t)n < size, LR_ERR_CONFIG, "train.checkpoint.dir: path too long");
  return LR_OK;
}

int ckpt_setup(trainer *t) {
  const lr_config *c = t->c;
  t->ckpt_last = -1;
  ckpt_writer_cfg wc;
  memset(&wc, 0, sizeof wc);
  wc.root = t->ckpt_root;
  wc.config_json = t->traj_json;
  wc.keep_last = (int)c->ckpt_keep_last;
  wc.zstd_level = (int)c->ckpt_zstd_level;
  wc.background = c->ckpt_every_steps > 0 || c->ckpt_every_epochs > 0; // snapshot buffers
  wc.data = t->data_fp;
  state_ckpt_layout(&t->st, &wc);
  return dist_agree(ckpt_writer_init(&t->ckw, &wc));
}

// Start the checkpoint of `step` (cursor steps of `epoch` done), in the
// background or on this thread. Collective.
static int ckpt_start(trainer *t, int64_t step, int epoch, int64_t cursor, const ckpt_loop *lp,
                      const char *reason, int background) {
  double t0 = dist_wtime();
  ckpt_source src;
  state_ckpt_source(&t->st, &src);
  ckpt_point pt = {
      step, epoch, cursor, (uint64_t)t->c->train_seed, {(uint64_t)epoch, (uint64_t)step, 0, 0},
      step, *lp};
  t->ck_reason = reason, t->ck_epoch = epoch, t->ck_cursor = cursor;
  LR_CALL(ckpt_writer_start(t->ckw, &pt, &src, background));
  t->ck_start_s = dist_wtime() - t0;
  return LR_OK;
}

int ckpt_commit(trainer *t, lr_train_result *res) {
  if (!ckpt_writer_pending(t->ckw)) return LR_OK;
  ckpt_stats st;
  LR_CALL(ckpt_writer_commit(t->ckw, &st));
  t->ckpt_last = st.step;
  snprintf(res->checkpoint, sizeof res->checkpoint, "%s/%s", t->ckpt_root, st.name);
  double stall = t->ck_start_s + st.wait_s + st.commit_s;
  dist_log0("checkpoint %s (%s): %.2f MB (raw %.2f MB), written in %.3f s%s; training stalled "
            "%.1f ms\n",
            st.name, t->ck_reason, st.bytes / 1e6, st.raw_bytes / 1e6, st.write_s,
            st.background ? " in the background" : "", 1e3 * stall);
  cJSON *ev = report_event(&t->rep, "checkpoint");
  report_int(ev, "step", st.step);
  report_int(ev, "epoch", t->ck_epoch);
  report_int(ev, "cursor", t->ck_cursor);
  report_str(ev, "reason", t->ck_reason);
  report_str(ev, "dir", st.name);
  report_int(ev, "ranks", dist_size());
  report_bool(ev, "background", st.background);
  report_fmt(ev, "bytes", "%.0f", st.bytes);
  report_fmt(ev, "raw_bytes", "%.0f", st.raw_bytes);
  report_fmt(ev, "stall_ms", "%.3f", 1e3 * stall);
  report_fmt(ev, "start_ms", "%.3f", 1e3 * st.start_s);
  report_fmt(ev, "snapshot_ms", "%.3f", 1e3 * st.snapshot_s);
  report_fmt(ev, "wait_ms", "%.3f", 1e3 * st.wait_s);
  report_fmt(ev, "commit_ms", "%.3f", 1e3 * st.commit_s);
  report_fmt(ev, "write_ms", "%.3f", 1e3 * st.write_s);
  report_fmt(ev, "compress_ms", "%.3f", 1e3 * st.compress_s);
  report_fmt(ev, "write_mb_s", "%.1f", st.write_s > 0 ? st.raw_bytes / 1e6 / st.write_s : 0.0);
  report_int(ev, "pruned", st.n_pruned);
  report_emit(&t->rep, ev);
  return LR_OK;
}

int ckpt_boundary(trainer *t, const lr_train_opts *o, int64_t step, int epoch, int64_t cursor,
                  int64_t spe, const ckpt_loop *lp, lr_train_result *res, int *stop_sig) {
  const lr_config *c = t->c;
  *stop_sig = 0;
  int64_t f[3] = {o && o->stop ? (int64_t)*o->stop : 0, ckpt_writer_busy(t->ckw), t->rep.err != 0};
  LR_CALL(dist_allreduce_max_i64(f, 3));
  if (f[2]) return dist_agree(report_status(&t->rep)); // metrics.jsonl failed on rank 0
  int by_steps = c->ckpt_every_steps > 0 && step % c->ckpt_every_steps == 0;
  int by_epochs = c->ckpt_every_epochs > 0 && cursor == spe && epoch % c->ckpt_every_epochs == 0;
  int due = (by_steps || by_epochs) && step != t->ckpt_last;
  if (ckpt_writer_pending(t->ckw) && (!f[1] || f[0] || due)) LR_CALL(ckpt_commit(t, res));
  if (f[0]) {
    *stop_sig = (int)f[0];
    dist_log0("stop requested (signal %d): checkpointing step %lld\n", *stop_sig, (long long)step);
    if (step != t->ckpt_last) {
      LR_CALL(ckpt_start(t, step, epoch, cursor, lp, "signal", 0));
      LR_CALL(ckpt_commit(t, res));
    }
    return LR_OK;
  }
  if (due) LR_CALL(ckpt_start(t, step, epoch, cursor, lp, by_steps ? "steps" : "epochs", 1));
  return LR_OK;
}

int ckpt_restore(trainer *t, const char *dir, int64_t steps_per_epoch) {
  const ckpt_manifest *m = &t->resume_from;
  LR_CALL(state_ckpt_load(&t->st, dir, m));
  int rc = LR_OK;
  if (m->epoch < 1 || m->epoch > INT32_MAX || m->cursor < 0 || m->cursor > steps_per_epoch ||
      m->step < 0)
    rc = lr_error(LR_ERR_CORRUPT, __FILE__, __LINE__,
                  "%s: epoch %lld, cursor %lld do not fit this run's %lld steps per epoch", dir,
                  (long long)m->epoch, (long long)m->cursor, (long long)steps_per_epoch);
  return dist_agree(rc);
}

int ckpt_check_data(const trainer *t, const char *dir, int allow) {
  const lr_data_fp *was = &t->resume_from.data, *now = &t->data_fp;
  if (was->n_inter < 0) {
    dist_log0("resume: %s records no data fingerprint (written by an older linrec): the "
              "training data is not compared\n",
              dir);
    return LR_OK;
  }
  if (data_fp_equal(was, now)) return LR_OK;
  char a[160], b[160];
  data_fp_text(was, a, sizeof a);
  data_fp_text(now, b, sizeof b);
  const char *how =
      was->n_users == now->n_users && was->n_items == now->n_items && was->n_inter == now->n_inter
          ? " (same counts: the interactions or their order differ)"
          : "";
  if (allow) {
    dist_log0("resume: --allow-data-change: the training data differs from the checkpoint's "
              "(checkpoint: %s; this run: %s)%s; training continues on this run's data\n",
              a, b, how);
    return LR_OK;
  }
  return lr_error(LR_ERR_CONFIG, __FILE__, __LINE__,
                  "%s: the checkpoint was written on other training data: checkpoint: %s; this "
                  "run: %s%s\nHINT: resume with the data it was written on (data.path and "
                  "data.*), or pass --allow-data-change to continue training from it on this data",
                  dir, a, b, how);
}
