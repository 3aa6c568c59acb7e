package conninfo

import "strings"

// Redacted is what Redact returns for a string it cannot show safely.
const Redacted = "(connection string not shown: it does not parse)"

// Redact returns the connection string in keyword=value form, every
// keyword as given and in order, with secret values (password,
// sslpassword, scram_client_key, scram_server_key, oauth_client_secret)
// replaced by ********. It accepts both forms and never fails: a string
// that does not parse, names a keyword libpq does not know, or has a port
// that is no number is replaced whole by Redacted, since a password that
// needed quoting or percent-encoding may be strewn over it.
func Redact(conninfo string) string {
	kvs, err := ParseString(conninfo)
	if err != nil {
		return Redacted
	}
	for _, kv := range kvs {
		if _, ok := keywordIndex[kv.Key]; !ok {
			return Redacted
		}
		if kv.Key == "port" && strings.Trim(kv.Value, "0123456789, \t") != "" {
			return Redacted
		}
	}
	var b strings.Builder
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv.Key)
		b.WriteByte('=')
		if IsSecret(kv.Key) {
			b.WriteString(mask)
			continue
		}
		b.WriteString(quote(kv.Value))
	}
	return b.String()
}
