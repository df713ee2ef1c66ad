#!/usr/bin/env bash
# cluster_slurm.sh: launch/slurm/linrec.sbatch on a real single-node Slurm
# cluster that this test starts by hand (a private munged, slurmctld and
# slurmd with a slurm.conf made here, on ports of their own) and tears down.
#  1. the quickstart job with 2 tasks (srun --mpi=pmix) is preempted mid-run
#     (SIGUSR1 to the batch shell, as the time-limit warning
#     --signal=B:USR1@N delivers it); it checkpoints, exits 75, requeues
#     itself, resumes from `latest` and finishes: per-step losses, evaluations
#     and test metrics equal an uninterrupted run's; logs of both attempts and
#     one metrics.jsonl in the output directory;
#  2. Slurm's own time-limit warning (-t 1, --signal=B:USR1@50) reaches the
#     trainer: checkpoint, exit 75 (restarts capped at 0: not requeued);
#  3. a job failing for another reason (an injected fault) is retried
#     LINREC_MAX_RETRIES=1 time, then not requeued, and the log says so;
#  4. an attempt whose record was lost (a `running` line left by a killed
#     batch shell) is marked `lost` and spends the retry budget;
#  5. `scontrol requeue` of a running job (Slurm ends it: SIGTERM to the
#     batch shell and the ranks): the attempt leaves its line (exit 75,
#     start, end, the signal), the job reruns, resumes and ends with the
#     per-step losses of an uninterrupted run;
#  6. a launch failure (the first launch dies before training) is launched
#     again after a back-off without spending the retry budget
#     (LINREC_MAX_RETRIES=0) and the job completes;
#  7. `scancel` of a running job: its line is still written (cancelled), and
#     the job is not requeued;
#  8. `scontrol requeue` of a job launched with LINREC_LAUNCH=mpirun (Slurm's
#     SIGTERM reaches mpirun's daemons, which kill the ranks before they can
#     checkpoint): recorded as interrupted, requeued without spending the
#     retry budget (LINREC_MAX_RETRIES=0), and the job completes;
#  9. SIGTERM to srun itself (not through the batch script): srun cancels
#     the step at once (exit 137, no checkpoint of that step), `latest`
#     still verifies;
# 10. a run that diverges (LINREC_INJECT_DIVERGE) exits 3 and is not
#     requeued: resuming would diverge again.
# Needs root. Usage: cluster_slurm.sh LINREC_BINARY SOURCE_DIR
set -u
bin=$1
src=$2
CL_TMP=$(mktemp -d /tmp/lrtest-slurm.XXXXXX)
source "$src/tests/cluster_lib.sh"
cl_require 0 munged mungekey slurmctld slurmd sbatch srun scontrol mpirun python3
cl_have_resume "$bin" || { echo "FAILED: $bin train --help lists no --resume"; exit 1; }
export LINREC_BIN=$bin OPENBLAS_NUM_THREADS=1
nsteps() { local n; n=$(grep -c '"event":"step"' "$1/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }
jobinfo() { [ -n "$1" ] || return 0; cl_sl scontrol show job "$1" 2>/dev/null | grep -oE '(JobState|Restarts|ExitCode)=[^ ]+' | tr '\n' ' '; }

cl_munge_up || { echo "FAILED: munged did not start"; cat "$CL_TMP"/munge/key/munged.log; exit 1; }
# 12 CPUs in Slurm's view (config_overrides) so that jobs 2 to 9 run side by side.
CL_CPUS=12 cl_slurm_up_single "$CL_TMP/slurm" || { echo "FAILED: Slurm did not come up"; exit 1; }
cl_log "munged, slurmctld and slurmd up: $(sinfo -h -o '%N %T %c CPUs')"

qs=(--config "$src/configs/quickstart.json" --set train.epochs=6 --set log.every_steps=1
    --set log.progress=plain)
tiny=(--config "$src/configs/quickstart.json" --set data.synthetic.users=1000
      --set data.synthetic.items=300 --set data.synthetic.mean_len=20 --set model.d=32
      --set model.inner=64 --set model.max_len=20 --set train.batch_size=64 --set train.patience=0
      --set log.every_steps=1 --set log.progress=plain)
sub() { sbatch --parsable --chdir="$CL_TMP" -o "$CL_TMP/slurm-%j.out" "$@"; }

# Reference: the same training uninterrupted, 2 ranks x 1 thread, linrec-run.
t=$(date +%s.%N)
"$src/launch/linrec-run" -n 2 --threads 1 --bin "$bin" -- train "${qs[@]}" --out "$CL_TMP/ref" \
  > "$CL_TMP/ref.log" 2>&1
rc=$?
ref_s=$(cl_since "$t")
total=$(nsteps "$CL_TMP/ref")
if [ $rc != 0 ] || [ "$total" -lt 20 ]; then
  echo "FAILED: reference run (rc=$rc)"; tail -n 20 "$CL_TMP/ref.log"; exit 1
fi
cl_log "reference run: $total steps in ${ref_s}s"

# 1. preempt, requeue, resume, finish
out=$CL_TMP/job1
t=$(date +%s.%N)
jid=$(sub -J qs -N 1 --ntasks-per-node=2 -c 1 -t 10 "$src/launch/slurm/linrec.sbatch" train "${qs[@]}" --out "$out")
cl_log "job 1 ($jid) submitted"
at=0
for i in $(seq 1 1200); do
  at=$(nsteps "$out")
  [ "$at" -ge $((total * 2 / 5)) ] && break
  case $(cl_job_state "$jid") in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL) break ;; esac
  sleep 0.1
done
cl_log "job 1 at step $at of $total: scancel --batch --signal=USR1 (what --signal=B:USR1@N sends)"
tp=$(date +%s.%N)
scancel --batch --signal=USR1 "$jid"
seen="" last=""
for i in $(seq 1 2400); do
  s="$(cl_job_state "$jid")/$(cl_sl scontrol show job "$jid" | grep -oE 'Restarts=[0-9]+' | cut -d= -f2)"
  if [ "$s" != "$last" ]; then seen+="$s@$(cl_since "$tp")s "; last=$s; fi
  case $s in COMPLETED/*|FAILED/*|CANCELLED/*|TIMEOUT/*|NODE_FAIL/*) break ;; esac
  sleep 0.25
done
job_s=$(cl_since "$t")
cl_log "job 1 states after the signal: $seen(total ${job_s}s)"
tsv=$(cut -f 5,7 "$out/logs/attempts.tsv" 2>/dev/null | tr '\t\n' ' ,')
cmp=$(cl_compare "$CL_TMP/ref" "$out")
cmp_rc=$?
logs=$(find "$out/logs" -name 'attempt-*.log' 2>/dev/null | wc -l)
if [[ $seen == *PENDING/1* ]] && [[ $last == COMPLETED/1 ]] && [ "$tsv" = "exit=75 preempted,exit=0 done," ] &&
   [ "$logs" = 2 ] && grep -q 'resuming from the newest valid checkpoint' "$out"/logs/attempt-02.*.log &&
   compgen -G "$out/checkpoints/step-*/manifest.json" >/dev/null && [ $cmp_rc = 0 ]; then
  ok "preempted at step $at -> exit 75 -> requeued -> resumed -> finished; $cmp"
else
  bad "preempt/requeue/resume (states: $seen; attempts: $tsv; $logs attempt logs; compare: $cmp)"
  cat "$CL_TMP"/slurm-"$jid".out | tail -n 40
fi

# 2. Slurm's time-limit warning (3.) and a failing job, side by side
t2=$(date +%s.%N)
# Job 2 is the README's example: a job file with its own #SBATCH lines that
# execs linrec.sbatch.
{
  printf '%s\n' '#!/bin/bash' '#SBATCH --job-name=tl' '#SBATCH --nodes=1' '#SBATCH --ntasks-per-node=2' \
    '#SBATCH --cpus-per-task=1' '#SBATCH --time=1' '#SBATCH --signal=B:USR1@50' '#SBATCH --requeue' \
    '#SBATCH --open-mode=append' "#SBATCH --output=$CL_TMP/slurm-%j.out" \
    "export LINREC_BIN=$bin LINREC_MAX_RESTARTS=0"
  printf 'exec bash %q' "$src/launch/slurm/linrec.sbatch"
  printf ' %q' "${tiny[@]}" --set train.epochs=1000 --out "$CL_TMP/job2"
  echo
} > "$CL_TMP/tl.sbatch"
j2=$(sbatch --parsable --chdir="$CL_TMP" "$CL_TMP/tl.sbatch")
j3=$(LINREC_MAX_RETRIES=1 LINREC_INJECT_FAULT=1:5 sub -J fault -N 1 --ntasks-per-node=2 -c 1 -t 10 \
     "$src/launch/slurm/linrec.sbatch" "${tiny[@]}" --set train.epochs=2 --out "$CL_TMP/job3")
# Jobs 4 to 7: one task each. The uninterrupted run job 5 must match (1 rank):
"$bin" train "${tiny[@]}" --set train.epochs=20 --set train.checkpoint.every_steps=10 \
  --out "$CL_TMP/ref1" > "$CL_TMP/ref1.log" 2>&1 || { bad "reference run of job 5"; tail -n 5 "$CL_TMP/ref1.log"; }
one=(-N 1 -n 1 -c 1 -t 10 "$src/launch/slurm/linrec.sbatch" "${tiny[@]}")
mkdir -p "$CL_TMP/job4/logs"
printf '1\tjob=1\trestart=0\tnodes=x\texit=-\tseconds=-\trunning\tstart=2026-01-01T00:00:00\tend=-\t\n' \
  > "$CL_TMP/job4/logs/attempts.tsv"
j4=$(LINREC_MAX_RETRIES=1 LINREC_INJECT_FAULT=0:3 sub -J lost "${one[@]}" --set train.epochs=2 --out "$CL_TMP/job4")
long1=(--set train.epochs=20 --set train.checkpoint.every_steps=10)
j5=$(sub -J requeue "${one[@]}" "${long1[@]}" --out "$CL_TMP/job5")
# the first launch of job 6 fails before MPI starts, as a launcher failure would
printf '#!/bin/sh\nif [ -e %q ]; then rm -f %q; echo "failonce: launch failure" >&2; exit 1; fi\nexec %q "$@"\n' \
  "$CL_TMP/launch-fail" "$CL_TMP/launch-fail" "$bin" > "$CL_TMP/failonce.sh"
chmod +x "$CL_TMP/failonce.sh"
touch "$CL_TMP/launch-fail"
j6=$(LINREC_BIN=$CL_TMP/failonce.sh LINREC_MAX_RETRIES=0 LINREC_LAUNCH_BACKOFF=1 sub -J launch "${one[@]}" \
     --set train.epochs=2 --out "$CL_TMP/job6")
j7=$(sub -J cancel "${one[@]}" "${long1[@]}" --out "$CL_TMP/job7")
j8=$(LINREC_LAUNCH=mpirun LINREC_MAX_RETRIES=0 sub -J mpi-requeue -N 1 --ntasks-per-node=2 -c 1 -t 10 \
     "$src/launch/slurm/linrec.sbatch" "${tiny[@]}" "${long1[@]}" --out "$CL_TMP/job8")
cat > "$CL_TMP/srunterm.sh" <<EOF2
#!/bin/bash
srun --mpi=pmix -K1 $(printf '%q ' "$bin" train "${tiny[@]}" "${long1[@]}") --out $CL_TMP/job9 &
p=\$!
for i in \$(seq 1 600); do
  [ "\$(grep -c '"event":"step"' $CL_TMP/job9/metrics.jsonl 2>/dev/null)" -ge 40 ] && break; sleep 0.1
done
kill -TERM \$p
wait \$p
echo "srun exit \$?"
EOF2
j9=$(sub -J srun-term -N 1 -n 1 -c 1 -t 10 "$CL_TMP/srunterm.sh")
j10=$(LINREC_INJECT_DIVERGE=3 sub -J diverge "${one[@]}" --set train.epochs=2 --out "$CL_TMP/job10")
cl_log "job 2 (${j2:-not submitted}, -t 1 --signal=B:USR1@50), job 3 ($j3, fault at step 5, LINREC_MAX_RETRIES=1), job 4 ($j4, a lost record), job 5 ($j5, to be requeued), job 6 ($j6, a launch failure), job 7 ($j7, to be cancelled), job 8 ($j8, mpirun, to be requeued), job 9 ($j9, SIGTERM to srun), job 10 ($j10, diverges) submitted"
sent5="" sent7="" seen5="" sent8="" seen8=""
for i in $(seq 1 1600); do
  s2=$(cl_job_state "$j2") s3=$(cl_job_state "$j3") s4=$(cl_job_state "$j4") s5=$(cl_job_state "$j5")
  s6=$(cl_job_state "$j6") s7=$(cl_job_state "$j7") s8=$(cl_job_state "$j8") s9=$(cl_job_state "$j9")
  s10=$(cl_job_state "$j10")
  if [ -z "$sent8" ] && [ "$(nsteps "$CL_TMP/job8")" -ge 40 ]; then
    cl_log "job 8 at step $(nsteps "$CL_TMP/job8"): scontrol requeue"; scontrol requeue "$j8"; sent8=1
  fi
  if [ -n "$sent8" ] && [ "$s8" = PENDING ] && [ -z "$seen8" ]; then
    scontrol update JobId="$j8" StartTime=now 2>/dev/null; seen8=1
  fi
  if [ -z "$sent5" ] && [ "$(nsteps "$CL_TMP/job5")" -ge 40 ]; then
    cl_log "job 5 at step $(nsteps "$CL_TMP/job5"): scontrol requeue"; scontrol requeue "$j5"; sent5=1
  fi
  if [ -n "$sent5" ] && [ "$s5" = PENDING ] && [ -z "$seen5" ]; then
    scontrol update JobId="$j5" StartTime=now 2>/dev/null; seen5=1
  fi
  if [ -z "$sent7" ] && [ "$(nsteps "$CL_TMP/job7")" -ge 40 ]; then
    cl_log "job 7 at step $(nsteps "$CL_TMP/job7"): scancel"; scancel "$j7"; sent7=1
  fi
  case "$s2 $s3 $s4 $s5 $s6 $s7 $s8 $s9 $s10" in *PENDING*|*RUNNING*|*CONFIGURING*|*COMPLETING*|*REQUEUE*) sleep 0.25 ;; *) break ;; esac
