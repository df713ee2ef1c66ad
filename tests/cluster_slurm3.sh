#!/usr/bin/env bash
# cluster_slurm3.sh: launch/slurm/linrec.sbatch on a real three-node Slurm
# cluster: every node is a network namespace (own address on a bridge that
# lives in a namespace of its own, own hostname, own slurmd); slurmctld runs
# on node 0, a private munged serves all three. Two jobs, one rank per node,
# run side by side and each goes through preempt -> exit 75 -> requeue ->
# resume -> finish, and must end with the per-step losses, evaluations and
# test metrics of an uninterrupted 3-rank run:
#  A. srun --mpi=pmix step, preempted by `scancel --signal=TERM`, twice
#     (the signal goes to the ranks on all three nodes, as Slurm's
#     preemption SIGTERM does; the second changes nothing);
#  B. LINREC_LAUNCH=mpirun (daemons started through Slurm), preempted by
#     `scancel --batch --signal=USR1` (the time-limit warning's path); the
#     batch shell passes SIGUSR1 to mpirun, which forwards it to every host.
# Needs root; skips only where the kernel refuses namespaces.
# Usage: cluster_slurm3.sh LINREC_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
CL_TMP=$(mktemp -d /tmp/lrtest-slurm3.XXXXXX)
source "$src/tests/cluster_lib.sh"
cl_require 1 ip nsenter unshare munged mungekey slurmctld slurmd sbatch srun scontrol mpirun python3
cl_have_resume "$bin" || { echo "FAILED: $bin train --help lists no --resume"; exit 1; }
# Six ranks and daemons share this machine's cores: yield when idle.
export LINREC_BIN=$bin OPENBLAS_NUM_THREADS=1 OMPI_MCA_mpi_yield_when_idle=1
nsteps() { local n; n=$(grep -c '"event":"step"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }

cl_ns_up 3 || { echo "FAILED: could not create the namespace hosts"; exit 1; }
cl_munge_up || { echo "FAILED: munged did not start"; exit 1; }
cl_slurm_up_ns "$CL_TMP/slurm" || { echo "FAILED: Slurm did not come up"; exit 1; }
cl_log "3-node cluster up: $(cl_sl sinfo -h -N -o '%N:%T' | tr '\n' ' ')"

cfg=(--config "$src/configs/quickstart.json" --set data.synthetic.users=2000 --set train.epochs=6
     --set train.patience=0 --set log.every_steps=1 --set log.progress=plain)

# Reference: uninterrupted, 3 ranks on this machine.
t=$(date +%s.%N)
"$src/launch/linrec-run" -n 3 --threads 1 --bin "$bin" -- train "${cfg[@]}" --out "$CL_TMP/ref" \
  > "$CL_TMP/ref.log" 2>&1
rc=$?
total=$(nsteps "$CL_TMP/ref")
if [ $rc != 0 ] || [ "$total" -lt 20 ]; then
  echo "FAILED: reference run (rc=$rc)"; tail -n 20 "$CL_TMP/ref.log"; exit 1
fi
cl_log "reference run: $total steps in $(cl_since "$t")s"

sub() { cl_sl sbatch --parsable --chdir="$CL_TMP" -o "$CL_TMP/slurm-%j.out" -N 3 --ntasks-per-node=1 -c 1 -t 10 "$@"; }
t=$(date +%s.%N)
ja=$(sub -J srun3 "$src/launch/slurm/linrec.sbatch" "${cfg[@]}" --out "$CL_TMP/jobA")
jb=$(LINREC_LAUNCH=mpirun sub -J mpirun3 "$src/launch/slurm/linrec.sbatch" "${cfg[@]}" --out "$CL_TMP/jobB")
cl_log "job A ($ja, srun) and job B ($jb, mpirun) submitted"

declare -A sig=([$ja]="--signal=TERM" [$jb]="--batch --signal=USR1") dir=([$ja]=jobA [$jb]=jobB)
declare -A sent=() seen=() last=()
for i in $(seq 1 2400); do
  busy=0
  for j in $ja $jb; do
    s="$(cl_job_state "$j")/$(cl_sl scontrol show job "$j" 2>/dev/null | grep -oE 'Restarts=[0-9]+' | cut -d= -f2)"
    if [ "$s" != "${last[$j]:-}" ]; then
      seen[$j]+="$s@$(cl_since "$t")s "
      last[$j]=$s
    fi
    n=$(nsteps "$CL_TMP/${dir[$j]}")
    if [ -z "${sent[$j]:-}" ] && [ "$n" -ge $((total * 2 / 5)) ]; then
      cl_sl scancel ${sig[$j]} "$j"
      # a second signal at once changes nothing (later, scancel would hold it
      # for the job's next attempt: it retries while the step is ending)
      [ "$j" = "$ja" ] && cl_sl timeout 5 scancel ${sig[$j]} "$j"
      sent[$j]=1
      seen[$j]+="(scancel ${sig[$j]}$([ "$j" = "$ja" ] && echo ' twice') at step $n) "
    fi
    case $s in COMPLETED/*|FAILED/*|CANCELLED/*|TIMEOUT/*|NODE_FAIL/*|/*) ;; *) busy=1 ;; esac
  done
  [ $busy = 0 ] && break
  sleep 0.25
done
cl_log "both jobs done in $(cl_since "$t")s"

for j in $ja $jb; do
  out=$CL_TMP/${dir[$j]}
  name="job ${dir[$j]#job} ($(grep -m1 -oE 'launcher [a-z]+' "$CL_TMP/slurm-$j.out"))"
  tsv=$(cut -f 4,5,7 "$out/logs/attempts.tsv" 2>/dev/null | tr '\t\n' ' ,')
  hosts=$(grep -m1 -oE 'nodes [^ ,]+' "$CL_TMP/slurm-$j.out")
  cmp=$(cl_compare "$CL_TMP/ref" "$out")
  cmp_rc=$?
  if [[ ${seen[$j]} == *PENDING/1* ]] && [[ ${last[$j]} == COMPLETED/1 ]] &&
     [[ $tsv == *"exit=75 preempted,"*"exit=0 done," ]] &&
     grep -q 'resuming from the newest valid checkpoint' "$out"/logs/attempt-02.*.log 2>/dev/null &&
     [ $cmp_rc = 0 ]; then
    ok "$name on $hosts: ${seen[$j]}-> $cmp"
  else
    bad "$name: states ${seen[$j]}; attempts: $tsv; compare: $cmp"
    tail -n 40 "$CL_TMP/slurm-$j.out"
  fi
done

cl_log "$pass passed, $fail failed"
[ $fail = 0 ] || exit 1
