package opfmt

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Every --in and --out value that docs/api.md lists is accepted, and each
// encodes or prints what its name says; auto follows the op.
// claim: api.call-in-out-formats
func TestEveryDocumentedFormat(t *testing.T) {
	in := []struct {
		enc  string
		op   uint16
		args []string
		want []byte
	}{
		{InAuto, protocol.OpN, []string{"100", "200", "300"}, protocol.AppendN(nil, [3]int32{100, 200, 300})},
		{InAuto, protocol.OpPing, nil, nil},
		{InAuto, 0x100, []string{"a", "b"}, []byte("a b")},
		{InInt32, 0x100, []string{"1", "-1"}, []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}},
		{InText, protocol.OpN, []string{"1", "2", "3"}, []byte("1 2 3")},
		{InHex, 0x100, []string{"ca", "fe"}, []byte{0xca, 0xfe}},
	}
	for _, c := range in {
		got, err := Encode(c.op, c.args, c.enc, nil)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("--in %s op %#x %v: % x, %v; want % x", c.enc, c.op, c.args, got, err, c.want)
		}
	}
	if got, err := Encode(0x100, nil, InStdin, strings.NewReader("\x00\x01")); err != nil || !bytes.Equal(got, []byte{0, 1}) {
		t.Errorf("--in stdin: % x, %v", got, err)
	}

	n := protocol.AppendN(nil, [3]int32{400, 500, 600})
	out := []struct {
		format string
		op     uint16
		reply  []byte
		want   string
	}{
		{OutAuto, protocol.OpN, n, "400 500 600"},
		{OutAuto, 0x100, []byte("ok"), "ok"},
		{OutAuto, 0x100, []byte{0, 0xff}, "00ff"},
		{OutText, 0x100, []byte("ok"), "ok"},
		{OutHex, 0x100, []byte("ok"), "6f6b"},
		{OutRaw, 0x100, []byte{0, 0xff}, "\x00\xff"},
	}
	for _, c := range out {
		got, err := Format(c.op, c.reply, c.format)
		if err != nil || string(got) != c.want {
			t.Errorf("--out %s op %#x: %q, %v; want %q", c.format, c.op, got, err, c.want)
		}
	}
	got, err := Format(protocol.OpN, n, OutJSON)
	var v any
	if err != nil || json.Unmarshal(got, &v) != nil || !strings.Contains(string(got), "400") {
		t.Errorf("--out json N: %s, %v", got, err)
	}

	// The usage line of docs/api.md names exactly these values.
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`--in ([a-z0-9|]+)\] \[--out ([a-z|]+)\]`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/api.md: no usage line with --in and --out")
	}
	if string(m[1]) != strings.Join([]string{InAuto, InInt32, InText, InHex, InStdin}, "|") ||
		string(m[2]) != strings.Join([]string{OutAuto, OutText, OutHex, OutRaw, OutJSON}, "|") {
		t.Errorf("formats %q %q", m[1], m[2])
	}
}
