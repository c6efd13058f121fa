/* The ceiling for the protocol benchmark: a QMP "server" that parses nothing.
 *
 * It greets, then answers every line it reads with one fixed reply (the `query-version`
 * answer; an empty return for qmp_capabilities), copying the request's `id` (the bytes
 * after `"id": ` up to the line's closing brace). Blocking I/O, one connection at a time,
 * one write per batch of lines read together. What a monitor costs beyond this is parsing,
 * dispatch and scheduling.
 *
 * With REPLY-FILE, every line but qmp_capabilities is answered with that file's bytes instead
 * (a reply line without its closing `}\r\n`, which the responder adds after the id): the
 * floor of a command whose answer is large, the same bytes served by a process that does
 * nothing to make them.
 *
 * usage: responder SOCKET-PATH PACKAGE [REPLY-FILE]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char in[1 << 16];
static char *out;
static size_t out_size;

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
    char greeting[512], ver[512];
    int glen = snprintf(greeting, sizeof greeting,
                        "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, \"minor\": 0, "
                        "\"major\": 10}, \"package\": \"%s\"}, \"capabilities\": [\"oob\"]}}\r\n",
                        argv[2]);
    int vlen = snprintf(ver, sizeof ver,
                        "{\"return\": {\"qemu\": {\"micro\": 2, \"minor\": 0, \"major\": 10}, "
                        "\"package\": \"%s\"}", argv[2]);
    if (glen <= 0 || vlen <= 0 || glen >= (int)sizeof greeting || vlen >= (int)sizeof ver)
        return 2;
    const char *ret = ver;
    size_t rlen = (size_t)vlen;
    if (argc > 3) {
        FILE *f = fopen(argv[3], "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0)
            return 2;
        long size = ftell(f);
        char *r = size > 0 ? malloc((size_t)size) : NULL;
        if (r == NULL || fseek(f, 0, SEEK_SET) != 0 || fread(r, 1, (size_t)size, f) != (size_t)size)
            return 2;
        fclose(f);
        ret = r;
        rlen = (size_t)size;
    }
    /* Room for a batch of replies, and always for one more with its id. */
    out_size = (1 << 20) + rlen + 1024;
    out = malloc(out_size);
    if (out == NULL)
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
                if (o + rlen + 512 > out_size) {
                    if (write_all(c, out, o) != 0)
                        goto done;
                    o = 0;
                }
                if (memmem(p, len, "qmp_capabilities", 16) != NULL) {
                    memcpy(out + o, "{\"return\": {}", 13);
                    o += 13;
                } else {
                    memcpy(out + o, ret, rlen);
                    o += rlen;
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
