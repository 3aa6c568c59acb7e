/*-------------------------------------------------------------------------
 *
 * standbyd.c
 *		The primary side of the standbyd channel: CALL standbyd.serve().
 *
 * A client (the standbyd daemon on a standby host) opens an ordinary session
 * and sends "CALL standbyd.serve()" in the simple Query protocol.  The
 * procedure answers CopyBothResponse and then serves request frames carried
 * in CopyData messages, one reply per request, until the client sends
 * CopyDone.  Frames are specified in docs/protocol.md.
 *
 * The procedure lives inside a normal backend for as long as the channel is
 * open, so it is written to cost that backend's neighbours nothing:
 *
 * - It commits the CALL's transaction right after entering and then stays
 *   outside any transaction while idle, like VACUUM between tables: the
 *   backend holds no xmin, no lock and no transaction start time, and no
 *   transaction timer runs.  A request that needs a transaction gets its own
 *   (standbyd_xact.c); one is started again before serve() returns, because
 *   the CALL's caller commits one.
 * - statement_timeout counts from the CALL; it is disarmed for the channel's
 *   life and armed per request that runs SQL.
 * - Replies are flushed without blocking, the walsender way: a client that
 *   stops reading is ended by standbyd.idle_timeout.
 * - Frontend messages are read the way walsender reads them: a non-blocking
 *   read of the first byte, then the rest of that message, waiting on the
 *   backend's own FeBe wait set.  Interrupts are only processed between
 *   messages, never in the middle of one (that would lose protocol sync).
 * - Postmaster death is reported to the client as FATAL, not a bare EOF.
 * - Every request runs in its own memory context, reset afterwards.
 *
 * Copyright (c) the standbyd authors.  Licensed under the PostgreSQL License.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "libpq/libpq.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "postmaster/interrupt.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/sinval.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "standbyd_call.h"
#include "standbyd_compat.h"
#include "standbyd_handlers.h"
#include "standbyd_ops.h"
#include "standbyd_protocol.h"
#include "standbyd_xact.h"

#ifdef PG_MODULE_MAGIC_EXT
PG_MODULE_MAGIC_EXT(.name = "standbyd", .version = STANDBYD_VERSION);
#else
PG_MODULE_MAGIC;
#endif

/* Bytes read at a time while discarding the rest of an oversize message. */
#define DISCARD_CHUNK 8192

/* Longest CopyFail message we keep for the error we raise. */
#define COPYFAIL_MESSAGE_MAX 1024

/* GUCs */
int			standbyd_max_frame_size = 1024 * 1024;
uint32		standbyd_client_max_frame = 0;	/* from hello; 0 = not announced */
uint16		standbyd_session_version = 1;	/* from hello */
static int	standbyd_idle_timeout = 60 * 1000;	/* ms, 0 = off */
static bool standbyd_log_sessions = true;

/* The wait event shown in pg_stat_activity while the channel waits. */
static uint32 channel_wait_event = 0;

/* How a frontend message read ended. */
typedef enum ReadResult
{
	READ_NOTHING,				/* no message available without blocking */
	READ_COPYDATA,				/* a CopyData message within the frame limit */
	READ_OVERSIZE,				/* CopyData over the limit; header kept */
	READ_COPYDONE,				/* client finished the channel */
	READ_IGNORED				/* Flush or Sync: nothing to do */
} ReadResult;

PG_FUNCTION_INFO_V1(standbyd_serve);

void		_PG_init(void);

/*
 * The goodbye frame (protocol version 2): while the channel is open, the id
 * of the last request read, so that a FATAL (termination, shutdown) can tell
 * the client which of its pipelined requests the backend never read.
 */
static bool channel_open = false;
static uint32 last_read_id = 0;
static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * Runs while any message is reported.  On a FATAL that ends an open
 * version-2 channel, queue the goodbye frame just before the FATAL's
 * ErrorResponse, which errfinish flushes (a full socket is given up on, as
 * for the FATAL itself); the backend exits right after, so nothing runs
 * once it is sent.  An ERROR that reaches the top level means the channel
 * has left COPY BOTH: no goodbye after that.
 */
