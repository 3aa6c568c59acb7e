/*-------------------------------------------------------------------------
 *
 * standbyd_call.c
 *		standbyd.call(op, payload, wait_for_replay): a SQL session on a hot
 *		standby calls a registered handler on the primary.
 *
 * The backend does not connect to the primary.  It talks to the standbyd
 * daemon of its own host over the daemon's Unix socket (standbyd.socket),
 * in the fast path's binary framing, version 2 (docs/api.md, "The fast
 * path"); the daemon carries the request over its channel to the primary.
 *
 * - The op is resolved and the caller's EXECUTE privilege on the handler's
 *   function is checked here, with the standby's copy of the catalog (the
 *   registry and the grants replicate), before anything is sent.
 * - Each backend keeps one connection to the daemon across calls (a static
 *   socket, tiny state); it is checked before each request and opened again
 *   when the daemon went away, and closed at backend exit.  The socket is
 *   counted as an external fd and is close-on-exec.
 * - Every wait is WaitLatchOrSocket with WL_EXIT_ON_PM_DEATH, followed by
 *   CHECK_FOR_INTERRUPTS, as libpqwalreceiver and postgres_fdw wait on
 *   their connections; no syscall blocks.  Any error raised while a request
 *   is in flight (a cancel, statement_timeout, termination) closes the
 *   connection first, which tells the daemon that its caller has gone.
 * - The handler runs in a transaction of its own on the primary: the call
 *   is not part of the standby session's transaction.
 *
 * Copyright (c) the standbyd authors.  Licensed under the PostgreSQL License.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_proc.h"
#include "commands/dbcommands.h"
#include "common/string.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/wait_event.h"

#include "standbyd_call.h"
#include "standbyd_compat.h"
#include "standbyd_handlers.h"
#include "standbyd_protocol.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* The fast path (docs/api.md): preambles, frame kinds, error kinds. */
#define FP_MAGIC				"SBYDFP"
#define FP_VERSION				2
#define FP_PREAMBLE_LEN			8
#define FP_ANSWER_LEN			16
#define FP_KIND_IDENTIFY		'I'
#define FP_TIMEOUT_LEN			4
#define FP_NAME_MAX				255

/* Ids of requests; 0 is never used (the daemon answers a bad 'I' with it). */
#define NO_REQUEST_ID			0

/* GUC standbyd.socket */
static char *standbyd_socket = NULL;

/*
 * Per-backend state, the whole of it: the connection, what it was opened
 * with, and the role named in its last identify frame.
 */
static pgsocket daemon_fd = PGINVALID_SOCKET;
static char *daemon_path = NULL;	/* in TopMemoryContext */
static uint32 daemon_max_frame = 0;
static Oid	identified_role = InvalidOid;
static uint32 last_request_id = 0;
static bool exit_callback_registered = false;
static uint32 call_wait_event = 0;

/* A resolved op: what is sent, and what the messages name. */
typedef struct CallTarget
{
	uint16		op;
	char	   *name;
	Oid			func;
} CallTarget;

/* Where a call is, for the error context of anything raised meanwhile. */
typedef enum CallPhase
{
	PHASE_LOCAL,				/* nothing sent */
	PHASE_SENT,					/* the request may have reached the primary */
	PHASE_REPLAY				/* the handler succeeded; waiting for replay */
} CallPhase;

typedef struct CallState
{
	const CallTarget *target;
	CallPhase	phase;
} CallState;

/* One frame from the daemon; body is VARDATA of a bytea in the caller's context. */
typedef struct DaemonReply
{
	uint8		status;
	uint16		op;
	uint32		id;
	uint32		len;
	bytea	   *data;
} DaemonReply;

PG_FUNCTION_INFO_V1(standbyd_call_name);
PG_FUNCTION_INFO_V1(standbyd_call_code);

