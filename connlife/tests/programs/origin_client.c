/* A C client that leaks idle keep-alive connections, for connlife's origin tests
 * (tests/origin.rs builds it with `gcc -O0 -g -fno-omit-frame-pointer`).
 *
 *   origin_client IP PORT COUNT
 *
 * Waits for one line on stdin (so that connlife attaches first), then
 * leaky_connect_loop() opens COUNT connections through open_connection(), makes one
 * HTTP/1.1 exchange on each and keeps every socket open and idle. Prints
 * "req N ok local=IP:PORT" per connection, then "done COUNT", then sleeps until killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connects a new TCP socket to ip:port: the connect() whose stack connlife records. */
static int open_connection(const char *ip, int port)
{
    struct sockaddr_in addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("socket");
        exit(3);
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(3);
    }
    return fd;
}

/* One request and its whole response (headers and Content-Length bytes of body). */
static void exchange(int fd)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: origin-test\r\n\r\n";
    char buf[8192];
    size_t have = 0;
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
        perror("write");
        exit(3);
    }
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) {
            fprintf(stderr, "read: connection ended early\n");
            exit(3);
        }
        have += (size_t)n;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            char *cl = strstr(buf, "Content-Length: ");
            size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
            if (have >= (size_t)(end + 4 - buf) + body)
                return;
        }
        if (have == sizeof buf - 1) {
            fprintf(stderr, "response too big\n");
            exit(3);
        }
    }
}

/* The bug: a new connection per request, never closed nor reused. */
static void leaky_connect_loop(const char *ip, int port, int count)
{
    for (int i = 1; i <= count; i++) {
        int fd = open_connection(ip, port);
        exchange(fd);
        struct sockaddr_in local;
        socklen_t len = sizeof local;
        getsockname(fd, (struct sockaddr *)&local, &len);
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &local.sin_addr, text, sizeof text);
        printf("req %d ok local=%s:%d\n", i, text, ntohs(local.sin_port));
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s IP PORT COUNT\n", argv[0]);
        return 2;
    }
    char line[64];
    if (!fgets(line, sizeof line, stdin) && ferror(stdin)) {
        perror("stdin");
        return 2;
    }
    int count = atoi(argv[3]);
    leaky_connect_loop(argv[1], atoi(argv[2]), count);
    printf("done %d\n", count);
    fflush(stdout);
    for (;;)
        pause();
}
