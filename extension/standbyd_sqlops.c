/*-------------------------------------------------------------------------
 *
 * standbyd_sqlops.c
 *		Operations of the standbyd channel that run SQL or touch relations:
 *		DBA-registered handlers, the settings read, page images, and the
 *		list of registered operations for hello.
 *
 * Each request runs in its own subtransaction with statement_timeout armed,
 * so that an error in a handler (a constraint violation, a cancel, a
 * timeout) becomes an error reply and the channel goes on.  The transaction
 * is committed before the reply is sent: a reply never reports a write that
 * could still be lost, and the backend holds no snapshot and no lock between
 * requests.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "standbyd_sqlops.h"

/* Where DBAs register handlers (extension version 1.1 and later). */
#define REGISTRY_SCHEMA "standbyd"
#define REGISTRY_TABLE "handlers"

static SPIPlanPtr lookup_plan = NULL;

/* Is the registry table there (an extension still at 1.0 has none)? */
static bool
registry_exists(void)
{
	Oid			nsp = get_namespace_oid(REGISTRY_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid(REGISTRY_TABLE, nsp));
}

void
sbd_run_in_transaction(const SbdRequest *req, StringInfo out, SbdOpHandler body)
{
	MemoryContext reqcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	/*
	 * This transaction began when the previous request committed, perhaps
	 * long ago: see catalog changes committed since then (a GRANT, a new
	 * handler) before checking anything.
	 */
	AcceptInvalidationMessages();

	if (StatementTimeout > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);

	BeginInternalSubTransaction(NULL);
	/* Results live in the request's context, not the subtransaction's. */
	MemoryContextSwitchTo(reqcxt);

	PG_TRY();
	{
		body(req, out);
		/* A cancel that arrived during the body is answered here, too. */
		CHECK_FOR_INTERRUPTS();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(reqcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(reqcxt);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(reqcxt);
		CurrentResourceOwner = oldowner;

		sbd_reply_error(out, req->op, req->id,
						unpack_sql_state(edata->sqlerrcode),
						edata->message ? edata->message : "error without a message");
		FreeErrorData(edata);
	}
	PG_END_TRY();

	if (get_timeout_active(STATEMENT_TIMEOUT))
		disable_timeout(STATEMENT_TIMEOUT, false);

	/*
	 * Commit before the reply goes out.  A commit can fail (a deferred
	 * constraint, a serialization failure): SPI then aborts, starts a new
	 * transaction and rethrows, and the client gets that error instead of
	 * the reply.
	 */
	PG_TRY();
	{
		SPI_commit();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(reqcxt);
		edata = CopyErrorData();
		FlushErrorState();
		sbd_reply_error(out, req->op, req->id,
						unpack_sql_state(edata->sqlerrcode),
						edata->message ? edata->message : "commit failed");
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(reqcxt);
}

/*
 * Find the function registered for op; InvalidOid when there is none.  name
 * receives the registered name.
 */
static Oid
lookup_handler(uint16 op, char **name)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		args[1];
	Oid			argtypes[1] = {INT4OID};
	bool		isnull;
	Oid			func;
	int			rc;

	if (!registry_exists())
		return InvalidOid;

	if (lookup_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT handler::pg_catalog.oid, name FROM "
									   REGISTRY_SCHEMA "." REGISTRY_TABLE " WHERE op = $1",
									   1, argtypes);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		lookup_plan = plan;
	}
	args[0] = Int32GetDatum((int32) op);
	rc = SPI_execute_plan(lookup_plan, args, NULL, false, 1);
	/* SPI returns in its own procedure context: back to the request's. */
	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "looking up the handler failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return InvalidOid;
	}
	func = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	/* A tuple table made in a committed subtransaction lives until SPI_finish. */
	SPI_freetuptable(SPI_tuptable);
	return isnull ? InvalidOid : func;
}

/* A handler must be a plain function (bytea) returns bytea. */
static void
check_handler_signature(Oid func, const char *name)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function registered for handler \"%s\" no longer exists", name)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->prorettype == BYTEAOID && proc->pronargs == 1 &&
		proc->proargtypes.values[0] == BYTEAOID;
	ReleaseSysCache(tup);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler \"%s\" is not a function (bytea) returning bytea", name)));
}

void
sbd_op_user_handler(const SbdRequest *req, StringInfo out)
{
	char	   *name = NULL;
	Oid			func;
	AclResult	aclresult;
	FmgrInfo	flinfo;
	bytea	   *arg;
	bytea	   *result;
	Datum		value;

	LOCAL_FCINFO(fcinfo, 1);

	func = lookup_handler(req->op, &name);
	if (!OidIsValid(func))
	{
		char		msg[64];

		snprintf(msg, sizeof(msg), "unknown op 0x%04X", req->op);
		sbd_reply_error(out, req->op, req->id, "42883", msg);
		return;
	}
	check_handler_signature(func, name);

	/* The handler runs with the session user's rights (or its owner's, if
	 * SECURITY DEFINER, which fmgr arranges). */
#if PG_VERSION_NUM >= 160000
	aclresult = object_aclcheck(ProcedureRelationId, func, GetUserId(), ACL_EXECUTE);
#else
	aclresult = pg_proc_aclcheck(func, GetUserId(), ACL_EXECUTE);
#endif
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(func));
	InvokeFunctionExecuteHook(func);

	arg = (bytea *) palloc(VARHDRSZ + req->payload_len);
	SET_VARSIZE(arg, VARHDRSZ + req->payload_len);
	memcpy(VARDATA(arg), req->payload, req->payload_len);

	fmgr_info(func, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(arg);
	fcinfo->args[0].isnull = false;

	PushActiveSnapshot(GetTransactionSnapshot());
	value = FunctionCallInvoke(fcinfo);
	PopActiveSnapshot();

	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler \"%s\" returned NULL", name)));
	result = DatumGetByteaPP(value);

	sbd_reply_begin(out, req->op, req->id);
	appendBinaryStringInfoNT(out, VARDATA_ANY(result), VARSIZE_ANY_EXHDR(result));
	sbd_reply_finish(out);
}