void
sbd_call_define_gucs(void)
{
	DefineCustomStringVariable("standbyd.socket",
							   "The standbyd daemon's Unix socket, for standbyd.call() on a standby.",
							   "Set it in the standby's postgresql.conf to the daemon's api.socket.",
							   &standbyd_socket,
							   "/run/standbyd/standbyd.sock",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

/* Close the connection (if any); every later call opens a new one. */
static void
close_connection(void)
{
	if (daemon_fd == PGINVALID_SOCKET)
		return;
	(void) close(daemon_fd);
	ReleaseExternalFD();
	daemon_fd = PGINVALID_SOCKET;
	identified_role = InvalidOid;
}

static void
close_at_exit(int code, Datum arg)
{
	close_connection();
}

/*
 * Wait until the socket is ready for events or the latch is set, then
 * handle interrupts (which may raise: the caller closes the connection).
 */
static void
wait_socket(int events)
{
	int			rc;

	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events,
						   daemon_fd, -1L, call_wait_event);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Write all of buf.  Returns 0, or the errno of the failure; *written says
 * how many bytes the kernel took.
 */
static int
send_all(const char *buf, size_t len, size_t *written)
{
	*written = 0;
	while (*written < len)
	{
		ssize_t		n = send(daemon_fd, buf + *written, len - *written, MSG_NOSIGNAL);

		if (n > 0)
			*written += n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			wait_socket(WL_SOCKET_WRITEABLE);
		else
			return n < 0 ? errno : EPIPE;
	}
	return 0;
}

/* Read exactly len bytes.  Returns 0, -1 at end of file, or an errno. */
static int
recv_exact(char *buf, size_t len)
{
	size_t		got = 0;

	while (got < len)
	{
		ssize_t		n = recv(daemon_fd, buf + got, len - got, 0);

		if (n > 0)
			got += n;
		else if (n == 0)
			return -1;
		else if (errno == EINTR)
			continue;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			wait_socket(WL_SOCKET_READABLE);
		else
			return errno;
	}
	return 0;
}

/*
 * Is the kept connection still usable?  Nothing is due from the daemon
 * between calls: end of file (it restarted) or any byte means it is not.
 */
static bool
connection_alive(void)
{
	char		c;

	for (;;)
	{
		ssize_t		n = recv(daemon_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
}

static void
connect_failed(const char *what, int err)
{
	errno = err;
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to standbyd at \"%s\": %s: %m",
					standbyd_socket, what),
			 errhint("Is standbyd running on this host?  standbyd.socket must name its api.socket.")));
}

/*
 * Open a connection to the daemon at standbyd.socket and exchange the
 * preambles.  On error nothing is left open.
 */
static void
open_connection(void)
{
	struct sockaddr_un addr;
	char		preamble[FP_PREAMBLE_LEN] = {'S', 'B', 'Y', 'D', 'F', 'P', FP_VERSION, '\n'};
	char		answer[FP_ANSWER_LEN];
	size_t		written;
	int			fd;
	int			rc;

	Assert(daemon_fd == PGINVALID_SOCKET);
	if (standbyd_socket == NULL || standbyd_socket[0] == '\0' ||
		strlen(standbyd_socket) >= sizeof(addr.sun_path))
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("standbyd.socket \"%s\" is not a usable Unix socket path",
						standbyd_socket ? standbyd_socket : ""),
				 errdetail("A Unix socket path is 1 to %d bytes long.",
						   (int) sizeof(addr.sun_path) - 1)));

	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to standbyd at \"%s\"", standbyd_socket),
				 errdetail("There are too many open files on the local server."),
				 errhint("Raise the server's max_files_per_process and/or \"ulimit -n\" limits.")));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
	{
		int			err = errno;

		ReleaseExternalFD();
		connect_failed("could not create a socket", err);
	}
	daemon_fd = fd;

	PG_TRY();
	{
		memset(&addr, 0, sizeof(addr));
		addr.sun_family = AF_UNIX;
		strlcpy(addr.sun_path, standbyd_socket, sizeof(addr.sun_path));

		for (;;)
		{
			rc = connect(daemon_fd, (struct sockaddr *) &addr, sizeof(addr));
			if (rc == 0)
				break;
			if (errno == EINTR || errno == EINPROGRESS)
			{
				int			err = 0;
				socklen_t	errlen = sizeof(err);

				/* The connection goes on without us: wait for its result. */
				wait_socket(WL_SOCKET_WRITEABLE);
				if (getsockopt(daemon_fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
					err = errno;
				if (err == 0)
					break;
				if (err == EINPROGRESS || err == EALREADY)
					continue;
				connect_failed("connect", err);
			}
			else if (errno == EAGAIN || errno == EALREADY)
			{
				int			wrc;

				/* A full listen backlog: try again shortly. */
				wrc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								10L, call_wait_event);
				if (wrc & WL_LATCH_SET)
					ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
			else if (errno == EISCONN)
				break;
			else
				connect_failed("connect", errno);
		}

		rc = send_all(preamble, sizeof(preamble), &written);
		if (rc != 0)
			connect_failed("sending the preamble", rc);
		rc = recv_exact(answer, sizeof(answer));
		if (rc == -1)
			connect_failed("reading the preamble", ECONNRESET);
		else if (rc != 0)
			connect_failed("reading the preamble", rc);
		if (memcmp(answer, FP_MAGIC, 6) != 0 || answer[7] != '\n')
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("standbyd at \"%s\" does not speak the fast path", standbyd_socket),
					 errhint("Upgrade standbyd, or check that standbyd.socket names its api.socket.")));
		if ((uint8) answer[6] < FP_VERSION)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("standbyd at \"%s\" speaks fast path version %u, standbyd.call() needs version %u",
							standbyd_socket, (uint8) answer[6], FP_VERSION),
					 errhint("Upgrade standbyd on this host.")));
		daemon_max_frame = sbd_get_u32(answer + 8);
	}
	PG_CATCH();
	{
		close_connection();
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (daemon_path == NULL || strcmp(daemon_path, standbyd_socket) != 0)
	{
		if (daemon_path)
			pfree(daemon_path);
		daemon_path = MemoryContextStrdup(TopMemoryContext, standbyd_socket);
	}
	identified_role = InvalidOid;
}

