/* The benchmark's load generator: WebSocket clients on one epoll loop, framing by hand.
 *
 * Cheaper than any server it measures, so that the server is the bottleneck, and it reports its own CPU
 * use to show it. bench/loadgen.py builds it with the C compiler into a cache directory and runs it.
 *
 *   loadgen echo PORT PATH CONNECTIONS SIZE WARMUP DURATION SERVER_PID
 *       Each connection sends a SIZE-byte message (text up to 64 KiB, binary above) and the next one when
 *       the echo is back. After WARMUP seconds it measures for DURATION seconds and prints one JSON line:
 *       messages per second, round-trip percentiles, its own CPU use, and the server's CPU time and
 *       context switches per message (from /proc/SERVER_PID).
 *
 *   loadgen hold PORT PATH CONNECTIONS AT_ONCE DEFLATE [MORE]
 *       Opens CONNECTIONS connections, at most AT_ONCE handshakes at a time, offering permessage-deflate
 *       if DEFLATE is 1, and prints "open N SECONDS NEGOTIATED CPU" (CPU: the seconds of CPU it used itself meanwhile). Then, driven by lines on stdin: "echo"
 *       sends one 32-byte text message on each (compressed, as a stored deflate block, where deflate was
 *       negotiated) and prints "answered N SECONDS" once every reply is in (or after 120 s); "open COUNT"
 *       opens COUNT more, as many as MORE allows in all, and prints "open ..." for them as above; "close"
 *       closes them all and exits.
 *
 *   loadgen broadcast PORT CLIENTS IN_FLIGHT WARMUP DURATION SERVER_PID
 *       Opens CLIENTS connections to /room, waits for each one's first message (the server's word that it
 *       joined the room), then publishes 32-byte messages on one connection to /publish, keeping IN_FLIGHT
 *       of them on their way: a message is delivered once every client has it. Prints one JSON line:
 *       deliveries per second, publish-to-receipt percentiles, its own and the server's CPU.
 *
 * Every frame is masked with one fixed key (RFC 6455 section 5.3 wants it unpredictable; no server checks);
 * the server's frames are parsed, and their payloads skipped, without copying them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { CONNECTING, HANDSHAKE, OPEN, CLOSED };

struct conn {
    int fd;
    enum state state;
    int deflate;           /* the server accepted permessage-deflate */
    int joined;            /* broadcast: the server's first message arrived */
    char head[4096];       /* the handshake response, until its blank line */
    size_t head_len;
    unsigned char hdr[14]; /* the frame header being read */
    size_t hdr_len, hdr_need;
    uint64_t payload_left;
    unsigned char peek[16]; /* the start of the payload (broadcast sequence numbers) */
    size_t peek_len;
    int opcode, fin;
    const unsigned char *out; /* what is left to write: shared, or owned when owned_cap > 0 */
    size_t out_len, out_off;
    int want_out;             /* waiting for EPOLLOUT */
    unsigned char *owned;
    size_t owned_cap;
    double sent_at;
};

static int epfd;
static struct conn *conns;
static int nconns;
static const unsigned char MASK[4] = {0x37, 0xfa, 0x21, 0x3d};
static char request[512];
static size_t request_len;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double own_cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* user + system CPU seconds of a process, all its threads */
static double process_cpu(int pid) {
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long utime = 0, stime = 0;
    /* after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime);
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

/* voluntary + involuntary context switches of a process's live threads */
static long long process_switches(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *dir = opendir(path);
    if (!dir) return 0;
    long long total = 0;
    struct dirent *task;
    while ((task = readdir(dir))) {
        if (task->d_name[0] == '.') continue;
        char status[512];
        snprintf(status, sizeof status, "%s/%s/status", path, task->d_name);
        FILE *f = fopen(status, "r");
        if (!f) continue; /* the thread ended meanwhile */
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "voluntary_ctxt_switches:", 24) || !strncmp(line, "nonvoluntary_ctxt_switches:", 27))
                total += atoll(strchr(line, ':') + 1);
        }
        fclose(f);
    }
    closedir(dir);
    return total;
}

