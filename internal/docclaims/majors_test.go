package docclaims

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// majorsScript is what scripts/majors.sh says about the majors it tests:
// the default list and the Debian suite of each.
func majorsScript(t *testing.T, root string) (defaults []string, suite map[string]string, experimental string) {
	t.Helper()
	// majors.sh keeps its chroot functions (suite_of, make_chroot) in the
	// library it sources.
	var s string
	for _, f := range []string{"scripts/majors.sh", "scripts/chroot-lib.sh"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		s += string(b)
	}
	m := regexp.MustCompile(`\|\| majors=\(([0-9 ]+)\)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("scripts/majors.sh: no default list of majors")
	}
	defaults = strings.Fields(m[1])
	body := regexp.MustCompile(`(?s)suite_of\(\) \{\s*case \$1 in(.*?)esac`).FindStringSubmatch(s)
	if body == nil {
		t.Fatal("scripts/majors.sh: no suite_of")
	}
	suite = map[string]string{}
	for _, arm := range regexp.MustCompile(`(?m)^\s*([0-9 |]+)\)\s*echo (\w+)`).FindAllStringSubmatch(body[1], -1) {
		for _, major := range strings.Split(arm[1], "|") {
			suite[strings.TrimSpace(major)] = arm[2]
		}
	}
	// The major installed from experimental: its packages are named in the
	// step that adds the experimental sources.
	e := regexp.MustCompile(`second=\(postgresql-([0-9]+) `).FindStringSubmatch(s)
	if e == nil || !strings.Contains(s, "-t experimental") {
		t.Fatal("scripts/majors.sh: no major from experimental")
	}
	return defaults, suite, e[1]
}

// The README's table of supported majors is the list scripts/majors.sh
// tests (plus the host's major, run by make test), each from the Debian
// suite the script installs it from.
// claim: readme.version-matrix
func TestReadmeVersionMatrixMatchesMajorsScript(t *testing.T) {
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defaults, suite, experimental := majorsScript(t, root)
	rows := map[string][2]string{} // major -> where from, run by
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+)[^|]*\| ([^|]+) \| ([^|]+) \|$`).FindAllStringSubmatch(string(readme), -1) {
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README.md: major %s listed twice", m[1])
		}
		rows[m[1]] = [2]string{m[2], m[3]}
	}
	want := append([]string{"15"}, defaults...) // 15: testcluster.DefaultMajor
	var got []string
	for major := range rows {
		got = append(got, major)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("README.md lists majors %v, make test and scripts/majors.sh test %v", got, want)
	}
	if r := rows["15"]; !strings.Contains(r[0], "the host") || r[1] != "`make test`" {
		t.Errorf("README.md: 15 is the host's and run by make test, the table says %q", r)
	}
	for _, major := range defaults {
		r := rows[major]
		if !strings.Contains(r[0], suite[major]) {
			t.Errorf("README.md: %s comes from %q, scripts/majors.sh installs it from %s", major, r[0], suite[major])
		}
		if major == experimental && !strings.Contains(r[0], "experimental") {
			t.Errorf("README.md: %s comes from experimental, the table says %q", major, r[0])
		}
		if r[1] != "`make test-majors`" {
			t.Errorf("README.md: %s is run by make test-majors, the table says %q", major, r[1])
		}
	}
}

// What the README says scripts/majors.sh runs for each major: the
// extension's pg_regress suite, and the isolation and registry end-to-end
// tests besides the core ones, against a primary and a streaming standby.
// claim: readme.majors-script
func TestReadmeMajorsScriptRunsWhatItSays(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "scripts/majors.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.Contains(s, "make installcheck") {
		t.Error("scripts/majors.sh does not run make installcheck")
	}
	m := regexp.MustCompile(`(?m)^E2E_TESTS='\^\(([^)]*)\)\$'`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("scripts/majors.sh: no E2E_TESTS")
	}
	tests := map[string]bool{}
	for _, name := range strings.Split(m[1], "|") {
		tests[name] = true
	}
	for _, want := range []string{"TestIsolation.*", "TestRegistryChangesReachAnOpenChannel", "TestCallNThroughDaemon", "TestPrimaryAndStreamingStandby", "TestBasebackupConninfoHasTheHardKeywords"} {
		if !tests[want] {
			t.Errorf("scripts/majors.sh does not run %s (E2E_TESTS: %s)", want, m[1])
		}
	}
}

