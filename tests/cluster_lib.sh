# cluster_lib.sh: helpers for the cluster_*.sh tests (sourced, not run):
# private munged, Slurm daemons started by hand (one node, or one slurmd per
# network namespace), "hosts" made of network namespaces on a bridge that
# lives in its own namespace, an rsh agent that enters them, and teardown of
# all of it. Nothing is configured in the root network namespace; every
# daemon, namespace and file belongs to this test run ($CL_TMP, prefix
# $CL_P) and is removed by cl_teardown (installed as the EXIT trap here).
#
# Before sourcing: CL_TMP (a fresh temp dir). Uses: ip, nsenter, unshare,
# munged, mungekey, slurmctld, slurmd, sinfo.

CL_P=${CL_P:-lr$$}       # namespace / host name prefix, unique per run
CL_SUB=10.77.0           # addresses only inside our namespaces
CL_HOSTS=()              # names of the namespace hosts made by cl_ns_up
CL_PIDFILES=()           # daemons to stop at teardown
CL_T0=$(date +%s.%N)
# Open MPI's session directories (of mpirun, orted and srun-started ranks)
# under our temp dir, not /tmp: sbatch and mpirun pass the variable on.
mkdir -p "$CL_TMP/ompi"
export OMPI_MCA_orte_tmpdir_base=$CL_TMP/ompi

# Every cluster test: teardown on exit (also on failure and interruption),
# and PASSED/FAILED lines counted in pass and fail.
trap cl_teardown EXIT
trap 'exit 130' INT TERM
pass=0 fail=0
ok() { cl_log "$1: PASSED"; pass=$((pass + 1)); }
bad() { cl_log "$1: FAILED"; fail=$((fail + 1)); }

# seconds since the time stamp $1 (date +%s.%N)
cl_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
cl_el() { printf '%6ss' "$(cl_since "$CL_T0")"; }
cl_log() { echo "[$(cl_el)] $*"; }

# Skip (exit 77, ctest's SKIP_RETURN_CODE, with the reason) in the sanitizer
# build (tests/run.sh runs these in the Release build), when not root, or when
# the kernel refuses network namespaces or veth/bridge devices ($1 = 1: needed).
# A missing tool is a failure: tests/run.sh installs them.
cl_require() {
  local need_ns=$1
  shift
  if [ -n "${LINREC_SANITIZED:-}" ]; then echo "SKIPPED: sanitizer build (these run in the Release build)"; exit 77; fi
  if [ "$(id -u)" != 0 ]; then echo "SKIPPED: needs root"; exit 77; fi
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "FAILED: $t not installed (bash tests/run.sh installs it)"; exit 1; }
  done
  if [ "$need_ns" = 1 ]; then
    local probe=${CL_P}-probe
    if ! ip netns add "$probe" 2>"$CL_TMP/ns-probe.err"; then
      echo "SKIPPED: the kernel refuses network namespaces: $(cat "$CL_TMP/ns-probe.err")"; exit 77
    fi
    if ! ip -n "$probe" link add lrpa type veth peer name lrpb 2>"$CL_TMP/ns-probe.err" ||
       ! ip -n "$probe" link add br0 type bridge 2>>"$CL_TMP/ns-probe.err"; then
      ip netns del "$probe"
      echo "SKIPPED: the kernel refuses veth/bridge devices: $(cat "$CL_TMP/ns-probe.err")"; exit 77
    fi
    ip netns del "$probe"
  fi
}

# cl_have_resume BIN: does this linrec have checkpoints and --resume? The
# cluster tests fail at once when it has not.
# (The help text is read whole first: `grep -q` in a pipe under pipefail
# would see linrec killed by SIGPIPE and answer no.)
cl_have_resume() { local h; h=$("$1" train --help 2>&1); [[ $h == *--resume* ]]; }

# nsrun HOST PROG ARGS...: run PROG "on" HOST (its netns, its own UTS namespace
# with hostname HOST, its own /etc/hosts). nsagent HOST CMD...: the same for
# Open MPI's rsh launcher (plm_rsh_agent), which passes a shell command line.
cl_make_tools() {
  cat > "$CL_TMP/nsrun" <<'EOF'
#!/bin/sh
host=$1; shift
exec nsenter --net=/run/netns/"$host" unshare --uts --mount /bin/sh -c \
  'mount --bind /etc/netns/"$0"/hosts /etc/hosts && hostname "$0" && shift && exec "$@"' "$host" _ "$@"
EOF
  cat > "$CL_TMP/nsagent" <<'EOF'
#!/bin/sh
host=$1; shift
exec nsenter --net=/run/netns/"$host" unshare --uts --mount /bin/sh -c \
  'mount --bind /etc/netns/"$0"/hosts /etc/hosts && hostname "$0" && exec /bin/sh -c "$1"' "$host" "$*"
EOF
  chmod +x "$CL_TMP/nsrun" "$CL_TMP/nsagent"
  NSRUN=$CL_TMP/nsrun
  export NSAGENT=$CL_TMP/nsagent
}

