package testutil

import (
	"fmt"
	"testing"
	"time"
)

// Eventually calls cond at once and then every interval until it returns nil. If it still fails
// when timeout has passed (it is called a last time then), or t's context ends, it fails t
// (Fatalf) with cond's last error, so the failure says what was last seen rather than only that
// time ran out. It is the one polling helper of the tests: wait for a condition with it, never
// with time.Sleep. Call it from the test's goroutine, as Fatalf requires.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.NewTimer(interval)
	defer wait.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("not within %v: %v", timeout, err)
			return
		}
		wait.Reset(min(interval, left))
		select {
		case <-wait.C:
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting: %v", err)
			return
		}
	}
}

// Check returns nil when ok, else an error of the message: a condition for Eventually written
// as a boolean, such as Check(n == 3, "%d replicas, want 3", n).
func Check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}
