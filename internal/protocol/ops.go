package protocol

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Built-in operations (docs/protocol.md, "Operations").
const (
	OpHello   uint16 = 'H'
	OpPing    uint16 = 'P'
	OpN       uint16 = 'N'
	OpSetting uint16 = 'S'
	OpWAL     uint16 = 'W'
	OpPage    uint16 = 'B'

	// FirstUserOp is the first code for operations a DBA registers.
	FirstUserOp uint16 = 0x0100
)

var builtinNames = map[uint16]string{
	OpHello:   "hello",
	OpPing:    "ping",
	OpN:       "N",
	OpSetting: "setting",
	OpWAL:     "wal",
	OpPage:    "page",
}

// BuiltinOps lists the built-in operations' codes.
var BuiltinOps = []uint16{OpHello, OpPing, OpN, OpSetting, OpWAL, OpPage}

// IsBuiltin reports whether op is one of BuiltinOps.
func IsBuiltin(op uint16) bool {
	_, ok := builtinNames[op]
	return ok
}

// OpName names an op: the built-in's name, else its code in hex.
func OpName(op uint16) string {
	if n, ok := builtinNames[op]; ok {
		return n
	}
	if n := hexNames[op].Load(); n != nil {
		return *n
	}
	n := fmt.Sprintf("0x%04X", op)
	hexNames[op].Store(&n)
	return n
}

// hexNames keeps the names OpName made: a handler's op is named on every
// call (metrics, logs). Untouched, the table costs no memory.
var hexNames [1 << 16]atomic.Pointer[string]

// ParseOp reads an op from a built-in's name ("ping", "N", case-insensitive)
// or a number ("256", "0x0100"). Names of operations registered on the
// primary are resolved with the primary's hello (ResolveOp).
func ParseOp(s string) (uint16, error) {
	if op, ok := parseOp(s); ok {
		return op, nil
	}
	return 0, parseOpError(s)
}

// parseOp is ParseOp without the error, which is only built when it is
// returned: a handler's name is resolved on every call.
func parseOp(s string) (uint16, bool) {
	for op, name := range builtinNames {
		if strings.EqualFold(s, name) {
			return op, true
		}
	}
	if s != "" && s[0] >= '0' && s[0] <= '9' {
		if v, err := strconv.ParseUint(s, 0, 16); err == nil {
			return uint16(v), true
		}
	}
	return 0, false
}

func parseOpError(s string) error {
	if s == "" {
		return fmt.Errorf("empty op")
	}
	if c := s[0]; c >= '0' && c <= '9' {
		return fmt.Errorf("op %q is not a number from 0 to 65535", s)
	}
	return fmt.Errorf("unknown op %q: use a built-in name (ping, N, setting, wal, page), a registered handler's name, or a number", s)
}

// ResolveOp is ParseOp that also knows the operations a primary offered in
// its hello (registered handlers, by exact name).
func ResolveOp(s string, offered []OpInfo) (uint16, error) {
	if op, ok := parseOp(s); ok {
		return op, nil
	}
	for _, o := range offered {
		if !o.Builtin && o.Name == s {
			return o.Op, nil
		}
	}
	return 0, parseOpError(s)
}