// docs/extension.md names the same majors as scripts/majors.sh, each from
// the same Debian suite, besides the host's 15.
// claim: extension.supported-majors
func TestExtensionDocMajorsMatchMajorsScript(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "docs/extension.md"))
	if err != nil {
		t.Fatal(err)
	}
	defaults, suite, experimental := majorsScript(t, root)
	m := regexp.MustCompile(`(?s)Supported, built warning-free and tested in CI: (.*?) PostgreSQL 16 is neither`).FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/extension.md: no list of supported majors")
	}
	text := strings.Join(strings.Fields(string(m[1])), " ")
	if !strings.Contains(text, "PostgreSQL 15 (the host's") {
		t.Errorf("docs/extension.md does not name 15 as the host's: %s", text)
	}
	named := regexp.MustCompile(`(\d+)(?: release candidate)? \(Debian (\w+)\)`).FindAllStringSubmatch(text, -1)
	got := map[string]string{}
	for _, n := range named {
		got[n[1]] = n[2]
	}
	for _, major := range defaults {
		want := suite[major]
		if major == experimental {
			want = "experimental"
		}
		if got[major] != want {
			t.Errorf("docs/extension.md: %s from %q, scripts/majors.sh installs it from %s", major, got[major], want)
		}
	}
	if len(got) != len(defaults) {
		t.Errorf("docs/extension.md names %v, scripts/majors.sh tests %v", got, defaults)
	}
}

// The majors the README says are neither built nor tested appear in no
// list that builds or tests one: not make test's (the host's 15), not
// scripts/majors.sh's, not make deb's, and debian/pgversions starts at 15.
// claim: readme.unbuilt-majors
func TestReadmeUnbuiltMajorsAreNotBuilt(t *testing.T) {
	root := repoRoot(t)
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	readme := read("README.md")
	if !strings.Contains(readme, "PostgreSQL 16 is neither built nor\ntested") || !strings.Contains(readme, "13 and 14 are not supported") {
		t.Fatal("README.md no longer names 16, 13 and 14 as not built")
	}
	defaults, _, _ := majorsScript(t, root)
	mk := regexp.MustCompile(`(?m)^DEB_MAJORS \?= (.+)$`).FindStringSubmatch(read("Makefile"))
	deb := regexp.MustCompile(`majors=\(([0-9 ]+)\)`).FindStringSubmatch(read("scripts/deb.sh"))
	if mk == nil || deb == nil {
		t.Fatal("no DEB_MAJORS in the Makefile or no default majors in scripts/deb.sh")
	}
	host := regexp.MustCompile(`DefaultMajor\s*=\s*"([0-9]+)"`).FindStringSubmatch(read("internal/testcluster/testcluster.go"))
	if host == nil {
		t.Fatal("internal/testcluster: no DefaultMajor")
	}
	lists := map[string][]string{
		"make test (testcluster.DefaultMajor)": {host[1]},
		"scripts/majors.sh":                    defaults,
		"the Makefile's DEB_MAJORS":            strings.Fields(mk[1]),
		"scripts/deb.sh":                       strings.Fields(deb[1]),
	}
	for name, majors := range lists {
		for _, m := range majors {
			if m == "16" || m == "13" || m == "14" {
				t.Errorf("%s builds or tests %s", name, m)
			}
		}
	}
	if pgv := strings.TrimSpace(read("packaging/extension/debian/pgversions")); pgv != "15+" {
		t.Errorf("debian/pgversions is %q, want 15+ (13 and 14 excluded)", pgv)
	}
}

// majorsE2E maps each item of docs/extension.md's list of the end-to-end
// tests run on every major to the alternatives of scripts/majors.sh's
// E2E_TESTS that run it.
var majorsE2E = map[string][]string{
	"hello and ping":                                        {"TestExtensionHelloAndPing"},
	"the contexts `serve()` refuses":                        {"TestExtensionRefusesWrongContexts"},
	"N and a handler through the daemon":                    {"TestCallNThroughDaemon", "TestHandlersThroughDaemon"},
	"hostile frames":                                        {"TestHostileFrames"},
	"no xmin or lock held while idle":                       {"TestIdleChannelHoldsNoXmin"},
	"the idle wait event":                                   {"TestIdleChannelWaitEvent"},
	"large buffers released after a request":                {"TestLargeBuffersReleasedAfterTheRequest"},
	"the `pg_basebackup -R` conninfo":                       {"TestBasebackupConninfoHasTheHardKeywords"},
	"the test clusters (a primary and a streaming standby)": {"TestPrimaryAndStreamingStandby"},
	"the isolation tests":                                   {"TestIsolation.*"},
	"registry changes reaching an open channel, and a registry still at 1.1":         {"TestRegistryChangesReachAnOpenChannel", "TestHandlerWithRegistryAt11"},
	"`pg_upgrade`, dump and restore, and extension updates with handlers registered": {"TestPgUpgradeWithHandlerRegistered", "TestDumpAndRestoreKeepHandlers", "TestUpdate10To11To12WithHandler"},
	"the control file's fields against `pg_controldata`":                             {"TestControlFileMatchesControldata"},
	"a promotion and a `pg_rewind` rejoin with the daemon":                           {"TestFailoverPromotionWithOldPrimaryAlive", "TestFailoverRewindAndRejoin"},
	"pipelining and the goodbye frame":                                               {"TestPipelineExtensionOrderAndGoodbye", "TestPipelineEightCallersOneSession", "TestGoodbyeOnShutdownIdleTimeoutAndPostmasterDeath"},
	"version 3's detail and hint reaching callers, and version 2's message alone":    {"TestProtocolV3DetailAndHintReachCallers", "TestProtocolV2ChannelGivesMessageOnly"},
	"a fast-path caller gone with requests in flight":                                {"TestFastPathCallerGoneWithRequestsInFlight"},
	"`standbyd.call()` from a standby":                                               {"TestStandbySQLCallsAreAttributed", "TestSQLCall.*"},
}

