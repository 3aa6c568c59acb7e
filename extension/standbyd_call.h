/*-------------------------------------------------------------------------
 *
 * standbyd_call.h
 *		standbyd.call(): a SQL session on a hot standby calls a handler on
 *		the primary through the local standbyd daemon.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_CALL_H
#define STANDBYD_CALL_H

/* Define standbyd.socket; called from _PG_init. */
extern void sbd_call_define_gucs(void);

#endif							/* STANDBYD_CALL_H */