/* TCP segments sent so far in this network namespace (OutSegs in /proc/net/snmp): every process's, not
   only the server's and ours; 0 where the file cannot be read. On loopback an echo takes 2 while each acknowledgement rides on data, 3 once Linux
   acknowledges each message with a segment of its own, as it does when replies come later than its
   delayed-ACK time (at least 40 ms) */
static long long tcp_segments_sent(void) {
    char names[1024], values[1024];
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f) return 0;
    long long segments = 0;
    while (fgets(names, sizeof names, f)) {
        if (strncmp(names, "Tcp:", 4) || !fgets(values, sizeof values, f)) continue;
        /* the column named OutSegs in the header line, in the line of values after it */
        char *name_save, *value_save;
        char *name = strtok_r(names, " \n", &name_save), *value = strtok_r(values, " \n", &value_save);
        for (; name && value; name = strtok_r(NULL, " \n", &name_save), value = strtok_r(NULL, " \n", &value_save))
            if (!strcmp(name, "OutSegs")) segments = atoll(value);
        break;
    }
    fclose(f);
    return segments;
}

/* a final, masked client frame; returns its length */
static size_t frame(unsigned char *out, int first_byte, const unsigned char *payload, size_t size) {
    size_t n = 0;
    out[n++] = first_byte;
    if (size < 126) {
        out[n++] = 0x80 | size;
    } else if (size < 65536) {
        out[n++] = 0x80 | 126;
        out[n++] = size >> 8;
        out[n++] = size;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[n++] = (uint64_t)size >> (8 * i);
    }
    memcpy(out + n, MASK, 4);
    n += 4;
    for (size_t i = 0; i < size; i++) out[n + i] = payload[i] ^ MASK[i & 3];
    return n + size;
}

static void watch(struct conn *c, uint32_t events, int op) {
    struct epoll_event e = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &e) < 0) die("epoll_ctl");
}

static void drop(struct conn *c) {
    if (c->state == CLOSED) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = CLOSED;
    c->out_len = c->out_off = 0;
}

/* write what is pending; wait for EPOLLOUT if the socket is full */
static void flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                if (!c->want_out) watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                c->want_out = 1;
                return;
            }
            drop(c);
            return;
        }
        c->out_off += n;
    }
    if (c->want_out) watch(c, EPOLLIN, EPOLL_CTL_MOD);
    c->want_out = 0;
    c->out_len = c->out_off = 0;
}

/* send bytes that outlive the call (shared by all connections), copying only behind pending output */
static void send_bytes(struct conn *c, const unsigned char *data, size_t len) {
    if (c->state == CLOSED) return;
    if (c->out_off == c->out_len) {
        c->out = data;
        c->out_len = len;
        c->out_off = 0;
        flush(c);
        return;
    }
    size_t left = c->out_len - c->out_off;
    if (left + len > c->owned_cap) {
        unsigned char *bigger = malloc(left + len);
        if (!bigger) die("malloc");
        memcpy(bigger, c->out + c->out_off, left);
        free(c->owned);
        c->owned = bigger;
        c->owned_cap = left + len;
    } else {
        memmove(c->owned, c->out + c->out_off, left);
    }
    memcpy(c->owned + left, data, len);
    c->out = c->owned;
    c->out_off = 0;
    c->out_len = left + len;
}

static void start_connect(struct conn *c, int port) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
    c->state = CONNECTING;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* called for each complete data message (the final frame of one) */
typedef void (*on_message_fn)(struct conn *c, double t);
static on_message_fn on_message;

