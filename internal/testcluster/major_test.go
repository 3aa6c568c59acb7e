package testcluster

import (
	"context"
	"strings"
	"testing"
)

// The major and the chroot follow the environment, and every PostgreSQL
// program then runs inside the chroot as postgres.
func TestPGBinFollowsTheEnvironment(t *testing.T) {
	t.Setenv("STANDBYD_PG_MAJOR", "")
	t.Setenv("STANDBYD_PG_CHROOT", "")
	if got := PGBin(); got != "/usr/lib/postgresql/15/bin" {
		t.Fatalf("default PGBin() = %q", got)
	}
	if cmd := Command(context.Background(), "pg_ctl", "status"); strings.Contains(strings.Join(cmd.Args, " "), "chroot") {
		t.Fatalf("without a chroot the command is %q", cmd.Args)
	}

	t.Setenv("STANDBYD_PG_MAJOR", "18")
	t.Setenv("STANDBYD_PG_CHROOT", "/var/cache/standbyd/chroots/forky")
	if got := PGBin(); got != "/usr/lib/postgresql/18/bin" {
		t.Fatalf("PGBin() with STANDBYD_PG_MAJOR=18 = %q", got)
	}
	cmd := Command(context.Background(), "pg_ctl", "-D", "/tmp/x", "status")
	want := "chroot --userspec=postgres:postgres /var/cache/standbyd/chroots/forky env HOME=/var/lib/postgresql /usr/lib/postgresql/18/bin/pg_ctl -D /tmp/x status"
	if got := strings.Join(cmd.Args, " "); got != want {
		t.Fatalf("command in the chroot:\n got %s\nwant %s", got, want)
	}
}

// A major that is not installed fails Start with a message that says which
// and where; it never falls back to the host's 15.
func TestStartFailsWhenTheMajorIsMissing(t *testing.T) {
	for _, tc := range []struct{ major, chroot, want string }{
		{"99", "", "PostgreSQL 99 server not found in /usr/lib/postgresql/99/bin"},
		{"17", t.TempDir(), "PostgreSQL 17 server not found at "},
	} {
		t.Setenv("STANDBYD_PG_MAJOR", tc.major)
		t.Setenv("STANDBYD_PG_CHROOT", tc.chroot)
		e, err := Start(Options{})
		if err == nil {
			e.Stop()
			t.Fatalf("Start with STANDBYD_PG_MAJOR=%s STANDBYD_PG_CHROOT=%q succeeded", tc.major, tc.chroot)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Start with STANDBYD_PG_MAJOR=%s: %v; want it to say %q", tc.major, err, tc.want)
		}
	}
}
