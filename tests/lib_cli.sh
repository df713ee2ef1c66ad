# lib_cli.sh: the common start of the tests/cli_*.sh scripts, sourced by them
# (not a test itself). Sets bin (the linrec binary) and src (the source tree)
# from the script's arguments, a temporary directory tmp removed on exit, the
# environment for mpirun as root with one BLAS thread, and the pass/fail
# counters with ok NAME, bad NAME and check NAME COMMAND... (ok when the
# command succeeds; returns the command's success).
set -u
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
pass=0 fail=0
ok() { echo "$1: PASSED"; pass=$((pass + 1)); }
bad() { echo "$1: FAILED"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; return 1; fi; }

# The reproducibility scripts (cli_ranks, cli_blin, cli_bf16) train the
# quickstart config made small by their own tiny=(--set ...) array:
# run NAME NP THREADS MICRO TABLE [ARGS...] trains it under mpirun into
# $tmp/NAME (log $tmp/NAME.log).
run() {
  local name=$1 np=$2 th=$3 mb=$4 tab=$5; shift 5
  timeout 300 mpirun -np "$np" --oversubscribe --mca mpi_yield_when_idle 1 "$bin" train \
    --config "$src/configs/quickstart.json" "${tiny[@]}" --set train.threads="$th" \
    --set train.micro_batch="$mb" --set dist.item_table="$tab" "$@" --out "$tmp/$name" \
    > "$tmp/$name.log" 2>&1
}
# summary NAME [final]: $tmp/NAME's step losses (the last event of each
# step, to 17 digits; 12 steps asserted), evaluations and state hash as
# text; with `final` only the last test evaluation and state hash (a resumed
# run's file also holds its first attempt's end).
summary() {
  python3 - "$tmp/$1/metrics.jsonl" "${2:-}" <<'PY'
import json, sys
steps, out = {}, []
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "step": steps[e["step"]] = repr(e["loss"])
    elif e["event"] == "eval": out.append("eval %s %d %s" % (e["split"], e["epoch"], sorted(
        (k, v) for k, v in e.items() if "@" in k)))
    elif e["event"] == "done": out.append("done %s" % e["state_hash"])
assert len(steps) == 12 and out[-1].startswith("done"), (len(steps), out[-1:])
if sys.argv[2] == "final": out = out[-2:]
print("\n".join(["step %d %s" % (k, steps[k]) for k in sorted(steps)] + out))
PY
}
# across_placements NAME [final] -- ARGS...: NAME trained with ARGS at every
# placement of the caller's placements=("name np threads micro table" ...)
# gives the first placement's summary, bitwise (a check per placement).
across_placements() {
  local name=$1 mode="" ref="" refname="" got p
  shift
  [ "$1" = final ] && { mode=final; shift; }
  [ "$1" = -- ] && shift
  for p in "${placements[@]}"; do
    set -- $p "$@"
    if ! run "$name-$1" "$2" "$3" "$4" "$5" "${@:6}" || ! got=$(summary "$name-$1" $mode); then
      bad "$name: $1 ($2 ranks, $3 threads, micro-batch $4, $5 table) runs"
      tail -n 5 "$tmp/$name-$1.log"
    elif [ -z "$ref" ]; then
      ref=$got refname=$1
    elif [ "$got" = "$ref" ]; then
      ok "$name: $1 ($2 ranks, $3 threads, micro-batch $4, $5 table) = $refname, bitwise"
    else
      bad "$name: $1 ($2 ranks, $3 threads, micro-batch $4, $5 table) = $refname, bitwise"
      diff <(echo "$ref") <(echo "$got") | head -n 6
    fi
    shift 5
  done
}