/*
 * Make sure a connection is open: the kept one if it is alive and still
 * goes to standbyd.socket, a new one otherwise.  Returns whether it is new.
 */
static bool
ensure_connection(void)
{
	if (daemon_fd != PGINVALID_SOCKET &&
		(strcmp(daemon_path, standbyd_socket) != 0 || !connection_alive()))
		close_connection();
	if (daemon_fd != PGINVALID_SOCKET)
		return false;
	open_connection();
	return true;
}

/* A name, in UTF-8, cut to 255 bytes on a character boundary, with its length. */
static void
put_name(StringInfo buf, const char *name)
{
	char	   *utf8 = pg_server_to_any(name, strlen(name), PG_UTF8);
	int			len = strlen(utf8);

	if (len > FP_NAME_MAX)
		len = pg_encoding_mbcliplen(PG_UTF8, utf8, len, FP_NAME_MAX);
	sbd_put_u8(buf, (uint8) len);
	appendBinaryStringInfoNT(buf, utf8, len);
}

/*
 * The identify frame: who is calling (pid, role, database), for the
 * daemon's logs and metrics.  The daemon does not trust it for access.
 */
static void
append_identify(StringInfo buf, Oid role)
{
	int			len_at;
	uint32		len;

	sbd_put_u8(buf, FP_KIND_IDENTIFY);
	sbd_put_u8(buf, 0);
	sbd_put_u16(buf, 0);
	sbd_put_u32(buf, NO_REQUEST_ID);
	len_at = buf->len;
	sbd_put_u32(buf, 0);
	sbd_put_u32(buf, (uint32) MyProcPid);
	put_name(buf, GetUserNameFromId(role, false));
	put_name(buf, get_database_name(MyDatabaseId));
	len = pg_hton32((uint32) (buf->len - len_at - 4));
	memcpy(buf->data + len_at, &len, sizeof(len));
}

static uint32
next_request_id(void)
{
	if (++last_request_id == NO_REQUEST_ID)
		++last_request_id;
	return last_request_id;
}

