package protocol

import (
	"bytes"
	"reflect"
	"testing"
)

func FuzzParseReply(f *testing.F) {
	f.Add(AppendReply(nil, OpN, 1, StatusOK, AppendN(nil, [3]int32{400, 500, 600})))
	f.Add(AppendErrorReply(nil, OpN, 2, "22003", "integer out of range"))
	f.Add(AppendReply(nil, OpHello, 3, StatusOK, capturedHello))
	f.Add([]byte{})
	f.Add([]byte("A\x00\x00N\x00\x00\x00\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		r, err := ParseReply(buf)
		if err != nil {
			return
		}
		_ = r.Err()
		again := AppendReply(nil, r.Op, r.ID, r.Status, r.Payload)
		if !bytes.Equal(again, buf) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", buf, again)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add(AppendRequest(nil, OpN, 7, AppendN(nil, [3]int32{100, 200, 300})))
	f.Add(AppendRequest(nil, OpPing, 1, nil))
	f.Add([]byte("Q\x02\x00N"))
	f.Fuzz(func(t *testing.T, buf []byte) {
		r, err := ParseRequest(buf)
		if err != nil {
			return
		}
		if again := AppendRequest(nil, r.Op, r.ID, r.Payload); !bytes.Equal(again, buf) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", buf, again)
		}
	})
}

func FuzzParseHelloReply(f *testing.F) {
	f.Add(capturedHello)
	f.Add(capturedHello[:26])
	f.Add(HelloReply{Version: 1, InRecovery: true, Ops: []OpInfo{{Op: 0x100, Name: "page"}}}.Append(nil))
	f.Fuzz(func(t *testing.T, buf []byte) {
		h, err := ParseHelloReply(buf)
		if err != nil {
			return
		}
		// Re-encoding then parsing gives the same reply, every field (flags
		// beyond bit 0 of the header word are not kept, which is why parsed
		// values are compared, not the input's bytes), and the re-encoding
		// is stable.
		enc := h.Append(nil)
		h2, err := ParseHelloReply(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", h, h2)
		}
		if again := h2.Append(nil); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs:\n% x\n% x", enc, again)
		}
		// The input's fixed part, apart from those flag bits, is what was
		// parsed.
		if !bytes.Equal(enc[:2], buf[:2]) || enc[3]&1 != buf[3]&1 || !bytes.Equal(enc[4:helloFixed], buf[4:helloFixed]) {
			t.Fatalf("fixed part differs:\n in % x\nout % x", buf[:helloFixed], enc[:helloFixed])
		}
	})
}

func FuzzParsePingReply(f *testing.F) {
	f.Add(PingReply{WALPosition: 1 << 40, Timeline: 1}.Append(nil))
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, buf []byte) {
		p, err := ParsePingReply(buf)
		if err != nil {
			return
		}
		again := p.Append(nil)
		if !bytes.Equal(again[:20], buf[:20]) || again[20]&1 != buf[20]&1 {
			t.Fatalf("round trip differs:\n in % x\nout % x", buf[:21], again)
		}
	})
}