done
cl_log "job 2: $(jobinfo "$j2"); job 3: $(jobinfo "$j3")"
log2=$(cat "$CL_TMP"/job2/logs/attempt-*.log 2>/dev/null)
start2=$(grep -m1 -oE '^linrec.sbatch \[[^]]*\] attempt 1' <<< "$log2" | grep -oE '[0-9]{2}:[0-9]{2}:[0-9]{2}')
sig2=$(grep -m1 -oE '^linrec.sbatch \[[^]]*\] got SIGUSR1' <<< "$log2" | grep -oE '[0-9]{2}:[0-9]{2}:[0-9]{2}')
if [ -n "$sig2" ] && grep -q 'exit=75' "$CL_TMP/job2/logs/attempts.tsv" 2>/dev/null &&
   grep -q 'not requeued' <<< "$log2" && compgen -G "$CL_TMP/job2/checkpoints/step-*/manifest.json" >/dev/null; then
  ok "time-limit warning: job started $start2, SIGUSR1 at $sig2 (limit 60 s, warning 50 s before), checkpoint written, exit 75"
else
  bad "time-limit warning (started ${start2:-?}, signal ${sig2:-none}; $(jobinfo "$j2"))"
  tail -n 30 "$CL_TMP/slurm-$j2.out"
fi
# tsv DIR: exit and decision of each attempt line, comma separated
tsv() { cut -f 5,7 "$1/logs/attempts.tsv" 2>/dev/null | tr '\t\n' ' ,'; }
# expect_job WHAT JOB DIR ATTEMPTS STATE PATTERN: the job's attempt lines
# (tsv) match the regex ATTEMPTS, it ended in STATE and its output has PATTERN.
expect_job() {
  local t
  t=$(tsv "$3")
  if [[ $t =~ $4 ]] && [ "$(cl_job_state "$2")" = "$5" ] && grep -q "$6" "$CL_TMP/slurm-$2.out"; then
    ok "$1: attempts '$t'"
  else
    bad "$1: attempts '$t', $(jobinfo "$2")"; tail -n 30 "$CL_TMP/slurm-$2.out"
  fi
}
expect_job "failing job: retried once, then not requeued" "$j3" "$CL_TMP/job3" \
  '^exit=1 failed,exit=1 failed-final,$' FAILED 'retries already used (LINREC_MAX_RETRIES=1): not requeued'