/* A request by op code (flags 0): header, timeout, payload. */
static void
append_request(StringInfo buf, uint16 op, uint32 id, const char *payload, uint32 len)
{
	sbd_put_u8(buf, SBD_KIND_REQUEST);
	sbd_put_u8(buf, 0);
	sbd_put_u16(buf, op);
	sbd_put_u32(buf, id);
	sbd_put_u32(buf, FP_TIMEOUT_LEN + len);
	/* 0 when statement_timeout is off: the daemon's default applies */
	sbd_put_u32(buf, (uint32) Max(StatementTimeout, 0));
	if (len > 0)
		appendBinaryStringInfoNT(buf, payload, len);
}

static void
call_error_context(void *arg)
{
	CallState  *s = (CallState *) arg;

	if (s->phase == PHASE_SENT)
		errcontext("standbyd.call(): the request for handler \"%s\" (op %u) was sent to the primary; its outcome there is unknown",
				   s->target->name, s->target->op);
	else if (s->phase == PHASE_REPLAY)
		errcontext("standbyd.call(): handler \"%s\" (op %u) succeeded on the primary; its write may not be visible on this standby yet",
				   s->target->name, s->target->op);
}

/* The request was written, then the daemon's answer could not be had. */
static void
outcome_unknown(const CallTarget *t, const char *detail)
{
	close_connection();
	ereport(ERROR,
			(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
			 errmsg("lost the connection to standbyd at \"%s\" during the call of handler \"%s\"",
					standbyd_socket, t->name),
			 errdetail_internal("%s", detail)));
}

/*
 * Read the reply to request id.  Frames with id 0 (the daemon's answer to
 * an identify frame it did not like) are skipped.
 */
static void
read_reply(const CallTarget *t, uint32 id, DaemonReply *r)
{
	for (;;)
	{
		char		header[SBD_HEADER_SIZE];
		int			rc;

		rc = recv_exact(header, sizeof(header));
		if (rc == -1)
			outcome_unknown(t, "standbyd closed the connection before replying.");
		if (rc != 0)
		{
			errno = rc;
			outcome_unknown(t, psprintf("reading the reply: %m"));
		}
		r->status = (uint8) header[1];
		r->op = sbd_get_u16(header + 2);
		r->id = sbd_get_u32(header + 4);
		r->len = sbd_get_u32(header + 8);
		if (header[0] != SBD_KIND_REPLY || r->status > SBD_STATUS_ERROR ||
			r->len > MaxAllocSize - VARHDRSZ)
			outcome_unknown(t, "standbyd sent a malformed reply header.");

		r->data = (bytea *) palloc(VARHDRSZ + r->len);
		SET_VARSIZE(r->data, VARHDRSZ + r->len);
		rc = recv_exact(VARDATA(r->data), r->len);
		if (rc == -1)
			outcome_unknown(t, "standbyd closed the connection in the middle of a reply.");
		if (rc != 0)
		{
			errno = rc;
			outcome_unknown(t, psprintf("reading the reply: %m"));
		}
		if (r->id == id)
			return;
		if (r->id != NO_REQUEST_ID)
			outcome_unknown(t, psprintf("standbyd replied to request %u while request %u was waiting.",
										r->id, id));
		elog(DEBUG1, "standbyd refused the identify frame of this backend");
		pfree(r->data);
	}
}

/*
 * Send one request and read its reply, on the kept connection.  A kept
 * connection that fails before it took a byte was closed by the daemon
 * meanwhile: nothing was sent, so the request goes once more on a new one.
 */
