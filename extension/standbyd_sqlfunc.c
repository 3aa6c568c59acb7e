/*-------------------------------------------------------------------------
 *
 * standbyd_sqlfunc.c
 *		LANGUAGE sql handlers run from a plan kept across calls.
 *
 * Before PostgreSQL 18 a SQL function called through fmgr keeps its plans
 * only within one transaction: the channel commits after every request, so
 * each call would parse, analyse and plan the body again.  For the common
 * shape of a handler (one statement, its single column bytea, no SET clause,
 * not SECURITY DEFINER, a string body) the body is instead prepared once
 * with the SQL-function parser hooks (parameters by name or $1) and kept in
 * the plan cache, which re-plans it after DDL or a search_path change like
 * any prepared statement.  It runs with the function's semantics: a
 * volatile function sees a fresh snapshot, a stable or immutable one the
 * request's; the first row is the result, no row is NULL.  Anything else
 * goes through fmgr.  From 18 on fmgr_sql keeps its plans itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/functions.h"
#include "executor/spi.h"
#include "nodes/params.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/syscache.h"

#include "standbyd_sqlfunc.h"

#if PG_VERSION_NUM < 180000

/* Prepare h's body if it has the shape described above; false otherwise. */
static bool
prepare(SbdHandler *h, MemoryContext keep_cxt)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		usable;
	char	   *src = NULL;
	SQLFunctionParseInfoPtr pinfo = NULL;
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *ps;
	MemoryContext old;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(h->func));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	usable = proc->prolang == SQLlanguageId && !proc->prosecdef &&
		heap_attisnull(tup, Anum_pg_proc_proconfig, NULL) &&
		heap_attisnull(tup, Anum_pg_proc_prosqlbody, NULL);
	if (usable)
	{
		bool		isnull;
		Datum		d = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);

		usable = !isnull;
		if (usable)
		{
			h->sql_read_only = proc->provolatile != PROVOLATILE_VOLATILE;
			old = MemoryContextSwitchTo(keep_cxt);
			src = TextDatumGetCString(d);
			/* the plan cache calls the parser hook again when it re-plans */
			pinfo = prepare_sql_fn_parse_info(tup, NULL, InvalidOid);
			MemoryContextSwitchTo(old);
		}
	}
	ReleaseSysCache(tup);
	if (!usable)
		return false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare_params(src, (ParserSetupHook) sql_fn_parser_setup, pinfo, 0);
	if (plan == NULL)
		elog(ERROR, "preparing the body of handler \"%s\" failed: %s",
			 h->name, SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	ps = list_length(sources) == 1 ? (CachedPlanSource *) linitial(sources) : NULL;
	usable = ps != NULL && ps->resultDesc != NULL &&
		ps->resultDesc->natts == 1 &&
		TupleDescAttr(ps->resultDesc, 0)->atttypid == BYTEAOID;
	if (usable)
	{
		/* A SELECT stops at its first row; DML ... RETURNING runs to the end. */
		h->sql_tcount = ps->commandTag == CMDTAG_SELECT ? 1 : 0;
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		h->sql_plan = plan;
	}
	else
		SPI_freeplan(plan);
	SPI_finish();
	return usable;
}

bool
sbd_sqlfunc_call(SbdHandler *h, MemoryContext keep_cxt,
				 const char *payload, uint32 len,
				 StringInfo out, bool *isnull)
{
	ParamListInfo params;
	bytea	   *arg;
	int			rc;

	if (h->sql_state == SBD_SQLFUNC_UNKNOWN)
		h->sql_state = prepare(h, keep_cxt) ? SBD_SQLFUNC_PLAN : SBD_SQLFUNC_FMGR;
	if (h->sql_state != SBD_SQLFUNC_PLAN)
		return false;

	arg = (bytea *) palloc(VARHDRSZ + len);
	SET_VARSIZE(arg, VARHDRSZ + len);
	memcpy(VARDATA(arg), payload, len);
	/* The body names its parameter through the parser hook: $1 is bytea. */
	params = makeParamList(1);
	params->params[0].value = PointerGetDatum(arg);
	params->params[0].isnull = false;
	params->params[0].pflags = PARAM_FLAG_CONST;
	params->params[0].ptype = BYTEAOID;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_plan_with_paramlist((SPIPlanPtr) h->sql_plan, params,
										 h->sql_read_only, h->sql_tcount);
	if (rc < 0)
		elog(ERROR, "running handler \"%s\" failed: %s",
			 h->name, SPI_result_code_string(rc));
	*isnull = true;
	if (SPI_processed > 0 && SPI_tuptable != NULL)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);

		if (!*isnull)
		{
			/* detoasted and copied while SPI's snapshot and memory live */
			bytea	   *result = DatumGetByteaPP(d);

			appendBinaryStringInfoNT(out, VARDATA_ANY(result), VARSIZE_ANY_EXHDR(result));
		}
	}
	SPI_finish();
	return true;
}

void
sbd_sqlfunc_release(SbdHandler *h)
{
	if (h->sql_plan != NULL)
		SPI_freeplan((SPIPlanPtr) h->sql_plan);
	h->sql_plan = NULL;
	h->sql_state = SBD_SQLFUNC_UNKNOWN;
}

#else							/* PG_VERSION_NUM >= 180000 */

bool
sbd_sqlfunc_call(SbdHandler *h, MemoryContext keep_cxt,
				 const char *payload, uint32 len,
				 StringInfo out, bool *isnull)
{
	return false;
}

void
sbd_sqlfunc_release(SbdHandler *h)
{
}

#endif
