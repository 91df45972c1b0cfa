package run_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentplane/agentplane/internal/run"
)

// recorder notes the order in which runnables return.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) note(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.order = append(r.order, name)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.order)
}

// untilCancelled runs until its context ends, then notes its name and returns ctx's error.
func untilCancelled(rec *recorder, name string) run.Func {
	return func(ctx context.Context) error {
		<-ctx.Done()
		rec.note(name)
		return ctx.Err()
	}
}

func TestOneFailingStopsTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		boom := errors.New("boom")
		var g run.Group
		g.Add("a", untilCancelled(rec, "a"))
		g.Add("b", run.Func(func(context.Context) error {
			time.Sleep(time.Second) // synctest: fake time, the failure comes after the others started
			rec.note("b")
			return boom
		}))
		g.Add("c", untilCancelled(rec, "c"))
		err := g.Start(t.Context())
		if !errors.Is(err, boom) || err.Error() != "b: boom" {
			t.Fatalf("Start = %v, want b: boom", err)
		}
		if got, want := rec.got(), []string{"b", "c", "a"}; !slices.Equal(got, want) {
			t.Fatalf("returned in order %v, want %v", got, want)
		}
	})
}

func TestAllStopOnContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		ctx, cancel := context.WithCancel(t.Context())
		var g run.Group
		for _, name := range []string{"first", "second", "third"} {
			g.Add(name, untilCancelled(rec, name))
		}
		done := make(chan error, 1)
		go func() { done <- g.Start(ctx) }()
		synctest.Wait()
		if got := rec.got(); len(got) != 0 {
			t.Fatalf("stopped before the context ended: %v", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Start = %v, want nil after cancel", err)
		}
		// Reverse order of Add: what others depend on stops last.
		if got, want := rec.got(), []string{"third", "second", "first"}; !slices.Equal(got, want) {
			t.Fatalf("returned in order %v, want %v", got, want)
		}
	})
}

// Each runnable is asked to stop only once the one added after it has returned.
func TestStopsInReverseOrderOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var g run.Group
		lastReturned := make(chan struct{})
		g.Add("depended-on", run.Func(func(ctx context.Context) error {
			<-ctx.Done()
			select {
			case <-lastReturned:
				return nil
			default:
				return errors.New("cancelled while the part that depends on it still ran")
			}
		}))
		g.Add("dependent", run.Func(func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(time.Minute) // draining
			close(lastReturned)
			return nil
		}))
		cancel()
		if err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestReturningUnaskedIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		var g run.Group
		g.Add("server", untilCancelled(rec, "server"))
		g.Add("quitter", run.Func(func(context.Context) error { return nil }))
		err := g.Start(t.Context())
		if !errors.Is(err, run.ErrExited) {
			t.Fatalf("Start = %v, want ErrExited", err)
		}
		if got := rec.got(); !slices.Equal(got, []string{"server"}) {
			t.Fatalf("the others were not stopped: %v", got)
		}
	})
}

// The first real error wins; context.Canceled from a runnable asked to stop is not one.
func TestFirstRealErrorWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		first := errors.New("first")
		var g run.Group
		g.Add("late", run.Func(func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("late")
		}))
		g.Add("cancelled", run.Func(func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("serving: %w", ctx.Err())
		}))
		g.Add("failing", run.Func(func(context.Context) error { return first }))
		if err := g.Start(t.Context()); !errors.Is(err, first) {
			t.Fatalf("Start = %v, want first", err)
		}
	})
}

func TestIgnoringCancellationIsReportedAfterStopTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{}
		release := make(chan struct{})
		stuckDone := make(chan struct{})
		defer func() {
			select {
			case <-release:
			default:
				close(release) // a failed check must not leave the stuck runnable blocked
			}
		}()
		ctx, cancel := context.WithCancel(t.Context())
		g := run.Group{StopTimeout: 10 * time.Second}
		g.Add("fine", untilCancelled(rec, "fine"))
		g.Add("stuck", run.Func(func(context.Context) error {
			defer close(stuckDone)
			<-release // ignores its context
			return nil
		}))
		cancel()
		start := time.Now()
		err := g.Start(ctx)
		if !errors.Is(err, run.ErrStopTimeout) || err.Error() != "fine, stuck: did not stop in time (waited 10s)" {
			t.Fatalf("Start = %v, want fine and stuck reported with ErrStopTimeout", err)
		}
		if waited := time.Since(start); waited != 10*time.Second {
			t.Fatalf("waited %v, want the StopTimeout", waited)
		}
		// Left behind, "fine" was still cancelled; the stuck one runs until it returns.
		synctest.Wait()
		if got := rec.got(); !slices.Equal(got, []string{"fine"}) {
			t.Fatalf("returned: %v", got)
		}
		close(release)
		<-stuckDone
	})
}

func TestEmptyGroupReturnsAtOnce(t *testing.T) {
	var g run.Group
	if err := g.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}
