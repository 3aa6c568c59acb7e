package scripts_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The majors the README lists for postgresql-<major>-standbyd are the ones
// make deb builds by default (Makefile and deb.sh), and debian/pgversions
// admits each of them.
// claim: readme.deb-majors
func TestDebMajorsMatchReadme(t *testing.T) {
	readme := readFile(t, "README.md")
	m := regexp.MustCompile("`postgresql-<major>-standbyd` \\(the extension\\) for PostgreSQL ([0-9, and]+)\\.").FindStringSubmatch(readme)
	if m == nil {
		t.Fatal("README.md names no majors for postgresql-<major>-standbyd")
	}
	doc := strings.Join(regexp.MustCompile(`[0-9]+`).FindAllString(m[1], -1), " ")
	mk := regexp.MustCompile(`(?m)^DEB_MAJORS \?= (.+)$`).FindStringSubmatch(readFile(t, "Makefile"))
	if mk == nil || strings.Join(strings.Fields(mk[1]), " ") != doc {
		t.Errorf("README.md says %q, the Makefile's DEB_MAJORS is %q", doc, mk)
	}
	sh := regexp.MustCompile(`majors=\(([0-9 ]+)\)`).FindStringSubmatch(readFile(t, "scripts/deb.sh"))
	if sh == nil || sh[1] != doc {
		t.Errorf("README.md says %q, deb.sh's default is %q", doc, sh)
	}
	pgv := strings.TrimSpace(readFile(t, "packaging/extension/debian/pgversions"))
	low := regexp.MustCompile(`^([0-9]+)\+$`).FindStringSubmatch(pgv)
	if low == nil || low[1] != strings.Fields(doc)[0] {
		t.Errorf("debian/pgversions is %q, the lowest major built is %s", pgv, strings.Fields(doc)[0])
	}
}

// Installing standbyd enables and starts no unit: every unit the package
// ships is handed to dh_installsystemd with --no-enable --no-start, and the
// postinst restarts (try-restart: only what runs) on upgrade alone.
// claim: readme.deb-nothing-started
func TestDebInstallStartsNothing(t *testing.T) {
	rules := readFile(t, "packaging/daemon/debian/rules")
	calls := regexp.MustCompile(`(?m)^\tdh_installsystemd (.*)$`).FindAllStringSubmatch(rules, -1)
	units := map[string]bool{}
	for _, c := range calls {
		if !strings.Contains(c[1], "--no-enable") || !strings.Contains(c[1], "--no-start") {
			t.Errorf("dh_installsystemd %s: without --no-enable --no-start", c[1])
		}
		for _, f := range strings.Fields(c[1]) {
			if !strings.HasPrefix(f, "-") {
				units[f] = true
			}
		}
	}
	for _, u := range []string{"standbyd.service", "standbyd@.service", "standbyd.socket"} {
		if _, err := os.Stat(filepath.Join("../deploy/systemd", u)); err != nil {
			t.Fatal(err)
		}
		if !units[u] {
			t.Errorf("%s is not among the units dh_installsystemd is told about: %v", u, units)
		}
	}
	post := readFile(t, "packaging/daemon/debian/standbyd.postinst")
	for _, line := range strings.Split(post, "\n") {
		if strings.Contains(line, "deb-systemd-invoke") && !strings.Contains(line, "try-restart") {
			t.Errorf("postinst starts a unit: %s", line)
		}
		if strings.Contains(line, "systemctl") {
			t.Errorf("postinst calls systemctl: %s", line)
		}
	}
	if !strings.Contains(post, `[ "$1" = configure ] && [ -n "$2" ]`) {
		t.Error("postinst's restart is not limited to upgrades (configure with an old version)")
	}
}

