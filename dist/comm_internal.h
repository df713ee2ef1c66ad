// comm_internal.h: what dist/*.c files share about the communicator (mpi.h
// allowed here: this header is included by dist/ sources only).
#ifndef LR_COMM_INTERNAL_H
#define LR_COMM_INTERNAL_H

#include <mpi.h>

// The communicator dist_init made (a duplicate of MPI_COMM_WORLD with
// MPI_ERRORS_RETURN). Local.
MPI_Comm dist_comm_(void);

#endif
