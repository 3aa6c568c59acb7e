package conn

import "time"

// failureSummaryInterval is how often a run of identical connection failures
// is summarised in the log while it goes on.
const failureSummaryInterval = time.Minute

// failureLog keeps a long outage from drowning the log without hiding it:
// the first failure of a run is logged in full, a different error is logged
// at once, and identical ones are counted and summarised once per interval
// (with how many were not logged). When the channel is back, one line says
// how long it failed and how many attempts it took.
type failureLog struct {
	every      time.Duration
	count      int       // failures in the current run
	first      time.Time // the run's first failure
	lastLog    time.Time
	lastMsg    string
	suppressed int // failures since the last one logged
}

// failed records a failure with the given message. It reports whether to
// log it and, if so, how many failures were left out since the last one
// logged.
func (f *failureLog) failed(now time.Time, msg string) (logIt bool, leftOut int) {
	f.count++
	if f.count == 1 {
		f.first = now
	}
	every := f.every
	if every <= 0 {
		every = failureSummaryInterval
	}
	if f.count == 1 || msg != f.lastMsg || now.Sub(f.lastLog) >= every {
		leftOut = f.suppressed
		f.suppressed, f.lastLog, f.lastMsg = 0, now, msg
		return true, leftOut
	}
	f.suppressed++
	return false, 0
}

// recovered ends the run and returns how many failures it had and when it
// began (0 failures: there was no run).
func (f *failureLog) recovered() (failures int, since time.Time) {
	failures, since = f.count, f.first
	*f = failureLog{every: f.every}
	return failures, since
}
