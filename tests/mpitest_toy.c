// mpitest_toy.c: a model built from test-only parts trains with every
// guarantee of the built-in ones, with no edit outside those parts and their
// registration calls: the attention kind toy_gate (one parameter of its own
// per head, tests/ref_toy_attn.c) inside the architecture toy_userbias (a
// per-user bias row: a users-placed ROWS group, tests/ref_toy_arch.c).
// At every world size of the run (mpirun -np 1..4):
//   - training from scratch to step 8 ends in the state hash recorded for
//     P = 1 (every parameter and Adam moment of the dense arena, the item
//     table and the users table; AVX-512 float kernels only, as
//     tests/cli_golden.sh), so the trajectory is the same at any P;
//   - stopped at step 4 (its checkpoint) and resumed to step 8, the state
//     is bitwise the uninterrupted run's;
//   - the checkpoint and the model file list the users group with one row
//     per user, and the toy kind's own parameters moved from their init.
#include <mpi.h>    // MPI_Bcast
#include <stdio.h>  // snprintf
#include <stdlib.h> // mkdtemp, system, free
#include <string.h> // strcpy, strcmp

#include "ckpt.h"
#include "comm.h"
#include "config.h"
#include "lr.h"
#include "modelfile.h"
#include "mpi_harness.h"
#include "ref_toy_arch.h"
#include "ref_toy_attn.h"
#include "state.h"
#include "train.h"

// The state hash of the 8-step run below, recorded at P = 1. The float
// kernels round alike on every x86-64 CPU (no contracted FMAs), so the hash
// holds on all of them; other architectures' libm may round otherwise.
#define RECORDED_HASH 0x725a11b0a436ea41ull

static int make_config(lr_config *c, int64_t max_steps) {
  const char *sets[] = {"data.synthetic.users=150", "data.synthetic.items=80",
                        "data.synthetic.mean_len=10", "model.d=8", "model.heads=2",
                        "model.layers=1", "model.inner=16", "model.max_len=8",
                        "model.attention=toy_gate", "model.arch=toy_userbias",
                        "train.batch_size=32", "train.epochs=3", "train.patience=0",
                        "train.checkpoint.every_steps=4", "log.progress=off",
                        "log.every_steps=1", "dist.item_table=sharded"};
  config_defaults(c);
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) LR_CALL(config_set(c, sets[i]));
  char ms[64];
  snprintf(ms, sizeof ms, "train.max_steps=%lld", (long long)max_steps);
  LR_CALL(config_set(c, ms));
  return config_validate(c);
}

static int run(const char *out, int64_t max_steps, const char *resume, lr_train_result *res) {
  lr_config c;
  LR_CALL(make_config(&c, max_steps));
  lr_train_opts o = {.resume = resume};
  return train_run(&c, out, &o, res);
}

int main(int argc, char **argv) {
  if (mt_init(&argc, &argv)) return 1;
  int ok = ref_toy_attn_register() >= 0 && ref_toy_arch_register() >= 0 &&
           state_config_choices() == LR_OK;
  mt_check(ok, "toy_gate and toy_userbias registered, the config learns them");
  char root[64] = "/tmp/lr_mpitest_toy_XXXXXX";
  if (dist_rank() == 0 && !mkdtemp(root)) root[0] = 0;
  MPI_Bcast(root, sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
  mt_check(root[0] != 0, "a scratch directory");
  char a[128], b[128];
  snprintf(a, sizeof a, "%s/full", root);
  snprintf(b, sizeof b, "%s/cut", root);

  lr_train_result ra, rb, rc;
  int rc_a = run(a, 8, NULL, &ra);
  mt_check(rc_a == LR_OK && ra.steps == 8, "8 steps from scratch (%s)",
           rc_a ? lr_error_msg() : "ok");
#if defined(__x86_64__)
  mt_check(ra.state_hash == RECORDED_HASH, "state hash %016llx = recorded at P=1 %016llx",
             (unsigned long long)ra.state_hash, (unsigned long long)RECORDED_HASH);
#endif
  int rc_b = run(b, 4, NULL, &rb);
  int rc_c = rc_b == LR_OK ? run(b, 8, "latest", &rc) : rc_b;
  mt_check(rc_b == LR_OK && rc_c == LR_OK && rc.resumed_step == 4 && rc.steps == 8,
           "stop at step 4, resume from its checkpoint to step 8 (%s)",
           rc_c ? lr_error_msg() : "ok");
  mt_check(rc_c == LR_OK && rc.state_hash == ra.state_hash,
           "resumed: state hash %016llx = uninterrupted %016llx", (unsigned long long)rc.state_hash,
           (unsigned long long)ra.state_hash);

  // the groups on disk: the checkpoint resumed from and the model file
  char dir[256], path[256];
  snprintf(dir, sizeof dir, "%s/checkpoints/step-00000004", b);
  ckpt_manifest m;
  int users_ck = ckpt_manifest_read(dir, &m) == LR_OK;
  const ckpt_group *g = users_ck ? ckpt_manifest_group(&m, "users") : NULL;
  mt_check(g && g->n_rows == 150 && g->width == 8 && m.n_groups == 3,
           "the checkpoint holds the groups dense, items and users (150 x 8)");
  ckpt_manifest_free(&m);
  snprintf(path, sizeof path, "%s/model.lrm", a);
  char *json = NULL;
  lr_mf_group mg[LR_MF_MAX_GROUPS];
  int n = 0;
  int mf = modelfile_read_config(path, &json, mg, &n) == LR_OK;
  free(json);
  mt_check(mf && n == 3 && !strcmp(mg[2].name, "users") && mg[2].n_rows == 150,
           "the model file lists the users group");
  // the kind's own parameters (tensor attn_p, g_h of each head) trained
  lr_config c;
  lr_model_cfg mc;
  int moved = 0;
  if (mf && make_config(&c, 8) == LR_OK && state_model_cfg(&mc, &c, 80, 0) == LR_OK) {
    lr_tensor t[LR_MAX_TENSORS];
    const int nt = model_tensors(&mc, t);
    size_t off = 0;
    int i = 0;
    while (i < nt && strcmp(t[i].name, "attn_p")) off += t[i++].elems;
    float *dense = calloc((size_t)mg[0].n_rows, sizeof(float));
    const lr_mf_dest d = {"dense", 0, mg[0].n_rows, dense};
    if (i < nt && t[i].elems == 2 && dense && modelfile_read(path, mg, n, &d, 1) == LR_OK)
      moved = dense[off] != 1.0f && dense[off + 1] != 1.1f; // param_init: 1 + h/10
    free(dense);
  }
  mt_check(moved, "toy_gate's own parameters moved from their init");
  lr_error_clear();
  if (dist_rank() == 0) {
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "mpitest_toy: could not remove %s\n", root);
  }
  return mt_done("mpitest_toy");
}
