// Package scripts_test checks the parts of the shell scripts that can be
// checked without root or servers.
package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// majors.sh takes its Debian mirror from the host's apt sources, in both
// formats, for the host's own suite only.
func TestMajorsMirrorFromAptSources(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // "" means: fails
	}{
		{
			name: "deb822, security and source entries skipped",
			files: map[string]string{"sources.list.d/debian.sources": `Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

# a comment
Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm

Types: deb
# http://snapshot.example.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`},
			want: "http://mirror.example.org/debian",
		},
		{
			name: "deb822, disabled entry and continuation lines",
			files: map[string]string{"sources.list.d/a.sources": `Enabled: no
Types: deb
URIs: http://off.example.org/debian
Suites: bookworm

Types: deb
URIs:
 http://on.example.org/debian
Suites:
 bookworm
`},
			want: "http://on.example.org/debian",
		},
		{
			name: "one-line format with options, before .sources",
			files: map[string]string{
				"sources.list":               "# deb http://old.example.org/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://list.example.org/debian bookworm main\n",
				"sources.list.d/b.sources":   "Types: deb\nURIs: http://later.example.org/debian\nSuites: bookworm\n",
				"sources.list.d/x.list.save": "deb http://ignored.example.org/debian bookworm main\n",
			},
			want: "http://list.example.org/debian",
		},
		{
			name:  "no entry for the host's suite",
			files: map[string]string{"sources.list": "deb http://other.example.org/debian trixie main\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			apt := filepath.Join(dir, "apt")
			if err := os.MkdirAll(filepath.Join(apt, "sources.list.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, body := range tc.files {
				if err := os.WriteFile(filepath.Join(apt, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			osRelease := filepath.Join(dir, "os-release")
			if err := os.WriteFile(osRelease, []byte("ID=debian\nVERSION_CODENAME=bookworm\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("./majors.sh", "mirror")
			cmd.Env = append(os.Environ(), "STANDBYD_APT_ETC="+apt, "STANDBYD_OS_RELEASE="+osRelease)
			out, err := cmd.CombinedOutput()
			got := strings.TrimSpace(string(out))
			if tc.want == "" {
				if err == nil || !strings.Contains(got, "no Debian mirror for bookworm") {
					t.Fatalf("majors.sh mirror = %q, %v; want a failure naming the suite", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("majors.sh mirror = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
