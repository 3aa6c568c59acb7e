/*-------------------------------------------------------------------------
 *
 * standbyd_xact.h
 *		The channel's transaction model: outside any transaction while idle,
 *		one top-level transaction per request that needs one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_XACT_H
#define STANDBYD_XACT_H

#include "standbyd_protocol.h"

typedef void (*SbdOpHandler) (const SbdRequest *req, StringInfo out);

/* Commit the CALL's transaction and stay outside one. */
extern void sbd_xact_leave_call(void);

/* Start the transaction that the CALL's caller will commit. */
extern void sbd_xact_reenter_call(void);

/*
 * Run body for req in a transaction of its own, started now (so now() and
 * statement_timestamp() are the request's time) and committed before the
 * reply goes out.  body runs with an active snapshot and statement_timeout
 * armed; settings it changes are undone and session-level advisory locks
 * it takes are released afterwards.  Any ERROR (a cancel, a timeout, a
 * recovery conflict, a failed commit) rolls the transaction back and
 * becomes an error reply in out; the channel goes on.  FATAL ends the
 * session as usual.
 */
extern void sbd_run_in_transaction(const SbdRequest *req, StringInfo out,
								   SbdOpHandler body);

#endif							/* STANDBYD_XACT_H */
