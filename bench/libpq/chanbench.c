/*-------------------------------------------------------------------------
 *
 * chanbench.c
 *	  Latency benchmark of the standbyd channel over blocking libpq.
 *
 * This is the "original approach" contender of the benchmark: a plain libpq
 * client that enters the channel with CALL standbyd.serve() and then sends
 * one request frame per CopyData message with PQputCopyData, waiting for each
 * reply with a blocking PQgetCopyData.  Frames are those of docs/protocol.md
 * (version 1).
 *
 * Usage:
 *		chanbench CONNINFO OP SIZE COUNT
 *
 * OP is the operation code (u16, decimal or 0x hex), SIZE the request payload
 * size in bytes (0..1048576), COUNT the number of timed requests.  After a
 * hello and 100 untimed warm-up requests, COUNT requests are timed one by one
 * and their latencies printed to stdout, one line each, in nanoseconds.
 *
 * With CHANBENCH_EXPECT_ECHO=1 in the environment, each reply payload must
 * equal the request payload byte for byte (an echo handler).
 *
 * With CHANBENCH_SQL="SELECT ..." in the environment it does not enter the
 * channel: it prepares that statement (one bytea parameter $1 when SIZE is
 * above 0, none otherwise) and times PQexecPrepared with binary parameter
 * and result, one row expected (with CHANBENCH_EXPECT_ECHO=1, the payload
 * back in its first column).  OP is then ignored.  This is plain SQL from
 * the same blocking C client: the channel against SQL without Go's costs.
 *
 * Any failure is reported on stderr and the exit status is 1.  The conninfo
 * is never printed, as it may hold a password.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"

/* Frame layout, docs/protocol.md "Frame header" */
#define FRAME_HEADER_SIZE	12
#define FRAME_KIND_REQUEST	'Q'
#define FRAME_KIND_REPLY	'A'
#define FRAME_VERSION		1
#define REPLY_STATUS_OK		0
#define REPLY_STATUS_ERROR	1

/* Error payload, docs/protocol.md "Error payload" */
#define SQLSTATE_LEN		5

/* hello, docs/protocol.md "hello (H)" */
#define OP_HELLO			0x48
#define HELLO_REPLY_MIN		26
#define CLIENT_NAME			"chanbench"

#define MAX_PAYLOAD			1048576
#define MAX_FRAME			(MAX_PAYLOAD + FRAME_HEADER_SIZE)
#define MAX_COUNT			100000000L
#define WARMUP_REQUESTS		100
#define STDOUT_BUFFER_SIZE	(1024 * 1024)

#if defined(__GNUC__) || defined(__clang__)
#define cb_noreturn __attribute__((noreturn))
#define cb_printf(f, a) __attribute__((format(printf, f, a)))
#else
#define cb_noreturn
#define cb_printf(f, a)
#endif

static void fail(PGconn *conn, const char *fmt,...) cb_noreturn cb_printf(2, 3);
static void fail_pq(PGconn *conn, const char *what) cb_noreturn;

/*
 * Report an error, close the connection if there is one, and exit 1.
 */
