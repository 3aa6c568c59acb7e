package conninfo

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func kvString(kvs []KV) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "[%s=%q]", kv.Key, kv.Value)
	}
	return b.String()
}

func TestParseStringKeywordValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{``, ``},
		{`   `, ``},
		{`host=a`, `[host="a"]`},
		{`host = a  port=	5`, `[host="a"][port="5"]`},
		{"host=a\nport=5\r\n", `[host="a"][port="5"]`},
		{`user='it\'s' password='a b'`, `[user="it's"][password="a b"]`},
		{`password='back\\slash'`, `[password="back\\slash"]`},
		{`dbname=x\ y`, `[dbname="x y"]`},
		{`dbname=x\`, `[dbname="x"]`}, // a trailing backslash escapes the end, as libpq
		{`host=`, `[host=""]`},
		{`host='' port=''`, `[host=""][port=""]`},
		{`options='-c a=b'`, `[options="-c a=b"]`},
		{`host=a=b`, `[host="a=b"]`},
		{`host='a'port=5`, `[host="a"][port="5"]`}, // libpq needs no space after a quote
		{`host=a host=b`, `[host="a"][host="b"]`},
		{`=x`, `[="x"]`}, // an empty keyword: refused by Parse, as libpq
	} {
		got, err := ParseString(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if kvString(got) != c.want {
			t.Errorf("%q: got %s, want %s", c.in, kvString(got), c.want)
		}
	}
}

func TestParseStringURI(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`postgresql://`, ``},
		{`postgres://h`, `[host="h"]`},
		{`postgresql://u:p%40ss@h1:5433,h2/db?sslmode=require&ssl=true`, `[user="u"][password="p@ss"][host="h1,h2"][port="5433,"][dbname="db"][sslmode="require"][sslmode="require"]`},
		{`postgresql://u:pa:ss@h`, `[user="u"][password="pa:ss"][host="h"]`},
		{`postgresql://u:pa?ss@h`, `[user="u"][password="pa?ss"][host="h"]`},
		{`postgresql://u:@h`, `[user="u"][host="h"]`}, // an empty password is not set
		{`postgresql://:pw@h`, `[password="pw"][host="h"]`},
		{`postgres://[::1]:5432/`, `[host="::1"][port="5432"]`},
		{`postgres://[fe80::1%25eth0]/`, `[host="fe80::1%eth0"]`},
		{`postgres://[::1],[::2]:7`, `[host="::1,::2"][port=",7"]`},
		{`postgresql://h1,h2`, `[host="h1,h2"][port=","]`},
		{`postgresql:///db?host=/var/run/postgresql`, `[dbname="db"][host="/var/run/postgresql"]`},
		{`postgresql://%2Fvar%2Frun%2Fpostgresql/db`, `[host="/var/run/postgresql"][dbname="db"]`},
		{`postgresql://h/?`, `[host="h"]`},
		{`postgresql://h?application_name=a%20b&`, `[host="h"][application_name="a b"]`},
		{`postgresql://h/`, `[host="h"]`},
		{`postgresql://h:/`, `[host="h"]`},
		{`postgresql://h/d/e`, `[host="h"][dbname="d/e"]`},
		{`postgresql://h?options=-c%20x%3Dy`, `[host="h"][options="-c x=y"]`},
	} {
		got, err := ParseString(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if kvString(got) != c.want {
			t.Errorf("%q: got %s, want %s", c.in, kvString(got), c.want)
		}
	}
}

// Bad strings fail with the position and, when it is a keyword, its name;
// never with a value.
func TestParseStringErrors(t *testing.T) {
	for _, c := range []struct {
		in      string
		pos     int
		keyword string
		msg     string
	}{
		{`host`, 1, "host", `missing "="`},
		{`host=a port`, 8, "port", `missing "="`},
		{`host=a bogus x=1`, 8, "", `missing "=" after a word`},
		{`password=hunter 2`, 17, "", `missing "="`},
		{`host=a password='hunter2`, 17, "password", "unterminated quoted string"},
		{`password='abc\'`, 10, "password", "unterminated"},
		{"host=a\x00b", 7, "", "NUL"},
		{`postgresql://[::1`, 14, "host", `"]"`},
		{`postgresql://[]`, 14, "host", "may not be empty"},
		{`postgresql://[::1]x`, 19, "host", "unexpected character"},
		{`postgresql://h/?a`, 17, "", `missing key/value separator`},
		{`postgresql://h/?sslmode=a=b`, 26, "sslmode", `extra key/value separator`},
		{`postgresql://h/?a=1&&b=2`, 21, "", `missing key/value separator`},
		{`postgresql://h/%zz`, 16, "", "invalid percent-encoded token in URI dbname"},
		{`postgresql://h/d%00`, 17, "", "%00"},
		{`postgresql://u:p%4@h`, 17, "", "invalid percent-encoded token in URI password"},
		{`postgresql://u:p@ss@h/db`, 18, "", `"@" outside the user information`},
		{`postgresql://u:pa/ss@h`, 19, "", `"@" outside the user information`},
	} {
		_, err := ParseString(c.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: want a SyntaxError, got %v", c.in, err)
			continue
		}
		if se.Pos != c.pos || se.Keyword != c.keyword || !strings.Contains(se.Error(), c.msg) {
			t.Errorf("%q: got pos %d keyword %q %q, want pos %d keyword %q containing %q", c.in, se.Pos, se.Keyword, se.Error(), c.pos, c.keyword, c.msg)
		}
		for _, secret := range []string{"hunter", "ss@h", "abc"} {
			if strings.Contains(se.Error(), secret) {
				t.Errorf("%q: error shows a value: %v", c.in, se)
			}
		}
	}
}

