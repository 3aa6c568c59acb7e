/* extension/standbyd--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION standbyd UPDATE TO '1.1'" to load this file. \quit

-- Operations that a DBA adds without writing C: a function (bytea) returns
-- bytea, bound to an op code from 256 to 65535.  The channel calls it with
-- the channel role's rights (or its owner's if SECURITY DEFINER), in a
-- subtransaction, and commits before replying.
CREATE TABLE @extschema@.handlers (
    op integer PRIMARY KEY CHECK (op BETWEEN 256 AND 65535),
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'),
    handler regprocedure NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.handlers IS
'Operations served by the standbyd channel; change with standbyd.register_handler and standbyd.unregister_handler';

-- The mapping is not secret (function names are public in pg_proc) and the
-- channel reads it as the channel role; only the DBA changes it.
REVOKE ALL ON @extschema@.handlers FROM PUBLIC;
GRANT SELECT ON @extschema@.handlers TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.handlers', '');

CREATE FUNCTION @extschema@.register_handler(p_op integer, p_name text, p_handler regprocedure)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc p
        WHERE p.oid = p_handler
          AND p.prokind = 'f' AND NOT p.proretset
          AND p.prorettype = 'pg_catalog.bytea'::pg_catalog.regtype
          AND p.pronargs = 1
          AND p.proargtypes[0] = 'pg_catalog.bytea'::pg_catalog.regtype)
    THEN
        RAISE EXCEPTION 'handler % must be a function taking bytea and returning bytea', p_handler
            USING ERRCODE = 'invalid_function_definition';
    END IF;
    INSERT INTO @extschema@.handlers AS h (op, name, handler)
    VALUES (p_op, p_name, p_handler)
    ON CONFLICT (op) DO UPDATE
        SET name = EXCLUDED.name, handler = EXCLUDED.handler, registered_at = now();
END
$$;

CREATE FUNCTION @extschema@.unregister_handler(p_op integer)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (DELETE FROM @extschema@.handlers WHERE op = p_op RETURNING 1)
    SELECT count(*) > 0 FROM gone
$$;

REVOKE ALL ON FUNCTION @extschema@.register_handler(integer, text, regprocedure) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unregister_handler(integer) FROM PUBLIC;
