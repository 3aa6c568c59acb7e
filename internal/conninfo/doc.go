// Package conninfo turns a libpq connection string (keyword=value or URI)
// into a *pgconn.Config for standbyd's channel, deciding every libpq keyword
// of PostgreSQL 13 to 18 explicitly: honoured, replaced by the channel's own
// setting, ignored as harmless, or refused. The decisions are in Keywords and
// docs/conninfo.md.
//
// Why not hand the string to pgconn.ParseConfig: pgconn sends every keyword
// it does not know to the server as a startup parameter, and the server
// refuses the session (42704 for gssencmode, 55P02 for
// ssl_min_protocol_version). So the string is parsed here with libpq's
// rules, service files and PG* environment variables are merged in libpq's
// order, and pgconn receives an explicit string of the keywords it
// understands. Afterwards the config's startup parameters are replaced by an
// allowlist (application_name, options), the password comes from our own
// passfile lookup (which, unlike pgconn's, checks the file's permissions as
// libpq does), and the dialer sets keepalives and TCP_USER_TIMEOUT.
//
// Secrets never reach errors, decisions or Endpoint; Redact masks them in a
// connection string for logs.
package conninfo