static void
fail(PGconn *conn, const char *fmt,...)
{
	va_list		ap;

	fputs("chanbench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (conn != NULL)
		PQfinish(conn);
	exit(1);
}

/*
 * Report a libpq error (PQerrorMessage ends with a newline) and exit 1.
 */
static void
fail_pq(PGconn *conn, const char *what)
{
	const char *msg = PQerrorMessage(conn);
	size_t		len = strlen(msg);

	while (len > 0 && msg[len - 1] == '\n')
		len--;
	fail(conn, "%s: %.*s", what, (int) len, msg);
}

static void
put_u16(char *p, uint16_t v)
{
	unsigned char *u = (unsigned char *) p;

	u[0] = (unsigned char) (v >> 8);
	u[1] = (unsigned char) v;
}

static void
put_u32(char *p, uint32_t v)
{
	unsigned char *u = (unsigned char *) p;

	u[0] = (unsigned char) (v >> 24);
	u[1] = (unsigned char) (v >> 16);
	u[2] = (unsigned char) (v >> 8);
	u[3] = (unsigned char) v;
}

static uint16_t
get_u16(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;

	return (uint16_t) ((u[0] << 8) | u[1]);
}

static uint32_t
get_u32(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;

	return ((uint32_t) u[0] << 24) | ((uint32_t) u[1] << 16) |
		((uint32_t) u[2] << 8) | (uint32_t) u[3];
}

/*
 * Parse a non-negative integer no larger than max.  Hex with a 0x prefix,
 * decimal otherwise (a leading zero does not mean octal).  Returns 0 on
 * success, -1 if str is not such a number.
 */
static int
parse_number(const char *str, unsigned long max, unsigned long *result)
{
	int			base = 10;
	const char *digits = str;
	char	   *end;
	unsigned long v;

	if (str[0] == '0' && (str[1] == 'x' || str[1] == 'X'))
	{
		base = 16;
		digits = str + 2;
	}
	/* strtoul would accept leading blanks and a sign: refuse them */
	if (base == 16 ? !isxdigit((unsigned char) digits[0]) :
		!isdigit((unsigned char) digits[0]))
		return -1;
	errno = 0;
	v = strtoul(digits, &end, base);
	if (errno != 0 || end == digits || *end != '\0' || v > max)
		return -1;
	*result = v;
	return 0;
}

static void
write_header(char *frame, uint16_t op, uint32_t id, uint32_t payload_len)
{
	frame[0] = FRAME_KIND_REQUEST;
	frame[1] = FRAME_VERSION;
	put_u16(frame + 2, op);
	put_u32(frame + 4, id);
	put_u32(frame + 8, payload_len);
}

/*
 * Send one frame as a single CopyData message and flush it.
 */
static void
send_frame(PGconn *conn, const char *frame, size_t len)
{
	if (PQputCopyData(conn, frame, (int) len) != 1)
		fail_pq(conn, "could not send request");
	if (PQflush(conn) != 0)
		fail_pq(conn, "could not flush request");
}

/*
 * The channel ended while a reply was awaited: report why and exit 1.
 */
static void
fail_channel_ended(PGconn *conn)
{
	PGresult   *res;

	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			const char *msg = PQresultErrorMessage(res);
			size_t		len = strlen(msg);

			while (len > 0 && msg[len - 1] == '\n')
				len--;
			fprintf(stderr, "chanbench: channel ended by the server: %.*s\n",
					(int) len, msg);
			PQclear(res);
			PQfinish(conn);
			exit(1);
		}
		PQclear(res);
	}
	fail_pq(conn, "channel ended by the server while a reply was awaited");
}

/*
 * Wait for the next CopyData message.  Returns its length; *buf must be
 * released with PQfreemem.
 */
static int
receive_frame(PGconn *conn, char **buf)
{
	int			len;

	*buf = NULL;
	len = PQgetCopyData(conn, buf, 0);
	if (len == -1)
		fail_channel_ended(conn);
	if (len < 0)
		fail_pq(conn, "could not receive reply");
	return len;
}

/*
 * Check a reply frame against the request it answers.  On an error reply,
 * print the server's SQLSTATE and message and exit 1.
 */
static void
check_reply(PGconn *conn, char *reply, int len, uint16_t op, uint32_t id)
{
	uint32_t	payload_len;

	if (len < FRAME_HEADER_SIZE)
	{
		PQfreemem(reply);
		fail(conn, "malformed reply: %d bytes, shorter than a frame header", len);
	}
	if (reply[0] != FRAME_KIND_REPLY)
	{
		int			kind = (unsigned char) reply[0];

		PQfreemem(reply);
		fail(conn, "malformed reply: kind 0x%02x, expected 'A'", kind);
	}
	payload_len = get_u32(reply + 8);
	if (payload_len != (uint32_t) (len - FRAME_HEADER_SIZE))
	{
		PQfreemem(reply);
		fail(conn, "malformed reply: length field %u, frame carries %d payload bytes",
			 (unsigned int) payload_len, len - FRAME_HEADER_SIZE);
	}
	if (get_u16(reply + 2) != op || get_u32(reply + 4) != id)
	{
		unsigned int got_op = get_u16(reply + 2);
		unsigned int got_id = (unsigned int) get_u32(reply + 4);

		PQfreemem(reply);
		fail(conn, "reply to op 0x%04x id %u does not match the request (op 0x%04x id %u)",
			 got_op, got_id, (unsigned int) op, (unsigned int) id);
	}
	if (reply[1] == REPLY_STATUS_ERROR)
	{
		if (payload_len < SQLSTATE_LEN)
		{
			PQfreemem(reply);
			fail(conn, "malformed error reply: payload of %u bytes, shorter than a SQLSTATE",
				 (unsigned int) payload_len);
		}
		fprintf(stderr, "chanbench: error reply to op 0x%04x: %.5s: %.*s\n",
				(unsigned int) op, reply + FRAME_HEADER_SIZE,
				(int) (payload_len - SQLSTATE_LEN),
				reply + FRAME_HEADER_SIZE + SQLSTATE_LEN);
		PQfreemem(reply);
		PQfinish(conn);
		exit(1);
	}
	if (reply[1] != REPLY_STATUS_OK)
	{
		int			status = (unsigned char) reply[1];

		PQfreemem(reply);
		fail(conn, "malformed reply: status %d", status);
	}
}

/*
 * Enter the channel and negotiate with hello.  Uses request id 1.
 */