// standbyd@INSTANCE runs the daemon with /etc/standbyd/INSTANCE.yaml (%i:
// the instance name, 15-main for standbyd@15-main) and a socket of its
// own; the package ships the unit with the packaged binary's path.
// claim: readme.instance-config
func TestInstanceUnitReadsItsOwnConfig(t *testing.T) {
	unit := readFile(t, "deploy/systemd/standbyd@.service")
	m := regexp.MustCompile(`(?m)^ExecStart=(.+)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("standbyd@.service has no ExecStart")
	}
	args := strings.Fields(m[1])
	if len(args) < 2 || args[0] != "/usr/local/bin/standbyd" || args[1] != "run" {
		t.Fatalf("ExecStart %q does not run the daemon", m[1])
	}
	flags := map[string]string{}
	for i := 2; i+1 < len(args); i += 2 {
		flags[args[i]] = args[i+1]
	}
	if flags["--config"] != "/etc/standbyd/%i.yaml" {
		t.Errorf("ExecStart reads config %q, want /etc/standbyd/%%i.yaml", flags["--config"])
	}
	if !strings.Contains(flags["--socket"], "%i") {
		t.Errorf("ExecStart's socket %q is not the instance's own", flags["--socket"])
	}
	rules := readFile(t, "packaging/daemon/debian/rules")
	if !strings.Contains(rules, `sed 's|/usr/local/bin/standbyd|/usr/bin/standbyd|' deploy/systemd/$$u > debian/$$u`) ||
		!strings.Contains(rules, "standbyd@.service") {
		t.Error("the package does not ship standbyd@.service with the packaged binary's path")
	}
	if !strings.Contains(readFile(t, "packaging/daemon/debian/standbyd.install"), "bin/standbyd usr/bin") {
		t.Error("the package does not install the daemon in /usr/bin")
	}
}

// The config is installed under /etc, which makes it a conffile
// (dh_installdeb): dpkg keeps an edited one on upgrade. No maintainer
// script writes it. (make test-deb edits it, upgrades and compares.)
// claim: readme.deb-conffile-kept
func TestDebConfigIsAConffile(t *testing.T) {
	install := readFile(t, "packaging/daemon/debian/standbyd.install")
	if !regexp.MustCompile(`(?m)^configs/standbyd\.yaml etc/standbyd$`).MatchString(install) {
		t.Fatalf("standbyd.install does not put the config in /etc/standbyd:\n%s", install)
	}
	if !strings.Contains(readFile(t, "packaging/daemon/debian/control"), "debhelper-compat (= 13)") {
		t.Error("not debhelper compat 13: files under /etc might not be conffiles")
	}
	if strings.Contains(readFile(t, "packaging/daemon/debian/standbyd.postinst"), "standbyd.yaml") {
		t.Error("the postinst touches the config")
	}
	if !strings.Contains(readFile(t, "scripts/debtest.sh"), `cmp -s "$R/etc/standbyd/standbyd.yaml" "$R/root/standbyd.yaml.edited" || fail "the edited conffile was not kept"`) {
		t.Error("make test-deb no longer checks that an edited config is kept")
	}
}

// The demo's last step is the README's SQL: one psql session on the
// standby that places the order through the primary with wait_for_replay
// and then reads demo_orders. (That such a call reads back its write on
// the standby at once is TestSQLCallWriteAndReadYourWrites, test/e2e.)
// claim: readme.demo-read-back
func TestDemoEndsWithTheReadmesReadBack(t *testing.T) {
	demo := readFile(t, "scripts/demo.sh")
	call := `standbyd.call('place_order', convert_to('a blue teapot', 'UTF8'), wait_for_replay => true)`
	m := regexp.MustCompile(`(?s)"\$CLUSTER" psql "\$BASE" standby -X [^\n]*\\\n(.*?)\n\n`).FindAllStringSubmatch(demo, -1)
	if len(m) == 0 {
		t.Fatal("demo.sh: no psql session on the standby")
	}
	last := m[len(m)-1][1]
	i, j := strings.Index(last, call), strings.Index(last, `-c "SELECT id, item FROM demo_orders"`)
	if i < 0 || j < i {
		t.Fatalf("the demo's last standby session is not the call then the read:\n%s", last)
	}
	readme := readFile(t, "README.md")
	if !strings.Contains(readme, "SELECT "+call+";") || !strings.Contains(readme, "SELECT id, item FROM demo_orders;") {
		t.Error("README.md's demo SQL is not the demo's")
	}
	if !strings.Contains(demo, "register_handler(300, 'place_order', 'public.place_order(bytea)')") {
		t.Error("demo.sh does not register place_order")
	}
}

// systemctl reload sends the daemon SIGHUP: every unit's ExecReload.
// (That SIGHUP reloads is TestIncludesReloadAndSwitchover, test/e2e.)
// claim: readme.sighup-reload
func TestUnitsReloadWithSIGHUP(t *testing.T) {
	for _, u := range []string{"standbyd.service", "standbyd@.service"} {
		if !regexp.MustCompile(`(?m)^ExecReload=/bin/kill -HUP \$MAINPID$`).MatchString(readFile(t, "deploy/systemd/"+u)) {
			t.Errorf("%s: ExecReload does not send SIGHUP", u)
		}
	}
}
