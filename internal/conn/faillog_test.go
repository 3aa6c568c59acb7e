package conn

import (
	"testing"
	"time"
)

// claim: liveness.failures-summarised
func TestFailureLogSummarisesRepeats(t *testing.T) {
	f := failureLog{every: time.Minute}
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	if ok, left := f.failed(at(0), "refused"); !ok || left != 0 {
		t.Fatalf("first failure: log %v, left out %d", ok, left)
	}
	for s := 1; s < 60; s += 2 { // 30 identical failures within the minute
		if ok, _ := f.failed(at(s), "refused"); ok {
			t.Fatalf("identical failure at %ds was logged", s)
		}
	}
	// Another error is logged at once, with the count of those left out.
	if ok, left := f.failed(at(59), "password authentication failed"); !ok || left != 30 {
		t.Fatalf("new error: log %v, left out %d (want 30)", ok, left)
	}
	if ok, _ := f.failed(at(70), "password authentication failed"); ok {
		t.Fatal("repeat of the new error logged")
	}
	// A minute after the last logged line: a summary.
	if ok, left := f.failed(at(119), "password authentication failed"); !ok || left != 1 {
		t.Fatalf("summary: log %v, left out %d (want 1)", ok, left)
	}
	n, since := f.recovered()
	if n != 34 || !since.Equal(t0) {
		t.Fatalf("recovered: %d failures since %v", n, since)
	}
	// A new run starts afresh.
	if ok, left := f.failed(at(500), "refused"); !ok || left != 0 {
		t.Fatalf("first failure of a new run: log %v, left out %d", ok, left)
	}
	if n, _ := (&failureLog{}).recovered(); n != 0 {
		t.Fatal("no run, yet failures")
	}
}
