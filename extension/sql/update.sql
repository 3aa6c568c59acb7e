-- The update path 1.0 -> 1.1 -> 1.2 -> 1.3 with handlers registered at 1.1:
-- the registry's regprocedure column becomes the function's qualified name,
-- rows kept, and the result is the same as a fresh install.
\set VERBOSITY terse
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
SELECT source, target, path FROM pg_extension_update_paths('standbyd')
WHERE path IS NOT NULL ORDER BY 1, 2;

CREATE EXTENSION standbyd VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'standbyd';
SELECT to_regclass('standbyd.handlers') AS registry;

ALTER EXTENSION standbyd UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'standbyd';
CREATE SCHEMA regress_up;
CREATE FUNCTION regress_up.echo(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT 'echo:'::bytea || b $$;
CREATE FUNCTION regress_up.gone(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;
CREATE SCHEMA "Up Odd";
CREATE FUNCTION "Up Odd"."Echo"(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;
SELECT standbyd.register_handler(256, 'echo', 'regress_up.echo(bytea)');
SELECT standbyd.register_handler(257, 'gone', 'regress_up.gone(bytea)');
SELECT standbyd.register_handler(258, 'odd', '"Up Odd"."Echo"(bytea)');
-- 1.1 did not look at the owner: 1.2 keeps such a row and says so.
CREATE ROLE regress_standbyd_owner;
CREATE FUNCTION regress_up.theirs(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;
ALTER FUNCTION regress_up.theirs(bytea) OWNER TO regress_standbyd_owner;
SELECT standbyd.register_handler(260, 'theirs', 'regress_up.theirs(bytea)');
SELECT op, name, handler FROM standbyd.handlers ORDER BY op;
-- 1.1 records no dependency: dropping a registered function leaves its OID.
DROP FUNCTION regress_up.gone(bytea);
SELECT op, name, EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = h.handler) AS function_exists
FROM standbyd.handlers h ORDER BY op;

ALTER EXTENSION standbyd UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'standbyd';
SELECT op, name, handler, pg_typeof(handler) AS type FROM standbyd.handlers ORDER BY op;
SELECT op, to_regprocedure(handler || '(bytea)') AS resolves_to FROM standbyd.handlers ORDER BY op;
-- 1.2's register_handler stores names too.
SELECT standbyd.register_handler(259, 'echo_again', 'regress_up.echo(bytea)');
SELECT op, name, handler FROM standbyd.handlers WHERE op = 259;

-- 1.3 adds standbyd.call() and leaves the registry alone.
ALTER EXTENSION standbyd UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'standbyd';
SELECT op, name, handler FROM standbyd.handlers ORDER BY op;

-- The updated extension is the fresh one, object for object.
CREATE TEMP TABLE updated AS
SELECT 'member' AS kind, pg_describe_object(classid, objid, objsubid) AS what
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'standbyd')
UNION ALL
SELECT 'column', attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull
FROM pg_attribute WHERE attrelid = 'standbyd.handlers'::regclass AND attnum > 0 AND NOT attisdropped
UNION ALL
SELECT 'constraint', conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = 'standbyd.handlers'::regclass
UNION ALL
SELECT 'trigger', pg_get_triggerdef(oid)
FROM pg_trigger WHERE tgrelid = 'standbyd.handlers'::regclass AND NOT tgisinternal
UNION ALL
SELECT 'function', p.oid::regprocedure || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || coalesce(p.proacl::text, '')
FROM pg_proc p WHERE p.pronamespace = 'standbyd'::regnamespace
UNION ALL
SELECT 'table acl', coalesce(relacl::text, '') FROM pg_class WHERE oid = 'standbyd.handlers'::regclass;
SELECT count(*) > 10 AS compared FROM updated;
DROP EXTENSION standbyd;
CREATE EXTENSION standbyd;
CREATE TEMP TABLE fresh AS
SELECT 'member' AS kind, pg_describe_object(classid, objid, objsubid) AS what
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'standbyd')
UNION ALL
SELECT 'column', attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull
FROM pg_attribute WHERE attrelid = 'standbyd.handlers'::regclass AND attnum > 0 AND NOT attisdropped
UNION ALL
SELECT 'constraint', conname || ' ' || pg_get_constraintdef(oid)
FROM pg_constraint WHERE conrelid = 'standbyd.handlers'::regclass
UNION ALL
SELECT 'trigger', pg_get_triggerdef(oid)
FROM pg_trigger WHERE tgrelid = 'standbyd.handlers'::regclass AND NOT tgisinternal
UNION ALL
SELECT 'function', p.oid::regprocedure || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || coalesce(p.proacl::text, '')
FROM pg_proc p WHERE p.pronamespace = 'standbyd'::regnamespace
UNION ALL
SELECT 'table acl', coalesce(relacl::text, '') FROM pg_class WHERE oid = 'standbyd.handlers'::regclass;
(TABLE updated EXCEPT TABLE fresh) UNION ALL (TABLE fresh EXCEPT TABLE updated) ORDER BY 1, 2;

DROP SCHEMA regress_up CASCADE;
DROP SCHEMA "Up Odd" CASCADE;
DROP ROLE regress_standbyd_owner;
