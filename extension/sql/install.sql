-- The extension at its default version: what it creates, who may use it.
\set VERBOSITY terse
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
CREATE EXTENSION standbyd;
SELECT extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'standbyd';

-- Its members (what \dx+ lists; the table's row types, recorded as members
-- from PostgreSQL 17 on, left out).
SELECT pg_describe_object(classid, objid, objsubid) AS member
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND classid <> 'pg_type'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'standbyd')
ORDER BY 1;

-- The registry has no reg* column: pg_upgrade refuses them.
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
FROM pg_attribute
WHERE attrelid = 'standbyd.handlers'::regclass AND attnum > 0 AND NOT attisdropped
ORDER BY attnum;
SELECT conname, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE conrelid = 'standbyd.handlers'::regclass AND contype IN ('c', 'p', 'u') ORDER BY 1;
SELECT pg_get_triggerdef(oid) AS trigger
FROM pg_trigger WHERE tgrelid = 'standbyd.handlers'::regclass AND NOT tgisinternal ORDER BY tgname;

-- pg_dump dumps the registry's rows with the database.
SELECT extconfig::regclass[] AS config_tables, extcondition
FROM pg_extension WHERE extname = 'standbyd';

-- Nothing is executable by PUBLIC; the registry is readable by everyone.
SELECT p.oid::regprocedure AS function,
       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public_execute
FROM pg_proc p WHERE p.pronamespace = 'standbyd'::regnamespace ORDER BY p.proname;
SELECT a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = 'standbyd.handlers'::regclass AND a.grantee = 0 ORDER BY 1;
SELECT has_schema_privilege('public', 'standbyd', 'USAGE') AS public_usage;
