// watchdog.c: the heartbeat and launcher watch of watchdog.h.
//
// Wire format on each rank 0 <-> rank r connection: at connect, rank r
// sends a hello {token (8 bytes), rank (4 bytes)} and rank 0 answers with
// the token; then single bytes: 'h' heartbeat, 'b' goodbye, and from rank 0
// only 'A' followed by a NUL-terminated message (the job is lost).
#define _GNU_SOURCE // accept4, pipe2
#include "watchdog.h"

#include <arpa/inet.h>   // inet_ntop, htonl
#include <errno.h>       // errno, EINPROGRESS
#include <fcntl.h>       // fcntl, O_NONBLOCK
#include <ifaddrs.h>     // getifaddrs
#include <net/if.h>      // IFF_UP, IFF_LOOPBACK
#include <netinet/in.h>  // sockaddr_in
#include <netinet/tcp.h> // TCP_NODELAY
#include <poll.h>        // poll
#include <pthread.h>     // pthread_create, pthread_sigmask
#include <signal.h>      // sigset_t
#include <stdarg.h>      // va_list
#include <stdint.h>      // uint64_t
#include <stdio.h>       // snprintf, fprintf
#include <string.h>      // memset, memcpy, strcmp, strerror
#include <sys/socket.h>  // socket, bind, listen, accept, connect, send, recv
#include <sys/time.h>    // struct timeval
#include <unistd.h>      // close, getppid, getpid, gethostname, read, pipe

#include "comm.h" // dist_allgather, dist_allreduce_max_i64, dist_rank, dist_size, dist_wtime
#include "lr.h"

#define WD_HOST 64
#define WD_ADDRS 8       // IPv4 addresses of rank 0 tried, at most
#define WD_CONNECT_S 2.0 // per address
#define WD_ACCEPT_S 20.0 // rank 0 waits this long for every rank to connect
#define WD_MSG 1024

// What every rank shares at start-up (rank 0's address, port and token
// are the ones used).
typedef struct {
  uint64_t token;
  int64_t pid;
  int32_t port, n_addr;
  uint32_t addr[WD_ADDRS]; // network byte order
  char host[WD_HOST];
} wd_rec;

typedef struct {
  int fd; // -1: closed
  int rank;
  int bye;          // said goodbye: its closing is no loss
  double last;      // last byte received
  char msg[WD_MSG]; // rank 0's 'A' message being received (clients)
  int msg_len, in_msg;
} wd_peer;

static struct {
  int started;
  pthread_t thread;
  int wake[2]; // pipe: a byte asks the thread to stop
  double timeout_s, interval_s;
  dist_fatal_fn fatal;
  pid_t ppid; // watched parent (0: not watched)
  int n;      // peers: rank 0 has P-1, the others 1 (rank 0)
  wd_peer *peers;
  wd_rec *recs; // (P) every rank's record
} g_wd = {.wake = {-1, -1}};

// ---- sockets --------------------------------------------------------------------------

static int set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static void set_timeouts(int fd, double s) {
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Blocking exact send/receive on a socket with timeouts set; 0 on success.
static int send_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    b += k, n -= (size_t)k;
  }
  return 0;
}
static int recv_all(int fd, void *p, size_t n) {
  char *b = p;
  while (n) {
    ssize_t k = recv(fd, b, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    b += k, n -= (size_t)k;
  }
  return 0;
}

// Rank 0's listening socket (any address, a free port) and the addresses
// other hosts may reach it at: non-loopback IPv4 first, then 127.0.0.1.
static int listen0(wd_rec *r, int P) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  LR_CHECK(fd >= 0, LR_ERR_IO, "watchdog: socket: %s", strerror(errno));
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, P) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    int e = errno;
    close(fd);
    return lr_error(LR_ERR_IO, __FILE__, __LINE__, "watchdog: listening socket: %s", strerror(e));
  }
  r->port = ntohs(a.sin_port);
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i && r->n_addr < WD_ADDRS - 1; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
          !(i->ifa_flags & IFF_LOOPBACK))
        r->addr[r->n_addr++] = ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
    freeifaddrs(ifs);
  }
  r->addr[r->n_addr++] = htonl(INADDR_LOOPBACK);
  return fd;
}

