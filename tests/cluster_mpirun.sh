#!/usr/bin/env bash
# cluster_mpirun.sh: multi-host training with launch/linrec-run --hostfile
# over TCP. Three "hosts" are network namespaces joined by a bridge (which
# lives in a namespace of its own; addresses 10.77.0.0/24 exist only inside
# them); mpirun starts the remote daemons with an rsh agent that enters the
# namespace (no ssh).
#  1. a tiny quickstart config trains across the three hosts;
#  2. again with 1% packet loss (nft on the bridge) and a 20 Mbit/s rate
#     limit (tc tbf): the same per-step losses;
#  3. with checkpoints every few steps, one rank is killed by SIGKILL
#     mid-run: the job ends within 10 s naming the lost rank, and a resume
#     from `latest` finishes with the per-step losses of run 1;
#  4. SIGTERM to linrec-run, twice (the second changes nothing): every host
#     checkpoints, exit 75, and the resume finishes with run 1's metrics;
#  5. host 2's link cut mid-run: every rank, host 2's included, stops within
#     10 s naming the lost one (the heartbeat), and linrec-run ends within
#     30 s (it kills an mpirun that outlives its local ranks by 15 s); the
#     times are printed.
# Needs root; skips only where the kernel refuses namespaces. Everything it
# creates is removed on exit, also on failure.
# Usage: cluster_mpirun.sh LINREC_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
CL_TMP=$(mktemp -d /tmp/lrtest-mpirun.XXXXXX)
source "$src/tests/cluster_lib.sh"
cl_require 1 ip nsenter unshare nft tc mpirun python3
cl_have_resume "$bin" || { echo "FAILED: $bin train --help lists no --resume"; exit 1; }

cl_ns_up 3 || { echo "FAILED: could not create the namespace hosts"; exit 1; }
hf=$CL_TMP/hostfile
printf '%s slots=1\n' "${CL_HOSTS[@]}" > "$hf"
cl_log "hosts up: ${CL_HOSTS[*]}"

tiny=(--config "$src/configs/quickstart.json"
      --set data.synthetic.users=2000 --set data.synthetic.items=500 --set data.synthetic.mean_len=20
      --set model.d=32 --set model.inner=64 --set model.max_len=20 --set train.batch_size=64
      --set train.epochs=3 --set train.patience=0 --set log.every_steps=1 --set log.progress=plain
      --set eval.k=10)
