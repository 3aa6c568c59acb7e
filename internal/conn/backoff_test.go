package conn

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithFloorAndCap(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 2*time.Second)
	var prevCeil time.Duration = 100 * time.Millisecond
	for i := 0; i < 20; i++ {
		d := b.next()
		if d < 100*time.Millisecond {
			t.Fatalf("step %d: %s is below the floor", i, d)
		}
		if d > 2*time.Second {
			t.Fatalf("step %d: %s is above the cap", i, d)
		}
		if d > prevCeil {
			t.Fatalf("step %d: %s above the current ceiling %s", i, d, prevCeil)
		}
		prevCeil = min(prevCeil*2, 2*time.Second)
	}
	if b.cur != 2*time.Second {
		t.Fatalf("after 20 steps the ceiling is %s, want the cap", b.cur)
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Fatalf("after reset the first delay is %s, want the floor", d)
	}
}

// claim: liveness.backoff-floor
func TestBackoffZeroFloorIsRaised(t *testing.T) {
	b := newBackoff(0, 0)
	if d := b.next(); d <= 0 {
		t.Fatalf("a zero floor must not give a zero delay, got %s", d)
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		b := newBackoff(time.Second, time.Minute)
		b.next()
		seen[b.next()] = true
	}
	if len(seen) < 5 {
		t.Fatalf("50 second steps gave only %d distinct delays: no jitter", len(seen))
	}
}
