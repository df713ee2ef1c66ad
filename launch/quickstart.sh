#!/usr/bin/env bash
# quickstart.sh: set up, build, and train on the built-in synthetic dataset
# (configs/quickstart.json) with 2 MPI ranks, one BLAS thread each.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
LINREC_TARGET=linrec bash "$here/launch/setup.sh" "$here/build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
exec mpirun -np "${RANKS:-2}" --oversubscribe --mca mpi_yield_when_idle 1 \
  "$here/build/linrec" train --config "$here/configs/quickstart.json" --out "${OUT:-$here/out/quickstart}" "$@"
