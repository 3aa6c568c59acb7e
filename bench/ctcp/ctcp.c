/*-------------------------------------------------------------------------
 *
 * ctcp.c
 *	  The loopback limit of the benchmark: a two-process TCP ping-pong of
 *	  frames of the channel's shape, in C, with blocking sockets; and the
 *	  same through a relay process, the least a local hop can cost.
 *
 * Nothing that runs over loopback TCP can answer a request faster than this
 * pair: one write() and one read() on each side per round trip, no poll(),
 * no buffering layer, no allocation.
 *
 * Usage:
 *		ctcp serve
 *			Listen on 127.0.0.1 (a free port), print "127.0.0.1:PORT" on
 *			stdout, and answer every frame on every connection, one
 *			connection at a time, until killed.  A request frame is a 12-byte
 *			header (payload length at offset 8, big-endian) and its payload;
 *			the reply is the same header with kind 'A' and the same payload,
 *			or, for an empty payload, 21 bytes (the size of a ping reply).
 *		ctcp relay PATH HOST:PORT
 *			Listen on the Unix socket PATH, print PATH on stdout, and for each
 *			connection, one at a time, connect to HOST:PORT and carry each
 *			request frame there and its reply back: one blocking read and
 *			one write per frame and direction, one thread.  This is the least
 *			a local hop (the daemon between a program and the primary) can
 *			cost: the benchmark's c-relay contender pings through it.
 *		ctcp fastping PATH OP SIZE COUNT
 *			The same timed round trips through standbyd's local API at the
 *			Unix socket PATH, in its fast path framing (docs/api.md, version
 *			1): the preamble, then requests for op code OP with a SIZE-byte
 *			payload and the daemon's default timeout.  Each reply must be a
 *			success of 21 bytes (SIZE 0: the ping) or the payload echoed.
 *		ctcp ping ADDRESS SIZE COUNT
 *			Connect to ADDRESS (HOST:PORT, or a Unix socket path: one that
 *			starts with '/'), make 100 untimed round trips, then COUNT timed
 *			ones with a SIZE-byte payload, and print each latency in
 *			nanoseconds, one a line.  Each reply is checked (length, and for
 *			SIZE > 0 the bytes).
 *
 * Any failure is reported on stderr and the exit status is 1.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HEADER_SIZE		12
#define PING_REPLY_SIZE	21
#define MAX_PAYLOAD		(1024 * 1024)
#define MAX_COUNT		100000000L
#define WARMUP			100

static void die(const char *what) __attribute__((noreturn));

static void
die(const char *what)
{
	fprintf(stderr, "ctcp: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

static uint32_t
get_u32(const unsigned char *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static void
put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char) (v >> 24);
	p[1] = (unsigned char) (v >> 16);
	p[2] = (unsigned char) (v >> 8);
	p[3] = (unsigned char) v;
}

/* Read exactly n bytes; 0 on success, -1 on EOF or error. */
static int
read_full(int fd, unsigned char *buf, size_t n)
{
	while (n > 0)
	{
		ssize_t		r = read(fd, buf, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		buf += r;
		n -= (size_t) r;
	}
	return 0;
}

static int
write_full(int fd, const unsigned char *buf, size_t n)
{
	while (n > 0)
	{
		ssize_t		w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		n -= (size_t) w;
	}
	return 0;
}

static void
nodelay(int fd)
{
	int			one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		die("setsockopt TCP_NODELAY");
}

static void
serve_conn(int fd, unsigned char *buf)
{
	for (;;)
	{
		uint32_t	m;
		uint32_t	out;

		if (read_full(fd, buf, HEADER_SIZE) != 0)
			return;
		m = get_u32(buf + 8);
		if (m > MAX_PAYLOAD)
			return;
		if (read_full(fd, buf + HEADER_SIZE, m) != 0)
			return;
		out = m == 0 ? PING_REPLY_SIZE : m;
		if (m == 0)
			memset(buf + HEADER_SIZE, 0, PING_REPLY_SIZE);
		buf[0] = 'A';
		put_u32(buf + 8, out);
		if (write_full(fd, buf, HEADER_SIZE + out) != 0)
			return;
	}
}

static void serve(void) __attribute__((noreturn));

static void
serve(void)
{
	struct sockaddr_in addr;
	socklen_t	len = sizeof(addr);
	unsigned char *buf = malloc(HEADER_SIZE + MAX_PAYLOAD);
	int			ln = socket(AF_INET, SOCK_STREAM, 0);

	if (buf == NULL)
		die("out of memory");
	if (ln < 0)
		die("socket");
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ln, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		die("bind");
	if (listen(ln, 16) != 0)
		die("listen");
	if (getsockname(ln, (struct sockaddr *) &addr, &len) != 0)
		die("getsockname");
	printf("127.0.0.1:%d\n", ntohs(addr.sin_port));
	if (fflush(stdout) != 0)
		die("stdout");
	for (;;)
	{
		int			fd = accept(ln, NULL, NULL);

		if (fd < 0)
		{
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		nodelay(fd);
		serve_conn(fd, buf);
		close(fd);
	}
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime");
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Connect to HOST:PORT (TCP, no Nagle) or to a Unix socket path; -1 after a
 * message on stderr for an address that cannot be read.
 */
static int
dial(const char *address)
{
	int			fd;

	if (address[0] == '/')
	{
		struct sockaddr_un addr;

		if (strlen(address) >= sizeof(addr.sun_path))
		{
			fprintf(stderr, "ctcp: socket path \"%s\" is too long\n", address);
			return -1;
		}
		memset(&addr, 0, sizeof(addr));
		addr.sun_family = AF_UNIX;
		strcpy(addr.sun_path, address);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
			die("connect");
	}
	else
	{
		char		host[64];
		const char *colon = strrchr(address, ':');
		struct sockaddr_in addr;

		if (colon == NULL || (size_t) (colon - address) >= sizeof(host))
		{
			fprintf(stderr, "ctcp: address must be HOST:PORT or a socket path\n");
			return -1;
		}
		memcpy(host, address, (size_t) (colon - address));
		host[colon - address] = '\0';
		memset(&addr, 0, sizeof(addr));
		addr.sin_family = AF_INET;
		addr.sin_port = htons((uint16_t) atoi(colon + 1));
		if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		{
			fprintf(stderr, "ctcp: bad IPv4 address \"%s\"\n", host);
			return -1;
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
			die("connect");
		nodelay(fd);
	}
	return fd;
}

/*
 * Carry one frame (12-byte header, then the payload its length gives) from
 * one socket to the other; -1 when either end is gone or the frame is too
 * large.
 */
static int
carry_frame(int from, int to, unsigned char *buf)
{
	uint32_t	m;

	if (read_full(from, buf, HEADER_SIZE) != 0)
		return -1;
	m = get_u32(buf + 8);
	if (m > MAX_PAYLOAD)
		return -1;
	if (read_full(from, buf + HEADER_SIZE, m) != 0)
		return -1;
	return write_full(to, buf, HEADER_SIZE + m);
}

static void relay(const char *path, const char *upstream) __attribute__((noreturn));

static void
relay(const char *path, const char *upstream)
{
	struct sockaddr_un addr;
	unsigned char *buf = malloc(HEADER_SIZE + MAX_PAYLOAD);
	int			ln;

	if (buf == NULL)
		die("out of memory");
	if (strlen(path) >= sizeof(addr.sun_path))
	{
		fprintf(stderr, "ctcp: socket path \"%s\" is too long\n", path);
		exit(1);
	}
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	ln = socket(AF_UNIX, SOCK_STREAM, 0);
	if (ln < 0)
		die("socket");
	if (bind(ln, (struct sockaddr *) &addr, sizeof(addr)) != 0)
		die("bind");
	if (listen(ln, 16) != 0)
		die("listen");
	printf("%s\n", path);
	if (fflush(stdout) != 0)
		die("stdout");
	for (;;)
	{
		int			fd = accept(ln, NULL, NULL);
		int			up;

		if (fd < 0)
		{
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		up = dial(upstream);
		if (up < 0)
			exit(1);
		while (carry_frame(fd, up, buf) == 0 && carry_frame(up, fd, buf) == 0)
			;
		close(up);
		close(fd);
	}
}

/* Print each latency in nanoseconds, one a line. */
static void
print_latencies(const int64_t *lat, long count)
{
	static char outbuf[1024 * 1024];

	if (setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf)) != 0)
		die("setvbuf");
	for (long i = 0; i < count; i++)
		if (printf("%lld\n", (long long) lat[i]) < 0)
			die("stdout");
	if (fflush(stdout) != 0)
		die("stdout");
}

static int
ping(const char *address, long size, long count)
{
	unsigned char *req;
	unsigned char *rep;
	int64_t    *lat;
	size_t		want = HEADER_SIZE + (size == 0 ? PING_REPLY_SIZE : (size_t) size);
	int			fd;

	req = malloc(HEADER_SIZE + (size_t) size);
	rep = malloc(want);
	lat = malloc(sizeof(int64_t) * (size_t) count);
	if (req == NULL || rep == NULL || lat == NULL)
		die("out of memory");
	memset(req, 0, HEADER_SIZE);
	req[0] = 'Q';
	req[1] = 1;
	put_u32(req + 8, (uint32_t) size);
	for (long j = 0; j < size; j++)
		req[HEADER_SIZE + j] = (unsigned char) ((j * 31 + 7) & 0xff);

	fd = dial(address);
	if (fd < 0)
		return 1;

	for (long i = -WARMUP; i < count; i++)
	{
		int64_t		t0 = now_ns();

		if (write_full(fd, req, HEADER_SIZE + (size_t) size) != 0)
			die("write");
		if (read_full(fd, rep, HEADER_SIZE) != 0)
			die("read");
		if (HEADER_SIZE + get_u32(rep + 8) != want || rep[0] != 'A')
		{
			fprintf(stderr, "ctcp: reply of the wrong shape\n");
			return 1;
		}
		if (read_full(fd, rep + HEADER_SIZE, want - HEADER_SIZE) != 0)
			die("read");
		if (i >= 0)
			lat[i] = now_ns() - t0;
		if (size > 0 && memcmp(rep + HEADER_SIZE, req + HEADER_SIZE, (size_t) size) != 0)
		{
			fprintf(stderr, "ctcp: reply is not an echo of the request\n");
			return 1;
		}
	}
	close(fd);
	print_latencies(lat, count);
	return 0;
}

#define FAST_PREAMBLE		"SBYDFP\x01\n"
#define FAST_PREAMBLE_SIZE	8
#define FAST_SERVER_PREAMBLE_SIZE 16
#define FAST_TIMEOUT_SIZE	4

static int
fastping(const char *path, long op, long size, long count)
{
	unsigned char pre[FAST_SERVER_PREAMBLE_SIZE];
	size_t		reqlen = HEADER_SIZE + FAST_TIMEOUT_SIZE + (size_t) size;
	uint32_t	want = size == 0 ? PING_REPLY_SIZE : (uint32_t) size;
	unsigned char *req = calloc(1, reqlen);
	unsigned char *rep = malloc(HEADER_SIZE + want);
	int64_t    *lat = malloc(sizeof(int64_t) * (size_t) count);
	int			fd;

	if (req == NULL || rep == NULL || lat == NULL)
		die("out of memory");
	if (path[0] != '/')
	{
		fprintf(stderr, "ctcp: fastping needs a Unix socket path\n");
		return 1;
	}
	fd = dial(path);
	if (fd < 0)
		return 1;
	if (write_full(fd, (const unsigned char *) FAST_PREAMBLE, FAST_PREAMBLE_SIZE) != 0 ||
		read_full(fd, pre, sizeof(pre)) != 0)
		die("fast path preamble");
	if (memcmp(pre, FAST_PREAMBLE, 6) != 0 || pre[6] < 1)
	{
		fprintf(stderr, "ctcp: the daemon did not answer with the fast path's preamble\n");
		return 1;
	}
	/* 'Q', no flags, the op, the id (set per request), the body's length. */
	req[0] = 'Q';
	req[2] = (unsigned char) (op >> 8);
	req[3] = (unsigned char) op;
	put_u32(req + 8, (uint32_t) (FAST_TIMEOUT_SIZE + size));
	for (long j = 0; j < size; j++)
		req[HEADER_SIZE + FAST_TIMEOUT_SIZE + j] = (unsigned char) ((j * 31 + 7) & 0xff);

	for (long i = -WARMUP; i < count; i++)
	{
		int64_t		t0 = now_ns();

		put_u32(req + 4, (uint32_t) (i + WARMUP + 1));
		if (write_full(fd, req, reqlen) != 0)
			die("write");
		if (read_full(fd, rep, HEADER_SIZE) != 0)
			die("read");
		if (rep[0] != 'A' || rep[1] != 0 || get_u32(rep + 8) != want ||
			memcmp(rep + 4, req + 4, 4) != 0)
		{
			fprintf(stderr, "ctcp: reply of the wrong shape (kind %#x, status %u, %u bytes)\n",
					rep[0], rep[1], get_u32(rep + 8));
			return 1;
		}
		if (read_full(fd, rep + HEADER_SIZE, want) != 0)
			die("read");
		if (i >= 0)
			lat[i] = now_ns() - t0;
		if (size > 0 && memcmp(rep + HEADER_SIZE, req + HEADER_SIZE + FAST_TIMEOUT_SIZE, (size_t) size) != 0)
		{
			fprintf(stderr, "ctcp: reply is not an echo of the request\n");
			return 1;
		}
	}
	close(fd);
	print_latencies(lat, count);
	return 0;
}

static long
number(const char *s, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0 || v > max)
	{
		fprintf(stderr, "ctcp: bad number \"%s\" (0..%ld)\n", s, max);
		exit(1);
	}
	return v;
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "serve") == 0)
		serve();
	if (argc == 4 && strcmp(argv[1], "relay") == 0)
		relay(argv[2], argv[3]);
	if (argc == 6 && strcmp(argv[1], "fastping") == 0)
	{
		long		count = number(argv[5], MAX_COUNT);

		if (count == 0)
		{
			fprintf(stderr, "ctcp: COUNT must be at least 1\n");
			return 1;
		}
		return fastping(argv[2], number(argv[3], 65535), number(argv[4], MAX_PAYLOAD), count);
	}
	if (argc == 5 && strcmp(argv[1], "ping") == 0)
	{
		long		count = number(argv[4], MAX_COUNT);

		if (count == 0)
		{
			fprintf(stderr, "ctcp: COUNT must be at least 1\n");
			return 1;
		}
		return ping(argv[2], number(argv[3], MAX_PAYLOAD), count);
	}
	fprintf(stderr, "usage: ctcp serve | ctcp relay PATH HOST:PORT | ctcp ping ADDRESS SIZE COUNT | ctcp fastping PATH OP SIZE COUNT\n");
	return 1;
}