# cl_ns_up N: hosts ${CL_P}-h0..N-1 at $CL_SUB.10+i on bridge br0 in ${CL_P}-br.
cl_ns_up() {
  local n=$1 i h hosts="127.0.0.1 localhost"
  cl_make_tools
  ip netns add "$CL_P-br" || return 1
  ip -n "$CL_P-br" link add br0 type bridge && ip -n "$CL_P-br" link set br0 up &&
    ip -n "$CL_P-br" link set lo up || return 1
  for i in $(seq 0 $((n - 1))); do hosts+=$'\n'"$CL_SUB.$((10 + i)) $CL_P-h$i"; done
  for i in $(seq 0 $((n - 1))); do
    h=$CL_P-h$i
    ip netns add "$h" || return 1
    CL_HOSTS+=("$h")
    ip link add eth0 netns "$h" type veth peer name "v$i" netns "$CL_P-br" || return 1
    ip -n "$CL_P-br" link set "v$i" master br0 && ip -n "$CL_P-br" link set "v$i" up &&
      ip -n "$h" link set lo up && ip -n "$h" addr add "$CL_SUB.$((10 + i))/24" dev eth0 &&
      ip -n "$h" link set eth0 up || return 1
    mkdir -p "/etc/netns/$h" && printf '%s\n' "$hosts" > "/etc/netns/$h/hosts"
  done
}

cl_ns_down() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$CL_P-"); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
  rmdir /etc/netns 2>/dev/null
  # `ip netns add` bind-mounts /run/netns on first use; undo if none is left
  if [ -z "$(ip netns list 2>/dev/null)" ] && mountpoint -q /run/netns 2>/dev/null; then
    umount /run/netns 2>/dev/null && rmdir /run/netns 2>/dev/null
  fi
  true
}

# A private munged: own key, socket, pid and log files under $CL_TMP/munge.
cl_munge_up() {
  local m=$CL_TMP/munge
  chmod 711 "$CL_TMP"
  mkdir -p "$m/key" && chown -R munge:munge "$m" && chmod 711 "$m" && chmod 700 "$m/key" || return 1
  mungekey --create --keyfile "$m/key/munge.key" 2>/dev/null || return 1
  chown munge:munge "$m/key/munge.key" && chmod 600 "$m/key/munge.key"
  CL_MUNGE_SOCKET=$m/munge.socket
  runuser -u munge -- /usr/sbin/munged --socket "$CL_MUNGE_SOCKET" --key-file "$m/key/munge.key" \
    --pid-file "$m/key/munged.pid" --log-file "$m/key/munged.log" --seed-file "$m/key/munged.seed" || return 1
  CL_PIDFILES+=("$m/key/munged.pid")
}

# A TCP port free on this host now (the kernel's pick).
cl_free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }

# cl_slurm_conf DIR CTLHOST NODELINE: write DIR/slurm.conf, export SLURM_CONF.
# Ports of our own (free ones unless CL_CTLPORT / CL_DPORT say), so neither a
# Slurm already on the machine nor another test run is in the way.
cl_slurm_conf() {
  local d=$1 ctl=$2 nodes=$3
  mkdir -p "$d"/{state,log}
  cat > "$d/slurm.conf" <<CONF
ClusterName=lrtest
SlurmctldHost=$ctl
SlurmctldPort=${CL_CTLPORT:-$(cl_free_port)}
SlurmdPort=${CL_DPORT:-$(cl_free_port)}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$CL_MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
MailProg=/bin/true
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool-%n
TmpFS=$d/tmp-%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_min_interval=100000
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
SlurmdParameters=config_overrides
KillWait=20
$nodes
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$d/slurm.conf
  CL_SLURM_DIR=$d
}

# cl_slurm_up_single DIR: slurmctld + slurmd on this host (CL_CPUS: the CPUs
# Slurm may hand out, default the real count).
cl_slurm_up_single() {
  local d=$1 h
  h=$(hostname -s)
  cl_slurm_conf "$d" "$h" "NodeName=$h CPUs=${CL_CPUS:-$(nproc)} State=UNKNOWN" || return 1
  mkdir -p "$d/spool-$h" "$d/tmp-$h"
  CL_PIDFILES+=("$d/slurmd-$h.pid" "$d/slurmctld.pid")
  slurmctld -f "$d/slurm.conf" || return 1
  slurmd -f "$d/slurm.conf" || return 1
  cl_wait_idle 1
}