static void
goodbye_hook(ErrorData *edata)
{
	if (channel_open && edata->elevel == ERROR)
		channel_open = false;
	if (channel_open && edata->elevel >= FATAL && standbyd_session_version >= 2 &&
		edata->output_to_client && whereToSendOutput == DestRemote)
	{
		char		frame[SBD_GOODBYE_MAX];
		size_t		len;

		channel_open = false;
		len = sbd_goodbye(frame, last_read_id, unpack_sql_state(edata->sqlerrcode),
						  edata->message);
		(void) pq_putmessage_noblock(PqMsg_CopyData, frame, len);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
_PG_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = goodbye_hook;

	DefineCustomIntVariable("standbyd.max_frame_size",
							"Largest channel frame the server accepts, header included.",
							"Larger request frames are answered with an error and discarded.",
							&standbyd_max_frame_size,
							1024 * 1024,
							1024,
							256 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("standbyd.idle_timeout",
							"Ends a channel that received nothing from its client for this long.",
							"Like wal_sender_timeout for the channel: standbyd pings every few seconds, "
							"so only a vanished client, or one that stopped reading, hits it. 0 turns it off.",
							&standbyd_idle_timeout,
							60 * 1000,
							0,
							INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("standbyd.log_sessions",
							 "Logs each channel's start and end.",
							 NULL,
							 &standbyd_log_sessions,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	sbd_call_define_gucs();

	MarkGUCPrefixReserved("standbyd");
}

/*
 * Refuse every context in which the channel cannot work: it must be a
 * top-level CALL from a client connection, outside a transaction block, so
 * that it can commit away its snapshot and talk the frontend protocol.
 */
static void
check_calling_context(FunctionCallInfo fcinfo)
{
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("standbyd.serve() must be invoked with CALL")));

	if (IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("standbyd.serve() cannot run inside a transaction block"),
				 errhint("Send CALL standbyd.serve() on its own, outside BEGIN ... COMMIT.")));

	/*
	 * A CALL from a DO block or another procedure may be non-atomic too, but
	 * the channel must own its transaction: only a top-level CALL, which runs
	 * outside any SPI connection, will do.
	 */
	if (((CallContext *) fcinfo->context)->atomic || SPI_inside_nonatomic_context())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("standbyd.serve() must be called at top level"),
				 errdetail("It cannot run inside a function, a DO block or another procedure.")));

	if (am_walsender)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("standbyd.serve() cannot run on a replication connection")));

	if (whereToSendOutput != DestRemote || MyProcPort == NULL ||
		FrontendProtocol < PG_PROTOCOL(3, 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("standbyd.serve() needs a client connection using protocol 3")));
}

/* The client went away: there is nobody to report to, so just exit. */
static void
client_gone(void)
{
	ereport(COMMERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("unexpected EOF on standbyd channel connection")));
	whereToSendOutput = DestNone;
	proc_exit(0);
}

/* Read exactly len bytes of the message being read, or exit on EOF. */
static void
read_bytes(char *dst, size_t len)
{
	if (len > 0 && pq_getbytes(dst, len) == EOF)
		client_gone();
}

/* Read and drop len bytes of the message being read. */
static void
discard_bytes(size_t len)
{
	char		scratch[DISCARD_CHUNK];

	while (len > 0)
	{
		size_t		n = Min(len, sizeof(scratch));

		read_bytes(scratch, n);
		len -= n;
	}
}

/*
 * Read one frontend message if one has started to arrive, without blocking
 * while none has.  Once the first byte is in, the rest of the message is
 * read in full (blocking if needed; secure_read still honours termination
 * while it waits), so no error is ever raised in the middle of a message.
 *
 * A CopyData message is put in buf when it fits the frame limit.  An oversize
 * one keeps only its first SBD_HEADER_SIZE bytes (so the error reply can echo
 * the request id) and the rest is discarded: memory stays bounded whatever
 * the client sends.
 */
