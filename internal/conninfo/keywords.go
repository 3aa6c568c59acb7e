package conninfo

import "strconv"

// Action is what standbyd does with a connection keyword.
type Action string

const (
	// Honoured: the keyword takes effect, as in libpq or as close as the
	// channel allows (the reason says how).
	Honoured Action = "honoured"
	// Ignored: left out, harmless (the reason says why).
	Ignored Action = "ignored"
	// Refused: honouring is impossible and ignoring would weaken security
	// or authentication; Parse fails with a *KeywordError.
	Refused Action = "refused"
)

// Keyword describes one libpq connection keyword and standbyd's usual
// decision for it. Some values get another decision (gssencmode=require is
// refused, sslcrl is ignored when the certificate is not verified, ...):
// Parse reports the decision actually taken in Result.Decisions.
type Keyword struct {
	Name string
	// Env is libpq's environment variable for the keyword, "" if none.
	Env string
	// First and Last are the PostgreSQL major versions whose libpq has the
	// keyword, within the 13 to 18 that standbyd reads.
	First, Last int
	// Action and How are the usual decision and how it is carried out, or
	// why not; docs/conninfo.md has one row per keyword with the same words.
	Action Action
	How    string
	// Secret values are never shown (Decision, errors, Redact).
	Secret bool
}

// Versions renders First and Last as in docs/conninfo.md ("13-18", "18").
func (k Keyword) Versions() string {
	if k.First == k.Last {
		return strconv.Itoa(k.First)
	}
	return strconv.Itoa(k.First) + "-" + strconv.Itoa(k.Last)
}

