#!/usr/bin/env bash
# cli_recgrela.sh: the recgrela architecture (RecGRELA, core/arch_recgrela.c)
# through the whole trainer, as the sasrec encoder is checked by cli_ckpt,
# cli_train and cli_dist (cli_ranks and cli_golden hold its P-invariance
# and its recorded trajectories):
#  1. resume: stop at step 7 with a checkpoint, resume: the per-step losses
#     and the model file are bit-identical to an uninterrupted run, at P = 2
#     (sharded table, rela_causal with positions=all) and on another number
#     of ranks (a P = 2 checkpoint resumed on P = 3 and on P = 1: rows re-cut;
#     rela with positions=last); DropPath is on (its keys follow the resumed
#     epoch and examples);
#  2. the model file: eval --model reproduces train's test metrics at P = 1
#     and at P = 2 with either table layout, and recommend reads the
#     architecture from the file (no config) and gives the same top items
#     as a recommend from the run directory;
#  3. positions=all is refused with the non-causal rela (exit 2, naming the
#     key), and so it is for the ablation recgrela_norope;
#  4. the ablations (model.arch recgrela_nogate, _noconv, _norope) train:
#     P = 1 and P = 2 (sharded) bitwise equal, each with its own losses.
# Usage: cli_recgrela.sh LINREC_BINARY SOURCE_DIR [SHARED_DATA_DIR]
source "$(dirname "$0")/lib_cli.sh"

# 300 users, 120 items: 5 steps per epoch of 64 examples; 3 epochs.
tiny=(--config "$src/configs/quickstart.json" --set model.arch=recgrela --set model.drop_path=0.1
      --set data.synthetic.users=300 --set data.synthetic.items=120 --set data.synthetic.mean_len=12
      --set model.d=16 --set model.heads=4 --set model.layers=2 --set model.inner=32
      --set model.max_len=10 --set train.batch_size=64 --set train.epochs=3 --set train.patience=0
      --set log.every_steps=1 --set log.progress=off)
causal=(--set model.attention=rela_causal --set train.positions=all)
faithful=(--set model.attention=rela --set train.positions=last --set train.batch_size=256)

# train NP OUT ARGS...: linrec train under mpirun, its log in OUT.log.
train() {
  local np=$1 out=$2; shift 2
  timeout 300 mpirun -np "$np" --oversubscribe --mca mpi_yield_when_idle 1 "$bin" train \
    "${tiny[@]}" "$@" --out "$tmp/$out" > "$tmp/$out.log" 2>&1
}
# steps OUT: the last loss of every step of OUT's metrics.jsonl, one a line
# (a resumed run repeats the steps after its checkpoint: the last one counts)
steps() {
  python3 - "$tmp/$1/metrics.jsonl" <<'PY'
import json, sys
d = {}
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "step": d[e["step"]] = e["loss"]
print("\n".join("%d %r" % (k, d[k]) for k in sorted(d)))
PY
}
# same_run REF GOT: the same step losses (bitwise, at least 12 steps) and model file
same_run() {
  local a b
  a=$(steps "$1") && b=$(steps "$2") || return 1
  [ "$(echo "$a" | wc -l)" -ge 12 ] && [ "$a" = "$b" ] && cmp -s "$tmp/$1/model.lrm" "$tmp/$2/model.lrm"
}

# resumed REF GOT K NP: GOT resumed from step K (written by NP ranks when
# given: its rows re-cut) and ended as REF did
resumed() {
  grep -q "resume: step $3 " "$tmp/$2.log" &&
    { [ -z "${4:-}" ] || grep -q "written by $4 ranks: rows re-cut" "$tmp/$2.log"; } &&
    same_run "$1" "$2" || { tail -n 5 "$tmp/$2.log"; return 1; }
}
# test_metrics FILE: the metrics of the test eval event of FILE (metrics.jsonl
# or eval's output), sorted
test_metrics() {
  python3 - "$1" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "eval" and e.get("split") == "test":
        print(" ".join("%s=%r" % (k, e[k]) for k in sorted(e) if "@" in k))
PY
}

