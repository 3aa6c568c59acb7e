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

/*
 * Answer one well-formed request: out receives exactly one reply frame (ok or
 * error) for req.  Built-in operations never run SQL, take no snapshot and no
 * lock; they raise no error except out-of-memory.
 */
extern void sbd_dispatch(const SbdRequest *req, StringInfo out);

#endif							/* STANDBYD_OPS_H */
