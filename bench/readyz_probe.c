// readyz_probe: times sequential HTTP GETs of a health endpoint, a new TCP connection each
// (as a load balancer's probe does), and prints one line:
//   count=N ok=N fail=N p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..
// ok counts answers with status 200. Written in C rather than Python so that the client's
// own work (a few microseconds) does not hide the server's latency; run it with a real-time
// priority (chrt -f) so that its own wake-ups on a busy CPU do not either: a load
// balancer's probe arrives from the network, not from a process queued behind dnsperf.
//
// Usage: readyz_probe HOST PORT [COUNT [PATH [TIMEOUT_MS [INTERVAL_MS]]]]
//   defaults: 200 requests, /readyz, 2000 ms per request, 0 ms between requests.
// Loopback only: HOST must be an IPv4 address in 127.0.0.0/8.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double percentile(const double* sorted, int n, double p) {  // nearest rank
  if (n == 0) return -1;
  int rank = (int)(p / 100.0 * n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

// One request; returns the HTTP status, or -1 on a network error or timeout.
static int one_request(const struct sockaddr_in* server, const char* request, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int status = -1;
  double deadline = now_ms() + timeout_ms;
  if (connect(fd, (const struct sockaddr*)server, sizeof *server) == 0 &&
      write(fd, request, strlen(request)) == (ssize_t)strlen(request)) {
    char reply[4096];
    size_t used = 0;
    for (;;) {
      int left = (int)(deadline - now_ms());
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (left <= 0 || poll(&p, 1, left) != 1) break;
      ssize_t n = read(fd, reply + used, sizeof reply - 1 - used);
      if (n <= 0) break;  // the server closes after the answer (Connection: close)
      used += (size_t)n;
      if (used == sizeof reply - 1) break;
    }
    reply[used] = '\0';
    int code;
    if (sscanf(reply, "HTTP/1.%*d %d", &code) == 1) status = code;
  }
  close(fd);
  return status;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HOST PORT [COUNT [PATH [TIMEOUT_MS [INTERVAL_MS]]]]\n", argv[0]);
    return 2;
  }
  struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1 || (ntohl(server.sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "readyz_probe: HOST must be an IPv4 loopback address (127.0.0.0/8)\n");
    return 2;
  }
  int count = argc > 3 ? atoi(argv[3]) : 200;
  const char* path = argc > 4 ? argv[4] : "/readyz";
  int timeout_ms = argc > 5 ? atoi(argv[5]) : 2000;
  int interval_ms = argc > 6 ? atoi(argv[6]) : 0;
  if (count <= 0 || timeout_ms <= 0 || interval_ms < 0) {
    fprintf(stderr, "readyz_probe: bad COUNT, TIMEOUT_MS or INTERVAL_MS\n");
    return 2;
  }
  char request[512];
  snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, argv[1]);
  double* times = calloc((size_t)count, sizeof *times);
  if (!times) return 3;
  int ok = 0, fail = 0, timed = 0;
  for (int i = 0; i < count; ++i) {
    double start = now_ms();
    int status = one_request(&server, request, timeout_ms);
    double elapsed = now_ms() - start;
    if (status < 0) {
      ++fail;
    } else {
      times[timed++] = elapsed;
      if (status == 200) ++ok; else ++fail;
    }
    if (interval_ms) usleep((useconds_t)interval_ms * 1000);
  }
  qsort(times, (size_t)timed, sizeof *times, compare);
  printf("count=%d ok=%d fail=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", count, ok, fail,
         percentile(times, timed, 50), percentile(times, timed, 90), percentile(times, timed, 99),
         timed ? times[timed - 1] : -1.0);
  free(times);
  return 0;
}
