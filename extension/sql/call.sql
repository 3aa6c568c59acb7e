-- standbyd.call(), what SQL sees without a daemon: its declaration and
-- privileges, the refusals that come before anything is sent (NULL
-- arguments, built-in and unknown ops, EXECUTE on the handler's function),
-- and the refusal on a primary.  Resolution and the privilege check come
-- before the recovery check, so a primary shows them too.
\set VERBOSITY default
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
CREATE EXTENSION standbyd;

SELECT p.oid::regprocedure AS function, p.provolatile, p.proparallel, p.proisstrict,
       pg_get_function_arguments(p.oid) AS arguments,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
FROM pg_proc p WHERE p.oid IN ('standbyd.call(text,bytea,boolean)'::regprocedure,
                               'standbyd.call(integer,bytea,boolean)'::regprocedure)
ORDER BY 1;
SHOW standbyd.socket;
-- pg_dump keeps later GRANTs on it (it compares with the initial privileges).
SELECT objoid::regprocedure AS function, privtype,
       EXISTS (SELECT 1 FROM aclexplode(initprivs) a WHERE a.grantee = 0) AS public_initially
FROM pg_init_privs WHERE objoid IN ('standbyd.call(text,bytea,boolean)'::regprocedure,
                                    'standbyd.call(integer,bytea,boolean)'::regprocedure)
ORDER BY 1;

CREATE SCHEMA regress_call;
CREATE FUNCTION regress_call.echo(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;
SELECT standbyd.register_handler(300, 'echo', 'regress_call.echo(bytea)');

-- NULL arguments: 22004.
SELECT standbyd.call(NULL::text);
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(300, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call('echo', '\x01', NULL);
\echo :LAST_ERROR_SQLSTATE

-- Built-in ops are not for SQL callers: 42501.
SELECT standbyd.call('ping');
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call('wal');
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(80);
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(-1);
\echo :LAST_ERROR_SQLSTATE

-- No registration: 42883.
SELECT standbyd.call('nosuch');
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(301);
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(70000);
\echo :LAST_ERROR_SQLSTATE

-- A role that may call standbyd.call() but not the handler's function: 42501.
CREATE ROLE regress_call_user;
GRANT USAGE ON SCHEMA standbyd TO regress_call_user;
GRANT EXECUTE ON FUNCTION standbyd.call(text, bytea, boolean) TO regress_call_user;
GRANT EXECUTE ON FUNCTION standbyd.call(integer, bytea, boolean) TO regress_call_user;
REVOKE EXECUTE ON FUNCTION regress_call.echo(bytea) FROM PUBLIC;
SET ROLE regress_call_user;
SELECT standbyd.call('echo', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(300, '\x01');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Granted: past the privilege check, to the refusal on a primary.
GRANT EXECUTE ON FUNCTION regress_call.echo(bytea) TO regress_call_user;
SET ROLE regress_call_user;
SELECT standbyd.call('echo', '\x01');
\echo :LAST_ERROR_SQLSTATE
SELECT standbyd.call(300, '\x01', true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Without EXECUTE on standbyd.call() itself.
CREATE ROLE regress_call_nobody;
GRANT USAGE ON SCHEMA standbyd TO regress_call_nobody;
SET ROLE regress_call_nobody;
SELECT standbyd.call('echo');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- standbyd.socket is for superusers to set.
SET ROLE regress_call_user;
SET standbyd.socket = '/tmp/elsewhere.sock';
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

DROP SCHEMA regress_call CASCADE;
REVOKE ALL ON SCHEMA standbyd FROM regress_call_user, regress_call_nobody;
DROP EXTENSION standbyd;
DROP ROLE regress_call_user;
DROP ROLE regress_call_nobody;