static void
exchange(const CallTarget *t, CallState *state, uint16 op,
		 const char *payload, uint32 len, DaemonReply *reply)
{
	for (int attempt = 0;; attempt++)
	{
		bool		fresh = ensure_connection();
		StringInfoData buf;
		size_t		written;
		uint32		id;
		int			rc;
		Oid			role = GetUserId();

		if (daemon_max_frame > 0 &&
			(uint64) SBD_HEADER_SIZE + FP_TIMEOUT_LEN + len > daemon_max_frame)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("payload of %u bytes is too large for handler \"%s\"", len, t->name),
					 errdetail("standbyd at \"%s\" reads frames of at most %u bytes, header included; nothing was sent.",
							   standbyd_socket, daemon_max_frame)));

		initStringInfo(&buf);
		if (role != identified_role)
			append_identify(&buf, role);
		id = next_request_id();
		append_request(&buf, op, id, payload, len);

		rc = send_all(buf.data, buf.len, &written);
		if (rc != 0)
		{
			pfree(buf.data);
			close_connection();
			if (written == 0 && !fresh && attempt == 0)
				continue;
			errno = rc;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("lost the connection to standbyd at \"%s\" while sending the request for handler \"%s\": %m",
							standbyd_socket, t->name),
					 errdetail("The request was not complete: nothing was sent to the primary.")));
		}
		pfree(buf.data);
		identified_role = role;
		state->phase = Max(state->phase, PHASE_SENT);
		read_reply(t, id, reply);
		return;
	}
}

/* Text from the daemon (UTF-8) in the database's encoding. */
static char *
daemon_text(const char *p, int len)
{
	int			enc = GetDatabaseEncoding();
	char	   *s;

	if (len == 0)
		return NULL;
	s = pnstrdup(p, len);
	if (strlen(s) != (size_t) len || !pg_verify_mbstr(PG_UTF8, s, len, true))
	{
		/* not text: keep what is plain ASCII */
		for (int i = 0; i < len; i++)
			if (IS_HIGHBIT_SET(p[i]) || p[i] == '\0')
				s[i] = '?';
		s[len] = '\0';
		return s;
	}
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII || pg_is_ascii(s))
		return s;
	/* a conversion may fail: keep ASCII rather than lose the error */
	for (char *q = s; *q; q++)
		if (IS_HIGHBIT_SET(*q))
			*q = '?';
	return s;
}

/* Read a u16-length text of the error body; false if it runs past end. */
static bool
take_text(const char **p, const char *end, char **out)
{
	uint16		n;

	if (end - *p < 2)
		return false;
	n = sbd_get_u16(*p);
	*p += 2;
	if (end - *p < n)
		return false;
	*out = daemon_text(*p, n);
	*p += n;
	return true;
}

static bool
valid_sqlstate(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	/* success, warning and no-data classes are no error to raise */
	return !(s[0] == '0' && (s[1] == '0' || s[1] == '1' || s[1] == '2'));
}

/*
 * Raise the error of an error reply: kind, SQLSTATE, message, detail, hint
 * (fast path version 2).  Anything else is a malformed reply.
 */
