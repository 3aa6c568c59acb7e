package conninfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"host=a password=hunter2 sslpassword='x y'":            "host=a password=******** sslpassword=********",
		"postgresql://u:hunter2@h:5/db?sslmode=require":        "user=u password=******** host=h port=5 dbname=db sslmode=require",
		"postgres://h?password=hunter2&oauth_client_secret=s3": "host=h password=******** oauth_client_secret=********",
		"user=repl options='-c a=b' scram_client_key=abc":      "user=repl options='-c a=b' scram_client_key=********",
		"":                                  "",
		"password='hunter2":                 Redacted, // unterminated
		"password=hunter 2":                 Redacted, // "2": no "="
		"password=hunter x=2":               Redacted, // unknown keyword: maybe the rest of the password
		"postgresql://u:hun/ter2":           Redacted, // "hun" lands in the port
		"postgresql://u:hun@ter2@h":         Redacted,
		"postgres://h?password=hun&ter2=x":  Redacted,
		"postgresql://u:hunter2@h/?bogus=1": Redacted,
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// The secret keywords are exactly the table's.
func TestSecretKeywords(t *testing.T) {
	var got []string
	for _, k := range Keywords {
		if k.Secret {
			got = append(got, k.Name)
		}
	}
	eq(t, strings.Join(got, ","), "password,sslpassword,scram_client_key,scram_server_key,oauth_client_secret")
}

// pctEncode percent-encodes every byte but letters and digits.
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// outputs gathers everything Parse lets out that could be shown.
func outputs(r *Result, err error) string {
	var b strings.Builder
	if err != nil {
		b.WriteString(err.Error())
	}
	if r != nil {
		b.WriteString(r.Endpoint)
		b.WriteString(r.PasswordSource)
		for _, w := range r.Warnings {
			b.WriteString(w)
		}
		for _, d := range r.Decisions {
			fmt.Fprintf(&b, "%s %s %s %s %s", d.Keyword, d.Value, d.Source, d.Action, d.Reason)
		}
	}
	return b.String()
}

func FuzzParse(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParse.
	f.Add(basebackup15)
	f.Add(basebackup16)
	f.Add("postgresql://u:pw@h1:1,[::1]:2/db?sslmode=verify-full&password=pw")
	f.Add("host='a\\'b' password=pw")
	f.Fuzz(func(t *testing.T, s string) {
		r := Redact(s)
		kvs, err := ParseString(s)
		if err != nil {
			if r != Redacted {
				t.Fatalf("unparsable input shown: %q", r)
			}
			return
		}
		// Redact(s), parsed again, is s with every secret masked.
		if r != Redacted {
			back, err := ParseString(r)
			if err != nil {
				t.Fatalf("Redact(%q) = %q does not parse: %v", s, r, err)
			}
			if len(back) != len(kvs) {
				t.Fatalf("Redact changed the keywords: %v -> %v", kvs, back)
			}
			for i := range kvs {
				want := kvs[i].Value
				if IsSecret(kvs[i].Key) {
					want = mask
				}
				if back[i].Key != kvs[i].Key || back[i].Value != want {
					t.Fatalf("keyword %d: %v -> %v", i, kvs[i], back[i])
				}
			}
		}
		// Parse never panics, and no secret value of the input comes out
		// (unless it is also public text of the input).
		o := Options{Getenv: envMap(nil), HomeDir: t.TempDir()}
		res, err := Parse(s, o)
		out := outputs(res, err)
		public := r + " " + o.HomeDir
		// Keywords are public: errors name them ("invalid connection
		// option"), and one may spell the same as a secret value.
		for _, kv := range kvs {
			public += " " + kv.Key
		}
		// So is what the parser says of the input with its secrets masked:
		// defaults and explanations ("/var/run/postgresql" holds "resq").
		if r != Redacted {
			masked, merr := Parse(r, o)
			public += " " + outputs(masked, merr)
		}
		for _, kv := range kvs {
			if IsSecret(kv.Key) && len(kv.Value) >= 4 && strings.Contains(out, kv.Value) && !strings.Contains(public, kv.Value) {
				t.Fatalf("secret %q of %s comes out: %s", kv.Value, kv.Key, out)
			}
		}
		if err == nil {
			onlyLegitimateParams(t, res.Config)
		}
	})
}

// FuzzSecretNeverShown plants a secret in each place one can be given
// (string in both forms, service file, environment) next to arbitrary other
// text, and checks that it is in no error, Decision, Endpoint, warning or
// Redact output.
func FuzzSecretNeverShown(f *testing.F) {
	f.Add("hunter2-secret", uint8(0), "host=db.example")
	f.Add("p@ss:w/rd?&=x", uint8(1), "sslmode=verify-full")
	f.Add("it's a \\secret", uint8(2), "bogus=1")
	f.Add("s3cr3t-value", uint8(3), "port=70000")
	f.Add("s3cr3t-value", uint8(4), "sslmode=maybe")
	f.Add("s3cr3t-value", uint8(5), "sslcert=/nonexistent sslkey=/x")
	f.Fuzz(func(t *testing.T, secret string, where uint8, other string) {
		if len(secret) < 6 || strings.ContainsAny(secret, "\x00\n\r") {
			return
		}
		dir := t.TempDir()
		kw := []string{"password", "sslpassword", "oauth_client_secret", "scram_client_key"}[int(where)%4]
		// plant builds the connection string and options with secret in
		// the place chosen by where.
		plant := func(secret string) (string, Options) {
			env := map[string]string{}
			o := Options{Getenv: envMap(env), HomeDir: dir}
			var conn string
			switch where % 6 {
			case 0, 2: // keyword=value, quoted
				conn = other + " " + kw + "=" + quote(secret)
			case 1: // URI userinfo
				conn = "postgresql://u:" + pctEncode(secret) + "@h/?" + strings.ReplaceAll(other, " ", "&")
			case 3: // URI query
				conn = "postgresql://h/?" + kw + "=" + pctEncode(secret) + "&" + strings.ReplaceAll(other, " ", "&")
			case 4: // service file
				os.WriteFile(filepath.Join(dir, ".pg_service.conf"), []byte("[s]\n"+kw+"="+secret+"\n"), 0o600)
				conn = "service=s " + other
			case 5: // environment
				env["PGPASSWORD"] = secret
				conn = other
			}
			return conn, o
		}
		conn, o := plant(secret)
		// Only what the test added around the secret may contain it.
		public := other + " " + dir
		if strings.Contains(public, secret) || strings.Contains("postgresql://u:@h/?service=s "+kw, secret) {
			return
		}
		// And the secret must be read as one: "host= password=x" is, for
		// libpq too, a host named "password=x".
		if where%6 <= 3 {
			kvs, err := ParseString(conn)
			planted := false
			for _, kv := range kvs {
				planted = planted || (IsSecret(kv.Key) && kv.Value == secret)
			}
			if err == nil && !planted {
				return
			}
		}
		res, err := Parse(conn, o)
		out := outputs(res, err) + "\n" + Redact(conn)
		if !strings.Contains(out, secret) {
			return
		}
		// Text printed whatever the secret is (the mask "********", the
		// messages' own words) may contain a short secret by chance
		// (" *****"): it leaks only if a different secret in its place
		// takes it out of the output.
		other2 := strings.Repeat("\x7f", len(secret))
		conn2, o2 := plant(other2)
		res2, err2 := Parse(conn2, o2)
		if strings.Contains(outputs(res2, err2)+"\n"+Redact(conn2), secret) {
			return
		}
		t.Fatalf("secret in Parse or Redact output for %q: %s", Redact(conn), out)
	})
}
