// floor_relay: the least work a UDP DNS relay can do on top of the kernel's socket API,
// used by bench/run.sh as a yardstick, never as a product. It parses nothing, checks
// nothing and never times anything out: a client datagram gets a sequential 16-bit ID
// (its own ID and address are remembered in a table indexed by that ID) and leaves on one
// socket connected to the upstream; an upstream datagram gets its client's ID back and
// goes to that client. Reads use recvmmsg (64 datagrams per call), writes sendmmsg once per
// batch, the upstream socket is connected (no route lookup per datagram): about the
// fewest system calls and the least user-space work per query there can be.
//
// Its CPU time per query is therefore the kernel's own per-datagram cost for the four
// datagrams of a relayed query (client in, upstream out, upstream in, client out), plus
// next to nothing. Any real forwarder (hubdns, dnsdist) costs at least that much; the
// benchmark prints it so the ratio targets can be read against what is possible at all.
//
// With UPSTREAM_PORT 0 it is the floor of a cache hit instead: every query goes straight
// back with QR set (two datagrams per query, no upstream), what a packet cache that did
// no work at all would cost.
//
// Usage: floor_relay LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1; runs until killed)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kBatch = 64, kMaxDatagram = 4096 };

struct Origin {
  struct sockaddr_in client;
  uint16_t client_id;
};

static struct Origin origins[65536];

static int udp_socket(uint16_t port, int connect_to) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  int rc = connect_to ? connect(fd, (struct sockaddr*)&address, sizeof address)
                      : bind(fd, (struct sockaddr*)&address, sizeof address);
  return rc == 0 ? fd : -1;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
    return 1;
  }
  int listener = udp_socket((uint16_t)atoi(argv[1]), 0);
  int echo = atoi(argv[2]) == 0;
  int upstream = echo ? listener : udp_socket((uint16_t)atoi(argv[2]), 1);
  if (listener < 0 || upstream < 0) {
    perror("floor_relay: socket");
    return 2;
  }
  static uint8_t buffers[kBatch][kMaxDatagram];
  static struct sockaddr_in peers[kBatch];
  static struct iovec iov[kBatch];
  static struct mmsghdr messages[kBatch];
  uint16_t next_id = 0;
  struct pollfd fds[2] = {{.fd = listener, .events = POLLIN}, {.fd = echo ? -1 : upstream, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return 3;
    for (int which = 0; which < 2; ++which) {
      if (!(fds[which].revents & POLLIN)) continue;
      for (;;) {  // drain the socket in batches
        for (int i = 0; i < kBatch; ++i) {
          iov[i] = (struct iovec){.iov_base = buffers[i], .iov_len = kMaxDatagram};
          messages[i].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                                                .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int count = recvmmsg(fds[which].fd, messages, kBatch, MSG_DONTWAIT, NULL);
        if (count <= 0) break;
        int out = 0;
        for (int i = 0; i < count; ++i) {
          uint8_t* data = buffers[i];
          unsigned length = messages[i].msg_len;
          if (length < 12) continue;
          uint16_t id = (uint16_t)(data[0] << 8 | data[1]);
          if (echo) {  // the cache-hit floor: the query itself, as an answer, to its sender
            data[2] |= 0x80;
            messages[out].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                                                    .msg_iov = &iov[i], .msg_iovlen = 1};
          } else if (which == 0) {  // client query: remember its origin, send it upstream
            origins[next_id] = (struct Origin){.client = peers[i], .client_id = id};
            data[0] = (uint8_t)(next_id >> 8);
            data[1] = (uint8_t)next_id;
            ++next_id;
            messages[out].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
          } else {  // upstream answer: back to the client that asked
            struct Origin* origin = &origins[id];
            data[0] = (uint8_t)(origin->client_id >> 8);
            data[1] = (uint8_t)origin->client_id;
            peers[i] = origin->client;
            messages[out].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                                                    .msg_iov = &iov[i], .msg_iovlen = 1};
          }
          iov[i].iov_len = length;
          ++out;
        }
        // Each datagram's message already points at its own buffer: send them in order.
        for (int sent = 0; sent < out;) {
          int n = sendmmsg(which == 0 && !echo ? upstream : listener, messages + sent, (unsigned)(out - sent), 0);
          if (n <= 0) break;  // a full send buffer loses the rest: dnsperf counts them lost
          sent += n;
        }
        if (count < kBatch) break;
      }
    }
  }
}
