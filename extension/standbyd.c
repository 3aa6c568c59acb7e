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
 * - It connects SPI as non-atomic and commits right after entering, which
 *   drops the snapshot the CALL took: the backend holds no xmin and no lock
 *   while it waits, so VACUUM and CREATE INDEX CONCURRENTLY are not held up.
 * - statement_timeout counts from the CALL; it is disarmed for the channel's
 *   life (it would otherwise end an idle channel).
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
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "standbyd_ops.h"
#include "standbyd_protocol.h"

PG_MODULE_MAGIC;

/* FeBeWaitSet positions are exported from 14 on; 13 used the same layout. */
#ifndef FeBeWaitSetSocketPos
#define FeBeWaitSetSocketPos 0
#define FeBeWaitSetLatchPos 1
#endif

/* Bytes read at a time while discarding the rest of an oversize message. */
#define DISCARD_CHUNK 8192

/* Longest CopyFail message we keep for the error we raise. */
#define COPYFAIL_MESSAGE_MAX 1024

/* GUCs */
int			standbyd_max_frame_size = 1024 * 1024;
static int	standbyd_idle_timeout = 0;	/* ms, 0 = off */
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

void
_PG_init(void)
{
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
							"so only a vanished client hits it. 0 turns it off.",
							&standbyd_idle_timeout,
							0,
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

	MarkGUCPrefixReserved("standbyd");
}

/* Is this call nested inside a PL (DO block, procedure)? */
static bool
inside_spi(void)
{
#if PG_VERSION_NUM >= 140000
	return SPI_inside_nonatomic_context();
#else
	return false;				/* 13: only the atomic flag is checked */
#endif
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
	if (((CallContext *) fcinfo->context)->atomic || inside_spi())
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
		case 'd':				/* CopyData: one frame */
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

		case 'c':				/* CopyDone */
			discard_bytes(body);
			pq_endmsgread();
			return READ_COPYDONE;

		case 'f':				/* CopyFail: end with the client's message */
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

		case 'H':				/* Flush and Sync are ignored during copy */
		case 'S':
			discard_bytes(body);
			pq_endmsgread();
			return READ_IGNORED;

		case 'X':				/* Terminate */
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

/*
 * Sleep until the client sends something, the latch is set, the postmaster
 * dies, or standbyd.idle_timeout passes since the last message (FATAL).
 */
static void
wait_for_client(TimestampTz last_message)
{
	WaitEvent	event;
	long		timeout = -1;

	if (standbyd_idle_timeout > 0)
	{
		TimestampTz deadline = TimestampTzPlusMilliseconds(last_message, standbyd_idle_timeout);

		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (timeout <= 0)
			ereport(FATAL,
#if PG_VERSION_NUM >= 140000
					(errcode(ERRCODE_IDLE_SESSION_TIMEOUT),
#else
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
#endif
					 errmsg("terminating standbyd channel after %d ms without a message from the client",
							standbyd_idle_timeout)));
	}

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

/* Send one reply frame and push it to the client. */
static void
send_frame(StringInfo frame)
{
	(void) pq_putmessage('d', frame->data, frame->len);
	(void) pq_flush();
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
	char		msg[128];

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

	pq_beginmessage(&buf, 'W');
	pq_sendbyte(&buf, 0);
	pq_sendint16(&buf, 0);
	pq_endmessage(&buf);
	pq_flush();
}

Datum
standbyd_serve(PG_FUNCTION_ARGS)
{
	MemoryContext request_cxt;
	MemoryContext loop_cxt;
	StringInfoData in;
	StringInfoData out;
	uint64		requests = 0;
	TimestampTz last_message;

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
#if PG_VERSION_NUM >= 170000
	if (get_timeout_active(TRANSACTION_TIMEOUT))
		disable_timeout(TRANSACTION_TIMEOUT, false);
#endif

	if (SPI_connect_ext(SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect_ext failed");

	send_copy_both_response();

	/*
	 * Commit the CALL's transaction now: this releases the snapshot taken for
	 * the CALL, so the backend advertises no xmin while the channel is idle.
	 * SPI_commit starts a fresh transaction, which takes no snapshot until
	 * something asks for one, and built-in ops never do.
	 */
	SPI_commit();

	if (standbyd_log_sessions)
		ereport(LOG,
				(errmsg("standbyd channel opened"),
				 errdetail("Protocol version %d, max frame size %d bytes, idle timeout %d ms.",
						   SBD_PROTOCOL_VERSION, standbyd_max_frame_size, standbyd_idle_timeout)));

	/* Buffers live across requests; each request's work has its own context. */
	loop_cxt = AllocSetContextCreate(CurrentMemoryContext,
									 "standbyd channel",
									 ALLOCSET_DEFAULT_SIZES);
	request_cxt = AllocSetContextCreate(loop_cxt,
										"standbyd request",
										ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(loop_cxt);
	initStringInfo(&in);
	initStringInfo(&out);
	last_message = GetCurrentTimestamp();

	for (;;)
	{
		ReadResult	rr;
		MemoryContext oldcxt;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* assign hooks may have looked at catalogs */
			InvalidateCatalogSnapshot();
		}

		rr = read_frontend_message(&in);
		if (rr == READ_NOTHING)
		{
			wait_for_client(last_message);
			continue;
		}
		if (standbyd_idle_timeout > 0)
			last_message = GetCurrentTimestamp();
		if (rr == READ_COPYDONE)
			break;
		if (rr == READ_IGNORED)
			continue;

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

	/* Answer CopyDone with CopyDone; CommandComplete follows from the CALL. */
	pq_putemptymessage('c');
	pq_flush();

	if (standbyd_log_sessions)
		ereport(LOG,
				(errmsg("standbyd channel closed by the client after " UINT64_FORMAT " requests",
						requests)));

	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(loop_cxt);
	SPI_finish();

	PG_RETURN_VOID();
}
