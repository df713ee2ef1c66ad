// watchdog.h: a thread per rank that notices a lost rank, host or launcher
// and ends this rank promptly with a message naming what was lost, instead
// of leaving it blocked forever in a collective (MPI has no timeouts) or
// orphaned by a launcher that died.
//
// Heartbeats travel over TCP beside MPI, so they flow while the training
// thread computes or waits: rank 0 listens on a port of its own (any
// interface; its IPv4 addresses, its host name and a random job token are
// shared at start-up through MPI), every other rank connects to it, and
// both sides send a byte every interval (timeout / 5, at most 0.5 s).
//   - A rank that dies (killed, crashed: its kernel closes the socket) is
//     seen by rank 0 at once; one that stays silent for `timeout` seconds
//     (SIGSTOP, a hung host, a cut link) when the timeout expires.
//   - Rank 0 then sends every other rank a message naming the lost rank
//     (rank, host, pid, why), and every rank, rank 0 included, calls
//     `fatal` with it. A rank that loses rank 0 does so by itself.
//   - With watch_parent, the thread also checks its parent process: when
//     the launcher that started this rank (mpirun, orted, slurmstepd) has
//     died, the rank is re-parented and ends.
// A rank that ends normally (or aborts the job itself) says goodbye first,
// so its closing connection is not taken for a loss.
//
// The thread never calls MPI and blocks the preemption signals (they are
// the training thread's). Not here: what a lost rank means for the run
// (launch/ decides: print and exit; committed checkpoints stay valid,
// io/ckpt.h).
#ifndef LR_WATCHDOG_H
#define LR_WATCHDOG_H

// Called once, from the watchdog thread, with the reason; must end the
// process (it must not return).
typedef void (*dist_fatal_fn)(const char *msg);

typedef struct {
  double timeout_s; // silence after which a rank is lost; 0: no heartbeats
  int watch_parent; // end when the parent process (the launcher) is gone
  dist_fatal_fn fatal;
} dist_watchdog_cfg;

// Connect the ranks (when timeout_s > 0 and P > 1) and start the thread
// (when there is anything to watch). Collective: every rank passes the same
// timeout_s. Heartbeats that cannot be set up (no address of rank 0 is
// reachable, a firewall) are switched off on every rank with a warning on
// stderr naming the rank and the reason; that is not an error. LR_ERR_MPI,
// LR_ERR_NOMEM, LR_ERR_IO (no thread, no socket on rank 0).
int dist_watchdog_start(const dist_watchdog_cfg *cfg);

// Say goodbye to the peers and stop the thread. Local; cannot fail; safe
// when it was never started, and twice.
void dist_watchdog_stop(void);

#endif