// Parse-level errors: unknown keywords as libpq ("invalid connection
// option"), and values libpq would not accept, naming the keyword.
func TestParseValueErrors(t *testing.T) {
	for _, c := range []struct{ in, keyword, msg string }{
		{`host=a bogus=1`, "bogus", `invalid connection option "bogus" (at position 8)`},
		{`postgresql://h/?bogus=1`, "bogus", `invalid connection option "bogus"`},
		{`krbspn=x`, "krbspn", `invalid connection option`}, // pgconn's, not libpq's
		{`password=a b=c`, "", "invalid connection option at position 12"},
		{`=x`, "", "invalid connection option"},
		{`sslmode=maybe`, "sslmode", `invalid value "maybe"`},
		{`sslmode=''`, "sslmode", `invalid value ""`},
		{`channel_binding=sometimes`, "channel_binding", "invalid value"},
		{`target_session_attrs=readwrite`, "target_session_attrs", "invalid value"},
		{`gssencmode=yes`, "gssencmode", "invalid value"},
		{`sslcertmode=on`, "sslcertmode", "invalid value"},
		{`sslnegotiation=tls`, "sslnegotiation", "invalid value"},
		{`load_balance_hosts=yes`, "load_balance_hosts", "invalid value"},
		{`min_protocol_version=4`, "min_protocol_version", "invalid value"},
		{`connect_timeout=ten`, "connect_timeout", `invalid integer value "ten"`},
		{`keepalives_idle=''`, "keepalives_idle", "invalid integer value"},
		{`keepalives_idle=0`, "keepalives_idle", "out of range"},
		{`keepalives_count=200`, "keepalives_count", "out of range"},
		{`tcp_user_timeout=1.5`, "tcp_user_timeout", "invalid integer"},
		{`ssl_min_protocol_version=SSLv3`, "ssl_min_protocol_version", "invalid value"},
		{`ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=tlsv1.2`, "ssl_max_protocol_version", "range"},
		{`host=a,b port=1,2,3`, "port", "could not match 3 port numbers to 2 hosts"},
		{`host=a port=0`, "port", "invalid port number"},
		{`postgresql://u:secretpw/x`, "port", "invalid port number"},
		{`host=a,b hostaddr=127.0.0.1`, "hostaddr", "could not match 2 host names to 1 hostaddr values"},
		{`hostaddr=db.example`, "hostaddr", "not a numeric IP address"},
		{`host=ab@cd`, "host", `cannot contain "@"`},
	} {
		_, err := Parse(c.in, opts(t))
		var ke *KeywordError
		if !errors.As(err, &ke) || ke.Keyword != c.keyword || !strings.Contains(ke.Error(), c.msg) {
			t.Errorf("%q: got %v, want keyword %q and %q", c.in, err, c.keyword, c.msg)
		}
		if err != nil && strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%q: error shows a value: %v", c.in, err)
		}
	}
	// Values libpq accepts.
	for _, ok := range []string{`connect_timeout=' 10 '`, `keepalives=+1`, `port=''`, `host=a,b port=,5433`,
		`ssl_min_protocol_version=tlsv1.3`, `hostaddr=::1`, `hostaddr=fe80::1%eth0 host=x`, `host=a,b hostaddr=,127.0.0.1`} {
		if _, err := Parse(ok, opts(t)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// A keyword given twice: the last wins, as libpq.
func TestLastKeywordWins(t *testing.T) {
	r := mustParse(t, "host=a host=b port=1 port=2", opts(t))
	eq(t, r.Config.Host, "b")
	eq(t, r.Config.Port, uint16(2))
}

func TestQuoteRoundTrip(t *testing.T) {
	for _, v := range []string{"", "a", "a b", `it's`, `back\slash`, "tab\there", "x=y", "'", `\`} {
		kvs, err := ParseString("k=" + quote(v))
		if err != nil || len(kvs) != 1 || kvs[0].Value != v {
			t.Errorf("%q -> %s -> %v %v", v, quote(v), kvs, err)
		}
	}
}
