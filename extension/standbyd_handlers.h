/*-------------------------------------------------------------------------
 *
 * standbyd_handlers.h
 *		The per-session cache of the handler registry (standbyd.handlers).
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_HANDLERS_H
#define STANDBYD_HANDLERS_H

#include "fmgr.h"
#include "lib/stringinfo.h"

/* How a LANGUAGE sql handler is run (standbyd_sqlfunc.c). */
typedef enum SbdSqlFuncState
{
	SBD_SQLFUNC_UNKNOWN = 0,	/* not looked at yet */
	SBD_SQLFUNC_PLAN,			/* from its kept plan */
	SBD_SQLFUNC_FMGR			/* through fmgr */
} SbdSqlFuncState;

/* One registered op, resolved when the cache was filled. */
typedef struct SbdHandler
{
	uint16		op;
	char	   *name;
	Oid			func;			/* InvalidOid: unusable, see err* */
	Oid			found;			/* the function named, even when unusable */
	int			errcode;		/* why it is unusable */
	char	   *errmsg;
	bool		flinfo_ready;
	FmgrInfo	flinfo;			/* kept across calls, in the cache's memory */
	SbdSqlFuncState sql_state;
	void	   *sql_plan;		/* SPIPlanPtr, kept */
	bool		sql_read_only;	/* not volatile: runs on the request's snapshot */
	int			sql_tcount;		/* rows to fetch: 1 for SELECT, 0 (all) for DML */
} SbdHandler;

/* Register the cache's invalidation callbacks (once per backend). */
extern void sbd_handlers_register_callbacks(void);

/*
 * The handler registered for op, or NULL.  Must run in a transaction with an
 * active snapshot; refills the cache if an invalidation emptied it.  The
 * result is valid until the next call.
 */
extern SbdHandler *sbd_handler_lookup(uint16 op);

/* The handler registered under name, or NULL; as sbd_handler_lookup. */
extern SbdHandler *sbd_handler_lookup_name(const char *name);

/* h's FmgrInfo, set up at its first call and kept with the cache. */
extern FmgrInfo *sbd_handler_fmgr(SbdHandler *h);

/* The memory handlers keep across calls (until the cache is dropped). */
extern MemoryContext sbd_handlers_memory(void);

/* Append every registered op as a hello entry; returns how many. */
extern int	sbd_handlers_append_hello(StringInfo out);

#endif							/* STANDBYD_HANDLERS_H */
