// Package opfmt turns command-line arguments into request payloads and reply
// payloads into text, for `standbyd call`. It knows the built-in operations'
// payloads (docs/protocol.md) and offers generic encodings for the rest.
package opfmt

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Input encodings of the arguments.
const (
	InAuto  = "auto"  // by op: int32 list for N, nothing for ping, else text
	InInt32 = "int32" // each argument a 32-bit integer, big-endian
	InText  = "text"  // arguments joined by spaces, UTF-8
	InHex   = "hex"   // arguments concatenated, hex digits
	InStdin = "stdin" // raw bytes from standard input (no arguments)
)

// Output formats.
const (
	OutAuto = "auto" // by op: ints for N, fields for ping and hello, else text when printable, hex otherwise
	OutText = "text"
	OutHex  = "hex"
	OutRaw  = "raw"
	OutJSON = "json"
)

// Encode builds the payload for op from args.
func Encode(op uint16, args []string, enc string, stdin io.Reader) ([]byte, error) {
	if enc == InAuto {
		switch op {
		case protocol.OpN:
			enc = InInt32
		case protocol.OpPing:
			if len(args) > 0 {
				return nil, fmt.Errorf("ping takes no arguments")
			}
			return nil, nil
		case protocol.OpHello:
			return nil, fmt.Errorf("hello is sent by the daemon itself; use `standbyd status` to see its answer")
		case protocol.OpWAL:
			if len(args) > 0 {
				return nil, fmt.Errorf("wal takes no arguments")
			}
			return nil, nil
		case protocol.OpSetting:
			if len(args) != 1 {
				return nil, fmt.Errorf("setting takes one argument, the parameter's name")
			}
			return []byte(args[0]), nil
		case protocol.OpPage:
			return encodePage(args)
		default:
			enc = InText
		}
	}
	switch enc {
	case InInt32:
		if op == protocol.OpN && len(args) != 3 {
			return nil, fmt.Errorf("op N takes exactly three integers, got %d", len(args))
		}
		out := make([]byte, 0, 4*len(args))
		for i, a := range args {
			v, err := strconv.ParseInt(a, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("argument %d (%q) is not a 32-bit integer", i+1, a)
			}
			out = append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return out, nil
	case InText:
		return []byte(strings.Join(args, " ")), nil
	case InHex:
		b, err := hex.DecodeString(strings.Join(args, ""))
		if err != nil {
			return nil, fmt.Errorf("hex argument: %w", err)
		}
		return b, nil
	case InStdin:
		if len(args) > 0 {
			return nil, fmt.Errorf("--in stdin takes no arguments")
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unknown input encoding %q (auto, int32, text, hex, stdin)", enc)
}

// encodePage reads RELATION BLOCK [FORK] (fork: main, fsm, vm, init).
func encodePage(args []string) ([]byte, error) {
	if len(args) < 2 || len(args) > 3 {
		return nil, fmt.Errorf("page takes RELATION BLOCK [FORK]")
	}
	block, err := strconv.ParseUint(args[1], 0, 32)
	if err != nil {
		return nil, fmt.Errorf("block number %q is not a 32-bit unsigned integer", args[1])
	}
	fork := uint8(protocol.ForkMain)
	if len(args) == 3 {
		forks := map[string]uint8{"main": protocol.ForkMain, "fsm": protocol.ForkFSM, "vm": protocol.ForkVM, "init": protocol.ForkInit}
		f, ok := forks[args[2]]
		if !ok {
			return nil, fmt.Errorf("fork %q is not main, fsm, vm or init", args[2])
		}
		fork = f
	}
	return protocol.AppendPageRequest(nil, fork, uint32(block), args[0]), nil
}

// Format renders a reply payload. The result ends without a newline except
// for raw output, which is the payload itself.
func Format(op uint16, payload []byte, format string) ([]byte, error) {
	switch format {
	case OutRaw:
		return payload, nil
	case OutHex:
		return []byte(hex.EncodeToString(payload)), nil
	case OutText:
		return payload, nil
	case OutJSON:
		v, err := decoded(op, payload)
		if err != nil {
			return nil, err
		}
		return json.Marshal(v)
	case OutAuto:
		switch op {
		case protocol.OpN:
			n, err := protocol.ParseN(payload)
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "%d %d %d", n[0], n[1], n[2]), nil
		case protocol.OpPing:
			p, err := protocol.ParsePingReply(payload)
			if err != nil {
				return nil, err
			}
			return fmt.Appendf(nil, "server_time=%s wal_position=%s timeline=%d in_recovery=%t",
				p.ServerTime.UTC().Format(time.RFC3339Nano), protocol.LSN(p.WALPosition), p.Timeline, p.InRecovery), nil
		case protocol.OpWAL:
			w, err := protocol.ParseWALReport(payload)
			if err != nil {
				return nil, err
			}
			if w.InRecovery {
				return fmt.Appendf(nil, "in_recovery=true timeline=%d received=%s replayed=%s last_replayed_commit=%s",
					w.Timeline, w.Received, w.Replayed, formatTime(w.LastReplayedCommit)), nil
			}
			return fmt.Appendf(nil, "in_recovery=false timeline=%d insert=%s write=%s flush=%s",
				w.Timeline, w.Insert, w.Write, w.Flush), nil
		case protocol.OpPage:
			return []byte(hex.EncodeToString(payload)), nil
		}
		if printable(payload) {
			return payload, nil
		}
		return []byte(hex.EncodeToString(payload)), nil
	}
	return nil, fmt.Errorf("unknown output format %q (auto, text, hex, raw, json)", format)
}

func decoded(op uint16, payload []byte) (any, error) {
	switch op {
	case protocol.OpN:
		n, err := protocol.ParseN(payload)
		if err != nil {
			return nil, err
		}
		return map[string]any{"op": "N", "values": n}, nil
	case protocol.OpPing:
		p, err := protocol.ParsePingReply(payload)
		if err != nil {
			return nil, err
		}
		return map[string]any{"op": "ping", "server_time": p.ServerTime.UTC(),
			"wal_position": protocol.LSN(p.WALPosition).String(), "timeline": p.Timeline, "in_recovery": p.InRecovery}, nil
	}
	return map[string]any{"op": protocol.OpName(op), "payload_hex": hex.EncodeToString(payload)}, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func printable(b []byte) bool {
	for _, c := range string(b) {
		if c == '\uFFFD' || (c < 0x20 && c != '\n' && c != '\t' && c != '\r') {
			return false
		}
	}
	return true
}
