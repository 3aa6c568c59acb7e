package protocol

import "testing"

// Resolving a handler's name and naming its op happen on every call: once
// the name is known, neither allocates.
func TestResolveOpAndOpNameDoNotAllocate(t *testing.T) {
	offered := []OpInfo{{Op: 0x0100, Name: "echo"}}
	_ = OpName(0x0100)
	n := testing.AllocsPerRun(100, func() {
		op, err := ResolveOp("echo", offered)
		if err != nil || op != 0x0100 {
			t.Fatalf("ResolveOp: %v %v", op, err)
		}
		if OpName(op) != "0x0100" {
			t.Fatal(OpName(op))
		}
		if op, err := ResolveOp("ping", offered); err != nil || op != OpPing {
			t.Fatalf("ResolveOp ping: %v %v", op, err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per call, want 0", n)
	}
	// The errors are still there for what does not resolve.
	if _, err := ResolveOp("nope", offered); err == nil {
		t.Fatal("an unknown name resolved")
	}
	if _, err := ResolveOp("70000", offered); err == nil {
		t.Fatal("an op over 65535 resolved")
	}
	if _, err := ParseOp(""); err == nil {
		t.Fatal("an empty op parsed")
	}
}