expect_job "a lost record counts against the retry budget" "$j4" "$CL_TMP/job4" \
  '^exit=\? lost,exit=1 failed-final,$' FAILED 'attempt(s) 1 ended without a record: counted as failed'
expect_job "a diverging run (exit 3) is not requeued" "$j10" "$CL_TMP/job10" \
  '^exit=3 diverged,$' FAILED 'the run diverged (exit 3)'
t5=$(tsv "$CL_TMP/job5")
line5=$(head -n 1 "$CL_TMP/job5/logs/attempts.tsv" 2>/dev/null)
cmp5=$(cl_compare "$CL_TMP/ref1" "$CL_TMP/job5")
cmp5_rc=$?
if [ "$t5" = "exit=75 preempted,exit=0 done," ] && [[ $line5 == *$'\tstart=20'*$'\tend=20'*"SIGTERM to the batch shell: Slurm ended the job (requeued)"* ]] &&
   [ "$(cl_job_state "$j5")" = COMPLETED ] && [ $cmp5_rc = 0 ]; then
  ok "scontrol requeue: the attempt's line ($(cut -f 5-10 <<< "$line5" | tr '\t' ' ')), then a resume: $cmp5"
else
  bad "scontrol requeue: attempts '$t5' (line 1: $line5), $(jobinfo "$j5"), compare: $cmp5"; tail -n 30 "$CL_TMP/slurm-$j5.out"