/* parse the server's frames in buf; payloads are skipped, only their first bytes are kept */
static void frames_in(struct conn *c, const unsigned char *buf, size_t len, double t) {
    size_t i = 0;
    while (i < len && c->state == OPEN) {
        if (c->payload_left == 0 && c->hdr_len < c->hdr_need) {
            c->hdr[c->hdr_len++] = buf[i++];
            if (c->hdr_len == 2) {
                int code = c->hdr[1] & 0x7f;
                c->hdr_need = 2 + (code == 126 ? 2 : code == 127 ? 8 : 0) + (c->hdr[1] & 0x80 ? 4 : 0);
            }
            if (c->hdr_len < c->hdr_need) continue;
            int code = c->hdr[1] & 0x7f;
            uint64_t size = code;
            if (code == 126) size = (c->hdr[2] << 8) | c->hdr[3];
            if (code == 127) {
                size = 0;
                for (int k = 2; k < 10; k++) size = (size << 8) | c->hdr[k];
            }
            c->opcode = c->hdr[0] & 0x0f;
            c->fin = c->hdr[0] & 0x80;
            c->payload_left = size;
            c->peek_len = 0;
        } else {
            size_t take = len - i < c->payload_left ? len - i : c->payload_left;
            if (c->peek_len < sizeof c->peek) {
                size_t keep = take < sizeof c->peek - c->peek_len ? take : sizeof c->peek - c->peek_len;
                memcpy(c->peek + c->peek_len, buf + i, keep);
                c->peek_len += keep;
            }
            i += take;
            c->payload_left -= take;
        }
        if (c->payload_left == 0 && c->hdr_len == c->hdr_need) {
            c->hdr_len = 0;
            c->hdr_need = 2;
            if (c->opcode == 0x8) {
                drop(c);
            } else if (c->opcode < 0x8 && c->fin) {
                on_message(c, t);
            }
        }
    }
}

static int opening;  /* handshakes under way */
static int opened;   /* connections open */
static int failed;   /* connections refused or broken during the handshake */

static void handshake_in(struct conn *c, const unsigned char *buf, size_t len, double t) {
    size_t room = sizeof c->head - 1 - c->head_len, take = len < room ? len : room;
    memcpy(c->head + c->head_len, buf, take);
    c->head_len += take;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len == sizeof c->head - 1) goto refused;
        return;
    }
    if (strncmp(c->head, "HTTP/1.1 101", 12)) goto refused;
    for (char *line = strstr(c->head, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        char *found = strstr(line, "permessage-deflate");
        if (!strncasecmp(line, "sec-websocket-extensions:", 25) && found && found < strstr(line, "\r\n"))
            c->deflate = 1;
    }
    size_t used = end + 4 - c->head;   /* bytes of the head, of all that was copied */
    size_t rest = c->head_len - used;  /* frames that came with the head */
    c->state = OPEN;
    c->hdr_need = 2;
    opening--;
    opened++;
    frames_in(c, buf + (take - rest), rest, t);
    if (take < len) frames_in(c, buf + take, len - take, t);
    return;
refused:
    fprintf(stderr, "handshake refused: %.80s\n", c->head);
    drop(c);
    opening--;
    failed++;
}

static unsigned char inbuf[256 * 1024];

static void on_event(struct conn *c, uint32_t events) {
    double t = now();
    if (c->state == CONNECTING) {
        int error = 0;
        socklen_t size = sizeof error;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error) {
            drop(c);
            opening--;
            failed++;
            return;
        }
        c->state = HANDSHAKE;
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
        send_bytes(c, (const unsigned char *)request, request_len);
        return;
    }
    if (events & EPOLLOUT) flush(c);
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->state == CLOSED) return;
    for (;;) {
        ssize_t n = read(c->fd, inbuf, sizeof inbuf);
        if (n > 0) {
            if (c->state == HANDSHAKE) handshake_in(c, inbuf, n, t);
            else frames_in(c, inbuf, n, t);
            if (c->state == CLOSED || (size_t)n < sizeof inbuf) return;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            if (c->state == HANDSHAKE) {
                opening--;
                failed++;
            }
            drop(c);
            return;
        }
    }
}

