/*-------------------------------------------------------------------------
 *
 * standbyd_ops.c
 *		Built-in operations of the standbyd channel: hello, ping and N.
 *
 * Each operation reads its payload with explicit length checks and writes
 * one reply.  A bad payload is answered with an error frame (SQLSTATE and
 * message), never with ereport(ERROR): an error that escapes the procedure
 * would end the channel.  See docs/protocol.md for the payload layouts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "replication/walreceiver.h"
#include "common/int.h"
#include "port/pg_bswap.h"
#include "datatype/timestamp.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "standbyd_handlers.h"
#include "standbyd_ops.h"
#include "standbyd_sqlops.h"

typedef struct SbdBuiltinOp
{
	uint16		op;
	const char *name;
	SbdOpHandler handler;
	bool		in_transaction; /* reads catalogs or relations */
} SbdBuiltinOp;

static void op_hello(const SbdRequest *req, StringInfo out);
static void op_ping(const SbdRequest *req, StringInfo out);
static void op_n(const SbdRequest *req, StringInfo out);
static void op_wal(const SbdRequest *req, StringInfo out);

static const SbdBuiltinOp builtin_ops[] = {
	{SBD_OP_HELLO, "hello", op_hello, true},
	{SBD_OP_PING, "ping", op_ping, false},
	{SBD_OP_N, "N", op_n, false},
	{SBD_OP_SETTING, "setting", sbd_op_setting, true},
	{SBD_OP_WAL, "wal", op_wal, false},
	{SBD_OP_PAGE, "page", sbd_op_page, true},
};

#define NUM_BUILTIN_OPS lengthof(builtin_ops)

/* Microseconds between the PostgreSQL epoch (2000-01-01) and the Unix epoch. */
#define SBD_EPOCH_OFFSET_USECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC)

/*
 * The WAL position worth reporting: flushed WAL on a primary (what a standby
 * can receive), replayed WAL on a hot standby.
 */
static XLogRecPtr
current_wal_position(TimeLineID *tli, bool *in_recovery)
{
	*in_recovery = RecoveryInProgress();
	if (*in_recovery)
		return GetXLogReplayRecPtr(tli);
	return GetFlushRecPtr(tli);
}

static uint32
server_version_num(void)
{
	const char *s = GetConfigOption("server_version_num", false, false);

	return s ? (uint32) strtoul(s, NULL, 10) : (uint32) PG_VERSION_NUM;
}

/*
 * Hello's errors come before a version is chosen (or while it is chosen
 * again), so they keep the version-1 layout whatever the channel speaks.
 */
static void
hello_error(StringInfo out, const SbdRequest *req, const char *sqlstate,
			const char *message)
{
	sbd_reply_error_full(out, 1, req->op, req->id, sqlstate, message, NULL, NULL);
}

static void
op_hello(const SbdRequest *req, StringInfo out)
{
	uint16		min_version;
	uint16		max_version;
	uint32		name_len;
	TimeLineID	tli = 0;
	bool		in_recovery;
	char		msg[128];
	int			count_at;
	uint16		nops;
	uint16		version;

	if (req->payload_len < 8)
	{
		hello_error(out, req, "22023",
						"hello payload must be at least 8 bytes");
		return;
	}
	min_version = sbd_get_u16(req->payload);
	max_version = sbd_get_u16(req->payload + 2);
	name_len = req->payload_len - 8;
	if (name_len > SBD_HELLO_NAME_MAX)
	{
		hello_error(out, req, "22023",
						"hello client name is longer than 64 bytes");
		return;
	}
	if (min_version > SBD_PROTOCOL_VERSION_MAX || max_version < SBD_PROTOCOL_VERSION_MIN ||
		min_version > max_version)
	{
		snprintf(msg, sizeof(msg),
				 "no common protocol version: client speaks %u to %u, server speaks %u to %u",
				 min_version, max_version, SBD_PROTOCOL_VERSION_MIN, SBD_PROTOCOL_VERSION_MAX);
		hello_error(out, req, "08P01", msg);
		return;
	}
	version = Min(max_version, SBD_PROTOCOL_VERSION_MAX);

	/* Replies larger than this become error replies (0: not announced). */
	standbyd_client_max_frame = sbd_get_u32(req->payload + 4);

	(void) current_wal_position(&tli, &in_recovery);

	sbd_reply_begin(out, req->op, req->id);
	sbd_put_u16(out, version);
	sbd_put_u16(out, in_recovery ? 1 : 0);
	sbd_put_u32(out, server_version_num());
	sbd_put_u64(out, GetSystemIdentifier());
	sbd_put_u32(out, tli);
	sbd_put_u32(out, (uint32) standbyd_max_frame_size);
	count_at = out->len;
	sbd_put_u16(out, 0);		/* op count, set below */
	for (int i = 0; i < NUM_BUILTIN_OPS; i++)
	{
		size_t		len = strlen(builtin_ops[i].name);

		sbd_put_u16(out, builtin_ops[i].op);
		sbd_put_u8(out, SBD_OPFLAG_BUILTIN);
		sbd_put_u8(out, (uint8) len);
		appendBinaryStringInfoNT(out, builtin_ops[i].name, len);
	}
	nops = NUM_BUILTIN_OPS + sbd_handlers_append_hello(out);
	nops = pg_hton16(nops);
	memcpy(out->data + count_at, &nops, sizeof(nops));
	sbd_reply_finish(out);
	standbyd_session_version = version;
}