/* The primary's current value of a setting, as SHOW would print it. */
void
sbd_op_setting(const SbdRequest *req, StringInfo out)
{
	char	   *name;
	char	   *value;
	int			flags;

	if (req->payload_len == 0 || req->payload_len > NAMEDATALEN * 2 ||
		memchr(req->payload, '\0', req->payload_len) != NULL)
	{
		sbd_reply_error(out, req->op, req->id, "22023",
						"setting takes the name of a configuration parameter");
		return;
	}
	name = pnstrdup(req->payload, req->payload_len);
	flags = GetConfigOptionFlags(name, true);
	value = GetConfigOptionByName(name, NULL, true);
	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unrecognized configuration parameter \"%s\"", name)));
	if ((flags & GUC_SUPERUSER_ONLY) != 0 &&
		!has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or have privileges of pg_read_all_settings to read \"%s\"", name)));

	sbd_reply_begin(out, req->op, req->id);
	appendBinaryStringInfoNT(out, value, strlen(value));
	sbd_reply_finish(out);
}

/*
 * A page image: fork (u8), block number (u32), relation name (text,
 * optionally schema-qualified).  Like pageinspect's get_raw_page it reads
 * the page through shared buffers under a share lock.  It exposes every
 * tuple on the page, live or dead, so it needs superuser or the privileges
 * of pg_read_all_data (superuser only before PostgreSQL 14).
 */
void
sbd_op_page(const SbdRequest *req, StringInfo out)
{
	uint8		fork;
	BlockNumber blkno;
	char	   *relname;
	RangeVar   *rv;
	Relation	rel;
	Buffer		buf;

	if (req->payload_len < 6 || req->payload_len > 6 + NAMEDATALEN * 2 + 1 ||
		memchr(req->payload + 5, '\0', req->payload_len - 5) != NULL)
	{
		sbd_reply_error(out, req->op, req->id, "22023",
						"page takes a fork (u8), a block number (u32) and a relation name");
		return;
	}
	fork = (uint8) req->payload[0];
	blkno = sbd_get_u32(req->payload + 1);
	if (fork > MAX_FORKNUM)
	{
		sbd_reply_error(out, req->op, req->id, "22023", "invalid fork number");
		return;
	}

#if PG_VERSION_NUM >= 140000
	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_DATA))
#else
	if (!superuser())
#endif
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser or have privileges of pg_read_all_data to read raw pages")));

	relname = pnstrdup(req->payload + 5, req->payload_len - 5);
#if PG_VERSION_NUM >= 160000
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(relname, NULL));
#else
	rv = makeRangeVarFromNameList(stringToQualifiedNameList(relname));
#endif
	rel = relation_openrv(rv, AccessShareLock);

	if (!RELKIND_HAS_STORAGE(rel->rd_rel->relkind))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" has no storage", RelationGetRelationName(rel))));
	if (RELATION_IS_OTHER_TEMP(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary tables of other sessions")));
	if (blkno >= RelationGetNumberOfBlocksInFork(rel, (ForkNumber) fork))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("block number %u is out of range for relation \"%s\"",
						blkno, RelationGetRelationName(rel))));

	buf = ReadBufferExtended(rel, (ForkNumber) fork, blkno, RBM_NORMAL, NULL);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	sbd_reply_begin(out, req->op, req->id);
	appendBinaryStringInfoNT(out, (const char *) BufferGetPage(buf), BLCKSZ);
	sbd_reply_finish(out);
	UnlockReleaseBuffer(buf);

	relation_close(rel, AccessShareLock);
}

/*
 * Append the registered handlers as hello op entries; returns how many.
 * Runs inside sbd_run_in_transaction (hello is a transaction op).
 */
int
sbd_append_registered_ops(StringInfo out)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc;
	int			n = 0;

	if (!registry_exists())
		return 0;
	rc = SPI_execute("SELECT op, name FROM " REGISTRY_SCHEMA "." REGISTRY_TABLE " ORDER BY op",
					 false, 0);
	MemoryContextSwitchTo(cxt);	/* SPI leaves us in its procedure context */
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "listing handlers failed: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed && i < 65535 - 64; i++)
	{
		bool		isnull;
		int32		op = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		size_t		len = name ? Min(strlen(name), 255) : 0;

		sbd_put_u16(out, (uint16) op);
		sbd_put_u8(out, 0);
		sbd_put_u8(out, (uint8) len);
		if (len > 0)
			appendBinaryStringInfoNT(out, name, len);
		n++;
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}