static ReadResult
read_frontend_message(StringInfo buf)
{
	unsigned char msgtype;
	uint32		len;
	size_t		body;
	int			r;

	pq_startmsgread();
	r = pq_getbyte_if_available(&msgtype);
	if (r == 0)
	{
		pq_endmsgread();
		return READ_NOTHING;
	}
	if (r == EOF)
		client_gone();

	read_bytes((char *) &len, 4);
	len = pg_ntoh32(len);
	if (len < 4)
		ereport(FATAL,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("invalid message length %u on standbyd channel", len)));
	body = len - 4;

	resetStringInfo(buf);
	switch (msgtype)
	{
		case PqMsg_CopyData:				/* CopyData: one frame */
			if (body > (size_t) standbyd_max_frame_size)
			{
				size_t		keep = Min(body, SBD_HEADER_SIZE);

				enlargeStringInfo(buf, keep);
				read_bytes(buf->data, keep);
				buf->len = keep;
				buf->data[buf->len] = '\0';
				discard_bytes(body - keep);
				pq_endmsgread();
				return READ_OVERSIZE;
			}
			enlargeStringInfo(buf, body);
			read_bytes(buf->data, body);
			buf->len = body;
			buf->data[buf->len] = '\0';
			pq_endmsgread();
			return READ_COPYDATA;

		case PqMsg_CopyDone:				/* CopyDone */
			discard_bytes(body);
			pq_endmsgread();
			return READ_COPYDONE;

		case PqMsg_CopyFail:				/* CopyFail: end with the client's message */
			{
				char		message[COPYFAIL_MESSAGE_MAX + 1];
				size_t		keep = Min(body, COPYFAIL_MESSAGE_MAX);

				read_bytes(message, keep);
				message[keep] = '\0';
				/* the text goes to the log: keep it printable ASCII */
				for (size_t i = 0; i < keep; i++)
					if (message[i] != '\0' &&
						((unsigned char) message[i] < 32 || (unsigned char) message[i] > 126))
						message[i] = '?';
				discard_bytes(body - keep);
				pq_endmsgread();
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("standbyd channel ended by the client: %s",
								message)));
			}
			break;

		case PqMsg_Flush:				/* Flush and Sync are ignored during copy */
		case PqMsg_Sync:
			discard_bytes(body);
			pq_endmsgread();
			return READ_IGNORED;

		case PqMsg_Terminate:				/* Terminate */
			pq_endmsgread();
			whereToSendOutput = DestNone;
			proc_exit(0);
			break;

		default:
			ereport(FATAL,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("invalid frontend message type %d on standbyd channel",
							msgtype)));
	}
	pg_unreachable();
}

/* When the client last showed life: a message received, or reply bytes taken. */
static TimestampTz last_activity;

/* Pending statistics could not go out yet: when to force them (0 = none). */
static TimestampTz stats_retry_at;

/* Milliseconds left before standbyd.idle_timeout ends the channel; -1 = off. */
static long
idle_ms_left(void)
{
	if (standbyd_idle_timeout <= 0)
		return -1;
	return Max(0, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
												  TimestampTzPlusMilliseconds(last_activity,
																			  standbyd_idle_timeout)));
}

/*
 * Between requests: handle what an idle session handles.  A cancel is
 * dropped here (only a request can be cancelled; the client may have sent
 * one that raced with the reply); termination and other interrupts are
 * processed as usual.
 */
static void
between_requests(void)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (QueryCancelPending && !ProcDiePending)
	{
		QueryCancelPending = false;
		ereport(LOG_SERVER_ONLY,
				(errmsg("standbyd channel ignored a cancel request while idle"),
				 errhint("Use pg_terminate_backend() to end the channel.")));
	}
	CHECK_FOR_INTERRUPTS();

	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}

	/* Keep up with shared invalidations, as an idle session does. */
	if (catchupInterruptPending)
		ProcessCatchupInterrupt();
	/* the catchup may have run a transaction, which leaves TopMemoryContext */
	MemoryContextSwitchTo(cxt);
}

/*
 * Report the statistics of the last requests, as PostgresMain does before
 * waiting for the next query: at most once a second, forced a second later
 * when the non-forced attempt had to leave some behind.  Returns how long the wait
 * may last before this must run again, or -1.
 */
static long
report_stats(void)
{
	long		retry;

	if (stats_retry_at != 0)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), stats_retry_at);

		if (left > 0)
			return left;
		stats_retry_at = 0;
		(void) pgstat_report_stat(true);
		return -1;
	}
	retry = pgstat_report_stat(false);
	if (retry <= 0)
		return -1;
	/* PostgreSQL asks for 10 s; a second (its flush interval) will do */
	retry = Min(retry, 1000);
	stats_retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), retry);
	return retry;
}

/* The shorter of two waits in ms, -1 meaning forever. */
static long
min_wait(long a, long b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return Min(a, b);
}

/*
 * Sleep until the client sends something, the latch is set, the postmaster
 * dies, or standbyd.idle_timeout passes since the client last showed life
 * (FATAL).
 */
