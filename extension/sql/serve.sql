-- CALL standbyd.serve() works only as a top-level CALL outside a transaction
-- block; every other context is refused before the channel starts.
\set VERBOSITY terse
-- Independent of the other tests: start from no extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS standbyd;
RESET client_min_messages;
CREATE EXTENSION standbyd;

BEGIN;
CALL standbyd.serve();
ROLLBACK;

DO $$ BEGIN CALL standbyd.serve(); END $$;

CREATE PROCEDURE regress_serve_from_procedure() LANGUAGE plpgsql
AS $$ BEGIN CALL standbyd.serve(); END $$;
CALL regress_serve_from_procedure();

CREATE FUNCTION regress_serve_from_function() RETURNS void LANGUAGE plpgsql
AS $$ BEGIN CALL standbyd.serve(); END $$;
SELECT regress_serve_from_function();

-- The C entry point declared as a function cannot be used with SELECT.
CREATE FUNCTION regress_serve_as_function() RETURNS void LANGUAGE c
AS '$libdir/standbyd', 'standbyd_serve';
SELECT regress_serve_as_function();

-- Entering needs USAGE on the schema and EXECUTE on the procedure.
CREATE ROLE regress_standbyd_nobody;
SET ROLE regress_standbyd_nobody;
CALL standbyd.serve();
RESET ROLE;
GRANT USAGE ON SCHEMA standbyd TO regress_standbyd_nobody;
SET ROLE regress_standbyd_nobody;
CALL standbyd.serve();
RESET ROLE;

DROP FUNCTION regress_serve_as_function();
DROP FUNCTION regress_serve_from_function();
DROP PROCEDURE regress_serve_from_procedure();
REVOKE USAGE ON SCHEMA standbyd FROM regress_standbyd_nobody;
DROP ROLE regress_standbyd_nobody;