static void
raise_reply_error(const CallTarget *t, const DaemonReply *r)
{
	const char *p = VARDATA(r->data);
	const char *end = p + r->len;
	char		kind[256];
	char		sqlstate[6];
	char	   *message = NULL;
	char	   *detail = NULL;
	char	   *hint = NULL;
	uint8		k;

	if (r->len < 1 || (k = (uint8) p[0]) == 0 || r->len < 1 + k + 5)
		outcome_unknown(t, "standbyd sent a malformed error reply.");
	memcpy(kind, p + 1, k);
	kind[k] = '\0';
	memcpy(sqlstate, p + 1 + k, 5);
	sqlstate[5] = '\0';
	p += 1 + k + 5;
	if (!take_text(&p, end, &message) || !take_text(&p, end, &detail) ||
		!take_text(&p, end, &hint) || p != end)
		outcome_unknown(t, "standbyd sent a malformed error reply.");
	if (message == NULL)
		message = pstrdup("(no message)");

	if (strcmp(kind, "primary_error") == 0)
		ereport(ERROR,
				(errcode(valid_sqlstate(sqlstate) ?
						 MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]) :
						 ERRCODE_INTERNAL_ERROR),
				 errmsg_internal("%s", message),
				 detail ? errdetail_internal("%s", detail) : 0,
				 hint ? errhint("%s", hint) : 0,
				 errcontext("raised on the primary by handler \"%s\"", t->name)));
	if (strcmp(kind, "outcome_unknown") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("the outcome of handler \"%s\" on the primary is unknown", t->name),
				 errdetail_internal("standbyd: %s", message),
				 hint ? errhint("%s", hint) : 0));
	if (strcmp(kind, "channel_unavailable") == 0 || strcmp(kind, "shutting_down") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the channel to the primary is unavailable"),
				 errdetail_internal("standbyd: %s (%s). Nothing was sent to the primary for handler \"%s\".",
									message, kind, t->name),
				 hint ? errhint("%s", hint) : 0));
	if (strcmp(kind, "busy") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("standbyd is too busy to call handler \"%s\"", t->name),
				 errdetail_internal("standbyd: %s. Nothing was sent to the primary.", message),
				 hint ? errhint("%s", hint) : 0));
	if (strcmp(kind, "not_standby") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("standbyd cannot call handler \"%s\": its host is no longer a standby", t->name),
				 errdetail_internal("standbyd: %s", message),
				 hint ? errhint("%s", hint) : 0));
	if (strcmp(kind, "forbidden") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("standbyd at \"%s\" refused this server's call of handler \"%s\"",
						standbyd_socket, t->name),
				 errdetail_internal("standbyd: %s", message),
				 errhint("%s", hint ? hint : "standbyd's api.allow must allow the OS user the PostgreSQL server runs as.")));
	if (strcmp(kind, "bad_request") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("standbyd refused the request for handler \"%s\"", t->name),
				 errdetail_internal("standbyd: %s", message),
				 hint ? errhint("%s", hint) : 0));
	if (strcmp(kind, "payload_too_large") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the payload is too large for handler \"%s\"", t->name),
				 errdetail_internal("standbyd: %s", message),
				 hint ? errhint("%s", hint) : 0));
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("standbyd answered the call of handler \"%s\" with error kind \"%s\"",
					t->name, kind),
			 errdetail_internal("standbyd: %s", message),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * The position the standby must replay for the handler's commit to be
 * visible: the primary's insert position after the call.  At the start of
 * a page that position is past the page header, which replay never reports
 * until a later record arrives: the end of the page before it is enough.
 */
static XLogRecPtr
replay_target(XLogRecPtr insert)
{
	if (XLogSegmentOffset(insert, wal_segment_size) == SizeOfXLogLongPHD)
		return insert - SizeOfXLogLongPHD;
	if (insert % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		return insert - SizeOfXLogShortPHD;
	return insert;
}

/* Wait, interruptibly, until this standby has replayed target. */
static void
wait_for_replay(const CallTarget *t, XLogRecPtr target)
{
	for (;;)
	{
		int			rc;

		if (GetXLogReplayRecPtr(NULL) >= target)
			return;
		if (!RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
					 errmsg("recovery ended while waiting for the write of handler \"%s\" to be replayed", t->name),
					 errdetail("This server was promoted before it replayed %X/%X; the write may exist only on the old primary.",
							   LSN_FORMAT_ARGS(target))));
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   1L, call_wait_event);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Call t on the primary through the daemon and return the reply payload,
 * allocated in the caller's memory context.
 */
static bytea *
call_primary(const CallTarget *t, const char *payload, uint32 len, bool replay)
{
	ErrorContextCallback errcb;
	CallState	state;
	DaemonReply reply;
	bytea	   *result;

	if (call_wait_event == 0)
	{
#if PG_VERSION_NUM >= 170000
		call_wait_event = WaitEventExtensionNew("StandbydCall");
#else
		call_wait_event = PG_WAIT_EXTENSION;
#endif
	}
	if (!exit_callback_registered)
	{
		on_proc_exit(close_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}

	state.target = t;
	state.phase = PHASE_LOCAL;
	errcb.callback = call_error_context;
	errcb.arg = &state;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	/* Whatever interrupts the call closes the connection: the daemon sees the caller gone. */
	PG_TRY();
	{
		exchange(t, &state, t->op, payload, len, &reply);
	}
	PG_CATCH();
	{
		close_connection();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* A definite answer: the primary's error is its own, not an unknown. */
	state.phase = PHASE_LOCAL;
	if (reply.status != SBD_STATUS_OK)
		raise_reply_error(t, &reply);
	result = reply.data;

	if (replay)
	{
		DaemonReply wal;
		XLogRecPtr	insert;

		state.phase = PHASE_REPLAY;
		PG_TRY();
		{
			exchange(t, &state, SBD_OP_WAL, NULL, 0, &wal);
		}
		PG_CATCH();
		{
			close_connection();
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (wal.status != SBD_STATUS_OK)
			raise_reply_error(t, &wal);
		if (wal.len < 5 + 8)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("standbyd sent a wal reply of %u bytes", wal.len)));
		insert = (XLogRecPtr) sbd_get_u64(VARDATA(wal.data) + 5);
		pfree(wal.data);
		if (insert == InvalidXLogRecPtr)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("standbyd's primary reported no WAL insert position"),
					 errdetail("The server standbyd is connected to is in recovery.")));
		wait_for_replay(t, replay_target(insert));
	}

	error_context_stack = errcb.previous;
	return result;
}

