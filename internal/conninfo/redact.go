package conninfo

import "strings"

// Redact returns the connection string with secrets (password, sslpassword,
// SCRAM keys, OAuth secrets) replaced by ********, in keyword=value form. A
// string that does not parse is replaced whole: it might hold a password in
// a shape we cannot see.
func Redact(conninfo string) string {
	kvs, err := ParseString(conninfo)
	if err != nil {
		return "(unparsable connection string, redacted)"
	}
	var b strings.Builder
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv.Key)
		b.WriteByte('=')
		if IsSecret(kv.Key) {
			b.WriteString("********")
			continue
		}
		b.WriteString(quote(kv.Value))
	}
	return b.String()
}