/* run the loop until `until` (a clock time), or until *done is non-zero */
static void loop(double until, const int *done) {
    struct epoll_event events[512];
    while (!(done && *done)) {
        double left = until - now();
        if (left <= 0) return;
        int n = epoll_wait(epfd, events, 512, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    }
}

/* set by a mode's message callback once what loop() waits for has happened */
static int all_settled;

/* open conns[first .. first + count), at most at_once handshakes at a time; returns how many opened */
static int open_all(int port, int first, int count, int at_once, double timeout) {
    int next = first, end = first + count, before = opened, failed_before = failed;
    double until = now() + timeout;
    while (opened - before + failed - failed_before < count && now() < until) {
        while (next < end && opening < at_once) {
            start_connect(&conns[next++], port);
            opening++;
        }
        struct epoll_event events[512];
        int n = epoll_wait(epfd, events, 512, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    }
    return opened - before;
}

static void set_request(const char *path, int port, int deflate) {
    request_len = snprintf(request, sizeof request,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                           path, port, deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
}

static void close_all(double timeout) {
    static unsigned char close_frame[8];
    const unsigned char code[2] = {0x03, 0xe8};
    size_t len = frame(close_frame, 0x88, code, 2);
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == OPEN) send_bytes(&conns[i], close_frame, len);
    double until = now() + timeout;
    for (;;) {
        int open = 0;
        for (int i = 0; i < nconns; i++) open += conns[i].state != CLOSED;
        if (!open || now() >= until) break;
        loop(now() + 0.05, NULL);
    }
}

/* -- round trips ------------------------------------------------------------------------------------ */

static double *samples;
static size_t nsamples, samples_cap;
static int measuring, running;

static void record(double value) {
    if (!measuring) return;
    if (nsamples == samples_cap) {
        samples_cap = samples_cap ? samples_cap * 2 : 1 << 16;
        samples = realloc(samples, samples_cap * sizeof *samples);
        if (!samples) die("realloc");
    }
    samples[nsamples++] = value;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double fraction) {
    if (!nsamples) return 0;
    size_t i = (size_t)(fraction * nsamples);
    return samples[i < nsamples ? i : nsamples - 1];
}

struct window {
    double start, cpu, server_cpu;
    long long server_switches, segments;
};

static struct window window_open(int pid) {
    struct window w = {now(), own_cpu(), process_cpu(pid), process_switches(pid), tcp_segments_sent()};
    nsamples = 0;
    measuring = 1;
    return w;
}

/* print the JSON fields common to every measuring window */
static void window_close(struct window w, int pid, size_t count, const char *unit) {
    measuring = 0;
    double elapsed = now() - w.start, cpu = own_cpu() - w.cpu;
    double server_cpu = process_cpu(pid) - w.server_cpu;
    long long switches = process_switches(pid) - w.server_switches;
    long long segments = tcp_segments_sent() - w.segments;
    qsort(samples, nsamples, sizeof *samples, by_value);
    printf("\"%s\": %zu, \"%s_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"client_cpu\": %.3f, "
           "\"server_cpu\": %.3f, \"server_us_per_%s\": %.3f, \"server_switches_per_%s\": %.4f, "
           "\"tcp_segments_per_%s\": %.3f}\n",
           unit, count, unit, count / elapsed, percentile(0.5) * 1e3, percentile(0.99) * 1e3, cpu / elapsed,
           server_cpu / elapsed, unit, count ? server_cpu / count * 1e6 : 0, unit,
           count ? (double)switches / count : 0, unit, count ? (double)segments / count : 0);
    fflush(stdout);
}

/* -- echo ------------------------------------------------------------------------------------------- */

static unsigned char *message;
static size_t message_len;

static void echo_reply(struct conn *c, double t) {
    record(t - c->sent_at);
    if (!running) return;
    c->sent_at = t;
    send_bytes(c, message, message_len);
}

static int run_echo(int port, const char *path, int count, size_t size, double warmup, double duration, int pid) {
    unsigned char *payload = malloc(size + 1);
    message = malloc(size + 14);
    if (!payload || !message) die("malloc");
    memset(payload, 'x', size);
    message_len = frame(message, size <= 65536 ? 0x81 : 0x82, payload, size);
    free(payload);
    set_request(path, port, 0);
    on_message = echo_reply;
    if (open_all(port, 0, count, 200, 60) < count) {
        fprintf(stderr, "opened %d of %d connections (%d refused)\n", opened, count, failed);
        return 1;
    }
    running = 1;
    double t = now();
    for (int i = 0; i < count; i++) {
        conns[i].sent_at = t;
        send_bytes(&conns[i], message, message_len);
    }
    loop(now() + warmup, NULL);
    struct window w = window_open(pid);
    loop(now() + duration, NULL);
    size_t n = nsamples;
    printf("{\"connections\": %d, \"size\": %zu, ", count, size);
    window_close(w, pid, n, "msg");
    running = 0;
    close_all(2);
    return 0;
}

/* -- hold ------------------------------------------------------------------------------------------- */

static int answered;

static void hold_reply(struct conn *c, double t) {
    (void)c;
    (void)t;
    answered++;
    all_settled = answered >= opened;
}

/* open conns[first .. first + count) and print "open N SECONDS NEGOTIATED CPU" for them; returns first + count */
static int hold_open(int port, int first, int count, int at_once) {
    double t = now(), cpu = own_cpu();
    int done = open_all(port, first, count, at_once, 300), negotiated = 0;
    for (int i = first; i < first + count; i++) negotiated += conns[i].state == OPEN && conns[i].deflate;
    printf("open %d %.4f %d %.4f\n", done, now() - t, negotiated, own_cpu() - cpu);
    fflush(stdout);
    return first + count;
}

static int run_hold(int port, const char *path, int count, int at_once, int deflate) {
    static unsigned char plain[64], compressed[64];
    unsigned char text[32], stored[38];
    memset(text, 'x', sizeof text);
    size_t plain_len = frame(plain, 0x81, text, sizeof text);
    /* RFC 7692 section 7.2.1 with a stored (uncompressed) deflate block: BFINAL 0, BTYPE 00, LEN, NLEN, the
     * bytes; then the first byte of the empty stored block whose LEN and NLEN (00 00 ff ff) the receiver
     * appends. Valid whatever the inflater's context, so the same frame serves every message. */
    stored[0] = 0x00;
    stored[1] = sizeof text;
    stored[2] = 0;
    stored[3] = ~(unsigned char)sizeof text;
    stored[4] = 0xff;
    memcpy(stored + 5, text, sizeof text);
    stored[37] = 0x00;
    size_t compressed_len = frame(compressed, 0xc1, stored, sizeof stored); /* RSV1: a compressed message */
    set_request(path, port, deflate);
    on_message = hold_reply;
    int first = hold_open(port, 0, count, at_once); /* connections opened so far, open or not: conns[0 .. first) */
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "open ", 5)) {
            int more = atoi(line + 5);
            first = hold_open(port, first, more < 0 || more > nconns - first ? nconns - first : more, at_once);
        } else if (!strncmp(line, "echo", 4)) {
            answered = 0;
            all_settled = 0;
            double t = now();
            for (int i = 0; i < first; i++) {
                if (conns[i].state != OPEN) continue;
                if (conns[i].deflate) send_bytes(&conns[i], compressed, compressed_len);
                else send_bytes(&conns[i], plain, plain_len);
            }
            loop(now() + 120, &all_settled);
            printf("answered %d %.4f\n", answered, now() - t);
            fflush(stdout);
        } else if (!strncmp(line, "close", 5)) {
            break;
        }
    }
    close_all(5);
    return 0;
}

