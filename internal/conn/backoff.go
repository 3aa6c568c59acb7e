package conn

import (
	"math/rand/v2"
	"time"
)

// backoff grows the delay between connection attempts exponentially, with
// jitter so that many standbys do not reconnect in step, and never below a
// non-zero floor (a zero delay turns a refused connection into a hot loop).
// It is reset only after a session said hello successfully.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	if min <= 0 {
		min = 100 * time.Millisecond
	}
	if max < min {
		max = min
	}
	return &backoff{min: min, max: max}
}

// next returns the delay before the next attempt: uniformly random in
// [cur/2, cur], where cur doubles from min up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	half := b.cur / 2
	d := half + time.Duration(rand.Int64N(int64(half)+1))
	if d < b.min {
		d = b.min
	}
	return d
}

func (b *backoff) reset() { b.cur = 0 }

// slow returns the delay after a configuration error: near the cap, since
// retrying soon cannot help, with jitter.
func (b *backoff) slow() time.Duration {
	b.cur = b.max
	q := b.max / 4
	return b.max - q + time.Duration(rand.Int64N(int64(q)+1))
}
