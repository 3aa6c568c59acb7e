-- standbyd.register_handler and unregister_handler: what they accept, what
-- they refuse, and who may call them.
\set VERBOSITY terse
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
CREATE EXTENSION standbyd;
CREATE ROLE regress_standbyd_app;
CREATE ROLE regress_standbyd_user;
CREATE SCHEMA regress_app;
CREATE FUNCTION regress_app.echo(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT 'echo:'::bytea || b $$;
CREATE FUNCTION regress_app.to_text(b bytea) RETURNS text LANGUAGE sql
AS $$ SELECT encode(b, 'hex') $$;
CREATE FUNCTION regress_app.two(a bytea, b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT a || b $$;
CREATE FUNCTION regress_app.many(b bytea) RETURNS SETOF bytea LANGUAGE sql
AS $$ SELECT b $$;
CREATE PROCEDURE regress_app.proc(b bytea) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION regress_app.theirs(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;
ALTER FUNCTION regress_app.theirs(bytea) OWNER TO regress_standbyd_app;
CREATE SCHEMA "Odd Schema";
CREATE FUNCTION "Odd Schema"."Echo"(b bytea) RETURNS bytea LANGUAGE sql
AS $$ SELECT b $$;

-- Registered by qualified name; the name resolves to the same function.
SELECT standbyd.register_handler(256, 'echo', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(257, 'odd', '"Odd Schema"."Echo"(bytea)');
SELECT op, name, handler FROM standbyd.handlers ORDER BY op;
SELECT op, to_regprocedure(handler || '(bytea)') AS resolves_to FROM standbyd.handlers ORDER BY op;

-- Re-registering an op replaces it; a name belongs to one op.
SELECT standbyd.register_handler(257, 'odd_again', '"Odd Schema"."Echo"(bytea)');
SELECT op, name, handler FROM standbyd.handlers ORDER BY op;
SELECT standbyd.register_handler(258, 'echo', 'regress_app.echo(bytea)');

-- Only a function (bytea) returning bytea.
SELECT standbyd.register_handler(300, 'to_text', 'regress_app.to_text(bytea)');
SELECT standbyd.register_handler(300, 'two', 'regress_app.two(bytea,bytea)');
SELECT standbyd.register_handler(300, 'many', 'regress_app.many(bytea)');
SELECT standbyd.register_handler(300, 'proc', 'regress_app.proc(bytea)');
SELECT standbyd.register_handler(300, 'now', 'pg_catalog.now()');
SELECT standbyd.register_handler(300, 'nope', 'regress_app.nope(bytea)');

-- Op codes below 256 are built in; names are identifiers.
SELECT standbyd.register_handler(255, 'low', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(65536, 'high', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(65535, 'highest', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(300, '1st', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(300, 'has space', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(300, '', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(300, repeat('n', 64), 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(300, repeat('n', 63), 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(NULL, 'null_op', 'regress_app.echo(bytea)');
SELECT standbyd.register_handler(301, 'null_function', NULL);

-- Owner policy: a function owned by a role that is neither a superuser nor
-- the registry's owner is refused (its owner could replace the body).
SELECT standbyd.register_handler(302, 'theirs', 'regress_app.theirs(bytea)');
ALTER FUNCTION regress_app.theirs(bytea) OWNER TO CURRENT_USER;
SELECT standbyd.register_handler(302, 'theirs', 'regress_app.theirs(bytea)');
-- The registry's owner may own handlers without being a superuser.
ALTER FUNCTION regress_app.theirs(bytea) OWNER TO regress_standbyd_app;
ALTER TABLE standbyd.handlers OWNER TO regress_standbyd_app;
SELECT standbyd.register_handler(303, 'theirs_too', 'regress_app.theirs(bytea)');
ALTER TABLE standbyd.handlers OWNER TO CURRENT_USER;
SELECT op, name, handler FROM standbyd.handlers WHERE op >= 300 ORDER BY op;

-- A non-superuser may read the registry but not change it.
GRANT USAGE ON SCHEMA standbyd, regress_app TO regress_standbyd_user;
SET ROLE regress_standbyd_user;
SELECT op, name FROM standbyd.handlers ORDER BY op;
SELECT standbyd.register_handler(304, 'mine', 'regress_app.echo(bytea)');
SELECT standbyd.unregister_handler(256);
INSERT INTO standbyd.handlers (op, name, handler) VALUES (304, 'mine', 'regress_app.echo');
DELETE FROM standbyd.handlers;
RESET ROLE;
-- EXECUTE alone is not enough: writing the registry is its owner's.
GRANT EXECUTE ON FUNCTION standbyd.register_handler(integer, text, regprocedure) TO regress_standbyd_user;
SET ROLE regress_standbyd_user;
SELECT standbyd.register_handler(304, 'mine', 'regress_app.echo(bytea)');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION standbyd.register_handler(integer, text, regprocedure) FROM regress_standbyd_user;

-- The table's own checks hold for rows that bypass register_handler (a
-- restore); a row in the 1.1 form (regprocedure text) keeps the name.
INSERT INTO standbyd.handlers (op, name, handler) VALUES (100, 'low', 'regress_app.echo');
INSERT INTO standbyd.handlers (op, name, handler) VALUES (400, 'bad name', 'regress_app.echo');
INSERT INTO standbyd.handlers (op, name, handler) VALUES (401, 'old_form', 'regress_app.echo(bytea)');
INSERT INTO standbyd.handlers (op, name, handler) VALUES (402, 'quoted', '"regress_app"."odd(bytea)"');
SELECT op, name, handler FROM standbyd.handlers WHERE op >= 400 ORDER BY op;

-- unregister_handler says whether there was something to remove.
SELECT standbyd.unregister_handler(257);
SELECT standbyd.unregister_handler(257);
SELECT standbyd.unregister_handler(NULL);
SELECT op, name, handler FROM standbyd.handlers ORDER BY op;

DELETE FROM standbyd.handlers;
REVOKE USAGE ON SCHEMA standbyd, regress_app FROM regress_standbyd_user;
DROP SCHEMA regress_app CASCADE;
DROP SCHEMA "Odd Schema" CASCADE;
DROP ROLE regress_standbyd_user;
DROP ROLE regress_standbyd_app;
