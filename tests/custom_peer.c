/* A custom peer: plain read/write frames (4-byte big-endian length, then the bytes) and the
   endpoint's two POSIX named semaphores. Usage: peer listen|connect PATH READY ACKED N */
#include <arpa/inet.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
static char buf[4 << 20];
static void die(const char *what) { perror(what); exit(1); }
static void io(int fd, char *p, size_t n, int out) {
    while (n) { ssize_t r = out ? write(fd, p, n) : read(fd, p, n); if (r <= 0) die("io"); p += r; n -= r; }
}
static void wait_for(sem_t *s, int seconds) {
    struct timespec t; clock_gettime(CLOCK_REALTIME, &t); t.tv_sec += seconds;
    if (sem_timedwait(s, &t)) die("sem_timedwait");
}
static uint32_t recv_msg(int fd, sem_t *ready, sem_t *acked) {
    uint32_t len; io(fd, (char *)&len, 4, 0); len = ntohl(len);
    if (len > sizeof buf) die("oversized frame");
    io(fd, buf, len, 0);
    sem_post(acked);                                   /* read whole: data acked */
    if (sem_trywait(ready)) { usleep(1000); sem_trywait(ready); } /* keep data_ready bounded */
    return len;
}
static void send_msg(int fd, sem_t *ready, sem_t *acked, const char *p, uint32_t len) {
    uint32_t be = htonl(len); io(fd, (char *)&be, 4, 1); io(fd, (char *)p, len, 1);
    sem_post(ready);                                   /* data ready */
    wait_for(acked, 5);                                /* the ack */
}
int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage\n"); return 2; }
    int listening = !strcmp(argv[1], "listen"), n = atoi(argv[5]), fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
    sem_t *ready, *acked;
    if (listening) {  /* the listener creates the names, fresh, before it binds */
        sem_unlink(argv[3]); sem_unlink(argv[4]);
        ready = sem_open(argv[3], O_CREAT | O_EXCL, 0600, 0);
        acked = sem_open(argv[4], O_CREAT | O_EXCL, 0600, 0);
        if (ready == SEM_FAILED || acked == SEM_FAILED) die("sem_open");
        unlink(argv[2]);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1)) die("bind");
        puts("ready"); fflush(stdout);
        if ((fd = accept(fd, 0, 0)) < 0) die("accept");
    } else {          /* a client opens them after connecting, and never creates them */
        if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
        ready = sem_open(argv[3], 0); acked = sem_open(argv[4], 0);
        if (ready == SEM_FAILED || acked == SEM_FAILED) die("sem_open");
    }
    for (int i = 0; i < n; i++) {  /* the client sends n, then the listener sends n back */
        if (listening) { uint32_t len = recv_msg(fd, ready, acked); printf("got %u\n", len); }
        else { int len = i ? snprintf(buf, 64, "c%d", i) : 1 << 20; if (!i) memset(buf, 'c', len); send_msg(fd, ready, acked, buf, len); }
    }
    for (int i = 0; i < n; i++) {
        if (listening) { int len = snprintf(buf, 64, "l%d", i); send_msg(fd, ready, acked, buf, len); }
        else { uint32_t len = recv_msg(fd, ready, acked); printf("got %.*s\n", (int)len, buf); }
    }
    if (listening) { sem_unlink(argv[3]); sem_unlink(argv[4]); unlink(argv[2]); }
    puts("ok"); return 0;
}
