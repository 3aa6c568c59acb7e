package main

import (
	"math"
	"slices"
	"time"
)

// Summary is what the report says of one contender at one payload size.
type Summary struct {
	Requests  int     `json:"requests"`
	MedianUS  float64 `json:"median_us"`
	P90US     float64 `json:"p90_us"`
	P99US     float64 `json:"p99_us"`
	PerSecond float64 `json:"requests_per_second"` // one caller, back to back: requests / summed latency
}

// summarise computes the summary of a sample of latencies. Quantiles are
// nearest-rank (the value below which q of the sample lies), so that a
// reported p99 is a latency that was actually seen.
func summarise(lat []time.Duration) Summary {
	if len(lat) == 0 {
		return Summary{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var total time.Duration
	for _, d := range s {
		total += d
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return Summary{
		Requests:  len(s),
		MedianUS:  us(quantile(s, 0.5)),
		P90US:     us(quantile(s, 0.9)),
		P99US:     us(quantile(s, 0.99)),
		PerSecond: float64(len(s)) / total.Seconds(),
	}
}

// quantile returns the nearest-rank q-quantile of a sorted, non-empty sample.
func quantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// ratio is a/b, or 0 when b is 0 (a contender that did not run).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