fi
expect_job "a launch failure is launched again without spending LINREC_MAX_RETRIES=0" "$j6" "$CL_TMP/job6" \
  '^exit=1 launch-failed,exit=0 done,$' COMPLETED 'launch failed: exit 1 .*LINREC_MAX_RETRIES is not spent'
line7=$(cat "$CL_TMP/job7/logs/attempts.tsv" 2>/dev/null)
if [ "$(wc -l <<< "$line7")" = 1 ] && [[ $line7 == *$'\tcancelled\tstart=20'*$'\tend=20'*"Slurm ended the job (cancelled)"* ]] &&
   [ "$(cl_job_state "$j7")" = CANCELLED ]; then
  ok "scancel: the attempt's line is written ($(cut -f 5-10 <<< "$line7" | tr '\t' ' '))"
else
  bad "scancel: attempts '$line7', $(jobinfo "$j7")"; tail -n 30 "$CL_TMP/slurm-$j7.out"
fi
expect_job "scontrol requeue under LINREC_LAUNCH=mpirun: interrupted, requeued without spending LINREC_MAX_RETRIES=0, completed" \
  "$j8" "$CL_TMP/job8" '^exit=[0-9]+ interrupted,exit=0 done,$' COMPLETED \
  'ended by Slurm (requeued) with exit .*LINREC_MAX_RETRIES is not spent'
rc9=$(grep -o 'srun exit [0-9]*' "$CL_TMP/slurm-$j9.out")
if [ "$rc9" = "srun exit 137" ] && "$bin" ckpt verify "$CL_TMP/job9/checkpoints" > /dev/null 2>&1 &&
   ! grep -q '"reason":"signal"' "$CL_TMP/job9/metrics.jsonl"; then
  ok "SIGTERM to srun: it cancels the step ($rc9, $(grep -m1 -o 'srun: forcing job termination' "$CL_TMP/slurm-$j9.out")), no checkpoint of the step, latest verifies"
else
  bad "SIGTERM to srun: '$rc9', $(jobinfo "$j9")"; tail -n 20 "$CL_TMP/slurm-$j9.out"
fi
cl_log "jobs 2 to 9 took $(cl_since "$t2")s"

cl_log "$pass passed, $fail failed"
[ $fail = 0 ] || exit 1
