/* extension/standbyd--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION standbyd UPDATE TO '1.3'" to load this file. \quit

-- standbyd.call(): a session on a hot standby calls a registered handler on
-- the primary through the standbyd daemon of its host (the standbyd.socket
-- setting names the daemon's socket).  The op is a handler's name or code;
-- the caller needs EXECUTE on the handler's function, checked on the
-- standby before anything is sent.  The handler runs and commits in a
-- transaction of its own on the primary: the standby session's rollback
-- does not undo it.  With wait_for_replay the call returns once this
-- standby has replayed the handler's commit.
--
-- VOLATILE (it writes on the primary) and PARALLEL UNSAFE (one connection
-- per backend, and the call must happen exactly once).  Not STRICT: a NULL
-- argument is an error rather than a silent NULL that sends nothing.
CREATE FUNCTION @extschema@.call(op text, payload bytea DEFAULT '\x', wait_for_replay boolean DEFAULT false)
RETURNS bytea
LANGUAGE C VOLATILE PARALLEL UNSAFE CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'standbyd_call_name';

CREATE FUNCTION @extschema@.call(op integer, payload bytea DEFAULT '\x', wait_for_replay boolean DEFAULT false)
RETURNS bytea
LANGUAGE C VOLATILE PARALLEL UNSAFE CALLED ON NULL INPUT
AS 'MODULE_PATHNAME', 'standbyd_call_code';

REVOKE ALL ON FUNCTION @extschema@.call(text, bytea, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.call(integer, bytea, boolean) FROM PUBLIC;

COMMENT ON FUNCTION @extschema@.call(text, bytea, boolean) IS
'On a hot standby: call the handler registered under this name on the primary, through the standbyd daemon';
COMMENT ON FUNCTION @extschema@.call(integer, bytea, boolean) IS
'On a hot standby: call the handler registered under this op code on the primary, through the standbyd daemon';
