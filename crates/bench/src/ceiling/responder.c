/* The ceiling for the protocol benchmark: a QMP "server" that parses nothing.
 *
 * It greets, then answers every line it reads with one fixed reply (the `query-version`
 * answer; an empty return for qmp_capabilities), copying the request's `id` (the bytes
 * after `"id": ` up to the line's closing brace). Blocking I/O, one connection at a time,
 * one write per batch of lines read together. What a monitor costs beyond this is parsing,
 * dispatch and scheduling.
 *
 * usage: responder SOCKET-PATH PACKAGE
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char in[1 << 16];
static char out[1 << 20];

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    char greeting[512], ret[512];
    int glen = snprintf(greeting, sizeof greeting,
                        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, "
                        "\"major\": 10}, \"package\": \"%s\"}, \"capabilities\": [\"oob\"]}}\r\n",
                        argv[2]);
    int rlen = snprintf(ret, sizeof ret,
                        "{\"return\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, "
                        "\"package\": \"%s\"}", argv[2]);
    if (glen <= 0 || rlen <= 0 || glen >= (int)sizeof greeting || rlen >= (int)sizeof ret)
        return 2;
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 16) != 0)
        return 1;
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c < 0)
            continue;
        if (write_all(c, greeting, (size_t)glen) != 0) {
            close(c);
            continue;
        }
        size_t have = 0;
        for (;;) {
            ssize_t n = read(c, in + have, sizeof in - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            char *p = in, *end = in + have, *nl;
            size_t o = 0;
            while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                size_t len = (size_t)(nl - p);
                if (memmem(p, len, "qmp_capabilities", 16) != NULL) {
                    memcpy(out + o, "{\"return\": {}", 13);
                    o += 13;
                } else {
                    memcpy(out + o, ret, (size_t)rlen);
                    o += (size_t)rlen;
                }
                char *id = memmem(p, len, "\"id\": ", 6);
                char *close_brace = memrchr(p, '}', len);
                if (id != NULL && close_brace != NULL && close_brace > id + 6) {
                    size_t idlen = (size_t)(close_brace - (id + 6));
                    if (idlen > 256)
                        idlen = 256;
                    memcpy(out + o, ", \"id\": ", 8);
                    o += 8;
                    memcpy(out + o, id + 6, idlen);
                    o += idlen;
                }
                memcpy(out + o, "}\r\n", 3);
                o += 3;
                p = nl + 1;
                if (o > sizeof out - 1024) {
                    if (write_all(c, out, o) != 0)
                        goto done;
                    o = 0;
                }
            }
            if (o > 0 && write_all(c, out, o) != 0)
                break;
            have = (size_t)(end - p);
            memmove(in, p, have);
            if (have == sizeof in)
                have = 0; /* a line longer than the buffer: dropped */
        }
    done:
        close(c);
    }
}
