/*-------------------------------------------------------------------------
 *
 * standbyd_sqlfunc.h
 *		LANGUAGE sql handlers run from a plan kept across calls.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_SQLFUNC_H
#define STANDBYD_SQLFUNC_H

#include "lib/stringinfo.h"

#include "standbyd_handlers.h"

/*
 * Run h through its kept plan and append the result to out.  Returns false,
 * having done nothing, when h must be called through fmgr instead.  On
 * success *isnull says whether the function returned NULL.
 */
extern bool sbd_sqlfunc_call(SbdHandler *h, MemoryContext keep_cxt,
							 const char *payload, uint32 len,
							 StringInfo out, bool *isnull);

/* Free what sbd_sqlfunc_call kept for h. */
extern void sbd_sqlfunc_release(SbdHandler *h);

#endif							/* STANDBYD_SQLFUNC_H */
