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
