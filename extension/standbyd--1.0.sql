/* extension/standbyd--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION standbyd" to load this file. \quit

-- The channel: CALL standbyd.serve() in the simple Query protocol switches the
-- session into COPY BOTH and serves request frames until the client sends
-- CopyDone.  See docs/protocol.md.
CREATE PROCEDURE @extschema@.serve()
LANGUAGE C
AS 'MODULE_PATHNAME', 'standbyd_serve';

COMMENT ON PROCEDURE @extschema@.serve() IS
'Enter the standbyd channel (COPY BOTH); only for the standbyd daemon';

-- Nobody enters the channel unless the DBA says so:
--   GRANT USAGE ON SCHEMA standbyd TO <role>;
--   GRANT EXECUTE ON PROCEDURE standbyd.serve() TO <role>;
REVOKE ALL ON PROCEDURE @extschema@.serve() FROM PUBLIC;
