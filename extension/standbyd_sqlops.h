/*-------------------------------------------------------------------------
 *
 * standbyd_sqlops.h
 *		Operations that need a transaction: user handlers, settings, pages.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_SQLOPS_H
#define STANDBYD_SQLOPS_H

#include "standbyd_protocol.h"

typedef void (*SbdOpHandler) (const SbdRequest *req, StringInfo out);

/*
 * Run body for req inside a subtransaction, with statement_timeout armed,
 * then commit.  Any ERROR (including a cancel or a statement timeout) becomes
 * an error reply in out and the channel goes on; FATAL ends the session as
 * usual.  Afterwards the backend holds no snapshot and no lock.
 */
extern void sbd_run_in_transaction(const SbdRequest *req, StringInfo out,
								   SbdOpHandler body);

/* Bodies for sbd_run_in_transaction. */
extern void sbd_op_user_handler(const SbdRequest *req, StringInfo out);
extern void sbd_op_setting(const SbdRequest *req, StringInfo out);
extern void sbd_op_page(const SbdRequest *req, StringInfo out);

/* Append the registered handlers to a hello reply (count, then entries). */
extern int	sbd_append_registered_ops(StringInfo out);

#endif							/* STANDBYD_SQLOPS_H */
