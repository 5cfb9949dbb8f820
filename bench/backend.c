/* Loopback health-check targets for the benchmarks: many HTTP and TCP listeners in one
 * single-threaded epoll process, counting every probe it answers.
 *
 *   backend [-t SECONDS] [-o COUNTFILE] SPEC...
 *   SPEC = http:IP:PORT[:COUNT] | tcp:IP:PORT[:COUNT]
 *
 * COUNT listeners on COUNT consecutive IPv4 addresses from IP (default 1). Only 127.0.0.0/8 is
 * accepted. HTTP: reads the request head, answers "200 OK" with the body "Sign in", closes. TCP:
 * accepts and closes. Every second it writes "<unix time> <http total> <tcp total>" to COUNTFILE
 * (a line appended), so the probe rate is counted on the backend side. It exits after SECONDS
 * (default 900): nothing is left running if the benchmark script dies without cleaning up.
 *
 * C rather than Python so that 10,000 probes per second cost the backend little CPU and the
 * figure measured is the agent's, not the backend's.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 262144
enum kind { FREE, HTTP_LISTEN, TCP_LISTEN, HTTP_CONN };

static unsigned char kinds[MAX_FDS];
static unsigned short filled[MAX_FDS];
static char *bufs[MAX_FDS];
static unsigned long long http_count, tcp_count;
static volatile sig_atomic_t stop;

static const char RESPONSE[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n"
    "Connection: close\r\n\r\nSign in\n";

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void add_listener(int ep, enum kind kind, struct in_addr ip, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = ip};
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "bind %s:%d: %s\n", inet_ntoa(ip), port, strerror(errno));
        exit(1);
    }
    if (listen(fd, 4096) < 0) die("listen");
    if (fd >= MAX_FDS) die("too many listeners");
    kinds[fd] = kind;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

static void close_conn(int fd) {
    kinds[fd] = FREE;
    filled[fd] = 0;
    close(fd); /* also removes it from the epoll set */
}

int main(int argc, char **argv) {
    int limit = 900, opt;
    const char *countfile = NULL;
    while ((opt = getopt(argc, argv, "t:o:")) != -1) {
        if (opt == 't') limit = atoi(optarg);
        else if (opt == 'o') countfile = optarg;
        else return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = optind; i < argc; i++) {
        char kind[8], ip[32];
        int port, count = 1;
        if (sscanf(argv[i], "%7[a-z]:%31[0-9.]:%d:%d", kind, ip, &port, &count) < 3) {
            fprintf(stderr, "bad spec %s\n", argv[i]);
            return 2;
        }
        struct in_addr base;
        if (inet_pton(AF_INET, ip, &base) != 1 || (ntohl(base.s_addr) >> 24) != 127) {
            fprintf(stderr, "%s: loopback (127.0.0.0/8) only\n", ip);
            return 2;
        }
        for (int n = 0; n < count; n++) {
            struct in_addr a = {.s_addr = htonl(ntohl(base.s_addr) + n)};
            if ((ntohl(a.s_addr) >> 24) != 127) break;
            add_listener(ep, strcmp(kind, "http") == 0 ? HTTP_LISTEN : TCP_LISTEN, a, port);
        }
    }
    FILE *out = countfile ? fopen(countfile, "a") : NULL;
    time_t start = time(NULL), last = start;
    struct epoll_event events[256];
    while (!stop && time(NULL) - start < limit) {
        int n = epoll_wait(ep, events, 256, 200);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (kinds[fd] == HTTP_LISTEN || kinds[fd] == TCP_LISTEN) {
                for (int k = 0; k < 64; k++) {
                    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    if (kinds[fd] == TCP_LISTEN || c >= MAX_FDS) {
                        tcp_count += kinds[fd] == TCP_LISTEN;
                        close(c);
                        continue;
                    }
                    kinds[c] = HTTP_CONN;
                    filled[c] = 0;
                    if (!bufs[c] && !(bufs[c] = malloc(4096))) die("malloc");
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0) close_conn(c);
                }
            } else if (kinds[fd] == HTTP_CONN) {
                ssize_t r = read(fd, bufs[fd] + filled[fd], 4095 - filled[fd]);
                if (r <= 0) {
                    if (r < 0 && errno == EAGAIN) continue;
                    close_conn(fd);
                    continue;
                }
                filled[fd] += r;
                bufs[fd][filled[fd]] = 0;
                if (strstr(bufs[fd], "\r\n\r\n") || strstr(bufs[fd], "\n\n") || filled[fd] >= 4095) {
                    if (write(fd, RESPONSE, sizeof RESPONSE - 1) > 0) http_count++;
                    close_conn(fd);
                }
            }
        }
        time_t now = time(NULL);
        if (out && now != last) {
            fprintf(out, "%lld %llu %llu\n", (long long)now, http_count, tcp_count);
            fflush(out);
            last = now;
        }
    }
    if (out) {
        fprintf(out, "%lld %llu %llu\n", (long long)time(NULL), http_count, tcp_count);
        fclose(out);
    }
    return 0;
}
