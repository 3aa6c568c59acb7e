/*-------------------------------------------------------------------------
 *
 * standbyd_handlers.c
 *		The handler registry, read once and kept per session.
 *
 * standbyd.handlers maps op codes to functions.  The channel reads the
 * whole table once, resolves each function, checks its signature and its
 * owner, and keeps the result with an FmgrInfo per handler (so a PL's
 * compiled function and a SQL function's plans can outlive one call).  No
 * query runs per request.
 *
 * The cache is dropped when it may be stale:
 * - the registry's statement trigger (extension 1.2) sends a relcache
 *   invalidation of the table on every change, and so does any DDL on it;
 * - any change to a function (CREATE OR REPLACE, DROP, ALTER, GRANT,
 *   REVOKE), a role (superuser status) or a schema (rename) drops it too;
 * - a registry of extension 1.1 has no trigger: it is read again for every
 *   request (correct, not fast; ALTER EXTENSION standbyd UPDATE fixes it);
 * - without a registry (1.0) there is nothing to cache.
 *
 * The handler column is the function's qualified name (1.2) or a
 * regprocedure (1.1); its type is looked at on every fill.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/varlena.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "standbyd_compat.h"
#include "standbyd_handlers.h"
#include "standbyd_protocol.h"
#include "standbyd_sqlfunc.h"

#define REGISTRY_SCHEMA "standbyd"
#define REGISTRY_TABLE "handlers"

static MemoryContext handlers_cxt = NULL;
static SbdHandler *handlers = NULL;
static int	nhandlers = 0;
static bool handlers_valid = false;
static bool fill_complete = false;	/* false while (or after a failed) fill */
static Oid	registry_relid = InvalidOid;

PG_FUNCTION_INFO_V1(standbyd_handlers_changed);

static void
relcache_changed(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) || relid == registry_relid)
		handlers_valid = false;
}

static void
syscache_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	handlers_valid = false;
}

void
sbd_handlers_register_callbacks(void)
{
	static bool registered = false;

	if (registered)
		return;
	CacheRegisterRelcacheCallback(relcache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, syscache_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, syscache_changed, (Datum) 0);
	registered = true;
}

/*
 * The registry's statement-level trigger: tell every session that the
 * table changed, at commit.
 */
Datum
standbyd_handlers_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("standbyd_handlers_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}

static void
set_unusable(SbdHandler *h, int errcode, const char *fmt, const char *a, const char *b, const char *c)
{
	h->func = InvalidOid;
	h->errcode = errcode;
	h->errmsg = psprintf(fmt, a, b, c);
}

/*
 * Check the function found for h and make h usable, or record why not:
 * it must be a plain function (bytea) returning bytea, and owned by a
 * superuser, the registry's owner or the channel's session user (anyone
 * else could replace its body and run it with the channel role's rights).
 */
static void
resolve(SbdHandler *h, Oid func, const char *shown, Oid registry_owner)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(func));
	Form_pg_proc proc;
	Oid			owner;
	bool		ok;

	if (!HeapTupleIsValid(tup))
	{
		set_unusable(h, ERRCODE_UNDEFINED_FUNCTION,
					 "function %s registered for handler \"%s\" does not exist%s",
					 shown, h->name, "");
		return;
	}
	h->found = func;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->prorettype == BYTEAOID && proc->pronargs == 1 &&
		proc->proargtypes.values[0] == BYTEAOID;
	owner = proc->proowner;
	ReleaseSysCache(tup);
	if (!ok)
	{
		set_unusable(h, ERRCODE_INVALID_FUNCTION_DEFINITION,
					 "handler \"%s\" is not a function (bytea) returning bytea%s%s",
					 h->name, "", "");
		return;
	}
	if (!superuser_arg(owner) && owner != registry_owner && owner != GetSessionUserId())
	{
		char	   *role = GetUserNameFromId(owner, true);

		set_unusable(h, ERRCODE_INSUFFICIENT_PRIVILEGE,
					 "handler \"%s\" is not run: its function %s is owned by role \"%s\", "
					 "which is neither a superuser, the owner of standbyd.handlers, nor the channel's user",
					 h->name, shown, role ? role : "?");
		return;
	}
	h->func = func;
}

