package run

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Runnable is a long-running part. Start runs it until ctx is cancelled, then returns nil (or
// an error wrapping context.Canceled), or until it fails, then returns the error. A Runnable
// that returns nil before it is asked to stop is taken to have stopped unexpectedly.
type Runnable interface {
	Start(ctx context.Context) error
}

// Func adapts a function to a Runnable.
type Func func(ctx context.Context) error

var _ Runnable = Func(nil)

// Start calls f(ctx).
func (f Func) Start(ctx context.Context) error { return f(ctx) }

// ErrExited is the error of a runnable that returned nil before the group asked it to stop.
var ErrExited = errors.New("stopped before it was asked to")

// ErrStopTimeout is the error of a group whose runnables did not all return within StopTimeout
// of being asked to stop.
var ErrStopTimeout = errors.New("did not stop in time")

// Group runs runnables together. The zero value is an empty group; add runnables with Add, then
// call Start once.
//
// When the context of Start ends, or any runnable returns, the group stops the runnables still
// running one at a time, in the reverse order of Add: each is cancelled only once the one added
// after it has returned. A part that others depend on is added first and so stops last; for
// example the gateway drains its in-flight tasks while the replicas it sends them to still run.
type Group struct {
	// StopTimeout bounds how long Start waits, once the group begins to stop, for every
	// runnable to return. A runnable still running then is left behind (its goroutine runs on
	// until it returns) and Start returns an error wrapping ErrStopTimeout that names it.
	// Zero waits as long as it takes.
	StopTimeout time.Duration

	members []member
}

type member struct {
	name string
	r    Runnable
}

// Add adds r under name, which errors from it are prefixed with. Call it before Start.
func (g *Group) Add(name string, r Runnable) {
	g.members = append(g.members, member{name: name, r: r})
}

// Start runs every runnable in its own goroutine and returns once all have returned (or
// StopTimeout passed). It returns nil when the runnables stopped because ctx ended; otherwise
// the first error of a runnable, "name: err", where a runnable that returned nil unasked fails
// with ErrExited. An error wrapping context.Canceled from a runnable that was asked to stop is
// not an error.
//
// Runnables get a context carrying ctx's values but cancelled by the group, not by ctx: the
// group cancels them in order.
func (g *Group) Start(ctx context.Context) error {
	type exit struct {
		i   int
		err error
	}
	n := len(g.members)
	exits := make(chan exit, n) // buffered: a runnable left behind never blocks on it
	cancels := make([]context.CancelFunc, n)
	asked := make([]bool, n)
	done := make([]bool, n)
	base := context.WithoutCancel(ctx)
	for i, m := range g.members {
		mctx, cancel := context.WithCancel(base)
		cancels[i] = cancel
		go func() { exits <- exit{i: i, err: m.r.Start(mctx)} }()
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()

	var first error
	record := func(e exit) {
		done[e.i] = true
		err := e.err
		switch {
		case err == nil && !asked[e.i]:
			err = ErrExited
		case asked[e.i] && errors.Is(err, context.Canceled):
			err = nil
		}
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", g.members[e.i].name, err)
		}
	}

	if n == 0 {
		return nil
	}
	select {
	case <-ctx.Done():
	case e := <-exits:
		record(e)
	}

	var deadline <-chan time.Time
	if g.StopTimeout > 0 {
		t := time.NewTimer(g.StopTimeout)
		defer t.Stop()
		deadline = t.C
	}
	for i := n - 1; i >= 0; i-- {
		if done[i] {
			continue
		}
		asked[i] = true
		cancels[i]()
		for !done[i] {
			select {
			case e := <-exits:
				record(e)
			case <-deadline:
				return errors.Join(first, g.leftBehind(done))
			}
		}
	}
	return first
}

// leftBehind is the error naming the runnables that have not returned.
func (g *Group) leftBehind(done []bool) error {
	var names []string
	for i, d := range done {
		if !d {
			names = append(names, g.members[i].name)
		}
	}
	return fmt.Errorf("%s: %w (waited %v)", strings.Join(names, ", "), ErrStopTimeout, g.StopTimeout)
}
