/*-------------------------------------------------------------------------
 *
 * standbyd_sqlops.c
 *		Operations of the standbyd channel that run SQL or touch relations:
 *		DBA-registered handlers, the settings read, page images, and the
 *		list of registered operations for hello.
 *
 * Each runs as the body of sbd_run_in_transaction (standbyd_xact.c): in a
 * transaction of its own with an active snapshot, committed before the
 * reply; an ERROR raised here becomes the error reply.
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
#include "common/relpath.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "storage/smgr.h"
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

#include "standbyd_compat.h"
#include "standbyd_handlers.h"
#include "standbyd_sqlfunc.h"
#include "standbyd_sqlops.h"

/*
 * Longest relation name page takes: two identifiers of NAMEDATALEN - 1
 * bytes, each quoted with every character a doubled quote, and the dot.
 */
#define PAGE_RELNAME_MAX (2 * (2 * (NAMEDATALEN - 1) + 2) + 1)

void
sbd_op_user_handler(const SbdRequest *req, StringInfo out)
{
	SbdHandler *h;
	AclResult	aclresult;
	bytea	   *arg;
	bytea	   *result;
	Datum		value;
	bool		isnull;

	LOCAL_FCINFO(fcinfo, 1);

	h = sbd_handler_lookup(req->op);
	if (h == NULL)
	{
		char		msg[64];

		snprintf(msg, sizeof(msg), "unknown op 0x%04X", req->op);
		sbd_reply_error(out, req->op, req->id, "42883", msg);
		return;
	}
	if (!OidIsValid(h->func))
		ereport(ERROR, (errcode(h->errcode), errmsg("%s", h->errmsg)));

	/*
	 * Checked on every call (a syscache probe): a REVOKE takes effect at
	 * once.  The handler runs with the session user's rights (or its
	 * owner's, if SECURITY DEFINER, which fmgr arranges).
	 */
	aclresult = sbd_proc_aclcheck(h->func, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(h->func));
	InvokeFunctionExecuteHook(h->func);

	sbd_reply_begin(out, req->op, req->id);
	if (sbd_sqlfunc_call(h, sbd_handlers_memory(), req->payload, req->payload_len,
						 out, &isnull))
	{
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("handler \"%s\" returned NULL", h->name)));
		sbd_reply_finish(out);
		return;
	}

	arg = (bytea *) palloc(VARHDRSZ + req->payload_len);
	SET_VARSIZE(arg, VARHDRSZ + req->payload_len);
	memcpy(VARDATA(arg), req->payload, req->payload_len);

	InitFunctionCallInfoData(*fcinfo, sbd_handler_fmgr(h), 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(arg);
	fcinfo->args[0].isnull = false;

	value = FunctionCallInvoke(fcinfo);

	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler \"%s\" returned NULL", h->name)));

	/* Detoasted and copied while the snapshot is still active. */
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

	/* Frames carry UTF-8 whatever the database encoding. */
	value = pg_server_to_any(value, strlen(value), PG_UTF8);
	sbd_reply_begin(out, req->op, req->id);
	appendBinaryStringInfoNT(out, value, strlen(value));
	sbd_reply_finish(out);
}

/*
 * A page image: fork (u8), block number (u32), relation name (text,
 * optionally schema-qualified).  Like pageinspect's get_raw_page it reads
 * the page through shared buffers under a share lock.  It exposes every
 * tuple on the page, live or dead, and rows that row-level security hides,
 * so it needs superuser, as get_raw_page does.
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

	if (req->payload_len < 6 || req->payload_len > 5 + PAGE_RELNAME_MAX ||
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

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be superuser to read raw pages")));

	relname = pnstrdup(req->payload + 5, req->payload_len - 5);
	rv = makeRangeVarFromNameList(sbd_string_to_qualified_name_list(relname));
	rel = relation_openrv(rv, AccessShareLock);

	if (!RELKIND_HAS_STORAGE(rel->rd_rel->relkind))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" has no storage", RelationGetRelationName(rel))));
	if (RELATION_IS_OTHER_TEMP(rel))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot access temporary tables of other sessions")));
	if (!smgrexists(RelationGetSmgr(rel), (ForkNumber) fork))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation \"%s\" has no %s fork",
						RelationGetRelationName(rel), forkNames[fork])));
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
