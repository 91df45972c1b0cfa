package supervisor

import "time"

// Backoff is the restart policy of a replica that keeps exiting: the first restart waits
// Initial, each further consecutive crash doubles the delay up to Max, and a replica that ran
// ready for at least ResetAfter starts counting from zero again. Zero fields take the defaults.
type Backoff struct {
	Initial    time.Duration // default 1s
	Max        time.Duration // default 5m
	ResetAfter time.Duration // default 10m
}

// Backoff defaults, as the kubelet uses for CrashLoopBackOff (apart from its 10s start).
const (
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 5 * time.Minute
	DefaultBackoffResetAfter = 10 * time.Minute
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultBackoffResetAfter
	}
	return b
}

// Delay is how long to wait before restarting a replica after its nth consecutive crash
// (n >= 1): Initial, 2*Initial, 4*Initial, ... capped at Max. It is 0 for n <= 0.
func (b Backoff) Delay(consecutiveCrashes int) time.Duration {
	if consecutiveCrashes <= 0 {
		return 0
	}
	b = b.withDefaults()
	d := b.Initial
	for i := 1; i < consecutiveCrashes; i++ {
		if d >= b.Max/2 {
			return b.Max
		}
		d *= 2
	}
	return min(d, b.Max)
}

// Crashes is the consecutive crash count after one more crash, given the count before it and
// how long the replica had been ready before it exited (0 if it never became ready).
func (b Backoff) Crashes(before int, readyFor time.Duration) int {
	if readyFor >= b.withDefaults().ResetAfter {
		return 1
	}
	return max(before, 0) + 1
}