# ---- 1. resume ----------------------------------------------------------------------------
ck=(--set train.checkpoint.every_steps=7 --set dist.item_table=sharded)
train 2 c-ref "${causal[@]}" "${ck[@]}" || tail -n 5 "$tmp/c-ref.log"
train 2 c-res "${causal[@]}" "${ck[@]}" --set train.max_steps=7 &&
  train 2 c-res "${causal[@]}" "${ck[@]}" --resume latest
check "rela_causal, P=2: stop at step 7, resume: losses and model bit-identical" \
  resumed c-ref c-res 7
# the faithful kind: every prefix an example (about 1,700 an epoch, 7 steps)
train 2 f-ref "${faithful[@]}" "${ck[@]}" || tail -n 5 "$tmp/f-ref.log"
for np in 3 1; do
  train 2 "f-p$np" "${faithful[@]}" "${ck[@]}" --set train.max_steps=7 &&
    train "$np" "f-p$np" "${faithful[@]}" "${ck[@]}" --resume latest
  check "rela, a P=2 checkpoint resumed on P=$np: rows re-cut, losses and model bit-identical" \
    resumed f-ref "f-p$np" 7 2
done

# ---- 2. eval and recommend from the model file --------------------------------------------
for run in c-ref f-ref; do
  want=$(test_metrics "$tmp/$run/metrics.jsonl")
  for how in "1 auto" "2 sharded" "2 replicated"; do
    set -- $how
    timeout 120 mpirun -np "$1" --oversubscribe --mca mpi_yield_when_idle 1 "$bin" eval \
      --model "$tmp/$run/model.lrm" --split test --set dist.item_table="$2" > "$tmp/eval.json" \
      2> "$tmp/eval.log"
    got=$(test_metrics "$tmp/eval.json")
    check "$run: eval of model.lrm at P=$1 ($2 table) reproduces train's test metrics ($got)" \
      test -n "$want" -a "$want" = "$got" || cat "$tmp/eval.log"
  done
  "$bin" recommend --model "$tmp/$run/model.lrm" --users 1,6,42 --k 5 > "$tmp/$run.rec" 2> "$tmp/rec.log"
  rc=$?
  "$bin" recommend --model "$tmp/$run" --users 1,6,42 --k 5 > "$tmp/$run.rec2" 2>> "$tmp/rec.log"
  recs() { # three lines of 5 items, the same from the file and the directory
    [ "$1" -eq 0 ] && [ "$(grep -c '"items":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*\]' "$2")" = 3 ] &&
      cmp -s "$2" "$3" || { cat "$tmp/rec.log"; return 1; }
  }
  check "$run: recommend from model.lrm: 3 users x 5 items, the same from the run directory (exit $rc)" \
    recs $rc "$tmp/$run.rec" "$tmp/$run.rec2"
done

# ---- 3. positions=all needs a causal kind -------------------------------------------------
for arch in recgrela recgrela_norope; do
  "$bin" train "${tiny[@]}" --set model.arch=$arch --set model.attention=rela \
    --set train.positions=all --out "$tmp/refused" > "$tmp/refused.log" 2>&1
  rc=$?
  refused() {
    [ "$1" -eq 2 ] && [ ! -e "$tmp/refused/model.lrm" ] &&
      grep -q 'key "train.positions": "all" needs a causal attention kind' "$tmp/refused.log"
  }
  check "$arch: positions=all with rela is refused (exit $rc, naming train.positions)" refused $rc
done

# ---- 4. the ablations ---------------------------------------------------------------------
base=$(steps c-ref | sed -n 1,12p)
ab=(--set train.max_steps=12 --set dist.item_table=sharded) # the table layout is in the model file
for arch in recgrela_nogate recgrela_noconv recgrela_norope; do
  train 1 "$arch-1" "${causal[@]}" --set model.arch=$arch "${ab[@]}" &&
    train 2 "$arch-2" "${causal[@]}" --set model.arch=$arch "${ab[@]}" || tail -n 5 "$tmp/$arch-2.log"
  got=$(steps "$arch-1")
  ablation() { same_run "$arch-1" "$arch-2" && [ -n "$got" ] && [ "$got" != "$base" ]; }
  check "$arch: trains; P=1 and P=2 (sharded) bitwise, other losses than recgrela's" ablation
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
