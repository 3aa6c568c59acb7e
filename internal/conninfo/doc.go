// Package conninfo turns a libpq connection string (keyword=value or URI)
// into a *pgconn.Config for standbyd's channel, with an explicit decision
// for every libpq keyword of PostgreSQL 13 to 18: honoured, ignored as
// harmless, or refused. The decisions are in Keywords and docs/conninfo.md.
//
// Why not hand the string to pgconn.ParseConfig: pgconn sends every keyword
// it does not know to the server as a startup parameter, and the server
// refuses the session (42704 for gssencmode, 55P02 for
// ssl_min_protocol_version); it also reads the process environment, the
// home directory, ~/.pgpass and service files on its own, with rules that
// differ from libpq's. So the string is parsed here with libpq's rules,
// service files and PG* variables (through Options.Getenv) are merged in
// libpq's order, the password is looked up here, and pgconn receives a
// string of only the keywords it understands, every one explicit, with a
// placeholder password; the returned config then gets the real password,
// the startup parameters (application_name, client_encoding, options), a
// dialer with keepalives, TCP_USER_TIMEOUT and requirepeer, a host lookup
// for hostaddr, and TLS versions and revocation checks.
//
// Secrets never reach errors, decisions, Endpoint or warnings; Redact masks
// them in a connection string for display.
package conninfo
