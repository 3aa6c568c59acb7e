-- What a restore does to the registry.  pg_dump writes CREATE EXTENSION (the
-- default version), the functions, then the registry's rows (it is a
-- configuration table) as COPY, without going through register_handler.
\set VERBOSITY terse
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
CREATE EXTENSION standbyd;
CREATE SCHEMA regress_dump;
CREATE FUNCTION regress_dump.echo(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT 'echo:'::bytea || b $$;
CREATE SCHEMA "Dump Odd";
CREATE FUNCTION "Dump Odd"."Echo"(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;

-- Rows as a 1.2 dump has them, and as a 1.1 dump has them (regprocedure
-- text, always qualified since pg_dump empties search_path).
COPY standbyd.handlers (op, name, handler, registered_at) FROM stdin;
256	echo	regress_dump.echo	2026-12-01 10:00:00+00
257	odd	"Dump Odd"."Echo"	2026-12-01 10:00:01+00
\.
COPY standbyd.handlers (op, name, handler, registered_at) FROM stdin;
258	echo_11	regress_dump.echo(bytea)	2026-12-01 10:00:02+00
259	odd_11	"Dump Odd"."Echo"(bytea)	2026-12-01 10:00:03+00
\.
SELECT op, name, handler, to_regprocedure(handler || '(bytea)') AS resolves_to,
       registered_at = '2026-12-01 10:00:00+00'::timestamptz + (op - 256) * interval '1 second' AS kept_time
FROM standbyd.handlers ORDER BY op;

-- A row that names a missing function restores (the channel answers 42883
-- for it at call time); the table's checks still hold.
COPY standbyd.handlers (op, name, handler) FROM stdin;
260	missing	regress_dump.missing
\.
COPY standbyd.handlers (op, name, handler) FROM stdin;
10	builtin	regress_dump.echo
\.
SELECT op, name, handler, to_regprocedure(handler || '(bytea)') AS resolves_to
FROM standbyd.handlers WHERE op >= 260 ORDER BY op;

DELETE FROM standbyd.handlers;
DROP SCHEMA regress_dump CASCADE;
DROP SCHEMA "Dump Odd" CASCADE;
