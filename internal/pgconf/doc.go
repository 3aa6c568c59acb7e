// Package pgconf reads PostgreSQL configuration files the way the server
// does (src/backend/utils/misc/guc-file.l, PostgreSQL 15), so that standbyd
// sees the same primary_conninfo as the standby's walreceiver.
//
// What it follows:
//
//   - one "name = value" per line, the "=" optional, "#" comments, names
//     case-insensitive (stored lower-case), qualified names (a.b);
//   - values: quoted strings ('it”s', with backslash escapes \b \f \n \r \t,
//     octal \ooo, any other \x giving x), identifiers, unquoted strings
//     (letters, digits and - . _ : /), integers with optional units (10MB,
//     0x1F), reals; anything else after the value is a syntax error;
//   - include, include_if_exists and include_dir, relative to the directory
//     of the file that includes; include_dir reads *.conf files not starting
//     with ".", in byte order of their names; nesting is limited to 10 levels
//     as in PostgreSQL, and a cycle is reported as such;
//   - the main file first, then postgresql.auto.conf in the data directory;
//     the last setting of a name wins, and every occurrence is kept with its
//     file and line for diagnostics.
//
// Errors name the file and line: a *SyntaxError prints as "FILE:LINE: MSG".
// Finding the main file: an explicit path, else <datadir>/postgresql.conf,
// else Debian's /etc/postgresql/<version>/<cluster>/postgresql.conf whose
// data_directory is this data directory.
package pgconf
