package main

import (
	"testing"
	"time"
)

func TestSummariseNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	s := summarise(lat)
	if s.Requests != 100 || s.MedianUS != 50 || s.P90US != 90 || s.P99US != 99 {
		t.Fatalf("summary of 1..100 us: %+v", s)
	}
	// 100 requests taking 5050 us in all, one after another.
	if got, want := s.PerSecond, 100/0.00505; got < want*0.999 || got > want*1.001 {
		t.Fatalf("per second: got %v, want %v", got, want)
	}
	if lat[0] != 100*time.Microsecond {
		t.Fatal("summarise sorted its caller's slice")
	}
}

func TestSummariseSmallSamples(t *testing.T) {
	if s := summarise(nil); s.Requests != 0 || s.PerSecond != 0 {
		t.Fatalf("empty sample: %+v", s)
	}
	s := summarise([]time.Duration{7 * time.Microsecond})
	if s.MedianUS != 7 || s.P99US != 7 {
		t.Fatalf("one-element sample: %+v", s)
	}
	if ratio(1, 0) != 0 || ratio(3, 2) != 1.5 {
		t.Fatal("ratio")
	}
}

func TestOneSessionEightOverFour(t *testing.T) {
	r := &report{Settings: settings{Callers: 4}}
	for _, tf := range []throughputFigures{{Sessions: 1, Callers: 1, PerSecond: 100}, {Sessions: 1, Callers: 4, PerSecond: 200},
		{Sessions: 1, Callers: 8, PerSecond: 500}, {Sessions: 2, Callers: 8, PerSecond: 900}} {
		r.addThroughput(tf)
	}
	if got := r.oneSessionEightOverFour(); got != 2.5 {
		t.Errorf("8 over 4 callers: %v, want 2.5", got)
	}
	if got := (&report{Settings: settings{Callers: 4}}).oneSessionEightOverFour(); got != 0 {
		t.Errorf("no steps: %v, want 0", got)
	}
}