/*
 * The function name(bytea), from the parts of its (qualified) name.  A
 * qualified name is looked up directly in pg_proc: like a call by OID, it
 * needs no USAGE on the schema (LookupFuncName would raise without it), and
 * EXECUTE is checked at each call.  An unqualified one (not written by
 * register_handler) goes through the channel session's search_path.
 */
static Oid
lookup_function(List *parts)
{
	Oid			argtypes[1] = {BYTEAOID};
	Oid			nsp;
	Oid			func;
	HeapTuple	tup;

	if (list_length(parts) == 1)
		return LookupFuncName(list_make1(makeString((char *) linitial(parts))),
							  1, argtypes, true);
	nsp = get_namespace_oid((char *) linitial(parts), true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	tup = SearchSysCache3(PROCNAMEARGSNSP,
						  CStringGetDatum((char *) lsecond(parts)),
						  PointerGetDatum(buildoidvector(argtypes, 1)),
						  ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	func = ((Form_pg_proc) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return func;
}

static int
compare_ops(const void *a, const void *b)
{
	return (int) ((const SbdHandler *) a)->op - (int) ((const SbdHandler *) b)->op;
}

/* Read the registry into the cache. */
static void
fill(void)
{
	Oid			nsp;
	Relation	rel;
	TupleDesc	desc;
	TableScanDesc scan;
	TupleTableSlot *slot;
	AttrNumber	att_op = InvalidAttrNumber,
				att_name = InvalidAttrNumber,
				att_handler = InvalidAttrNumber;
	Oid			handler_type = InvalidOid;
	int			allocated = 16;
	MemoryContext old;

	if (handlers_cxt == NULL)
		handlers_cxt = AllocSetContextCreate(CacheMemoryContext,
											 "standbyd handlers",
											 ALLOCSET_SMALL_SIZES);
	else
	{
		for (int i = 0; i < nhandlers; i++)
			sbd_sqlfunc_release(&handlers[i]);
		MemoryContextReset(handlers_cxt);
	}
	handlers = NULL;
	nhandlers = 0;
	fill_complete = false;

	/* Invalidations that arrive while filling empty the cache again. */
	handlers_valid = true;

	nsp = get_namespace_oid(REGISTRY_SCHEMA, true);
	registry_relid = OidIsValid(nsp) ? get_relname_relid(REGISTRY_TABLE, nsp) : InvalidOid;
	if (!OidIsValid(registry_relid))
	{
		/* 1.0, or not installed here: look again next time */
		handlers_valid = false;
		fill_complete = true;
		return;
	}

	rel = table_open(registry_relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		if (strcmp(NameStr(a->attname), "op") == 0 && a->atttypid == INT4OID)
			att_op = a->attnum;
		else if (strcmp(NameStr(a->attname), "name") == 0 && a->atttypid == TEXTOID)
			att_name = a->attnum;
		else if (strcmp(NameStr(a->attname), "handler") == 0)
		{
			att_handler = a->attnum;
			handler_type = a->atttypid;
		}
	}
	if (att_op == InvalidAttrNumber || att_name == InvalidAttrNumber ||
		(handler_type != TEXTOID && handler_type != REGPROCEDUREOID))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("standbyd.handlers does not have the columns this library expects"),
				 errhint("Run ALTER EXTENSION standbyd UPDATE.")));

	old = MemoryContextSwitchTo(handlers_cxt);
	handlers = palloc0(sizeof(SbdHandler) * allocated);
	MemoryContextSwitchTo(old);

	slot = table_slot_create(rel, NULL);
	scan = sbd_table_beginscan(rel, GetActiveSnapshot());
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull_op,
					isnull_name,
					isnull_handler;
		Datum		op = slot_getattr(slot, att_op, &isnull_op);
		Datum		name = slot_getattr(slot, att_name, &isnull_name);
		Datum		handler = slot_getattr(slot, att_handler, &isnull_handler);
		SbdHandler *h;

		if (isnull_op || isnull_name || isnull_handler ||
			DatumGetInt32(op) < 0 || DatumGetInt32(op) > PG_UINT16_MAX)
			continue;			/* the table's constraints rule these out */

		old = MemoryContextSwitchTo(handlers_cxt);
		if (nhandlers == allocated)
		{
			allocated *= 2;
			handlers = repalloc(handlers, sizeof(SbdHandler) * allocated);
		}
		h = &handlers[nhandlers++];
		memset(h, 0, sizeof(*h));
		h->op = (uint16) DatumGetInt32(op);
		h->name = TextDatumGetCString(name);
		if (handler_type == TEXTOID)
		{
			char	   *qualified = TextDatumGetCString(handler);
			char	   *shown = psprintf("%s(bytea)", qualified);
			Oid			func;
			List	   *parts;

			/* One bad row must not break every op: nothing here raises. */
			if (!SplitIdentifierString(pstrdup(qualified), '.', &parts) ||
				list_length(parts) < 1 || list_length(parts) > 2)
			{
				set_unusable(h, ERRCODE_INVALID_NAME,
							 "handler \"%s\" names its function as \"%s\", which is not a schema-qualified function name%s",
							 h->name, qualified, "");
				MemoryContextSwitchTo(old);
				continue;
			}
			func = lookup_function(parts);
			if (!OidIsValid(func))
				set_unusable(h, ERRCODE_UNDEFINED_FUNCTION,
							 "function %s registered for handler \"%s\" does not exist%s",
							 shown, h->name, "");
			else
				resolve(h, func, shown, rel->rd_rel->relowner);
		}
		else
		{
			Oid			func = DatumGetObjectId(handler);

			resolve(h, func, psprintf("with OID %u", func), rel->rd_rel->relowner);
		}
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	qsort(handlers, nhandlers, sizeof(SbdHandler), compare_ops);

	/* A 1.1 registry sends no invalidation when it changes: read it each time. */
	if (handler_type != TEXTOID)
		handlers_valid = false;

	table_close(rel, AccessShareLock);
	fill_complete = true;
}

SbdHandler *
sbd_handler_lookup(uint16 op)
{
	SbdHandler	key;

	if (!handlers_valid || !fill_complete)
		fill();
	if (nhandlers == 0)
		return NULL;
	key.op = op;
	return bsearch(&key, handlers, nhandlers, sizeof(SbdHandler), compare_ops);
}

SbdHandler *
sbd_handler_lookup_name(const char *name)
{
	if (!handlers_valid || !fill_complete)
		fill();
	for (int i = 0; i < nhandlers; i++)
		if (strcmp(handlers[i].name, name) == 0)
			return &handlers[i];
	return NULL;
}

MemoryContext
sbd_handlers_memory(void)
{
	return handlers_cxt;
}

FmgrInfo *
sbd_handler_fmgr(SbdHandler *h)
{
	if (!h->flinfo_ready)
	{
		fmgr_info_cxt(h->func, &h->flinfo, handlers_cxt);
		h->flinfo_ready = true;
	}
	return &h->flinfo;
}

int
sbd_handlers_append_hello(StringInfo out)
{
	int			n = 0;

	if (!handlers_valid || !fill_complete)
		fill();
	for (int i = 0; i < nhandlers && i < 65535 - 64; i++)
	{
		size_t		len = Min(strlen(handlers[i].name), 255);

		sbd_put_u16(out, handlers[i].op);
		sbd_put_u8(out, 0);
		sbd_put_u8(out, (uint8) len);
		appendBinaryStringInfoNT(out, handlers[i].name, len);
		n++;
	}
	return n;
}
