package testutil_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// fakeT records a Fatalf and ends the calling goroutine, as testing.T does.
type fakeT struct {
	testing.TB
	ctx    context.Context
	failed string
}

func (f *fakeT) Helper()                  {}
func (f *fakeT) Context() context.Context { return f.ctx }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// eventually runs testutil.Eventually on f in a goroutine of its own, since a failure ends it.
func eventually(f *fakeT, timeout, interval time.Duration, cond func() error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		testutil.Eventually(f, timeout, interval, cond)
	}()
	<-done
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeT{ctx: t.Context()}
		start, calls := time.Now(), 0
		eventually(f, time.Minute, time.Second, func() error {
			calls++
			return testutil.Check(calls == 3, "calls = %d", calls)
		})
		if f.failed != "" {
			t.Fatalf("failed: %s", f.failed)
		}
		if waited := time.Since(start); calls != 3 || waited != 2*time.Second {
			t.Fatalf("%d calls in %v, want 3 calls in 2s (at once, then every interval)", calls, waited)
		}
	})
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeT{ctx: t.Context()}
		start, calls := time.Now(), 0
		eventually(f, 10*time.Second, time.Second, func() error {
			calls++
			return fmt.Errorf("attempt %d", calls)
		})
		if f.failed != "not within 10s: attempt 11" {
			t.Fatalf("failed with %q, want the last error", f.failed)
		}
		if waited := time.Since(start); waited != 10*time.Second {
			t.Fatalf("gave up after %v, want 10s", waited)
		}
	})
}

func TestEventuallyStopsWhenTheTestEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := &fakeT{ctx: ctx}
		time.AfterFunc(3*time.Second, cancel)
		eventually(f, time.Hour, time.Second, func() error { return errors.New("never") })
		if !strings.HasPrefix(f.failed, "test ended while waiting: never") {
			t.Fatalf("failed with %q", f.failed)
		}
	})
}

func TestCheck(t *testing.T) {
	if err := testutil.Check(true, "unused %d", 1); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Check(false, "%d replicas, want %d", 2, 3); err == nil || err.Error() != "2 replicas, want 3" {
		t.Fatalf("Check = %v", err)
	}
}
