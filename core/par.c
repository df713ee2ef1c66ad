// par.c: the thread team of par.h, on pthreads.
#include "par.h"

#include <pthread.h>   // pthread_*
#include <stdatomic.h> // atomic_*
#include <stdlib.h>    // calloc, free

#include "lr.h"

// A job is posted by bumping gen; workers and the caller spin a little on
// the atomics before sleeping on the condition variables, since a layer's
// kernels post jobs every few tens of microseconds and a futex wake-up costs
// about as much. The Dekker pairs (sleepers / gen, waiting / pending), all
// sequentially consistent, make sure a sleeper is always woken.
#define SPIN_ROUNDS 4000 // about 100 us of pause instructions

static struct {
  int n;           // threads, caller included
  pthread_t *tid;  // (n-1) workers
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  _Atomic uint64_t gen; // bumped per job
  uint64_t gen0;        // gen when the workers were started
  _Atomic int pending;  // workers still running the current job
  _Atomic int sleepers; // workers asleep on go (or about to be)
  _Atomic int waiting;  // the caller asleep on done (or about to be)
  _Atomic int stop;
  lr_par_fn fn;
  void *ctx;
  int64_t items, align;
} g = {1, NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
       0, 0, 0, 0, 0, 0, NULL, NULL, 0, 1};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static _Thread_local int t_inside; // in a parallel range: nested calls run inline
static _Thread_local int t_part;   // the range index being run

// Range k of n parts of [0, items), bounds on multiples of align.
static void run_part(int k, int n) {
  const int64_t blocks = (g.items + g.align - 1) / g.align;
  int64_t lo = blocks * k / n * g.align, hi = blocks * (k + 1) / n * g.align;
  if (hi > g.items) hi = g.items;
  t_part = k;
  if (lo < hi) g.fn(g.ctx, lo, hi);
  t_part = 0;
}

static void *worker(void *arg) {
  const int k = (int)(intptr_t)arg;
  t_inside = 1;
  uint64_t seen = g.gen0; // not g.gen: a job may be posted before this thread runs
  for (;;) {
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&g.gen) == seen && !atomic_load(&g.stop); i++)
      cpu_relax();
    if (atomic_load(&g.gen) == seen && !atomic_load(&g.stop)) {
      pthread_mutex_lock(&g.mu);
      atomic_fetch_add(&g.sleepers, 1);
      while (atomic_load(&g.gen) == seen && !atomic_load(&g.stop))
        pthread_cond_wait(&g.go, &g.mu);
      atomic_fetch_sub(&g.sleepers, 1);
      pthread_mutex_unlock(&g.mu);
    }
    if (atomic_load(&g.stop)) break;
    seen = atomic_load(&g.gen);
    run_part(k, g.n);
    if (atomic_fetch_sub(&g.pending, 1) == 1 && atomic_load(&g.waiting)) {
      pthread_mutex_lock(&g.mu);
      pthread_cond_signal(&g.done);
      pthread_mutex_unlock(&g.mu);
    }
  }
  return NULL;
}

static void stop_workers(void) {
  pthread_mutex_lock(&g.mu);
  atomic_store(&g.stop, 1);
  pthread_cond_broadcast(&g.go);
  pthread_mutex_unlock(&g.mu);
  for (int k = 1; k < g.n; k++) pthread_join(g.tid[k - 1], NULL);
  free(g.tid);
  g.tid = NULL;
  g.n = 1;
  atomic_store(&g.stop, 0);
}

int lr_par_set_threads(int n) {
  if (n < 1) n = 1;
  if (n == g.n) return LR_OK;
  stop_workers();
  if (n == 1) return LR_OK;
  g.tid = calloc((size_t)(n - 1), sizeof *g.tid);
  if (!g.tid) return lr_error(LR_ERR_NOMEM, __FILE__, __LINE__, "thread team: out of memory");
  // the workers read g.n for the job's part count: set it before they start
  g.n = n;
  g.gen0 = atomic_load(&g.gen);
  for (int k = 1; k < n; k++) {
    if (pthread_create(&g.tid[k - 1], NULL, worker, (void *)(intptr_t)k) != 0) {
      g.n = k; // join the ones that started
      stop_workers();
      return lr_error(LR_ERR_STATE, __FILE__, __LINE__,
                      "thread team: cannot start thread %d of %d", k, n);
    }
  }
  return LR_OK;
}

int lr_par_threads(void) { return g.n; }

int lr_par_part(void) { return t_part; }

void lr_par_for(int64_t n, int64_t align, lr_par_fn fn, void *ctx) {
  if (align < 1) align = 1;
  if (g.n <= 1 || t_inside || n < 2 * align) {
    if (n > 0) fn(ctx, 0, n);
    return;
  }
  g.fn = fn, g.ctx = ctx, g.items = n, g.align = align; // published by the bump of gen
  atomic_store(&g.pending, g.n - 1);
  atomic_fetch_add(&g.gen, 1);
  if (atomic_load(&g.sleepers)) {
    pthread_mutex_lock(&g.mu);
    pthread_cond_broadcast(&g.go);
    pthread_mutex_unlock(&g.mu);
  }
  t_inside = 1;
  run_part(0, g.n);
  t_inside = 0;
  for (int i = 0; i < SPIN_ROUNDS && atomic_load(&g.pending) > 0; i++) cpu_relax();
  if (atomic_load(&g.pending) > 0) {
    pthread_mutex_lock(&g.mu);
    atomic_store(&g.waiting, 1);
    while (atomic_load(&g.pending) > 0) pthread_cond_wait(&g.done, &g.mu);
    atomic_store(&g.waiting, 0);
    pthread_mutex_unlock(&g.mu);
  }
}
