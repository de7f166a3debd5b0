// http_floor: the simplest HTTP responder there is (blocking accept, read, a fixed 200
// answer, close), used by bench/run.sh as a yardstick for hubdns's /readyz latency: pinned
// to the forwarder's CPU while dnsperf saturates hubdns, its latency is what the machine's
// scheduler gives any thread on that CPU, whatever the server does. Never a product.
//
// Usage: http_floor PORT   (listens on 127.0.0.1; runs until killed)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT\n", argv[0]);
    return 1;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(listener, (struct sockaddr*)&address, sizeof address) != 0 || listen(listener, 128) != 0) {
    perror("http_floor");
    return 2;
  }
  static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
  char request[4096];
  for (;;) {
    int client = accept(listener, NULL, NULL);
    if (client < 0) continue;
    if (read(client, request, sizeof request) > 0) {
      if (write(client, answer, sizeof answer - 1) < 0) perror("http_floor: write");
    }
    close(client);
  }
}