static void
open_channel(PGconn *conn)
{
	PGresult   *res;
	char		frame[FRAME_HEADER_SIZE + 8 + sizeof(CLIENT_NAME) - 1];
	size_t		payload_len = sizeof(frame) - FRAME_HEADER_SIZE;
	char	   *reply;
	int			len;
	unsigned int version;

	res = PQexec(conn, "CALL standbyd.serve()");
	if (res == NULL)
		fail_pq(conn, "CALL standbyd.serve() failed");
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		const char *msg = PQresultErrorMessage(res);
		size_t		msglen = strlen(msg);

		while (msglen > 0 && msg[msglen - 1] == '\n')
			msglen--;
		fprintf(stderr, "chanbench: CALL standbyd.serve() did not enter the channel (%s): %.*s\n",
				PQresStatus(PQresultStatus(res)), (int) msglen, msg);
		PQclear(res);
		PQfinish(conn);
		exit(1);
	}
	PQclear(res);

	write_header(frame, OP_HELLO, 1, (uint32_t) payload_len);
	put_u16(frame + FRAME_HEADER_SIZE, FRAME_VERSION);		/* lowest version */
	put_u16(frame + FRAME_HEADER_SIZE + 2, FRAME_VERSION);	/* highest version */
	put_u32(frame + FRAME_HEADER_SIZE + 4, MAX_FRAME);
	memcpy(frame + FRAME_HEADER_SIZE + 8, CLIENT_NAME, sizeof(CLIENT_NAME) - 1);

	send_frame(conn, frame, sizeof(frame));
	len = receive_frame(conn, &reply);
	check_reply(conn, reply, len, OP_HELLO, 1);
	if (len - FRAME_HEADER_SIZE < HELLO_REPLY_MIN)
	{
		PQfreemem(reply);
		fail(conn, "malformed hello reply: payload of %d bytes", len - FRAME_HEADER_SIZE);
	}
	version = get_u16(reply + FRAME_HEADER_SIZE);
	PQfreemem(reply);
	if (version != FRAME_VERSION)
		fail(conn, "server chose protocol version %u, expected %d", version, FRAME_VERSION);
}

/*
 * Leave the channel: CopyDone, drain the server's side of the copy, then
 * collect the CALL's CommandComplete.
 */
static void
close_channel(PGconn *conn)
{
	PGresult   *res;
	char	   *buf;
	int			len;
	int			failed = 0;

	if (PQputCopyEnd(conn, NULL) != 1)
		fail_pq(conn, "could not send CopyDone");
	if (PQflush(conn) != 0)
		fail_pq(conn, "could not flush CopyDone");
	while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
		PQfreemem(buf);
	if (len != -1)
		fail_pq(conn, "could not finish the channel");
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			const char *msg = PQresultErrorMessage(res);
			size_t		msglen = strlen(msg);

			while (msglen > 0 && msg[msglen - 1] == '\n')
				msglen--;
			fprintf(stderr, "chanbench: channel did not end cleanly (%s): %.*s\n",
					PQresStatus(PQresultStatus(res)), (int) msglen, msg);
			failed = 1;
		}
		PQclear(res);
	}
	if (failed)
		fail(conn, "closing the channel failed");
}

static int64_t elapsed_ns(const struct timespec *start, const struct timespec *end);

/* Print the latencies, one a line, and free them. */
static void
print_latencies(int64_t *latencies, long count)
{
	for (long i = 0; i < count; i++)
	{
		if (printf("%lld\n", (long long) latencies[i]) < 0)
			fail(NULL, "could not write to stdout: %s", strerror(errno));
	}
	free(latencies);
	if (fflush(stdout) != 0)
		fail(NULL, "could not write to stdout: %s", strerror(errno));
}

/*
 * Time COUNT executions of the prepared statement sql (after the warm-up)
 * into latencies.
 */
static void
run_sql(PGconn *conn, const char *sql, const char *payload, size_t size,
		long count, int expect_echo, int64_t *latencies)
{
	const Oid	bytea_oid = 17;
	const char *values[1] = {payload};
	int			lengths[1] = {(int) size};
	int			formats[1] = {1};
	int			nparams = size > 0 ? 1 : 0;
	PGresult   *res;

	res = PQprepare(conn, "q", sql, nparams, &bytea_oid);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		PQclear(res);
		fail_pq(conn, "could not prepare the statement");
	}
	PQclear(res);
	for (long i = -WARMUP_REQUESTS; i < count; i++)
	{
		struct timespec start;
		struct timespec end;

		if (clock_gettime(CLOCK_MONOTONIC, &start) != 0)
			fail(conn, "clock_gettime failed: %s", strerror(errno));
		res = PQexecPrepared(conn, "q", nparams, values, lengths, formats, 1);
		if (clock_gettime(CLOCK_MONOTONIC, &end) != 0)
			fail(conn, "clock_gettime failed: %s", strerror(errno));
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		{
			PQclear(res);
			fail_pq(conn, "the statement failed");
		}
		if (expect_echo &&
			((size_t) PQgetlength(res, 0, 0) != size ||
			 memcmp(PQgetvalue(res, 0, 0), payload, size) != 0))
		{
			PQclear(res);
			fail(conn, "the statement's result is not an echo of its parameter");
		}
		PQclear(res);
		if (i >= 0)
			latencies[i] = elapsed_ns(&start, &end);
	}
}

