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

/* One registered op, resolved when the cache was filled. */
typedef struct SbdHandler
{
	uint16		op;
	char	   *name;
	Oid			func;			/* InvalidOid: unusable, see err* */
	int			errcode;		/* why it is unusable */
	char	   *errmsg;
	bool		flinfo_ready;
	FmgrInfo	flinfo;			/* kept across calls, in the cache's memory */
} SbdHandler;

/* Register the cache's invalidation callbacks (once per backend). */
extern void sbd_handlers_register_callbacks(void);

/*
 * The handler registered for op, or NULL.  Must run in a transaction with an
 * active snapshot; refills the cache if an invalidation emptied it.  The
 * result is valid until the next call.
 */
extern SbdHandler *sbd_handler_lookup(uint16 op);

/* h's FmgrInfo, set up at its first call and kept with the cache. */
extern FmgrInfo *sbd_handler_fmgr(SbdHandler *h);

/* Append every registered op as a hello entry; returns how many. */
extern int	sbd_handlers_append_hello(StringInfo out);

#endif							/* STANDBYD_HANDLERS_H */