# linrec-run from host 0 over the hostfile: TCP only, on the bridge's subnet,
# one BLAS thread (the three hosts share this machine's cores).
run3() { # name timeout args...
  local name=$1 to=$2
  shift 2
  timeout "$to" "$NSRUN" "${CL_HOSTS[0]}" "$src/launch/linrec-run" --bin "$bin" --hostfile "$hf" \
    --threads 1 --mca plm_rsh_agent "$NSAGENT" --mca btl tcp,self \
    --mca btl_tcp_if_include "$CL_SUB.0/24" --mca oob_tcp_if_include "$CL_SUB.0/24" \
    --mca mpi_yield_when_idle 1 -- train "${tiny[@]}" "$@" --out "$CL_TMP/$name" \
    > "$CL_TMP/$name.log" 2>&1
}
losses() { python3 -c "import json,sys; print(' '.join(str(json.loads(l)['step'])+':'+str(json.loads(l)['loss']) for l in open(sys.argv[1]) if '\"event\":\"step\"' in l))" "$CL_TMP/$1/metrics.jsonl" 2>/dev/null; }
nsteps() { local n; n=$(grep -c '"event":"step"' "$CL_TMP/$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }

# 1. clean
t=$(date +%s.%N)
run3 clean 300
rc=$?
secs=$(cl_since "$t")
ref=$(losses clean)
if [ $rc = 0 ] && [ -n "$ref" ] && grep -q '"event":"done"' "$CL_TMP/clean/metrics.jsonl"; then
  ok "3 hosts over TCP: trained $(nsteps clean) steps in ${secs}s"
else
  bad "3 hosts over TCP (rc=$rc)"
  tail -n 30 "$CL_TMP/clean.log"
fi

# 2. packet loss and a rate limit on the bridge
br=$CL_P-br
ip netns exec "$br" nft add table bridge chaos &&
  ip netns exec "$br" nft add chain bridge chaos fw '{ type filter hook forward priority 0; policy accept; }' &&
  ip netns exec "$br" nft add rule bridge chaos fw numgen random mod 100 '<' 1 counter drop &&
  ip netns exec "$br" tc qdisc add dev v1 root tbf rate 20mbit burst 32kbit latency 400ms || {
  echo "FAILED: could not set up nft loss / tc tbf"
  exit 1
}
t=$(date +%s.%N)
run3 lossy 400
rc=$?
secs=$(cl_since "$t")
dropped=$(ip netns exec "$br" nft list chain bridge chaos fw | grep -o 'packets [0-9]*' | awk '{print $2}')
ip netns exec "$br" nft delete table bridge chaos
ip netns exec "$br" tc qdisc del dev v1 root
if [ $rc = 0 ] && [ -n "$ref" ] && [ "$(losses lossy)" = "$ref" ] && [ "${dropped:-0}" -gt 0 ]; then
  ok "1% loss + 20 Mbit/s tbf: same $(nsteps lossy) per-step losses, ${dropped} packets dropped, ${secs}s"
else
  bad "1% loss + 20 Mbit/s tbf (rc=$rc, dropped=${dropped:-?}, steps $(nsteps lossy) vs $(nsteps clean))"
  tail -n 30 "$CL_TMP/lossy.log"
fi

# 3. SIGKILL of the rank on host 2 after a checkpoint, then resume
ck=(--set train.checkpoint.every_steps=5)
run3 killed 300 "${ck[@]}" &
job=$!
victim=""
for i in $(seq 1 600); do
  if [ -z "$victim" ]; then
    victim=$(ip netns pids "${CL_HOSTS[2]}" 2>/dev/null | xargs -r ps -o pid=,comm= -p 2>/dev/null |
             awk '$2 == "linrec" {print $1}')
  fi
  [ -n "$victim" ] && [ "$(nsteps killed)" -ge 12 ] &&
    compgen -G "$CL_TMP/killed/checkpoints/step-*/manifest.json" >/dev/null && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
if [ -z "$victim" ] || ! kill -0 $job 2>/dev/null; then
  wait $job
  bad "kill -9 of a rank: the run did not reach a checkpoint while running (rc=$?)"
  tail -n 30 "$CL_TMP/killed.log"
else
  at=$(nsteps killed)
  t=$(date +%s.%N)
  kill -9 "$victim"
  wait $job
  rc=$?
  secs=$(cl_since "$t")
  named=$(grep -m1 -E "rank 2 .*${CL_HOSTS[2]}|${CL_HOSTS[2]}.*rank 2" "$CL_TMP/killed.log")
  left=$(for h in "${CL_HOSTS[@]}"; do ip netns pids "$h"; done | xargs -r ps -o comm= -p 2>/dev/null | grep -cE 'linrec|orted')
  if [ $rc != 0 ] && awk -v s="$secs" 'BEGIN { exit !(s < 10) }' && [ -n "$named" ] && [ "$left" = 0 ]; then
    ok "kill -9 of rank 2 at step ~$at: job ended in ${secs}s (rc=$rc): $named"
  else
    bad "kill -9 of rank 2: rc=$rc after ${secs}s, message '${named}', ${left} processes left"
    tail -n 30 "$CL_TMP/killed.log"
  fi
  run3 killed 300 "${ck[@]}" --resume latest
  rc=$?
  cmp=$(cl_compare "$CL_TMP/clean" "$CL_TMP/killed")
  if [ $rc = 0 ] && cl_compare "$CL_TMP/clean" "$CL_TMP/killed" >/dev/null; then
    ok "resume from latest after the kill: $cmp"
  else
    bad "resume from latest after the kill (rc=$rc): $cmp"
    tail -n 30 "$CL_TMP/killed.log"
  fi
fi

# 4. SIGTERM to linrec-run on host 0 mid-run, twice: it becomes SIGUSR1 for
#    every rank on every host (the second changes nothing); all checkpoint,
#    linrec-run exits 75; a resume finishes with the clean run's metrics.
run3 stopped 300 &
job=$!
for i in $(seq 1 600); do
  [ "$(nsteps stopped)" -ge 30 ] && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
# the job's linrec-run: the bash process in host 0 whose command line names our output dir
lr=$(ip netns pids "${CL_HOSTS[0]}" | xargs -r ps -o pid=,args= -p 2>/dev/null |
     awk -v d="$CL_TMP/stopped" '$2 ~ /bash$/ && $3 ~ /linrec-run$/ && index($0, d) {print $1}' | head -n 1)
at=$(nsteps stopped)
t=$(date +%s.%N)
[ -n "$lr" ] && kill -TERM "$lr" && sleep 0.3 && kill -TERM "$lr"
wait $job
rc=$?
secs=$(cl_since "$t")
latest=$(cat "$CL_TMP/stopped/checkpoints/latest" 2>/dev/null)
if [ -n "$lr" ] && [ $rc = 75 ] && [ -n "$latest" ]; then
  ok "SIGTERM x2 to linrec-run at step ~$at: exit 75 after ${secs}s, checkpoint $latest"
  run3 stopped 300 --resume latest
  rc=$?
  cmp=$(cl_compare "$CL_TMP/clean" "$CL_TMP/stopped")
  if [ $rc = 0 ] && cl_compare "$CL_TMP/clean" "$CL_TMP/stopped" >/dev/null; then
    ok "resume after SIGTERM: $cmp"
  else
    bad "resume after SIGTERM (rc=$rc): $cmp"
    tail -n 30 "$CL_TMP/stopped.log"
  fi
else
  bad "SIGTERM x2 to linrec-run (pid '${lr}'): rc=$rc after ${secs}s, latest '${latest}'"
  tail -n 30 "$CL_TMP/stopped.log"
fi

# 5. Host 2's link cut mid-run (restored once linrec-run ended, or after 40 s).
run3 cut 300 --set train.epochs=20 --set train.checkpoint.every_steps=5 &
job=$!
for i in $(seq 1 600); do
  [ "$(nsteps cut)" -ge 12 ] && [ -f "$CL_TMP/cut/checkpoints/latest" ] && break
  kill -0 $job 2>/dev/null || break
  sleep 0.05
done
# linrec ranks per host
lranks() { ip netns pids "$1" 2>/dev/null | xargs -r ps -o pid=,comm= -p 2>/dev/null | awk '$2 == "linrec" {print $1}'; }
at=$(nsteps cut)
t=$(date +%s.%N)
ip -n "$CL_P-br" link set v2 down
t_ranks="" t_h2="" t_mpi=""
for i in $(seq 1 600); do
  el=$(cl_since "$t")
  [ -z "$t_ranks" ] && [ -z "$(lranks "${CL_HOSTS[0]}")$(lranks "${CL_HOSTS[1]}")" ] && t_ranks=$el
  [ -z "$t_h2" ] && [ -z "$(lranks "${CL_HOSTS[2]}")" ] && t_h2=$el
  [ -z "$t_mpi" ] && ! kill -0 $job 2>/dev/null && t_mpi=$el
  [ -n "$t_ranks" ] && [ -n "$t_h2" ] && [ -n "$t_mpi" ] && break
  awk -v e="$el" 'BEGIN { exit !(e > 40) }' && break
  sleep 0.1
done
ip -n "$CL_P-br" link set v2 up
wait $job
rc=$?
named=$(grep -a -m1 "rank 2 of 3 (host ${CL_HOSTS[2]}, pid [0-9]*) is lost" "$CL_TMP/cut.log")
if [ -n "$t_ranks" ] && [ -n "$t_h2" ] && [ -n "$t_mpi" ] &&
   awk -v a="$t_ranks" -v b="$t_h2" -v c="$t_mpi" 'BEGIN { exit !(a < 10 && b < 10 && c < 30) }' &&
   [ $rc != 0 ] && [ -n "$named" ] && "$bin" ckpt verify "$CL_TMP/cut/checkpoints" > /dev/null 2>&1; then
  ok "host 2's link cut at step ~$at: hosts 0 and 1 stopped after ${t_ranks}s, host 2 after ${t_h2}s, linrec-run after ${t_mpi}s (exit $rc); latest verifies; ${named#*linrec: }"
else
  bad "host 2's link cut: hosts 0-1 ${t_ranks:-?}s, host 2 ${t_h2:-?}s, linrec-run ${t_mpi:-?}s, exit $rc, message '$named'"
  tail -n 30 "$CL_TMP/cut.log"
fi

cl_log "$pass passed, $fail failed"
[ $fail = 0 ] || exit 1
