package protocol

import (
	"errors"
	"testing"
	"time"
)

// A wal reply's bytes at the offsets of docs/protocol.md's table, each field
// with its own value so that a field read from the wrong offset shows.
// claim: protocol.wal-reply-layout
func TestWALReplyLayout(t *testing.T) {
	buf := unhex2("01" + // 0: flags, bit 0: in recovery
		"00000003" + // 1: timeline
		"00000016b374d848" + // 5: insert LSN
		"00000016b374d000" + // 13: write LSN
		"00000016b374c000" + // 21: flush LSN
		"00000016b3740000" + // 29: received LSN
		"00000016b3700000" + // 37: replayed LSN
		"0006445941642240") // 45: last replayed commit, 1764000000123456 us
	if len(buf) != 53 {
		t.Fatalf("the table's payload is %d bytes, want 53", len(buf))
	}
	w, err := ParseWALReport(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := WALReport{
		InRecovery: true, Timeline: 3,
		Insert: 0x16B374D848, Write: 0x16B374D000, Flush: 0x16B374C000,
		Received: 0x16B3740000, Replayed: 0x16B3700000,
		LastReplayedCommit: time.UnixMicro(1764000000123456),
	}
	if w.InRecovery != want.InRecovery || w.Timeline != want.Timeline || w.Insert != want.Insert ||
		w.Write != want.Write || w.Flush != want.Flush || w.Received != want.Received ||
		w.Replayed != want.Replayed || !w.LastReplayedCommit.Equal(want.LastReplayedCommit) {
		t.Fatalf("parsed %+v\nwant   %+v", w, want)
	}
	if got := want.Append(nil); string(got) != string(buf) {
		t.Fatalf("encoded\n got % x\nwant % x", got, buf)
	}

	// Bit 0 clear: not in recovery; a commit time of 0: unknown.
	primary := append([]byte(nil), buf...)
	primary[0] = 0
	copy(primary[45:], make([]byte, 8))
	if w, err := ParseWALReport(primary); err != nil || w.InRecovery || !w.LastReplayedCommit.IsZero() {
		t.Fatalf("flags 0 and commit time 0: %+v, %v", w, err)
	}
	if _, err := ParseWALReport(buf[:52]); !errors.Is(err, ErrShortPayload) {
		t.Fatalf("52 bytes: %v, want ErrShortPayload", err)
	}
}