static void
op_ping(const SbdRequest *req, StringInfo out)
{
	TimeLineID	tli = 0;
	bool		in_recovery;
	XLogRecPtr	lsn;

	if (req->payload_len != 0)
	{
		sbd_reply_error(out, req->op, req->id, "22023",
						"ping takes no payload");
		return;
	}

	lsn = current_wal_position(&tli, &in_recovery);

	sbd_reply_begin(out, req->op, req->id);
	sbd_put_u64(out, (uint64) (GetCurrentTimestamp() + SBD_EPOCH_OFFSET_USECS));
	sbd_put_u64(out, (uint64) lsn);
	sbd_put_u32(out, tli);
	sbd_put_u8(out, in_recovery ? 1 : 0);
	sbd_reply_finish(out);
}

/* The demo operation of the original design: three int32, each plus 300. */
static void
op_n(const SbdRequest *req, StringInfo out)
{
	int32		result[3];

	if (req->payload_len != 12)
	{
		sbd_reply_error(out, req->op, req->id, "22023",
						"N takes exactly three int32 (12 bytes)");
		return;
	}
	for (int i = 0; i < 3; i++)
	{
		int32		v = (int32) sbd_get_u32(req->payload + 4 * i);

		if (pg_add_s32_overflow(v, 300, &result[i]))
		{
			sbd_reply_error(out, req->op, req->id, "22003",
							"integer out of range");
			return;
		}
	}

	sbd_reply_begin(out, req->op, req->id);
	for (int i = 0; i < 3; i++)
		sbd_put_u32(out, (uint32) result[i]);
	sbd_reply_finish(out);
}

/*
 * The WAL positions a standby operator wants, in one reply:
 * flags (u8, bit 0 in recovery), timeline (u32), then u64 LSNs: insert,
 * write, flush (0 in recovery), received and replayed (0 on a primary),
 * and the commit timestamp of the last replayed transaction (i64 us since
 * the Unix epoch, 0 when unknown or on a primary).
 */
static void
op_wal(const SbdRequest *req, StringInfo out)
{
	TimeLineID	tli = 0;
	bool		in_recovery;
	XLogRecPtr	insert = 0,
				write = 0,
				flush = 0,
				received = 0,
				replayed = 0;
	int64		replay_ts = 0;

	if (req->payload_len != 0)
	{
		sbd_reply_error(out, req->op, req->id, "22023", "wal takes no payload");
		return;
	}
	in_recovery = RecoveryInProgress();
	if (in_recovery)
	{
		TimeLineID	rtli;
		TimestampTz ts;

		received = GetWalRcvFlushRecPtr(NULL, &rtli);
		replayed = GetXLogReplayRecPtr(&tli);
		ts = GetLatestXTime();
		if (ts != 0)
			replay_ts = ts + SBD_EPOCH_OFFSET_USECS;
	}
	else
	{
		insert = GetXLogInsertRecPtr();
		write = GetXLogWriteRecPtr();
		flush = current_wal_position(&tli, &in_recovery);
	}

	sbd_reply_begin(out, req->op, req->id);
	sbd_put_u8(out, in_recovery ? 1 : 0);
	sbd_put_u32(out, tli);
	sbd_put_u64(out, insert);
	sbd_put_u64(out, write);
	sbd_put_u64(out, flush);
	sbd_put_u64(out, received);
	sbd_put_u64(out, replayed);
	sbd_put_u64(out, (uint64) replay_ts);
	sbd_reply_finish(out);
}

void
sbd_dispatch(const SbdRequest *req, StringInfo out)
{
	for (int i = 0; i < NUM_BUILTIN_OPS; i++)
	{
		if (builtin_ops[i].op == req->op)
		{
			if (builtin_ops[i].in_transaction)
				sbd_run_in_transaction(req, out, builtin_ops[i].handler);
			else
				builtin_ops[i].handler(req, out);
			return;
		}
	}
	if (req->op >= SBD_FIRST_USER_OP)
	{
		sbd_run_in_transaction(req, out, sbd_op_user_handler);
		return;
	}
	{
		char		msg[64];

		snprintf(msg, sizeof(msg), "unknown op 0x%04X", req->op);
		sbd_reply_error(out, req->op, req->id, "42883", msg);
	}
}
