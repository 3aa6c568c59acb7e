package opfmt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/standbyd/standbyd/internal/conn/conntest"
	"github.com/standbyd/standbyd/internal/protocol"
)

func TestEncode(t *testing.T) {
	b, err := Encode(protocol.OpN, []string{"100", "-200", "0x10"}, InAuto, nil)
	if err != nil || !bytes.Equal(b, protocol.AppendN(nil, [3]int32{100, -200, 16})) {
		t.Fatalf("N: % x %v", b, err)
	}
	for _, bad := range [][]string{{"1", "2"}, {"1", "2", "x"}, {"1", "2", "4294967296"}} {
		if _, err := Encode(protocol.OpN, bad, InAuto, nil); err == nil {
			t.Errorf("N %v: want an error", bad)
		}
	}
	if b, _ := Encode(0x100, []string{"hello", "world"}, InAuto, nil); string(b) != "hello world" {
		t.Errorf("text: %q", b)
	}
	if b, _ := Encode(0x100, []string{"de", "ad"}, InHex, nil); !bytes.Equal(b, []byte{0xde, 0xad}) {
		t.Errorf("hex: % x", b)
	}
	if b, _ := Encode(0x100, nil, InStdin, strings.NewReader("raw\x00")); string(b) != "raw\x00" {
		t.Errorf("stdin: %q", b)
	}
	if _, err := Encode(protocol.OpPing, []string{"x"}, InAuto, nil); err == nil {
		t.Error("ping with arguments: want an error")
	}
	if _, err := Encode(0x100, nil, "base64", nil); err == nil {
		t.Error("unknown encoding: want an error")
	}
}

func TestFormat(t *testing.T) {
	out, err := Format(protocol.OpN, protocol.AppendN(nil, [3]int32{400, 500, 600}), OutAuto)
	if err != nil || string(out) != "400 500 600" {
		t.Fatalf("N: %q %v", out, err)
	}
	ping := conntest.AppendPingReply(nil, protocol.PingReply{WALPosition: 0x16B374D848, Timeline: 1})
	out, _ = Format(protocol.OpPing, ping, OutAuto)
	if !strings.Contains(string(out), "wal_position=16/B374D848") {
		t.Fatalf("ping: %s", out)
	}
	out, _ = Format(protocol.OpPing, ping, OutJSON)
	if !strings.Contains(string(out), `"wal_position":"16/B374D848"`) {
		t.Fatalf("ping json: %s", out)
	}
	if out, _ := Format(0x100, []byte{0xff, 0x00}, OutAuto); string(out) != "ff00" {
		t.Fatalf("binary reply should print as hex: %q", out)
	}
	if out, _ := Format(0x100, []byte("text"), OutAuto); string(out) != "text" {
		t.Fatalf("text reply: %q", out)
	}
	if _, err := Format(protocol.OpN, []byte{1}, OutAuto); err == nil {
		t.Fatal("short N reply: want an error")
	}
}
