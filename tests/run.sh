#!/usr/bin/env bash
# run.sh: set up and run the whole test suite: a Release build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build, each through ctest.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
jobs=$(nproc)
bash "$here/launch/setup.sh" "$here/build"
(cd "$here/build" && ctest --output-on-failure -j "$jobs")
bash "$here/launch/setup.sh" "$here/build-asan" -DLINREC_SANITIZE=ON
# Open MPI's own allocations are not ours to leak-check; UBSan stays strict.
(cd "$here/build-asan" && ASAN_OPTIONS=detect_leaks=0 LINREC_SANITIZED=1 ctest --output-on-failure -j "$jobs")