static void
wait_for_client(void)
{
	WaitEvent	event;
	long		timeout = idle_ms_left();

	if (timeout == 0)
		ereport(FATAL,
				(errcode(ERRCODE_IDLE_SESSION_TIMEOUT),
				 errmsg("terminating standbyd channel after %d ms without a message from the client",
						standbyd_idle_timeout)));
	timeout = min_wait(timeout, report_stats());

	ModifyWaitEvent(FeBeWaitSet, FeBeWaitSetSocketPos, WL_SOCKET_READABLE, NULL);
	if (WaitEventSetWait(FeBeWaitSet, timeout, &event, 1, channel_wait_event) == 0)
		return;					/* timed out: the caller comes back here */

	if (event.events & WL_POSTMASTER_DEATH)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating standbyd channel because the postmaster exited")));
	if (event.events & WL_LATCH_SET)
		ResetLatch(MyLatch);
}

/*
 * The client stopped reading: nothing can be sent to it any more, so end
 * the backend the way walsender does on wal_sender_timeout.
 */
static void
client_stuck(void)
{
	ereport(COMMERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("terminating standbyd channel: the client read no reply for %d ms",
					standbyd_idle_timeout)));
	whereToSendOutput = DestNone;
	proc_exit(0);
}

/*
 * Send one reply frame without ever blocking in the kernel: queue it, then
 * flush while the socket takes data, waiting for it to become writable in
 * between.  Each time the socket takes bytes the client counts as alive.
 */
