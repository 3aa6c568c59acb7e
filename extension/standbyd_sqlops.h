/*-------------------------------------------------------------------------
 *
 * standbyd_sqlops.h
 *		Operations that need a transaction: user handlers, settings, pages.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_SQLOPS_H
#define STANDBYD_SQLOPS_H

#include "standbyd_xact.h"

/* Bodies for sbd_run_in_transaction. */
extern void sbd_op_user_handler(const SbdRequest *req, StringInfo out);
extern void sbd_op_setting(const SbdRequest *req, StringInfo out);
extern void sbd_op_page(const SbdRequest *req, StringInfo out);

#endif							/* STANDBYD_SQLOPS_H */