/* Refuse a built-in op: standbyd.call() calls registered handlers only. */
static void
refuse_builtin(const char *shown)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("standbyd.call() cannot call the built-in op %s", shown),
			 errdetail("standbyd.call() calls only handlers registered in standbyd.handlers.")));
}

/*
 * The registered handler for op (code or name) in the standby's copy of
 * the registry, with the function the caller needs EXECUTE on.
 */
static void
resolve_target(SbdHandler *h, const char *shown, CallTarget *t)
{
	Oid			func;

	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("no handler is registered for op %s", shown),
				 errhint("A registration made on the primary may not have been replayed on this standby yet.")));

	/*
	 * The owner policy is judged by the primary for its channel's user; any
	 * other defect (no such function, wrong signature) is the same there.
	 */
	func = h->func;
	if (!OidIsValid(func) && h->errcode == ERRCODE_INSUFFICIENT_PRIVILEGE)
		func = h->found;
	if (!OidIsValid(func))
		ereport(ERROR, (errcode(h->errcode), errmsg("%s", h->errmsg)));

	t->op = h->op;
	t->name = pstrdup(h->name);
	t->func = func;
}

static bool
is_builtin_name(const char *name)
{
	static const char *const builtins[] = {"hello", "ping", "N", "setting", "wal", "page"};

	for (int i = 0; i < lengthof(builtins); i++)
		if (strcmp(name, builtins[i]) == 0)
			return true;
	return false;
}

static Datum
call_common(FunctionCallInfo fcinfo, bool by_name)
{
	CallTarget	target;
	AclResult	aclresult;
	bytea	   *payload;

	for (int i = 0; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("standbyd.call() does not take NULL arguments")));

	/*
	 * Resolution and privileges come first, before the recovery check: they
	 * read only the catalog, which is the same on the primary and here.
	 */
	sbd_handlers_register_callbacks();
	if (by_name)
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
		const char *shown = quote_identifier(name);

		if (is_builtin_name(name))
			refuse_builtin(shown);
		resolve_target(sbd_handler_lookup_name(name), shown, &target);
	}
	else
	{
		int32		code = PG_GETARG_INT32(0);
		char	   *shown = psprintf("%d", code);

		if (code < SBD_FIRST_USER_OP)
			refuse_builtin(shown);
		resolve_target(code > PG_UINT16_MAX ? NULL : sbd_handler_lookup((uint16) code),
					   shown, &target);
	}

	aclresult = sbd_proc_aclcheck(target.func, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(target.func));
	InvokeFunctionExecuteHook(target.func);

	if (!RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("standbyd.call() runs on a standby"),
				 errhint("On the primary, call the handler function %s directly.",
						 format_procedure(target.func))));

	payload = PG_GETARG_BYTEA_PP(1);
	PG_RETURN_BYTEA_P(call_primary(&target, VARDATA_ANY(payload),
								   VARSIZE_ANY_EXHDR(payload), PG_GETARG_BOOL(2)));
}

Datum
standbyd_call_name(PG_FUNCTION_ARGS)
{
	return call_common(fcinfo, true);
}

Datum
standbyd_call_code(PG_FUNCTION_ARGS)
{
	return call_common(fcinfo, false);
}
