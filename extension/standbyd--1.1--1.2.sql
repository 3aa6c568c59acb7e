/* extension/standbyd--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION standbyd UPDATE TO '1.2'" to load this file. \quit

-- The registry names each handler by its qualified function name instead of
-- a regprocedure OID: pg_upgrade refuses reg* columns in user tables (their
-- OIDs do not survive it), and an OID dangles silently when the function is
-- dropped.  The function always takes (bytea), so the name identifies it;
-- the channel looks it up at call time and answers 42883 when it is gone.
--
-- Every catalog reference below is schema-qualified, operators included, and
-- the functions pin search_path: nothing a user creates can capture them.

-- Rows whose function was dropped under 1.1 cannot be given a name: remove
-- them, saying so (the channel already answered 42883 for their op).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        DELETE FROM @extschema@.handlers h
        WHERE NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_proc p
            WHERE p.oid OPERATOR(pg_catalog.=) h.handler::pg_catalog.oid)
        RETURNING h.op, h.name
    LOOP
        RAISE WARNING 'standbyd: handler "%" (op %) removed: its function no longer exists', r.name, r.op;
    END LOOP;
END
$$;

-- 1.1 registered functions of any owner; from 1.2 the channel refuses a
-- function whose owner could swap its body (see register_handler below).
-- Name those handlers now rather than at their first call.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT h.op, h.name, h.handler::pg_catalog.text AS func, o.rolname AS owner
        FROM @extschema@.handlers h
        JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) h.handler::pg_catalog.oid
        JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) p.proowner
        JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) '@extschema@.handlers'::pg_catalog.regclass
        WHERE NOT o.rolsuper AND p.proowner OPERATOR(pg_catalog.<>) c.relowner
        ORDER BY h.op
    LOOP
        RAISE WARNING 'standbyd: handler "%" (op %) will be refused with 42501 unless the channel''s role is "%": its function % is owned by that role, which is neither a superuser nor the owner of @extschema@.handlers',
            r.name, r.op, r.owner, r.func;
    END LOOP;
END
$$;

-- ALTER COLUMN ... USING takes no subquery: convert through a function that
-- lives only for this script.
CREATE FUNCTION @extschema@.handler_name_1_2(p_func pg_catalog.oid)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, p.proname)
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    WHERE p.oid OPERATOR(pg_catalog.=) p_func
$$;

ALTER TABLE @extschema@.handlers
    ALTER COLUMN handler TYPE text
    USING @extschema@.handler_name_1_2(handler::pg_catalog.oid);

DROP FUNCTION @extschema@.handler_name_1_2(pg_catalog.oid);

COMMENT ON COLUMN @extschema@.handlers.handler IS
'Qualified name of a function (bytea) returning bytea, as format(''%I.%I'', schema, name)';

-- A channel caches the registry per session; any change to the table tells
-- the other sessions to drop their copy (a relcache invalidation).
CREATE FUNCTION @extschema@.handlers_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'standbyd_handlers_changed';

REVOKE ALL ON FUNCTION @extschema@.handlers_changed() FROM PUBLIC;

CREATE TRIGGER handlers_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.handlers
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.handlers_changed();

-- A dump taken at 1.1 holds the regprocedure's text, 'schema.fn(bytea)'
-- (pg_dump prints it qualified); a restore into 1.2 keeps the name.  A quoted
-- name that contains "(bytea)" ends with a double quote, so it is left alone.
CREATE FUNCTION @extschema@.handlers_normalize()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.handler OPERATOR(pg_catalog.~) '\(bytea\)$' THEN
        NEW.handler := pg_catalog.left(NEW.handler, -7);
    END IF;
    RETURN NEW;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.handlers_normalize() FROM PUBLIC;

CREATE TRIGGER handlers_normalize
    BEFORE INSERT OR UPDATE OF handler ON @extschema@.handlers
    FOR EACH ROW EXECUTE FUNCTION @extschema@.handlers_normalize();

-- Registration checks the function's shape and its owner.  The owner can
-- replace the body at any time, and the body runs with the channel role's
-- rights: so the owner must be a superuser or the registry's owner (who
-- could register anything anyway).  The channel applies the same rule, also
-- allowing a function owned by the channel's own session user, at each call.
CREATE OR REPLACE FUNCTION @extschema@.register_handler(p_op integer, p_name text, p_handler regprocedure)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_proc record;
    v_registry_owner pg_catalog.oid;
BEGIN
    IF p_op IS NULL OR p_name IS NULL OR p_handler IS NULL THEN
        RAISE EXCEPTION 'register_handler takes an op, a name and a function, none of them NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_op OPERATOR(pg_catalog.<) 256 OR p_op OPERATOR(pg_catalog.>) 65535 THEN
        RAISE EXCEPTION 'op % is out of range', p_op
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Registered handlers use op codes from 256 to 65535; lower codes are built in.';
    END IF;
    IF p_name OPERATOR(pg_catalog.!~) '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'invalid handler name "%"', p_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A handler name is a letter or underscore followed by up to 62 letters, digits or underscores.';
    END IF;

    SELECT p.proname, n.nspname, p.prokind, p.proretset, p.prorettype, p.pronargs,
           p.proargtypes, p.proowner, r.rolname AS owner, r.rolsuper AS owner_is_superuser
      INTO v_proc
      FROM pg_catalog.pg_proc p
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
      JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.proowner
     WHERE p.oid OPERATOR(pg_catalog.=) p_handler::pg_catalog.oid;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'function % does not exist', p_handler
            USING ERRCODE = 'undefined_function';
    END IF;

    IF NOT (v_proc.prokind OPERATOR(pg_catalog.=) 'f'
            AND NOT v_proc.proretset
            AND v_proc.prorettype OPERATOR(pg_catalog.=) 'pg_catalog.bytea'::pg_catalog.regtype
            AND v_proc.pronargs OPERATOR(pg_catalog.=) 1
            AND v_proc.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.bytea'::pg_catalog.regtype)
    THEN
        RAISE EXCEPTION 'handler % must be a function taking bytea and returning bytea', p_handler
            USING ERRCODE = 'invalid_function_definition';
    END IF;

    SELECT c.relowner INTO v_registry_owner
      FROM pg_catalog.pg_class c
     WHERE c.oid OPERATOR(pg_catalog.=) '@extschema@.handlers'::pg_catalog.regclass;
    IF NOT v_proc.owner_is_superuser
       AND v_proc.proowner OPERATOR(pg_catalog.<>) v_registry_owner THEN
        RAISE EXCEPTION 'function % is owned by role "%", which is neither a superuser nor the owner of @extschema@.handlers',
                p_handler, v_proc.owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'The owner of a handler can replace its body, which then runs with the rights of the channel''s role.',
                  HINT = 'Make a superuser or the owner of @extschema@.handlers the function''s owner (ALTER FUNCTION ... OWNER TO).';
    END IF;

    INSERT INTO @extschema@.handlers AS h (op, name, handler)
    VALUES (p_op, p_name, pg_catalog.format('%I.%I', v_proc.nspname, v_proc.proname))
    ON CONFLICT (op) DO UPDATE
        SET name = EXCLUDED.name, handler = EXCLUDED.handler, registered_at = pg_catalog.now();
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.unregister_handler(p_op integer)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM @extschema@.handlers h
        WHERE h.op OPERATOR(pg_catalog.=) p_op
        RETURNING 1)
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM gone
$$;
