/*-------------------------------------------------------------------------
 *
 * standbyd_ops.h
 *		The operations the channel answers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_OPS_H
#define STANDBYD_OPS_H

#include "standbyd_protocol.h"

/* GUC standbyd.max_frame_size, defined in standbyd.c */
extern int	standbyd_max_frame_size;

/* The client's maximum frame size from hello (0: not announced). */
extern uint32 standbyd_client_max_frame;

/*
 * Answer one well-formed request: out receives exactly one reply frame (ok or
 * error) for req.  Built-ins that only read shared memory (ping, N, wal) run
 * outside any transaction and raise no error except out-of-memory; the
 * others (hello, setting, page, user handlers) run in a transaction of their
 * own (standbyd_xact.c).
 */
extern void sbd_dispatch(const SbdRequest *req, StringInfo out);

#endif							/* STANDBYD_OPS_H */