/* -- broadcast -------------------------------------------------------------------------------------- */

#define SLOTS 1024
static double published_at[SLOTS];
static int received[SLOTS];
static long long next_seq, in_flight_now;
static int clients, in_flight, joined;
static size_t deliveries;
static struct conn *publisher;

static unsigned char publications[SLOTS][64]; /* the frames, which send_bytes may point to until written */

static void publish(double t) {
    unsigned char payload[32];
    int slot = next_seq % SLOTS;
    snprintf((char *)payload, sizeof payload, "%016lld", next_seq++);
    memset(payload + 16, 'x', 16);
    published_at[slot] = t;
    received[slot] = 0;
    in_flight_now++;
    send_bytes(publisher, publications[slot], frame(publications[slot], 0x81, payload, sizeof payload));
}

static void broadcast_received(struct conn *c, double t) {
    if (!c->joined) {
        c->joined = 1;
        joined++;
        all_settled = joined == clients;
        return;
    }
    if (c->peek_len < 16) return;
    char digits[17];
    memcpy(digits, c->peek, 16);
    digits[16] = 0;
    long long seq = atoll(digits);
    int slot = seq % SLOTS;
    if (measuring) deliveries++;
    record(t - published_at[slot]);
    if (++received[slot] == clients) {
        in_flight_now--;
        while (running && in_flight_now < in_flight) publish(t);
    }
}