static void
send_frame(StringInfo frame)
{
	pq_putmessage_noblock(PqMsg_CopyData, frame->data, frame->len);
	for (;;)
	{
		WaitEvent	event;
		long		timeout;

		if (pq_flush_if_writable() != 0)
			client_gone();
		if (!pq_is_send_pending())
			return;

		/*
		 * The socket takes nothing: a FATAL message from a termination could
		 * not go out either, and would block the exit.
		 */
		if (ProcDiePending)
			whereToSendOutput = DestNone;
		between_requests();
		timeout = idle_ms_left();
		if (timeout == 0)
			client_stuck();

		ModifyWaitEvent(FeBeWaitSet, FeBeWaitSetSocketPos, WL_SOCKET_WRITEABLE, NULL);
		if (WaitEventSetWait(FeBeWaitSet, timeout, &event, 1, channel_wait_event) == 0)
			continue;
		if (event.events & WL_POSTMASTER_DEATH)
		{
			/* the socket is full: a FATAL message could not go out */
			whereToSendOutput = DestNone;
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating standbyd channel because the postmaster exited")));
		}
		if (event.events & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (event.events & WL_SOCKET_WRITEABLE)
			last_activity = GetCurrentTimestamp();
	}
}

/*
 * Answer one CopyData message.  Whatever the bytes are, exactly one reply
 * frame goes back, and the channel continues.
 */
static void
handle_frame(StringInfo in, bool oversize, StringInfo out)
{
	SbdRequest	req;
	SbdParseResult pr;
	char		msg[160];

	pr = sbd_parse_request(in->data, in->len, &req);
	if (oversize && pr != SBD_PARSE_SHORT && pr != SBD_PARSE_BAD_KIND)
	{
		snprintf(msg, sizeof(msg),
				 "frame is larger than standbyd.max_frame_size (%d bytes)",
				 standbyd_max_frame_size);
		sbd_reply_error(out, req.op, req.id, "54000", msg);
		return;
	}
	switch (pr)
	{
		case SBD_PARSE_OK:
			sbd_dispatch(&req, out);
			/* The client refuses frames over the maximum it announced. */
			if (standbyd_client_max_frame > 0 &&
				(uint32) out->len > standbyd_client_max_frame)
			{
				snprintf(msg, sizeof(msg),
						 "reply of %d bytes is larger than the client's maximum frame size (%u bytes)",
						 out->len, standbyd_client_max_frame);
				/* a hello reply is read before the version applies */
				sbd_reply_error_full(out, req.op == SBD_OP_HELLO ? 1 : standbyd_session_version,
									 req.op, req.id, "54000", msg, NULL, NULL);
			}
			return;
		case SBD_PARSE_SHORT:
		case SBD_PARSE_BAD_KIND:
			/* The header cannot be trusted: answer with op 0 and id 0. */
			sbd_reply_error(out, 0, 0, "08P01", sbd_parse_result_message(pr));
			return;
		case SBD_PARSE_BAD_LENGTH:
		case SBD_PARSE_BAD_VERSION:
			sbd_reply_error(out, req.op, req.id, "08P01",
							sbd_parse_result_message(pr));
			return;
	}
}

/*
 * Enter COPY BOTH: the same CopyBothResponse walsender sends (overall text
 * format, no columns).
 */
static void
send_copy_both_response(void)
{
	StringInfoData buf;

	pq_beginmessage(&buf, PqMsg_CopyBothResponse);
	pq_sendbyte(&buf, 0);
	pq_sendint16(&buf, 0);
	pq_endmessage(&buf);
	pq_flush();
}

Datum
standbyd_serve(PG_FUNCTION_ARGS)
{
	MemoryContext call_cxt = CurrentMemoryContext;
	MemoryContext request_cxt;
	MemoryContext loop_cxt;
	StringInfoData in;
	StringInfoData out;
	uint64		requests = 0;

	check_calling_context(fcinfo);

	if (channel_wait_event == 0)
	{
#if PG_VERSION_NUM >= 170000
		channel_wait_event = WaitEventExtensionNew("StandbydChannel");
#else
		channel_wait_event = PG_WAIT_EXTENSION;
#endif
	}

	/*
	 * The channel lives for hours; statement_timeout (counted from the CALL)
	 * must not end it.  idle_session_timeout and
	 * idle_in_transaction_session_timeout never fire for an active backend.
	 */
	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);

	standbyd_client_max_frame = 0;
	standbyd_session_version = 1;
	last_read_id = 0;
	stats_retry_at = 0;
	sbd_handlers_register_callbacks();

	/*
	 * Everything the loop keeps lives in the CALL's portal memory (the
	 * caller's context), which outlives the transactions committed here.
	 */
	loop_cxt = AllocSetContextCreate(call_cxt,
									 "standbyd channel",
									 ALLOCSET_DEFAULT_SIZES);
	request_cxt = AllocSetContextCreate(loop_cxt,
										"standbyd request",
										ALLOCSET_DEFAULT_SIZES);

	send_copy_both_response();

	/* Drop the CALL's transaction, its snapshot and its timers. */
	sbd_xact_leave_call();
	MemoryContextSwitchTo(loop_cxt);

	if (standbyd_log_sessions)
		ereport(LOG,
				(errmsg("standbyd channel opened"),
				 errdetail("Protocol versions %d to %d, max frame size %d bytes, idle timeout %d ms.",
						   SBD_PROTOCOL_VERSION_MIN, SBD_PROTOCOL_VERSION_MAX, standbyd_max_frame_size, standbyd_idle_timeout)));

	initStringInfo(&in);
	initStringInfo(&out);
	last_activity = GetCurrentTimestamp();
	channel_open = true;

	for (;;)
	{
		ReadResult	rr;
		MemoryContext oldcxt;

		between_requests();

		rr = read_frontend_message(&in);
		if (rr == READ_NOTHING)
		{
			wait_for_client();
			continue;
		}
		/* Tracked whatever the timeout, so that turning it on by reload is safe. */
		last_activity = GetCurrentTimestamp();
		if (rr == READ_COPYDONE)
			break;
		if (rr == READ_IGNORED)
			continue;
		/* Read now: a FATAL from here on counts it as read (goodbye). */
		if (in.len >= SBD_HEADER_SIZE)
			last_read_id = sbd_get_u32(in.data + 4);

		oldcxt = MemoryContextSwitchTo(request_cxt);
		handle_frame(&in, rr == READ_OVERSIZE, &out);
		MemoryContextSwitchTo(oldcxt);
		send_frame(&out);
		requests++;

		MemoryContextReset(request_cxt);
		/* Keep one large request from pinning its buffers for good. */
		if (in.maxlen > 64 * 1024)
		{
			pfree(in.data);
			initStringInfo(&in);
		}
		if (out.maxlen > 64 * 1024)
		{
			pfree(out.data);
			initStringInfo(&out);
		}
	}

	channel_open = false;
	/* Answer CopyDone with CopyDone; CommandComplete follows from the CALL. */
	pq_putemptymessage(PqMsg_CopyDone);
	pq_flush();

	if (standbyd_log_sessions)
		ereport(LOG,
				(errmsg("standbyd channel closed by the client after " UINT64_FORMAT " requests",
						requests)));

	/* The CALL's caller commits a transaction: give it one. */
	sbd_xact_reenter_call();
	MemoryContextSwitchTo(call_cxt);
	MemoryContextDelete(loop_cxt);

	PG_RETURN_VOID();
}
