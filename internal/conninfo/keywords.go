package conninfo

// Action is what standbyd does with a connection keyword.
type Action string

const (
	// Honoured: the keyword takes effect as libpq would give it.
	Honoured Action = "honoured"
	// Replaced: the channel's own setting is used instead (dbname,
	// application_name, ...): the channel is not the walreceiver.
	Replaced Action = "replaced"
	// Ignored: harmless to leave out, with the reason.
	Ignored Action = "ignored"
	// Refused: cannot be honoured and ignoring it would weaken security or
	// authentication; the connection string is rejected.
	Refused Action = "refused"
)

// Keyword describes one libpq connection keyword and standbyd's decision.
type Keyword struct {
	Name    string
	Env     string // libpq's environment variable, "" if none
	Since   int    // first PostgreSQL major version that has it (13 = 13 or older)
	Action  Action // the usual decision; some values are refused (see Parse)
	How     string // how it is honoured, or why it is not
	secret  bool   // never shown
	pgconn  bool   // handed to pgconn.ParseConfig as is
	refuseV func(v string) string
}

// Keywords lists every keyword of PostgreSQL 13 to 18 libpq, in libpq's order.
var Keywords = []Keyword{
	{Name: "service", Env: "PGSERVICE", Since: 13, Action: Honoured, How: "the service's keywords are read from PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf (Debian: /etc/postgresql-common/pg_service.conf); keywords in the string win; each goes through this table"},
	{Name: "servicefile", Env: "PGSERVICEFILE", Since: 18, Action: Honoured, How: "the user service file to read"},
	{Name: "user", Env: "PGUSER", Since: 13, Action: Honoured, How: "passed to pgconn"},
	{Name: "password", Env: "PGPASSWORD", Since: 13, Action: Honoured, How: "passed to pgconn; never logged", secret: true},
	{Name: "passfile", Env: "PGPASSFILE", Since: 13, Action: Honoured, How: "read by standbyd as libpq does (ignored with a warning when group- or world-accessible); the channel's database is matched first, then \"replication\""},
	{Name: "require_auth", Env: "PGREQUIREAUTH", Since: 16, Action: Honoured, How: "passed to pgconn (v5.12 enforces it)", pgconn: true},
	{Name: "channel_binding", Env: "PGCHANNELBINDING", Since: 13, Action: Honoured, How: "passed to pgconn (SCRAM-SHA-256-PLUS; require fails without TLS)", pgconn: true},
	{Name: "connect_timeout", Env: "PGCONNECT_TIMEOUT", Since: 13, Action: Honoured, How: "per host attempt, by pgconn; channel.connect_timeout bounds the whole connect", pgconn: true},
	{Name: "dbname", Env: "PGDATABASE", Since: 13, Action: Replaced, How: "the channel connects to channel.database (the extension lives there); the walreceiver uses dbname only for the passfile lookup"},
	{Name: "host", Env: "PGHOST", Since: 13, Action: Honoured, How: "passed to pgconn; several hosts are tried in order"},
	{Name: "hostaddr", Env: "PGHOSTADDR", Since: 13, Action: Honoured, How: "the address dialled for each host; host still names the server for TLS and the passfile"},
	{Name: "port", Env: "PGPORT", Since: 13, Action: Honoured, How: "passed to pgconn"},
	{Name: "client_encoding", Env: "PGCLIENTENCODING", Since: 13, Action: Replaced, How: "the channel always uses UTF8 (pgconn requires it; frames are binary)"},
	{Name: "options", Env: "PGOPTIONS", Since: 13, Action: Honoured, How: "sent as the options startup parameter"},
	{Name: "application_name", Env: "PGAPPNAME", Since: 13, Action: Replaced, How: "the channel uses channel.application_name so that it is recognisable in pg_stat_activity"},
	{Name: "fallback_application_name", Since: 13, Action: Replaced, How: "channel.application_name is always set"},
	{Name: "keepalives", Since: 13, Action: Honoured, How: "TCP keepalive on (1, default) or off (0), as a socket option"},
	{Name: "keepalives_idle", Since: 13, Action: Honoured, How: "TCP_KEEPIDLE in seconds; default channel.keepalives_idle"},
	{Name: "keepalives_interval", Since: 13, Action: Honoured, How: "TCP_KEEPINTVL in seconds; default channel.keepalives_interval"},
	{Name: "keepalives_count", Since: 13, Action: Honoured, How: "TCP_KEEPCNT; default channel.keepalives_count"},
	{Name: "tcp_user_timeout", Since: 13, Action: Honoured, How: "TCP_USER_TIMEOUT in milliseconds; default channel.tcp_user_timeout"},
	{Name: "replication", Since: 13, Action: Replaced, How: "never sent: the channel is an ordinary session, not a replication connection"},
	{Name: "gssencmode", Env: "PGGSSENCMODE", Since: 13, Action: Ignored, How: "disable and prefer: no GSSAPI encryption (pgconn has none; prefer falls back as libpq does without credentials); require is refused",
		refuseV: func(v string) string {
			if v == "require" {
				return "gssencmode=require cannot be honoured: standbyd has no GSSAPI encryption; use TLS (sslmode) for this channel"
			}
			return ""
		}},
	{Name: "sslmode", Env: "PGSSLMODE", Since: 13, Action: Honoured, How: "passed to pgconn; verify-ca and verify-full are never downgraded", pgconn: true},
	{Name: "sslnegotiation", Env: "PGSSLNEGOTIATION", Since: 17, Action: Honoured, How: "passed to pgconn (postgres or direct)", pgconn: true},
	{Name: "sslcompression", Env: "PGSSLCOMPRESSION", Since: 13, Action: Ignored, How: "TLS compression is gone from OpenSSL and PostgreSQL; libpq itself ignores it"},
	{Name: "sslcert", Env: "PGSSLCERT", Since: 13, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "sslkey", Env: "PGSSLKEY", Since: 13, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "sslpassword", Since: 13, Action: Honoured, How: "passed to pgconn; never logged", secret: true, pgconn: true},
	{Name: "sslcertmode", Env: "PGSSLCERTMODE", Since: 16, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "sslrootcert", Env: "PGSSLROOTCERT", Since: 13, Action: Honoured, How: "passed to pgconn (including \"system\")", pgconn: true},
	{Name: "sslcrl", Env: "PGSSLCRL", Since: 13, Action: Refused, How: "certificate revocation lists are not checked by standbyd yet; refused rather than ignored",
		refuseV: refuseNonEmpty("sslcrl")},
	{Name: "sslcrldir", Env: "PGSSLCRLDIR", Since: 14, Action: Refused, How: "as sslcrl",
		refuseV: refuseNonEmpty("sslcrldir")},
	{Name: "sslsni", Env: "PGSSLSNI", Since: 14, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "requirepeer", Env: "PGREQUIREPEER", Since: 13, Action: Honoured, How: "for Unix-socket connections the server process's OS user is checked (SO_PEERCRED)"},
	{Name: "ssl_min_protocol_version", Env: "PGSSLMINPROTOCOLVERSION", Since: 13, Action: Honoured, How: "the TLS minimum version (TLSv1 to TLSv1.3; libpq's default TLSv1.2)"},
	{Name: "ssl_max_protocol_version", Env: "PGSSLMAXPROTOCOLVERSION", Since: 13, Action: Honoured, How: "the TLS maximum version"},
	{Name: "krbsrvname", Env: "PGKRBSRVNAME", Since: 13, Action: Honoured, How: "passed to pgconn (used if the server asks for GSSAPI authentication)", pgconn: true},
	{Name: "gsslib", Env: "PGGSSLIB", Since: 13, Action: Ignored, How: "chooses SSPI on Windows only"},
	{Name: "gssdelegation", Env: "PGGSSDELEGATION", Since: 16, Action: Ignored, How: "credential delegation is off in standbyd (the libpq default)"},
	{Name: "target_session_attrs", Env: "PGTARGETSESSIONATTRS", Since: 13, Action: Honoured, How: "passed to pgconn: with several hosts, read-write picks the writable primary", pgconn: true},
	{Name: "load_balance_hosts", Env: "PGLOADBALANCEHOSTS", Since: 16, Action: Ignored, How: "hosts are tried in the order given (disable); random only spreads load, which one channel does not need"},
	{Name: "min_protocol_version", Env: "PGMINPROTOCOLVERSION", Since: 18, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "max_protocol_version", Env: "PGMAXPROTOCOLVERSION", Since: 18, Action: Honoured, How: "passed to pgconn", pgconn: true},
	{Name: "sslkeylogfile", Env: "PGSSLKEYLOGFILE", Since: 18, Action: Ignored, How: "a debugging aid that writes TLS secrets to disk: standbyd never does"},
	{Name: "scram_client_key", Since: 18, Action: Refused, How: "pre-computed SCRAM keys are not supported by pgconn", secret: true, refuseV: refuseNonEmpty("scram_client_key")},
	{Name: "scram_server_key", Since: 18, Action: Refused, How: "as scram_client_key", secret: true, refuseV: refuseNonEmpty("scram_server_key")},
	{Name: "oauth_issuer", Since: 18, Action: Refused, How: "OAuth authentication is not supported by standbyd", refuseV: refuseNonEmpty("oauth_issuer")},
	{Name: "oauth_client_id", Since: 18, Action: Refused, How: "as oauth_issuer", refuseV: refuseNonEmpty("oauth_client_id")},
	{Name: "oauth_client_secret", Since: 18, Action: Refused, How: "as oauth_issuer", secret: true, refuseV: refuseNonEmpty("oauth_client_secret")},
	{Name: "oauth_scope", Since: 18, Action: Refused, How: "as oauth_issuer", refuseV: refuseNonEmpty("oauth_scope")},
}

func refuseNonEmpty(name string) func(string) string {
	return func(v string) string {
		if v == "" {
			return ""
		}
		return name + " cannot be honoured by standbyd; remove it from the connection string used by standbyd (channel.conninfo) or ask for support"
	}
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
	return ok && k.secret
}