static int64_t
elapsed_ns(const struct timespec *start, const struct timespec *end)
{
	return (int64_t) (end->tv_sec - start->tv_sec) * 1000000000 +
		(int64_t) (end->tv_nsec - start->tv_nsec);
}

int
main(int argc, char **argv)
{
	static char stdout_buffer[STDOUT_BUFFER_SIZE];
	const char *echo_env;
	unsigned long op_arg;
	unsigned long size_arg;
	unsigned long count_arg;
	uint16_t	op;
	size_t		size;
	long		count;
	int			expect_echo;
	PGconn	   *conn;
	char	   *frame;
	int64_t    *latencies;
	uint32_t	id = 1;			/* the hello's */
	long		i;

	if (argc != 5)
	{
		fprintf(stderr, "usage: %s CONNINFO OP SIZE COUNT\n", argv[0]);
		return 1;
	}
	if (parse_number(argv[2], 0xFFFF, &op_arg) != 0)
		fail(NULL, "invalid OP \"%s\": expected 0..65535 (decimal or 0x hex)", argv[2]);
	if (parse_number(argv[3], MAX_PAYLOAD, &size_arg) != 0)
		fail(NULL, "invalid SIZE \"%s\": expected 0..%d", argv[3], MAX_PAYLOAD);
	if (parse_number(argv[4], MAX_COUNT, &count_arg) != 0 || count_arg == 0)
		fail(NULL, "invalid COUNT \"%s\": expected 1..%ld", argv[4], MAX_COUNT);
	op = (uint16_t) op_arg;
	size = (size_t) size_arg;
	count = (long) count_arg;
	echo_env = getenv("CHANBENCH_EXPECT_ECHO");
	expect_echo = (echo_env != NULL && strcmp(echo_env, "1") == 0);

	if (setvbuf(stdout, stdout_buffer, _IOFBF, sizeof(stdout_buffer)) != 0)
		fail(NULL, "could not set the stdout buffer");

	frame = malloc(FRAME_HEADER_SIZE + size);
	latencies = malloc(sizeof(int64_t) * (size_t) count);
	if (frame == NULL || latencies == NULL)
		fail(NULL, "out of memory");
	for (size_t j = 0; j < size; j++)
		frame[FRAME_HEADER_SIZE + j] = (char) ((j * 31 + 7) & 0xff);

	conn = PQconnectdb(argv[1]);
	if (conn == NULL)
		fail(NULL, "out of memory");
	if (PQstatus(conn) != CONNECTION_OK)
		fail_pq(conn, "could not connect");

	if (getenv("CHANBENCH_SQL") != NULL)
	{
		run_sql(conn, getenv("CHANBENCH_SQL"), frame + FRAME_HEADER_SIZE, size, count, expect_echo, latencies);
		PQfinish(conn);
		free(frame);
		print_latencies(latencies, count);
		return 0;
	}

	open_channel(conn);

	for (i = -WARMUP_REQUESTS; i < count; i++)
	{
		struct timespec start;
		struct timespec end;
		char	   *reply;
		int			len;

		id++;
		write_header(frame, op, id, (uint32_t) size);

		if (clock_gettime(CLOCK_MONOTONIC, &start) != 0)
			fail(conn, "clock_gettime failed: %s", strerror(errno));
		send_frame(conn, frame, FRAME_HEADER_SIZE + size);
		len = receive_frame(conn, &reply);
		if (clock_gettime(CLOCK_MONOTONIC, &end) != 0)
			fail(conn, "clock_gettime failed: %s", strerror(errno));

		check_reply(conn, reply, len, op, id);
		if (expect_echo &&
			((size_t) (len - FRAME_HEADER_SIZE) != size ||
			 memcmp(reply + FRAME_HEADER_SIZE, frame + FRAME_HEADER_SIZE, size) != 0))
		{
			PQfreemem(reply);
			fail(conn, "reply to request %u is not an echo of the request (%d payload bytes, sent %zu)",
				 (unsigned int) id, len - FRAME_HEADER_SIZE, size);
		}
		PQfreemem(reply);

		if (i >= 0)
			latencies[i] = elapsed_ns(&start, &end);
	}

	close_channel(conn);
	PQfinish(conn);
	free(frame);

	print_latencies(latencies, count);
	return 0;
}
