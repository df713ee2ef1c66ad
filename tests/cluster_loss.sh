#!/usr/bin/env bash
# cluster_loss.sh: a rank or a whole node lost mid-run on a real three-node
# Slurm cluster (network namespaces, as cluster_slurm3), under both launchers
# of launch/slurm/linrec.sbatch at once: an srun job and an mpirun job (one
# rank per node each, checkpoints every 10 steps) lose
#  1. their rank on node 2 together with node 2's slurmd (kill -9 of all
#     three: the reproduction of a rank that held a Slurm job for KillWait);
#  2. node 2's link (ip link down on the bridge: a crashed host or a cut
#     cable; it comes back once both jobs have ended, or after 80 s).
# Asserted for each job: every surviving rank has exited within 10 s of the
# fault (also node 2's own rank when only its link is cut), a message names
# the lost rank and its host, and the checkpoint `latest` names verifies.
# Printed (measured, not asserted): when the survivors were gone, when the
# job step (srun / mpirun) and the job ended, with this cluster's Slurm
# settings (SlurmdTimeout 30 s, KillWait 20 s, MessageTimeout 10 s).
# Needs root; skips only where the kernel refuses namespaces.
# Usage: cluster_loss.sh LINREC_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
CL_TMP=$(mktemp -d /tmp/lrtest-loss.XXXXXX)
source "$src/tests/cluster_lib.sh"
cl_require 1 ip nsenter unshare munged mungekey slurmctld slurmd sbatch srun scontrol mpirun python3
export LINREC_BIN=$bin OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1 LINREC_MAX_RETRIES=0
nsteps() { local n; n=$(grep -c '"event":"step"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }

cl_ns_up 3 || { echo "FAILED: could not create the namespace hosts"; exit 1; }
cl_munge_up || { echo "FAILED: munged did not start"; exit 1; }
cl_slurm_up_ns "$CL_TMP/slurm" || { echo "FAILED: Slurm did not come up"; exit 1; }
h2=${CL_HOSTS[2]}
cl_log "3-node cluster up: $(cl_sl sinfo -h -N -o '%N:%T' | tr '\n' ' ')"

cfg=(--config "$src/configs/quickstart.json" --set data.synthetic.users=2000 --set train.epochs=100
     --set train.patience=0 --set log.every_steps=1 --set log.progress=plain
     --set train.checkpoint.every_steps=10)
sub() { cl_sl sbatch --parsable --chdir="$CL_TMP" -o "$CL_TMP/slurm-%j.out" -N 3 --ntasks-per-node=1 -c 1 -t 10 "$@"; }

# pids HOST PATTERN: processes in HOST's namespace whose command line has PATTERN.
pids() {
  local p
  for p in $(ip netns pids "$1" 2>/dev/null); do
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$2" && echo "$p"
  done
}
# ranks HOST DIR: the linrec ranks of the job writing DIR on HOST.
ranks() { local p; for p in $(pids "$1" "$2"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = linrec ] && echo "$p"; done; }

# scenario NAME: two jobs (srun, mpirun); once both have a checkpoint and
# 30 steps, `fault` runs; then the times are measured and checked.
scenario() {
  local name=$1 j k
  local -A job dir
  job[srun]=$(sub -J "$name-srun" "$src/launch/slurm/linrec.sbatch" "${cfg[@]}" --out "$CL_TMP/$name-srun")
  job[mpirun]=$(LINREC_LAUNCH=mpirun sub -J "$name-mpirun" "$src/launch/slurm/linrec.sbatch" "${cfg[@]}" \
                --out "$CL_TMP/$name-mpirun")
  for k in srun mpirun; do dir[$k]=$CL_TMP/$name-$k; done
  for i in $(seq 1 1200); do
    local ready=1
    for k in srun mpirun; do
      { [ "$(nsteps "${dir[$k]}")" -ge 30 ] && [ -f "${dir[$k]}/checkpoints/latest" ] &&
        [ -n "$(ranks "$h2" "${dir[$k]}")" ]; } || ready=0
      case $(cl_job_state "${job[$k]}") in RUNNING|PENDING|CONFIGURING) ;; *) ready=-1 ;; esac
    done
    [ $ready != 0 ] && break
    sleep 0.2
  done
  if [ $ready != 1 ]; then
    bad "$name: the jobs did not reach 30 steps and a checkpoint"
    for k in srun mpirun; do tail -n 20 "$CL_TMP/slurm-${job[$k]}.out"; done
    cl_sl scancel "${job[srun]}" "${job[mpirun]}"
    return
  fi
  local -A victims survivors t_ranks t_h2 t_step t_job
  for k in srun mpirun; do
    victims[$k]=$(ranks "$h2" "${dir[$k]}" | tr '\n' ' ')
    survivors[$k]=$( (ranks "${CL_HOSTS[0]}" "${dir[$k]}"; ranks "${CL_HOSTS[1]}" "${dir[$k]}") | tr '\n' ' ')
  done
  local t0
  t0=$(date +%s.%N)
  "fault_$name" "${victims[srun]} ${victims[mpirun]}"
  cl_log "$name: fault at steps $(nsteps "${dir[srun]}") (srun job) and $(nsteps "${dir[mpirun]}") (mpirun job)"
  for i in $(seq 1 900); do
    local busy=0 el
    el=$(cl_since "$t0")
    for k in srun mpirun; do
      if [ -z "${t_ranks[$k]:-}" ]; then
        local alive=0 p
        for p in ${survivors[$k]}; do [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive=1; done
        [ $alive = 0 ] && t_ranks[$k]=$el
      fi
      [ -z "${t_h2[$k]:-}" ] && [ -z "$(ranks "$h2" "${dir[$k]}")" ] && t_h2[$k]=$el
      if [ -z "${t_step[$k]:-}" ] && [ -z "$(pids "${CL_HOSTS[0]}" "${dir[$k]}" | while read -r p; do
           case $(cat "/proc/$p/comm" 2>/dev/null) in srun|mpirun|linrec) echo "$p" ;; esac; done)" ]; then
        t_step[$k]=$el
      fi
      case $(cl_job_state "${job[$k]}") in RUNNING|COMPLETING|CONFIGURING|"") busy=1 ;; *) [ -z "${t_job[$k]:-}" ] && t_job[$k]=$el ;; esac
      [ -z "${t_ranks[$k]:-}" ] || [ -z "${t_step[$k]:-}" ] && busy=1
    done
    [ $busy = 0 ] && break
    awk -v e="$el" 'BEGIN { exit !(e > 90) }' && break
    "recover_$name" "$el"
    sleep 0.1
  done
  "recover_$name" 1000
  for k in srun mpirun; do
    local out=$CL_TMP/slurm-${job[$k]}.out named
    named=$(grep -a -m1 -E "rank [0-9]+ of 3 \(host $h2, pid [0-9]+\) is lost" "$out")
    local what="$name, $k job: survivors gone after ${t_ranks[$k]:-?}s, node 2's rank after ${t_h2[$k]:-?}s, the $k step after ${t_step[$k]:-(still running at 90 s)}s, the job left RUNNING after ${t_job[$k]:-(>90)}s ($(cl_job_state "${job[$k]}"))"
    if [ -n "${t_ranks[$k]:-}" ] && awk -v s="${t_ranks[$k]}" 'BEGIN { exit !(s < 10) }' &&
       [ -n "${t_h2[$k]:-}" ] && awk -v s="${t_h2[$k]}" 'BEGIN { exit !(s < 10) }' && [ -n "$named" ] &&
       "$bin" ckpt verify "${dir[$k]}/checkpoints" > "$CL_TMP/$name-$k.verify" 2>&1; then
      ok "$what; latest $(cat "${dir[$k]}/checkpoints/latest") verifies; ${named#*linrec: }"
    else
      bad "$what; message '${named}'"
      cat "$CL_TMP/$name-$k.verify" 2>/dev/null
      tail -n 25 "$out"
    fi
  done
  cl_sl scancel "${job[srun]}" "${job[mpirun]}" 2>/dev/null
  for i in $(seq 1 200); do
    [ -z "$(cl_job_state "${job[srun]}")$(cl_job_state "${job[mpirun]}" | grep -vE 'CANCELLED|FAILED|COMPLETED|TIMEOUT|NODE_FAIL')" ] && break
    case "$(cl_job_state "${job[srun]}") $(cl_job_state "${job[mpirun]}")" in *RUNNING*|*COMPLETING*|*PENDING*|*CONFIGURING*) sleep 0.25 ;; *) break ;; esac
  done
}

# 1. kill -9 of node 2's slurmd and of both jobs' ranks on node 2; slurmd is
#    started again after the measurements.
fault_kill() { kill -9 "$(cat "$CL_TMP/slurm/slurmd-$h2.pid")" $1; }
recover_kill() {
  [ "$1" = 1000 ] || return 0
  "$NSRUN" "$h2" slurmd -f "$CL_TMP/slurm/slurm.conf" 2>/dev/null
  cl_wait_idle 3 >/dev/null 2>&1 || cl_log "node 2 not back yet"
}
scenario kill

# 2. node 2's link down until both jobs have ended (at most 80 s).
fault_link() { ip -n "$CL_P-br" link set v2 down; }
recover_link() {
  if [ "$1" = 1000 ] || awk -v e="$1" 'BEGIN { exit !(e > 80) }'; then
    ip -n "$CL_P-br" link set v2 up
  fi
}
scenario link

cl_log "$pass passed, $fail failed"
[ $fail = 0 ] || exit 1
