/*-------------------------------------------------------------------------
 *
 * standbyd_compat.h
 *		What differs between the PostgreSQL majors the extension supports
 *		(15 to 19), in one place.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STANDBYD_COMPAT_H
#define STANDBYD_COMPAT_H

/* The library's own version, shown by PG_MODULE_MAGIC_EXT on 18+. */
#define STANDBYD_VERSION "1.3"

/* Protocol message type names exist from 17 on. */
#if PG_VERSION_NUM >= 170000
#include "libpq/protocol.h"
#else
#define PqMsg_CopyData				'd'
#define PqMsg_CopyDone				'c'
#define PqMsg_CopyFail				'f'
#define PqMsg_CopyBothResponse		'W'
#define PqMsg_Flush					'H'
#define PqMsg_Sync					'S'
#define PqMsg_Terminate				'X'
#endif

/* 16 added an error-context argument. */
#if PG_VERSION_NUM >= 160000
#define sbd_string_to_qualified_name_list(s) stringToQualifiedNameList((s), NULL)
#else
#define sbd_string_to_qualified_name_list(s) stringToQualifiedNameList(s)
#endif

/* 16 generalised the per-catalog ACL checks. */
#if PG_VERSION_NUM >= 160000
#define sbd_proc_aclcheck(func, role, mode) \
	object_aclcheck(ProcedureRelationId, (func), (role), (mode))
#else
#define sbd_proc_aclcheck(func, role, mode) pg_proc_aclcheck((func), (role), (mode))
#endif

/* 19 added scan option flags to table_beginscan. */
#if PG_VERSION_NUM >= 190000
#define sbd_table_beginscan(rel, snap) table_beginscan((rel), (snap), 0, NULL, 0)
#else
#define sbd_table_beginscan(rel, snap) table_beginscan((rel), (snap), 0, NULL)
#endif

#endif							/* STANDBYD_COMPAT_H */
