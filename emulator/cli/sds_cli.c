/*
 * sds_cli: the SDSHypervisor KV connector CLI, as os-brick's HuaweiStorHyperConnector runs it
 * (docs/socket-api.md section 3). C11 and libc only, so an attach costs no interpreter start-up.
 *
 *   sds_cli -c attach|detach|querydev -v <volume>
 *
 * Sends `method=..\nvolume=..\n\n` to the VBS's KV socket ($SDS_KV_SOCKET, default
 * /run/sdshypervisor/kv.sock) and prints the key=value reply lines on stdout. Exit status 0 when a reply
 * (ours or the VBS's) was printed, 2 on a usage error (still printing ret_code=50159003).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/sdshypervisor/kv.sock"
#define MAX_MESSAGE 4096
#define RECEIVE_TIMEOUT_S 30

#define RC_UNREACHABLE 50159001
#define RC_BAD_ARGUMENTS 50159003
#define RC_GARBLED 50159006

static void print_reply(int code, const char *desc) {
    printf("ret_code=%d\nret_desc=\"%s\"\n", code, desc);
    fflush(stdout);
}

static int usage(const char *why) {
    fprintf(stderr, "sds_cli: %s\nusage: sds_cli -c attach|detach|querydev -v <volume name>\n", why);
    print_reply(RC_BAD_ARGUMENTS, "bad arguments");
    return 2;
}

/* Volume names as the socket API allows them: [A-Za-z0-9][A-Za-z0-9_.-]{0,95}. */
static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 96) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return 0;
    }
    return 1;
}

/* A request id passed through from the caller's environment, when it is safe to put on a line. */
static const char *request_id(void) {
    const char *id = getenv("SDS_REQUEST_ID");
    if (id == NULL) return NULL;
    size_t n = strlen(id);
    if (n == 0 || n > 128) return NULL;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)id[i] < 0x20 || (unsigned char)id[i] == 0x7f) return NULL;
    }
    return id;
}

/* The line of buf at *next: [*start, *end) without its LF or a CR before it; *next moves past it. 0 at the end. */
static int next_line(const char *buf, size_t len, size_t *next, size_t *start, size_t *end) {
    if (*next >= len) return 0;
    const char *nl = memchr(buf + *next, '\n', len - *next);
    size_t stop = nl ? (size_t)(nl - buf) : len;
    *start = *next;
    *end = stop > *start && buf[stop - 1] == '\r' ? stop - 1 : stop;
    *next = stop + 1;
    return 1;
}

/* Every line must be key=value with key [a-z_]+ and no control bytes; ret_code must be an integer. */
static int valid_reply(const char *buf, size_t len) {
    if (len == 0 || buf[len - 1] != '\n') return 0;
    int has_code = 0;
    size_t next = 0, start, line_end;
    while (next_line(buf, len, &next, &start, &line_end)) {
        if (line_end > start) {
            size_t i = start;
            while (i < line_end && ((buf[i] >= 'a' && buf[i] <= 'z') || buf[i] == '_')) i++;
            if (i == start || i >= line_end || buf[i] != '=') return 0;
            size_t key_len = i - start;
            for (size_t j = i + 1; j < line_end; j++) {
                unsigned char c = (unsigned char)buf[j];
                if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
            }
            if (key_len == 8 && strncmp(buf + start, "ret_code", 8) == 0) {
                size_t j = i + 1;
                if (j < line_end && buf[j] == '-') j++;
                if (j >= line_end) return 0;
                for (; j < line_end; j++) {
                    if (buf[j] < '0' || buf[j] > '9') return 0;
                }
                has_code = 1;
            }
        }
    }
    return has_code;
}

static int send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 5) return usage("expected exactly: -c <method> -v <volume>");
    if (strcmp(argv[1], "-c") != 0 || strcmp(argv[3], "-v") != 0) return usage("expected exactly: -c <method> -v <volume>");
    const char *method = argv[2];
    if (strcmp(method, "attach") != 0 && strcmp(method, "detach") != 0 && strcmp(method, "querydev") != 0) {
        return usage("method must be attach, detach or querydev");
    }
    const char *volume = argv[4];
    if (!valid_name(volume)) return usage("the volume name must be 1-96 characters of [A-Za-z0-9_.-]");

    const char *path = getenv("SDS_KV_SOCKET");
    if (path == NULL || path[0] == '\0') path = DEFAULT_SOCKET;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "sds_cli: socket path too long: %s\n", path);
        print_reply(RC_UNREACHABLE, "VBS socket path too long");
        return 0;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);

    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        fprintf(stderr, "sds_cli: socket: %s\n", strerror(errno));
        print_reply(RC_UNREACHABLE, "cannot create a socket");
        return 0;
    }
    struct timeval tv = { .tv_sec = RECEIVE_TIMEOUT_S, .tv_usec = 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    do {
        rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        fprintf(stderr, "sds_cli: cannot connect to %s: %s\n", path, strerror(errno));
        print_reply(RC_UNREACHABLE, "cannot reach the VBS");
        close(fd);
        return 0;
    }

    char request[MAX_MESSAGE];
    const char *rid = request_id();
    int len = rid != NULL
        ? snprintf(request, sizeof request, "method=%s\nvolume=%s\nrequest_id=%s\n\n", method, volume, rid)
        : snprintf(request, sizeof request, "method=%s\nvolume=%s\n\n", method, volume);
    if (len < 0 || (size_t)len >= sizeof request) {
        close(fd);
        return usage("request too long");
    }
    if (send_all(fd, request, (size_t)len) < 0) {
        fprintf(stderr, "sds_cli: send: %s\n", strerror(errno));
        print_reply(RC_UNREACHABLE, "cannot send the request to the VBS");
        close(fd);
        return 0;
    }
    shutdown(fd, SHUT_WR);

    char reply[MAX_MESSAGE + 1];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, reply + got, sizeof reply - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            int timed_out = errno == EAGAIN || errno == EWOULDBLOCK;
            fprintf(stderr, "sds_cli: receive: %s\n", timed_out ? "no reply within 30 s" : strerror(errno));
            print_reply(RC_UNREACHABLE, timed_out ? "no reply from the VBS within 30 s" : "connection to the VBS failed");
            close(fd);
            return 0;
        }
        if (n == 0) break;
        got += (size_t)n;
        if (got > MAX_MESSAGE) {
            fprintf(stderr, "sds_cli: reply longer than %d bytes\n", MAX_MESSAGE);
            print_reply(RC_GARBLED, "garbled reply from the VBS");
            close(fd);
            return 0;
        }
    }
    close(fd);
    if (memchr(reply, '\0', got) != NULL || !valid_reply(reply, got)) {
        fprintf(stderr, "sds_cli: the VBS sent a reply that is not key=value lines (%zu bytes)\n", got);
        print_reply(RC_GARBLED, "garbled reply from the VBS");
        return 0;
    }
    /* The reply is exactly what we print: key=value lines (a CR before the LF is dropped). */
    size_t next = 0, start, line_end;
    while (next_line(reply, got, &next, &start, &line_end)) {
        if (line_end > start) {
            fwrite(reply + start, 1, line_end - start, stdout);
            fputc('\n', stdout);
        }
    }
    fflush(stdout);
    return 0;
}
