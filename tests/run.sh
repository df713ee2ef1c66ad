#!/usr/bin/env bash
# run.sh: set up and run the whole test suite: a Release build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build, each through ctest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
jobs=$(nproc)
bash "$here/launch/setup.sh" "$here/build"
# The cluster tests (ctest label `cluster`) start Slurm, munge and network
# namespaces themselves; install the packages when missing, without letting
# their install scripts start any daemon. gnuplot-nox draws `linrec plot`
# (tests/cli_plot.sh), python3-numpy loads `linrec export` (cli_owndata.sh).
missing=""
for p in slurm-wlm munge nftables iproute2 gnuplot-nox python3-numpy; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "run.sh: installing$missing"
  prc=""
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc=1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -z "$prc" ] || rm -f /usr/sbin/policy-rc.d
fi
(cd "$here/build" && ctest --output-on-failure -j "$jobs")
bash "$here/launch/setup.sh" "$here/build-asan" -DLINREC_SANITIZE=ON
# Open MPI's own allocations are not ours to leak-check; UBSan stays strict.
(cd "$here/build-asan" && ASAN_OPTIONS=detect_leaks=0 LINREC_SANITIZED=1 ctest --output-on-failure -j "$jobs")
# The unit tests once more on each single-ISA path of the float kernels (the
# builds above take the best clone this CPU has): AVX2 when the CPU has it,
# and baseline x86-64; with them the recorded trajectories and hashes, which
# every path must reproduce bit for bit.
isas="baseline"
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && isas="avx2 $isas"
for isa in $isas; do
  LINREC_TARGET= bash "$here/launch/setup.sh" "$here/build-$isa" -DLINREC_KERNEL_ISA="$isa"
  (cd "$here/build-$isa" && ctest --output-on-failure -j "$jobs" -R '^test_|^cli_golden$|^cli_compat$|^mpitest_toy')
done