// testFuncs lists the test functions declared in the _test.go files of the
// given directories.
func testFuncs(t *testing.T, root string, dirs ...string) []string {
	t.Helper()
	var names []string
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(root, dir, "*_test.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no test files (%v)", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// docs/extension.md's list of the end-to-end tests run on every major is
// scripts/majors.sh's E2E_TESTS, both ways: each item of the list is run
// by alternatives of E2E_TESTS, every alternative belongs to an item (the
// doc says the list is complete), and each alternative names test
// functions that exist in the packages the script tests (an exact name, or
// a pattern matching at least one). The mapping of item to tests is
// majorsE2E above: an item added to the doc or a test added to E2E_TESTS
// without updating it fails here.
// claim: extension.majors-e2e-list
func TestExtensionDocE2EListIsMajorsE2ETests(t *testing.T) {
	root := repoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs/extension.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)tests of the `E2E_TESTS` list in `scripts/majors.sh`, which are, all of\\s+them: (.*?)\\. <!-- claim: extension.majors-e2e-list -->").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/extension.md: no complete list of the E2E_TESTS")
	}
	items := map[string]bool{}
	for _, it := range strings.Split(strings.Join(strings.Fields(string(m[1])), " "), "; ") {
		items[it] = true
		if _, ok := majorsE2E[it]; !ok {
			t.Errorf("docs/extension.md lists %q, which majorsE2E does not map to tests", it)
		}
	}
	for it := range majorsE2E {
		if !items[it] {
			t.Errorf("majorsE2E maps %q, which docs/extension.md does not list", it)
		}
	}

	b, err := os.ReadFile(filepath.Join(root, "scripts/majors.sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	e2e := regexp.MustCompile(`(?m)^E2E_TESTS='(\^\(([^)]*)\)\$)'`).FindStringSubmatch(script)
	if e2e == nil {
		t.Fatal("scripts/majors.sh: no E2E_TESTS")
	}
	// The packages the script runs E2E_TESTS in.
	if !strings.Contains(script, `-run "$E2E_TESTS" ./test/e2e ./internal/testcluster`) {
		t.Fatal("scripts/majors.sh no longer runs E2E_TESTS in ./test/e2e ./internal/testcluster")
	}
	run := regexp.MustCompile(e2e[1])
	alts := map[string]bool{}
	for _, a := range strings.Split(e2e[2], "|") {
		alts[a] = true
	}
	funcs := testFuncs(t, root, "test/e2e", "internal/testcluster")
	mapped := map[string]bool{}
	for it, tests := range majorsE2E {
		for _, a := range tests {
			mapped[a] = true
			if !alts[a] {
				t.Errorf("docs/extension.md lists %q (%s), not in scripts/majors.sh's E2E_TESTS", it, a)
			}
			one := regexp.MustCompile("^(" + a + ")$")
			n := 0
			for _, f := range funcs {
				if one.MatchString(f) {
					n++
					if !run.MatchString(f) {
						t.Errorf("%s (for %q) is not matched by E2E_TESTS", f, it)
					}
				}
			}
			if n == 0 {
				t.Errorf("%s (for %q): no such test function in test/e2e or internal/testcluster", a, it)
			}
		}
	}
	for a := range alts {
		if !mapped[a] {
			t.Errorf("scripts/majors.sh's E2E_TESTS runs %s, which docs/extension.md's list does not name", a)
		}
	}
}