static int run_broadcast(int port, int count, int flight, double warmup, double duration, int pid) {
    clients = count;
    in_flight = flight;
    on_message = broadcast_received;
    set_request("/room", port, 0);
    if (open_all(port, 0, count, 200, 60) < count) {
        fprintf(stderr, "opened %d of %d connections\n", opened, count);
        return 1;
    }
    all_settled = joined == clients;
    loop(now() + 30, &all_settled);
    if (joined < clients) {
        fprintf(stderr, "only %d of %d clients joined the room\n", joined, clients);
        return 1;
    }
    set_request("/publish", port, 0);
    if (open_all(port, count, 1, 1, 10) < 1) {
        fprintf(stderr, "the publisher could not connect\n");
        return 1;
    }
    publisher = &conns[count];
    publisher->joined = 1; /* it is no member: nothing it receives counts */
    running = 1;
    double t = now();
    while (in_flight_now < in_flight) publish(t);
    loop(now() + warmup, NULL);
    deliveries = 0;
    struct window w = window_open(pid);
    loop(now() + duration, NULL);
    printf("{\"clients\": %d, \"in_flight\": %d, ", count, flight);
    window_close(w, pid, deliveries, "delivery");
    running = 0;
    close_all(2);
    return 0;
}

int main(int argc, char **argv) {
    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    if (argc == 9 && !strcmp(argv[1], "echo")) {
        nconns = atoi(argv[4]);
        conns = calloc(nconns, sizeof *conns);
        return run_echo(atoi(argv[2]), argv[3], nconns, strtoul(argv[5], NULL, 10), atof(argv[6]), atof(argv[7]),
                        atoi(argv[8]));
    }
    if ((argc == 7 || argc == 8) && !strcmp(argv[1], "hold")) {
        nconns = atoi(argv[4]) + (argc == 8 ? atoi(argv[7]) : 0);
        conns = calloc(nconns, sizeof *conns);
        return run_hold(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    }
    if (argc == 8 && !strcmp(argv[1], "broadcast")) {
        nconns = atoi(argv[3]) + 1;
        conns = calloc(nconns, sizeof *conns);
        return run_broadcast(atoi(argv[2]), nconns - 1, atoi(argv[4]), atof(argv[5]), atof(argv[6]), atoi(argv[7]));
    }
    fprintf(stderr, "usage: loadgen echo PORT PATH CONNECTIONS SIZE WARMUP DURATION SERVER_PID\n"
                    "       loadgen hold PORT PATH CONNECTIONS AT_ONCE DEFLATE [MORE]\n"
                    "       loadgen broadcast PORT CLIENTS IN_FLIGHT WARMUP DURATION SERVER_PID\n");
    return 2;
}
