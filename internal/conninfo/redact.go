package conninfo

import "strings"

// Redact returns the connection string with secrets (password, sslpassword,
// SCRAM keys, OAuth secrets) replaced by ********, in keyword=value form. A
// string that does not parse is replaced whole: it might hold a password in
// a shape we cannot see.
func Redact(conninfo string) string {
	kvs, err := ParseString(conninfo)
	if err != nil {
		return unparsable
	}
	for _, kv := range kvs {
		if !plainKey(kv.Key) {
			return unparsable // not a libpq keyword: nothing sensible to show
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
			b.WriteString("********")
			continue
		}
		b.WriteString(quote(kv.Value))
	}
	return b.String()
}

const unparsable = "(unparsable connection string, redacted)"

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}