// Connect to one address of rank 0 within WD_CONNECT_S and shake hands;
// the connected socket or -1 (reason in why).
static int connect_one(uint32_t addr, int port, uint64_t token, int32_t rank, char *why,
                       size_t cap) {
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &addr, ip, sizeof ip);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(why, cap, "socket: %s", strerror(errno));
    return -1;
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = addr;
  a.sin_port = htons((uint16_t)port);
  set_nonblock(fd, 1);
  int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
  if (rc != 0 && errno == EINPROGRESS) {
    struct pollfd p = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    if (poll(&p, 1, (int)(WD_CONNECT_S * 1000)) == 1 &&
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
      rc = 0;
    else
      errno = err ? err : ETIMEDOUT;
  }
  if (rc != 0) {
    snprintf(why, cap, "%s:%d: %s", ip, port, strerror(errno));
    close(fd);
    return -1;
  }
  set_nonblock(fd, 0);
  set_timeouts(fd, WD_CONNECT_S);
  unsigned char hello[12], ack[8];
  memcpy(hello, &token, 8);
  memcpy(hello + 8, &rank, 4);
  if (send_all(fd, hello, sizeof hello) != 0 || recv_all(fd, ack, sizeof ack) != 0 ||
      memcmp(ack, &token, 8) != 0) {
    snprintf(why, cap, "%s:%d: no answer from rank 0 (another process on that port?)", ip, port);
    close(fd);
    return -1;
  }
  return fd;
}

// Rank 0: accept every other rank until all are in or WD_ACCEPT_S passed.
// 0 when all P-1 connected.
static int accept_all(int lfd, int P, uint64_t token) {
  int missing = P - 1;
  double end = dist_wtime() + WD_ACCEPT_S;
  while (missing > 0) {
    double left = end - dist_wtime();
    struct pollfd p = {lfd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) <= 0) break;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    set_timeouts(fd, WD_CONNECT_S);
    unsigned char hello[12];
    uint64_t tok;
    int32_t r;
    if (recv_all(fd, hello, sizeof hello) == 0 && (memcpy(&tok, hello, 8), tok == token) &&
        (memcpy(&r, hello + 8, 4), r >= 1 && r < P) && g_wd.peers[r - 1].fd < 0 &&
        send_all(fd, &token, 8) == 0) {
      g_wd.peers[r - 1].fd = fd;
      missing--;
    } else {
      close(fd);
    }
  }
  return missing;
}

// ---- the thread -----------------------------------------------------------------------

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  char msg[WD_MSG];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  g_wd.fatal(msg);
  _exit(1); // fatal must not return; never reached
}