// Keywords lists every libpq connection keyword of PostgreSQL 13 to 18, in
// libpq's order (PQconninfoOptions), with the two PostgreSQL 13 leftovers
// at the end.
var Keywords = []Keyword{
	{Name: "service", Env: "PGSERVICE", First: 13, Last: 18, Action: Honoured,
		How: "expanded by standbyd as libpq does: servicefile (or PGSERVICEFILE, else ~/.pg_service.conf) first, then PGSYSCONFDIR/pg_service.conf (Debian: /etc/postgresql-common/pg_service.conf); its keywords fill what the string does not set, each through this table; LDAP lookups are refused"},
	{Name: "servicefile", Env: "PGSERVICEFILE", First: 18, Last: 18, Action: Honoured,
		How: "the user service file that service is looked for in first (PGSERVICEFILE on every version)"},
	{Name: "user", Env: "PGUSER", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn; when absent, the name of the OS user standbyd runs as, as libpq does"},
	{Name: "password", Env: "PGPASSWORD", First: 13, Last: 18, Action: Honoured, Secret: true,
		How: "set on the pgconn config after parsing (never in a string pgconn could quote); an empty one means: look in the passfile"},
	{Name: "passfile", Env: "PGPASSFILE", First: 13, Last: 18, Action: Honoured,
		How: "read by standbyd as libpq does (skipped with a warning when not a plain file or group/world accessible); the channel's database is matched first, then \"replication\"; pgconn never reads one"},
	{Name: "channel_binding", Env: "PGCHANNELBINDING", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn (SCRAM-SHA-256-PLUS; require fails without TLS)"},
	{Name: "connect_timeout", Env: "PGCONNECT_TIMEOUT", First: 13, Last: 18, Action: Honoured,
		How: "per host address as libpq (1 counts as 2, 0 or less waits indefinitely); when absent, channel.connect_timeout"},
	{Name: "dbname", Env: "PGDATABASE", First: 13, Last: 18, Action: Ignored,
		How: "reported, not used: the channel connects to channel.database (where the extension lives); the walreceiver itself uses dbname=replication, only for the passfile lookup"},
	{Name: "host", Env: "PGHOST", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn, several hosts tried in order; an empty entry is the default socket directory /var/run/postgresql; abstract sockets (@name) are refused"},
	{Name: "hostaddr", Env: "PGHOSTADDR", First: 13, Last: 18, Action: Honoured,
		How: "the numeric address dialled for each host (pgconn's host lookup is replaced); host stays the name for TLS verification, SNI and the passfile"},
	{Name: "port", Env: "PGPORT", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn; one port for all hosts or one per host, empty entries mean 5432"},
	{Name: "client_encoding", Env: "PGCLIENTENCODING", First: 13, Last: 18, Action: Honoured,
		How: "sent as the client_encoding startup parameter; auto is resolved from the locale as libpq does; when absent standbyd sends UTF8"},
	{Name: "options", Env: "PGOPTIONS", First: 13, Last: 18, Action: Honoured,
		How: "sent as the options startup parameter"},
	{Name: "application_name", Env: "PGAPPNAME", First: 13, Last: 18, Action: Ignored,
		How: "the channel is named by channel.application_name (standbyd), not as the walreceiver, so that it is never mistaken for it; %a in channel.application_name is replaced by this value"},
	{Name: "fallback_application_name", First: 13, Last: 18, Action: Ignored,
		How: "an application_name is always set (channel.application_name); stands in for %a when application_name is absent"},
	{Name: "keepalives", First: 13, Last: 18, Action: Honoured,
		How: "TCP keepalives on (not 0, the default) or off (0), a socket option set by standbyd's dialer"},
	{Name: "keepalives_idle", First: 13, Last: 18, Action: Honoured,
		How: "TCP_KEEPIDLE in seconds; when absent channel.keepalives_idle"},
	{Name: "keepalives_interval", First: 13, Last: 18, Action: Honoured,
		How: "TCP_KEEPINTVL in seconds; when absent channel.keepalives_interval"},
	{Name: "keepalives_count", First: 13, Last: 18, Action: Honoured,
		How: "TCP_KEEPCNT; when absent channel.keepalives_count"},
	{Name: "tcp_user_timeout", First: 13, Last: 18, Action: Honoured,
		How: "TCP_USER_TIMEOUT in milliseconds (0: the kernel's default); when absent channel.tcp_user_timeout"},
	{Name: "sslmode", Env: "PGSSLMODE", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn, never downgraded; require with a root certificate verifies it (verify-ca) as libpq does; verify-ca and verify-full without a root certificate are refused as libpq refuses them (pgconn would use the system's roots)"},
	{Name: "sslnegotiation", Env: "PGSSLNEGOTIATION", First: 17, Last: 18, Action: Honoured,
		How: "passed to pgconn; direct with an sslmode weaker than require is refused as libpq refuses it"},
	{Name: "sslcompression", Env: "PGSSLCOMPRESSION", First: 13, Last: 18, Action: Ignored,
		How: "TLS compression is gone from OpenSSL and PostgreSQL 14+ and never offered by Go; harmless to drop"},
	{Name: "sslcert", Env: "PGSSLCERT", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn (default ~/.postgresql/postgresql.crt); a missing file sends no certificate, as libpq; read when the string is parsed (start, reload)"},
	{Name: "sslkey", Env: "PGSSLKEY", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn (default ~/.postgresql/postgresql.key); refused as libpq refuses it when group/world accessible, missing while the certificate exists, or an OpenSSL engine key (name:id)"},
	{Name: "sslcertmode", Env: "PGSSLCERTMODE", First: 16, Last: 18, Action: Honoured,
		How: "passed to pgconn (disable, allow, require)"},
	{Name: "sslpassword", First: 13, Last: 18, Action: Honoured, Secret: true,
		How: "handed to pgconn through its GetSSLPassword callback, never in a string; decrypts a PEM-encrypted sslkey"},
	{Name: "sslrootcert", Env: "PGSSLROOTCERT", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn (default ~/.postgresql/root.crt; system: the system's roots, with verify-full); a missing file is skipped with a warning unless the sslmode verifies, as libpq"},
	{Name: "sslcrl", Env: "PGSSLCRL", First: 13, Last: 18, Action: Honoured,
		How: "checked by standbyd at every handshake whose certificate is verified: each certificate of the chain against its issuer's CRL, as libpq/OpenSSL (a revoked certificate, an expired CRL or a certificate without one fails); a file that cannot be loaded disables the check, as libpq, with a warning"},
	{Name: "sslcrldir", Env: "PGSSLCRLDIR", First: 14, Last: 18, Action: Honoured,
		How: "as sslcrl, with the CRLs of the directory (OpenSSL hashed names, *.r0 ...)"},
	{Name: "sslsni", Env: "PGSSLSNI", First: 14, Last: 18, Action: Honoured,
		How: "passed to pgconn; with 0 and verify-full standbyd still verifies the host name but sends no SNI, as libpq"},
	{Name: "requirepeer", Env: "PGREQUIREPEER", First: 13, Last: 18, Action: Honoured,
		How: "checked by standbyd's dialer on Unix-socket connections: the server process's OS user (SO_PEERCRED) must have this name"},
	{Name: "require_auth", Env: "PGREQUIREAUTH", First: 16, Last: 18, Action: Honoured,
		How: "passed to pgconn, which enforces it (v5.12.0 or later)"},
	{Name: "ssl_min_protocol_version", Env: "PGSSLMINPROTOCOLVERSION", First: 13, Last: 18, Action: Honoured,
		How: "MinVersion of every TLS config (primary and fallbacks): TLSv1 to TLSv1.3, default TLSv1.2 as libpq"},
	{Name: "ssl_max_protocol_version", Env: "PGSSLMAXPROTOCOLVERSION", First: 13, Last: 18, Action: Honoured,
		How: "MaxVersion of every TLS config; must not be below the minimum"},
	{Name: "gssencmode", Env: "PGGSSENCMODE", First: 13, Last: 18, Action: Ignored,
		How: "disable and prefer: no GSSAPI encryption (pgconn has none; prefer falls through as libpq does without Kerberos credentials); require is refused"},
	{Name: "krbsrvname", Env: "PGKRBSRVNAME", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn (used if the server asks for GSSAPI authentication)"},
	{Name: "gsslib", Env: "PGGSSLIB", First: 13, Last: 18, Action: Ignored,
		How: "chooses between GSSAPI and SSPI, which exists only on Windows"},
	{Name: "gssdelegation", Env: "PGGSSDELEGATION", First: 16, Last: 18, Action: Ignored,
		How: "credentials are never delegated (libpq's default, 0); delegating less is not weaker"},
	{Name: "replication", First: 13, Last: 18, Action: Ignored,
		How: "never sent: the channel is an ordinary session (CALL in the simple Query protocol), not a replication connection"},
	{Name: "target_session_attrs", Env: "PGTARGETSESSIONATTRS", First: 13, Last: 18, Action: Honoured,
		How: "passed to pgconn, which checks it with SQL after connecting (any, read-write; 14+: read-only, primary, standby, prefer-standby)"},
	{Name: "load_balance_hosts", Env: "PGLOADBALANCEHOSTS", First: 16, Last: 18, Action: Ignored,
		How: "hosts are tried in the order given (disable); random only spreads many connections, and the channel is one"},
	{Name: "scram_client_key", First: 18, Last: 18, Action: Refused, Secret: true,
		How: "pgconn cannot authenticate with pre-computed SCRAM keys: refused when no password is available, ignored when one is (the password gives the same keys)"},
	{Name: "scram_server_key", First: 18, Last: 18, Action: Refused, Secret: true,
		How: "as scram_client_key"},
	{Name: "sslkeylogfile", First: 18, Last: 18, Action: Ignored,
		How: "a debugging aid that writes TLS session secrets to a file: standbyd never writes them"},
	{Name: "min_protocol_version", Env: "PGMINPROTOCOLVERSION", First: 18, Last: 18, Action: Honoured,
		How: "passed to pgconn (3.0, 3.2, latest)"},
	{Name: "max_protocol_version", Env: "PGMAXPROTOCOLVERSION", First: 18, Last: 18, Action: Honoured,
		How: "passed to pgconn (3.0, 3.2, latest)"},
	{Name: "oauth_issuer", First: 18, Last: 18, Action: Ignored,
		How: "standbyd has no OAuth flow; used by libpq only if the server asks for OAUTHBEARER, and then the connection fails with pgconn's error: nothing is weakened"},
	{Name: "oauth_client_id", First: 18, Last: 18, Action: Ignored, How: "as oauth_issuer"},
	{Name: "oauth_client_secret", First: 18, Last: 18, Action: Ignored, Secret: true, How: "as oauth_issuer"},
	{Name: "oauth_scope", First: 18, Last: 18, Action: Ignored, How: "as oauth_issuer"},
	{Name: "authtype", Env: "PGAUTHTYPE", First: 13, Last: 13, Action: Ignored,
		How: "libpq 13 accepted and ignored it; removed in 14"},
	{Name: "tty", Env: "PGTTY", First: 13, Last: 13, Action: Ignored,
		How: "libpq 13 accepted and ignored it; removed in 14"},
}

var keywordIndex = func() map[string]*Keyword {
	m := make(map[string]*Keyword, len(Keywords))
	for i := range Keywords {
		m[Keywords[i].Name] = &Keywords[i]
	}
	return m
}()

// Lookup returns the keyword's row.
func Lookup(name string) (Keyword, bool) {
	k, ok := keywordIndex[name]
	if !ok {
		return Keyword{}, false
	}
	return *k, true
}

// IsSecret reports whether the keyword's value must never be shown.
func IsSecret(name string) bool {
	k, ok := keywordIndex[name]
	return ok && k.Secret
}

// mask replaces a secret value wherever one is shown.
const mask = "********"
