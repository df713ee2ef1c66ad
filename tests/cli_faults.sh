#!/usr/bin/env bash
# cli_faults.sh: faults at run time, end to end:
#  1. metrics.jsonl cannot be written (a symlink to /dev/full at start-up; a
#     4 KiB tmpfs that fills up mid-run, in a private mount namespace): the
#     run stops with exit 1 naming the file and "No space left on device",
#     at P = 1 and P = 2, within 60 s (no rank left waiting);
#  2. a rank killed (SIGKILL) or stopped (SIGSTOP) mid-run at P = 3: every
#     other rank stops within 10 s (stopped: dist.timeout 5 s, and 2 s when
#     set) with a message naming the lost rank, its host and pid, and the
#     last committed checkpoint verifies;
#  3. mpirun killed (SIGKILL) at random moments, P = 1..3: no rank outlives
#     it by more than 10 s (the watchdog sees its parent go);
#  4. a run that diverges (a gradient term out of range, injected with
#     LINREC_INJECT_DIVERGE at step 7) at P = 1 and 2: exit 3 on every rank,
#     one message naming the step and the last checkpoint, which verifies.
# Measured times are printed; the bounds asserted are generous.
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

# ---- 2. a rank killed or stopped --------------------------------------------------------
long=(--set train.epochs=100 --set train.checkpoint.every_steps=10)
# start NAME NP ARGS...: a long run under mpirun in the background; sets mp
# (mpirun's pid) and ranks (its children: the ranks) once NAME has a checkpoint.
start() {
  local name=$1 np=$2; shift 2
  "${mpi[@]}" -np "$np" "$bin" train "${tiny[@]}" "${long[@]}" "$@" --out "$tmp/$name" \
    > "$tmp/$name.log" 2>&1 &
  mp=$!
  for i in $(seq 1 600); do
    [ -f "$tmp/$name/checkpoints/latest" ] && break
    kill -0 $mp 2>/dev/null || break
    sleep 0.05
  done
  ranks=$(pgrep -P $mp | sort -n | tr '\n' ' ')
}
# gone RANKS LIMIT: wait until no pid of RANKS runs (zombies count as gone)
# for at most LIMIT seconds; prints the seconds waited; status 0 if all gone.
gone() {
  local t0=$(date +%s.%N) r alive
  while :; do
    alive=0
    for r in $1; do
      [ -n "$(ps -o stat= -p "$r" 2>/dev/null | grep -v Z)" ] && alive=1
    done
    local el=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    [ $alive = 0 ] && { echo "$el"; return 0; }
    awk -v e="$el" -v l="$2" 'BEGIN { exit !(e > l) }' && { echo "$el"; return 1; }
    sleep 0.05
  done
}
cleanup() { kill -CONT $ranks 2>/dev/null; kill -9 $ranks $mp 2>/dev/null; wait $mp 2>/dev/null; }
for how in KILL STOP STOP2; do
  name=lost-$how
  extra=()
  [ $how = STOP2 ] && extra=(--set dist.timeout=2)
  start "$name" 3 "${extra[@]}"
  victim=$(echo $ranks | awk '{print $NF}')
  if [ -z "$victim" ] || [ "$(echo $ranks | wc -w)" != 3 ]; then
    bad "$how of a rank: the run did not start (ranks '$ranks')"; cat "$tmp/$name.log"; cleanup; continue
  fi
  kill -${how%2} "$victim"
  others=$(echo $ranks | awk '{print $1, $2}')
  secs=$(gone "$others" 20)
  gone_rc=$?
  wait $mp
  rc=$?
  cleanup
  n_named=$(grep -ac "pid $victim) is lost: " "$tmp/$name.log")
  why=$([ $how = KILL ] && echo 'its connection closed' || echo 'no heartbeat for')
  limit=$([ $how = STOP2 ] && echo 6 || echo 10)
  if [ $gone_rc = 0 ] && awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s < l) }' && [ $rc != 0 ] &&
     [ "$n_named" -ge 2 ] && grep -aq "is lost: $why" "$tmp/$name.log" &&
     "$bin" ckpt verify "$tmp/$name/checkpoints" > /dev/null 2>&1; then
    ok "SIG${how%2} of rank 2 of 3${extra[*]:+ (${extra[*]})}: the other ranks stopped after ${secs}s naming it ($n_named messages), latest verifies"
  else
    bad "SIG${how%2} of rank 2 of 3${extra[*]:+ (${extra[*]})}: others gone after ${secs}s (rc $gone_rc), mpirun exit $rc, $n_named messages"
    tail -n 20 "$tmp/$name.log"
  fi
done
grep -a -m1 "is lost" "$tmp/lost-STOP.log"

# ---- 3. mpirun killed -------------------------------------------------------------------
RANDOM=1313
worst=0 good=0 trials=0
for trial in 1 2 3 4 5 6; do
  np=$(( (trial - 1) % 3 + 1 ))
  start "orphan$trial" "$np"
  sleep "0.$(printf %03d $((RANDOM % 1000)))"
  trials=$((trials + 1))
  kill -9 $mp
  secs=$(gone "$ranks" 15)
  grc=$?
  cleanup
  [ $grc = 0 ] && [ -n "$ranks" ] && good=$((good + 1))
  awk -v s="$secs" -v w="$worst" 'BEGIN { exit !(s > w) }' && worst=$secs
done
check "kill -9 of mpirun ($trials trials, P = 1..3): every rank gone within 10 s (slowest ${worst}s)" \
  sh -c "[ $good = $trials ] && awk -v w=$worst 'BEGIN { exit !(w < 10) }'"

# ---- 4. divergence ------------------------------------------------------------------------
for np in 1 2; do
  LINREC_INJECT_DIVERGE=7 launch "$np" train "${tiny[@]}" --set train.checkpoint.every_steps=5 \
    --out "$tmp/div$np" > "$tmp/div$np.log" 2>&1
  rc=$?
  check "P=$np: a diverging run exits 3 naming the step and the last checkpoint (exit $rc)" \
    sh -c "[ $rc = 3 ] && [ \$(grep -c 'training diverged: step 7:' '$tmp/div$np.log') = 1 ] &&
           grep -q 'the last checkpoint is .*div$np/checkpoints/step-00000005' '$tmp/div$np.log' &&
           '$bin' ckpt verify '$tmp/div$np/checkpoints' > /dev/null 2>&1" || tail -n 5 "$tmp/div$np.log"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