# cl_slurm_up_ns DIR: slurmctld on host 0, one slurmd per namespace host.
cl_slurm_up_ns() {
  local d=$1 h n=${#CL_HOSTS[@]}
  cl_slurm_conf "$d" "${CL_HOSTS[0]}" "NodeName=$CL_P-h[0-$((n - 1))] CPUs=$(nproc) State=UNKNOWN" || return 1
  CL_PIDFILES+=("$d/slurmctld.pid")
  "$NSRUN" "${CL_HOSTS[0]}" slurmctld -f "$d/slurm.conf" || return 1
  for h in "${CL_HOSTS[@]}"; do
    mkdir -p "$d/spool-$h" "$d/tmp-$h"
    CL_PIDFILES+=("$d/slurmd-$h.pid")
    "$NSRUN" "$h" slurmd -f "$d/slurm.conf" || return 1
  done
  CL_SLURM_HOST=${CL_HOSTS[0]}
  cl_wait_idle "$n"
}

# Slurm client commands run where slurmctld can be reached.
cl_sl() { if [ -n "${CL_SLURM_HOST:-}" ]; then "$NSRUN" "$CL_SLURM_HOST" "$@"; else "$@"; fi; }

cl_wait_idle() {
  local want=$1 i n
  for i in $(seq 1 80); do
    n=$(cl_sl sinfo -h -N -o %T 2>/dev/null | grep -cx idle || true)
    [ "$n" = "$want" ] && return 0
    sleep 0.25
  done
  echo "slurm did not become idle:"; cl_sl sinfo -N; tail -n 20 "$CL_SLURM_DIR"/log/*.log
  return 1
}

# Job state (empty once the job is gone).
cl_job_state() { [ -n "$1" ] && cl_sl scontrol show job "$1" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2; }

# SIGKILL what is left of our jobs: processes whose environment names our
# SLURM_CONF (sbatch exports it to the job), except this shell and its children.
cl_kill_marked() {
  [ -n "${SLURM_CONF:-}" ] || return 0
  local e pid ppid
  for e in /proc/[0-9]*/environ; do
    pid=${e#/proc/}
    pid=${pid%/environ}
    case " $$ $BASHPID " in *" $pid "*) continue ;; esac
    grep -qzxF "SLURM_CONF=$SLURM_CONF" "$e" 2>/dev/null || continue
    ppid=$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')
    case " $$ $BASHPID " in *" $ppid "*) continue ;; esac
    kill -9 "$pid" 2>/dev/null
  done
  true
}

# Stop every daemon we started (SIGTERM in parallel, SIGKILL after 10 s),
# remove the namespaces and our files. Safe to call twice.
cl_teardown() {
  local p pid pids=() i alive
  if [ -n "${CL_SLURM_DIR:-}" ] && [ -s "$CL_SLURM_DIR/slurmctld.pid" ] &&
     kill -0 "$(cat "$CL_SLURM_DIR/slurmctld.pid")" 2>/dev/null; then
    cl_sl timeout 5 scancel --full -u root >/dev/null 2>&1 || true
  fi
  for p in "${CL_PIDFILES[@]}"; do
    [ -s "$p" ] && pid=$(cat "$p") || continue
    # only our own daemons: their command line names our temp dir
    tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF "$CL_TMP" || continue
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
  done
  for i in $(seq 1 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
  CL_PIDFILES=()
  cl_kill_marked
  cl_ns_down
  [ -n "${CL_KEEP:-}" ] || rm -rf "$CL_TMP"
}

# cl_compare REF_DIR RUN_DIR: RUN_DIR/metrics.jsonl (possibly written over
# several attempts) against an uninterrupted run's: every step's loss, every
# evaluation and the final test metrics must be equal. A step logged twice
# (after the last checkpoint, then again after the resume) must have the same
# loss both times. Prints a one-line summary; status 0 when equal.
cl_compare() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
def load(p):
    ev = [json.loads(l) for l in open(p) if l.strip()]
    steps, dup_bad = {}, 0
    for e in ev:
        if e.get("event") == "step":
            if e["step"] in steps and steps[e["step"]] != e["loss"]: dup_bad += 1
            steps[e["step"]] = e["loss"]
    evals = {}
    for e in ev:
        if e.get("event") == "eval":
            evals[(e["split"], e["epoch"])] = {k: v for k, v in e.items() if "@" in k}
    done = [e for e in ev if e.get("event") == "done"]
    test = {k: v for k, v in done[-1].items() if k.startswith("test_")} if done else None
    return ev, steps, dup_bad, evals, test
_, rs, _, re_, rt = load(sys.argv[1])
ev, js, dup_bad, je, jt = load(sys.argv[2])
prob = []
if not rs: prob.append("reference has no step events")
if sorted(js) != list(range(1, len(js) + 1)): prob.append("steps not contiguous from 1")
if dup_bad: prob.append(f"{dup_bad} re-logged steps with a different loss")
diff = [s for s in rs if js.get(s) != rs[s]]
if diff or len(js) != len(rs): prob.append(f"{len(diff)} of {len(rs)} step losses differ (run has {len(js)} steps), first at step {diff[0] if diff else '-'}")
if je != re_: prob.append("evaluation metrics differ")
if jt is None or jt != rt: prob.append(f"final test metrics differ: {jt} vs {rt}")
if prob:
    print("; ".join(prob)); sys.exit(1)
print(f"{len(js)} step losses, {len(je)} evaluations and the test metrics {jt} equal the uninterrupted run's")
PY
}