static void say_all(const void *b, size_t n) {
  for (int i = 0; i < g_wd.n; i++)
    if (g_wd.peers[i].fd >= 0) send(g_wd.peers[i].fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Peer i is lost for `why`: rank 0 tells the others, then this rank ends.
static void lost(int i, const char *why) {
  const wd_peer *p = &g_wd.peers[i];
  const wd_rec *r = &g_wd.recs[p->rank];
  char msg[WD_MSG];
  snprintf(msg, sizeof msg, "rank %d of %d (host %s, pid %lld) is lost: %s", p->rank, dist_size(),
           r->host, (long long)r->pid, why);
  if (dist_rank() == 0) {
    char out[WD_MSG + 64];
    int n = snprintf(out, sizeof out, "A%s (seen by rank 0 on %s)", msg, g_wd.recs[0].host);
    say_all(out, (size_t)(n < (int)sizeof out ? n : (int)sizeof out - 1) + 1);
  }
  die("%s", msg);
}

// The bytes received from peer i.
static void take(int i, const char *b, ssize_t n, double now) {
  wd_peer *p = &g_wd.peers[i];
  p->last = now;
  for (ssize_t k = 0; k < n; k++) {
    if (p->in_msg) {
      if (b[k] == '\0' || p->msg_len == WD_MSG - 1) {
        p->msg[p->msg_len] = '\0';
        die("%s", p->msg);
      }
      p->msg[p->msg_len++] = b[k];
    } else if (b[k] == 'b') {
      p->bye = 1;
    } else if (b[k] == 'A' && dist_rank() != 0) {
      p->in_msg = 1;
    }
  }
}

static void *watch(void *arg) {
  (void)arg;
  double last_sent = 0;
  struct pollfd *pf = lr_calloc((size_t)g_wd.n + 1, sizeof *pf, "watchdog poll set");
  int *idx = lr_calloc((size_t)g_wd.n + 1, sizeof *idx, "watchdog poll index");
  if (!pf || !idx) die("watchdog: out of memory");
  for (;;) {
    int np = 0;
    pf[np++] = (struct pollfd){g_wd.wake[0], POLLIN, 0};
    for (int i = 0; i < g_wd.n; i++)
      if (g_wd.peers[i].fd >= 0 && !g_wd.peers[i].bye) {
        idx[np] = i;
        pf[np++] = (struct pollfd){g_wd.peers[i].fd, POLLIN, 0};
      }
    int ready = poll(pf, (nfds_t)np, (int)(g_wd.interval_s * 1000));
    double now = dist_wtime();
    if (ready > 0 && (pf[0].revents & POLLIN)) break; // stop
    for (int j = 1; ready > 0 && j < np; j++) {
      if (!pf[j].revents) continue;
      char b[256];
      ssize_t n = recv(pf[j].fd, b, sizeof b, MSG_DONTWAIT);
      if (n > 0)
        take(idx[j], b, n, now);
      else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (!g_wd.peers[idx[j]].bye)
          lost(idx[j], n == 0 ? "its connection closed without a goodbye (the process died or "
                                "was killed)"
                              : strerror(errno));
      }
    }
    if (g_wd.timeout_s > 0) {
      if (now - last_sent >= g_wd.interval_s) {
        say_all("h", 1);
        last_sent = now;
      }
      for (int i = 0; i < g_wd.n; i++) {
        const wd_peer *p = &g_wd.peers[i];
        if (p->fd >= 0 && !p->bye && now - p->last > g_wd.timeout_s) {
          char why[160];
          snprintf(why, sizeof why,
                   "no heartbeat for %.1f s (dist.timeout): the process is stopped or hung, or "
                   "its host or network is down",
                   now - p->last);
          lost(i, why);
        }
      }
    }
    if (g_wd.ppid && getppid() != g_wd.ppid)
      die("the launcher that started this rank (parent process %d) is gone", (int)g_wd.ppid);
  }
  say_all("b", 1);
  lr_free(pf);
  lr_free(idx);
  return NULL;
}

// ---- start and stop -------------------------------------------------------------------

static void close_peers(void) {
  for (int i = 0; g_wd.peers && i < g_wd.n; i++)
    if (g_wd.peers[i].fd >= 0) close(g_wd.peers[i].fd), g_wd.peers[i].fd = -1;
}

// Connect rank 0 and the others (P > 1). LR_OK with g_wd.n = 0 when
// heartbeats are off on every rank (a warning names why). Collective.
static int connect_ranks(void) {
  const int P = dist_size(), me = dist_rank();
  wd_rec mine;
  memset(&mine, 0, sizeof mine);
  mine.pid = (int64_t)getpid();
  if (gethostname(mine.host, sizeof mine.host - 1) != 0) snprintf(mine.host, sizeof mine.host, "?");
  int lfd = -1, rc = LR_OK;
  if (me == 0) {
    lfd = listen0(&mine, P);
    if (lfd < 0) rc = lfd;
    FILE *u = fopen("/dev/urandom", "rb");
    if (!u || fread(&mine.token, sizeof mine.token, 1, u) != 1)
      mine.token = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(dist_wtime() * 1e9);
    if (u) fclose(u);
  }
  g_wd.recs = lr_calloc((size_t)P, sizeof *g_wd.recs, "watchdog records");
  g_wd.n = me == 0 ? P - 1 : 1;
  g_wd.peers = lr_calloc((size_t)g_wd.n, sizeof *g_wd.peers, "watchdog peers");
  if (rc == LR_OK && (!g_wd.recs || !g_wd.peers)) rc = LR_ERR_NOMEM;
  if ((rc = dist_agree(rc)) != LR_OK) {
    if (lfd >= 0) close(lfd);
    return rc;
  }
  for (int i = 0; i < g_wd.n; i++)
    g_wd.peers[i].fd = -1, g_wd.peers[i].rank = me == 0 ? i + 1 : 0;
  LR_CALL(dist_allgather(g_wd.recs, &mine, (int64_t)sizeof mine, LR_DTYPE_BYTE));
  const wd_rec *r0 = &g_wd.recs[0];
  int64_t off[1] = {0};
  if (me == 0) {
    int missing = accept_all(lfd, P, r0->token);
    close(lfd);
    if (missing) off[0] = 1;
  } else {
    char why[256] = "";
    // The loopback address first when rank 0 runs on this host, then its
    // other addresses (a loopback address of another host is never tried).
    int same = !strcmp(r0->host, mine.host), fd = -1;
    char one[160];
    for (int pass = 0; pass < 2 && fd < 0; pass++)
      for (int k = 0; k < r0->n_addr && fd < 0; k++) {
        int lo = r0->addr[k] == htonl(INADDR_LOOPBACK);
        if (pass == 0 ? !(lo && same) : lo) continue;
        fd = connect_one(r0->addr[k], r0->port, r0->token, (int32_t)me, one, sizeof one);
        if (fd < 0)
          snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", why[0] ? "; " : "", one);
      }
    g_wd.peers[0].fd = fd;
    if (fd < 0) {
      off[0] = 1;
      fprintf(stderr,
              "[rank %d/%d] linrec: warning: heartbeats off: cannot reach rank 0 (host %s): %s; a "
              "stopped rank or lost host may then hang the job\n",
              me, P, r0->host, why);
    }
  }
  LR_CALL(dist_allreduce_max_i64(off, 1));
  if (off[0]) {
    if (me == 0)
      fprintf(stderr,
              "[rank 0/%d] linrec: warning: heartbeats off: not every rank reached rank 0 "
              "within %.0f s (see their warnings)\n",
              P, WD_ACCEPT_S);
    close_peers();
    g_wd.n = 0;
    return LR_OK;
  }
  double now = dist_wtime();
  for (int i = 0; i < g_wd.n; i++) {
    int one = 1;
    setsockopt(g_wd.peers[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    g_wd.peers[i].last = now;
  }
  return LR_OK;
}

int dist_watchdog_start(const dist_watchdog_cfg *cfg) {
  LR_ASSERT(!g_wd.started && cfg->fatal);
  g_wd.fatal = cfg->fatal;
  g_wd.timeout_s = cfg->timeout_s;
  g_wd.interval_s = cfg->timeout_s > 0 && cfg->timeout_s < 2.5 ? cfg->timeout_s / 5 : 0.5;
  pid_t pp = getppid();
  g_wd.ppid = cfg->watch_parent && pp > 1 ? pp : 0;
  if (cfg->timeout_s > 0 && dist_size() > 1) LR_CALL(connect_ranks());
  if (g_wd.n == 0 && !g_wd.ppid) return LR_OK; // nothing to watch
  LR_CHECK(pipe2(g_wd.wake, O_CLOEXEC) == 0, LR_ERR_IO, "watchdog: pipe: %s", strerror(errno));
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&g_wd.thread, NULL, watch, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  LR_CHECK(rc == 0, LR_ERR_IO, "watchdog: pthread_create: %s", strerror(rc));
  g_wd.started = 1;
  return LR_OK;
}

void dist_watchdog_stop(void) {
  if (g_wd.started) {
    if (write(g_wd.wake[1], "x", 1) != 1) pthread_cancel(g_wd.thread);
    pthread_join(g_wd.thread, NULL);
    g_wd.started = 0;
  }
  close_peers();
  for (int k = 0; k < 2; k++)
    if (g_wd.wake[k] >= 0) close(g_wd.wake[k]), g_wd.wake[k] = -1;
  lr_free(g_wd.peers);
  lr_free(g_wd.recs);
  g_wd.peers = NULL, g_wd.recs = NULL, g_wd.n = 0;
}
