package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
	"github.com/standbyd/standbyd/internal/testcluster"
)

// The Settings table of docs/extension.md is what the loaded library
// defines: every standbyd.* parameter and no other, each with the default,
// context and range the table gives.
// claim: extension.settings-table
func TestSettingsTableMatchesTheServer(t *testing.T) {
	needEnv(t)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "extension.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `(standbyd\\.[a-z_]+)` \\| `([^`]+)` \\| ([a-z]+) \\| ([^\\n]*) \\|$").FindAllSubmatch(doc, -1)
	if len(rows) == 0 {
		t.Fatal("docs/extension.md: no settings table")
	}
	sql := func(q string) string {
		t.Helper()
		out, err := env.PrimarySQL(ctxT(t, 30*time.Second), "LOAD 'standbyd'; "+q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return out
	}
	contexts := map[string]string{"superuser": "superuser", "reload": "sighup", "restart": "postmaster", "user": "user"}
	var documented []string
	for _, r := range rows {
		name, def, ctx, meaning := string(r[1]), string(r[2]), string(r[3]), string(r[4])
		documented = append(documented, name)
		got := strings.Split(sql("SELECT context, vartype, boot_val, coalesce(unit, ''), coalesce(min_val, ''), coalesce(max_val, '') FROM pg_settings WHERE name = '"+name+"'"), "|")
		if len(got) != 6 {
			t.Errorf("%s: not defined by the library (%q)", name, got)
			continue
		}
		if want := contexts[ctx]; got[0] != want {
			t.Errorf("%s: context %s, the table says %s (%s)", name, got[0], ctx, want)
		}
		// The server converts the table's values with its own parser.
		value := func(v string) string {
			switch got[3] {
			case "B":
				return sql("SELECT pg_size_bytes('" + v + "')")
			case "ms":
				return sql("SELECT (extract(epoch FROM interval '" + v + "') * 1000)::bigint")
			}
			return v
		}
		if want := value(def); got[2] != want {
			t.Errorf("%s: default %s%s, the table says %s (%s)", name, got[2], got[3], def, want)
		}
		if m := regexp.MustCompile(`\((\S+) to (\S+)\)`).FindStringSubmatch(meaning); m != nil {
			if lo, hi := value(m[1]), value(m[2]); got[4] != lo || got[5] != hi {
				t.Errorf("%s: range %s to %s, the table says %s to %s", name, got[4], got[5], m[1], m[2])
			}
		}
	}
	defined := strings.Fields(sql("SELECT string_agg(name, ' ' ORDER BY name) FROM pg_settings WHERE name LIKE 'standbyd.%'"))
	sort.Strings(documented)
	if strings.Join(defined, " ") != strings.Join(documented, " ") {
		t.Errorf("the library defines %v, the table lists %v", defined, documented)
	}
}

// standbyd.log_sessions: on, a channel's opening and its end with the count
// of requests are logged; off (by reload), neither is.
// claim: extension.settings-table
func TestLogSessionsSetting(t *testing.T) {
	needEnv(t)
	e := testcluster.New(t, testcluster.Options{})
	ctx := ctxT(t, 60*time.Second)
	lines := func(pid uint32) []string {
		var got []string
		for _, l := range strings.Split(e.Log("primary"), "\n") {
			if strings.Contains(l, "["+strconv.Itoa(int(pid))+"]") && strings.Contains(l, "standbyd channel") {
				got = append(got, l[strings.Index(l, "standbyd channel"):])
			}
		}
		return got
	}
	session := func() uint32 {
		pc := connectTo(t, e, "")
		ch := enter(t, pc)
		for i := uint32(1); i <= 3; i++ {
			wantOK(t, ch.call(protocol.OpPing, i, nil), "ping")
		}
		ch.finish()
		return pc.PID()
	}
	on := session()
	want := "standbyd channel opened|standbyd channel closed by the client after 3 requests"
	waitFor(t, 10*time.Second, "the log lines of a channel with log_sessions on", func() bool {
		return strings.Join(lines(on), "|") == want
	})
	admin := connectTo(t, e, "")
	for _, sql := range []string{"LOAD 'standbyd'", "ALTER SYSTEM SET standbyd.log_sessions = off", "SELECT pg_reload_conf()"} {
		if _, err := admin.Exec(ctx, sql).ReadAll(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	waitFor(t, 10*time.Second, "log_sessions off in new sessions", func() bool {
		out, err := e.PrimarySQL(ctx, "LOAD 'standbyd'; SELECT current_setting('standbyd.log_sessions')")
		return err == nil && out == "off"
	})
	off := session()
	// A line logged after the channel ended: once it is in the log, the
	// channel's lines would be too.
	if _, err := e.PrimarySQL(ctx, "DO $$ BEGIN RAISE LOG 'e2e marker after the channel'; END $$"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the marker in the server log", func() bool {
		return strings.Contains(e.Log("primary"), "e2e marker after the channel")
	})
	if got := lines(off); len(got) != 0 {
		t.Fatalf("log_sessions off: the channel logged %q", got)
	}
}
