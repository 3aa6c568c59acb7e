/*-------------------------------------------------------------------------
 *
 * standbyd_xact.c
 *		Transactions of the standbyd channel.
 *
 * The channel holds nothing between requests: after the CALL's transaction
 * is committed the backend stays outside any transaction while idle, the
 * way VACUUM runs between tables.  So no snapshot, no lock, no
 * xact_start and no transaction timer exist while the channel waits.
 *
 * A request that reads catalogs or runs SQL gets a top-level transaction of
 * its own: started when the request arrives, committed before its reply is
 * sent, rolled back (AbortCurrentTransaction, as PostgresMain does) when it
 * fails.  Running the handler at top level rather than in a subtransaction
 * is cheaper, and a recovery conflict on a hot standby then cancels the
 * request (ERROR) instead of ending the session (FATAL).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "standbyd_xact.h"

/* Timers that belong to one transaction or statement, never to idle time. */
static void
disarm_timers(void)
{
	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);
#if PG_VERSION_NUM >= 170000
	if (get_timeout_active(TRANSACTION_TIMEOUT))
		disable_timeout(TRANSACTION_TIMEOUT, false);
#endif
}

void
sbd_xact_leave_call(void)
{
	/* The same steps as a COMMIT inside a procedure (_SPI_commit). */
	HoldPinnedPortals();
	ForgetPortalSnapshots();
	CommitTransactionCommand();
	disarm_timers();
}

void
sbd_xact_reenter_call(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	disarm_timers();
}

/* Does this backend still hold a lock now that its transaction is over? */
static bool
holds_session_locks(void)
{
	for (int i = 0; i < NUM_LOCK_PARTITIONS; i++)
	{
#if PG_VERSION_NUM >= 160000
		if (!dlist_is_empty(&MyProc->myProcLocks[i]))
			return true;
#else
		if (!SHMQueueEmpty(&MyProc->myProcLocks[i]))
			return true;
#endif
	}
	return false;
}

/*
 * Only session-level locks survive the end of a transaction, and a handler
 * can take only advisory ones: release them, so that the channel holds no
 * lock between requests, and say so in the server log.
 */
static void
release_session_locks(uint16 op)
{
	if (!holds_session_locks())
		return;
	LockReleaseSession(USER_LOCKMETHOD);
	ereport(LOG_SERVER_ONLY,
			(errmsg("standbyd released session-level advisory locks taken by op %u", op),
			 errdetail("A channel request cannot keep a lock after its reply.")));
}

/*
 * Frames carry UTF-8.  An error's message, detail and hint are in the
 * database's encoding; after the rollback no catalog can be read, so only
 * the client encoding's cached conversion is used (standbyd asks for UTF8),
 * and any other case keeps ASCII only.
 */
static const char *
message_in_utf8(const char *msg)
{
	int			enc = GetDatabaseEncoding();
	char	   *copy;

	if (enc == PG_UTF8)
		return msg;
	if (enc != PG_SQL_ASCII && pg_get_client_encoding() == PG_UTF8)
		return pg_server_to_any(msg, strlen(msg), PG_UTF8);
	copy = pstrdup(msg);
	for (char *p = copy; *p; p++)
		if (IS_HIGHBIT_SET(*p))
			*p = '?';
	return copy;
}

void
sbd_run_in_transaction(const SbdRequest *req, StringInfo out, SbdOpHandler body)
{
	MemoryContext reqcxt = CurrentMemoryContext;

	/* now(), statement_timestamp() and xact_start are this request's time. */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(reqcxt);

	PG_TRY();
	{
		/* Settings changed by the request (SET, set_config) end with it. */
		int			guc_level = NewGUCNestLevel();

		if (StatementTimeout > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
		PushActiveSnapshot(GetTransactionSnapshot());

		body(req, out);

		/* A cancel that arrived during the body is answered here, too. */
		CHECK_FOR_INTERRUPTS();
		PopActiveSnapshot();
		AtEOXact_GUC(false, guc_level);
		if (get_timeout_active(STATEMENT_TIMEOUT))
			disable_timeout(STATEMENT_TIMEOUT, false);

		/*
		 * Commit before the reply goes out.  A commit can fail (a deferred
		 * constraint, a serialization failure): the client then gets that
		 * error instead of the reply.
		 */
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(reqcxt);
		edata = CopyErrorData();
		FlushErrorState();

		/* As PostgresMain recovers from an ERROR, without sending it. */
		HOLD_INTERRUPTS();
		disarm_timers();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		MemoryContextSwitchTo(reqcxt);

		sbd_reply_error_full(out, standbyd_session_version, req->op, req->id,
							 unpack_sql_state(edata->sqlerrcode),
							 edata->message ? message_in_utf8(edata->message) : "error without a message",
							 edata->detail ? message_in_utf8(edata->detail) : NULL,
							 edata->hint ? message_in_utf8(edata->hint) : NULL);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	disarm_timers();
	release_session_locks(req->op);
	MemoryContextSwitchTo(reqcxt);
}
