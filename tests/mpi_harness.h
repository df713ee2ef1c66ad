// mpi_harness.h: the harness of the multi-rank tests (tests/mpitest_*.c,
// run under mpirun at several world sizes). Every check is collective: each
// rank passes its own verdict, rank 0 prints "name: PASSED/FAILED" for all
// ranks, a failing rank adds "[rank r] FAILED name: detail", and every rank
// counts the same failures, so all ranks end with the same exit code.
#ifndef LR_MPI_HARNESS_H
#define LR_MPI_HARNESS_H

// Start MPI (dist_init). 0, or 1 after printing why it failed (return it
// from main).
int mt_init(int *argc, char ***argv);

// Collective: a boolean check; the name is printf-style.
void mt_check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Collective: passes if every rank's relative error err is <= tol (NaN
// fails); the name gets the largest err over the ranks and tol appended.
void mt_close(double err, double tol, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Collective: print "<prog> (P ranks): PASSED/FAILED" on rank 0, finalize
// MPI and return the exit code (0 if no check failed on any rank, else 1).
int mt_done(const char *prog);

#endif
