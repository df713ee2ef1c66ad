#!/usr/bin/env bash
# cli_faults.sh: faults at run time, end to end:
#  1. metrics.jsonl cannot be written (a symlink to /dev/full at start-up; a
#     4 KiB tmpfs that fills up mid-run, in a private mount namespace): the
#     run stops with exit 1 naming the file and "No space left on device",
#     at P = 1 and P = 2, within 60 s (no rank left waiting).
# Usage: cli_faults.sh LINREC_BINARY SOURCE_DIR SHARED_DATA_DIR
source "$(dirname "$0")/lib_cli.sh"
tiny=(--config "$src/configs/quickstart.json" --set data.synthetic.users=300
      --set data.synthetic.items=60 --set data.synthetic.mean_len=12 --set model.d=16
      --set model.heads=2 --set model.layers=1 --set model.inner=32 --set model.max_len=10
      --set train.batch_size=16 --set train.patience=0 --set log.progress=off)
mpi=(mpirun --oversubscribe --mca mpi_yield_when_idle 1)
# launch NP ARGS...: linrec ARGS at NP ranks (plain at 1), bounded by 60 s.
launch() {
  local np=$1; shift
  if [ "$np" = 1 ]; then timeout 60 "$bin" "$@"; else timeout 60 "${mpi[@]}" -np "$np" "$bin" "$@"; fi
}

# ---- 1. metrics.jsonl write errors ---------------------------------------------------------
for np in 1 2; do
  mkdir -p "$tmp/full$np"
  ln -s /dev/full "$tmp/full$np/metrics.jsonl"
  launch "$np" train "${tiny[@]}" --set train.max_steps=5 --out "$tmp/full$np" > "$tmp/full$np.log" 2>&1
  rc=$?
  check "P=$np: metrics.jsonl on /dev/full: exit 1 naming the file and the reason (exit $rc)" \
    sh -c "[ $rc = 1 ] && grep -q 'full$np/metrics.jsonl: write failed: No space left on device' '$tmp/full$np.log'" ||
    cat "$tmp/full$np.log"
done
mkdir -p "$tmp/mnt"
if unshare -m true 2>/dev/null; then
  for np in 1 2; do
    unshare -m bash -c "
      mount -t tmpfs -o size=4k tmpfs '$tmp/mnt' || exit 3
      $(declare -f launch); bin='$bin'; mpi=($(printf '%q ' "${mpi[@]}"))
      launch $np train $(printf '%q ' "${tiny[@]}") --set train.epochs=100 --set log.every_steps=1 \
        --set train.checkpoint.every_steps=5 --set train.checkpoint.dir='$tmp/ck$np' --out '$tmp/mnt/o' \
        > '$tmp/fill$np.log' 2>&1
      echo \$? > '$tmp/fill$np.rc'
      grep -c '\"event\":\"step\"' '$tmp/mnt/o/metrics.jsonl' > '$tmp/fill$np.steps'"
    if [ $? = 3 ]; then echo "metrics.jsonl filling its file system: SKIPPED: cannot mount a tmpfs"; break; fi
    rc=$(cat "$tmp/fill$np.rc")
    check "P=$np: metrics.jsonl fills its file system after $(cat "$tmp/fill$np.steps") steps: exit 1 naming it (exit $rc)" \
      sh -c "[ '$rc' = 1 ] && grep -q 'mnt/o/metrics.jsonl: write failed: No space left on device' '$tmp/fill$np.log'" ||
      cat "$tmp/fill$np.log"
    check "P=$np: the checkpoints written before it verify" sh -c "'$bin' ckpt verify '$tmp/ck$np' > /dev/null"
  done
else
  echo "metrics.jsonl filling its file system: SKIPPED: unshare -m is refused here"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
