package admission

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// slots is a fake agent with cap slots; try takes one if free.
type slots struct {
	mu        sync.Mutex
	cap, used int
	peak      int
}

func (s *slots) try() (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used >= s.cap {
		return nil, ErrNoSlot
	}
	s.used++
	s.peak = max(s.peak, s.used)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.used--
			s.mu.Unlock()
		})
	}, nil
}

func (s *slots) setCap(n int) {
	s.mu.Lock()
	s.cap = n
	s.mu.Unlock()
}

func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// recorder starts waiters one by one (each is queued before the next starts) and records the
// order in which they get a slot. A waiter that gets one gives it back at once, so the next
// grant happens only after the previous one was recorded.
type recorder struct {
	t     *testing.T
	q     *Queue
	s     *slots
	mu    sync.Mutex
	order []string
}

func (r *recorder) start(name string, req Request) {
	go func() {
		rel, err := r.q.Acquire(r.t.Context(), req, r.s.try)
		if err != nil {
			r.t.Errorf("%s: %v", name, err)
			return
		}
		r.mu.Lock()
		r.order = append(r.order, name)
		r.mu.Unlock()
		rel()
	}()
	synctest.Wait()
}

func TestFreeSlotIsTakenAtOnce(t *testing.T) {
	q := New(Options{Clock: testingclock.NewFakeClock(t0)})
	s := &slots{cap: 2}
	r1, err1 := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
	r2, err2 := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
	if err1 != nil || err2 != nil || s.inUse() != 2 {
		t.Fatalf("errors %v %v, in use %d", err1, err2, s.inUse())
	}
	r1()
	r1() // a second call does nothing
	r2()
	st := q.Stats("a")
	if s.inUse() != 0 || st.Admitted != 2 || st.Queued != 0 || st.Depth != 0 {
		t.Fatalf("in use %d, stats %+v", s.inUse(), st)
	}
}

func TestPriorityThenFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{Clock: testingclock.NewFakeClock(t0)})
		s := &slots{cap: 1}
		hold, err := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{t: t, q: q, s: s}
		r.start("batch-1", Request{Agent: "a", Priority: Batch})
		r.start("normal-1", Request{Agent: "a", Priority: Normal})
		r.start("urgent-1", Request{Agent: "a", Priority: Urgent})
		r.start("normal-2", Request{Agent: "a", Priority: Normal})
		r.start("batch-2", Request{Agent: "a", Priority: Batch})
		r.start("urgent-2", Request{Agent: "a", Priority: Urgent})
		st := q.Stats("a")
		if st.Depth != 6 || st.DepthByPriority[Urgent] != 2 || st.DepthByPriority[Batch] != 2 {
			t.Fatalf("stats while waiting: %+v", st)
		}
		hold()
		synctest.Wait()
		want := []string{"urgent-1", "urgent-2", "normal-1", "normal-2", "batch-1", "batch-2"}
		if !slices.Equal(r.order, want) {
			t.Fatalf("order %v, want %v", r.order, want)
		}
		if d := q.Depth("a"); d != 0 {
			t.Fatalf("depth %d after all served", d)
		}
	})
}

func TestRoundRobinAcrossTenants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		r := &recorder{t: t, q: q, s: s}
		// A floods first; B and C arrive later with fewer tasks.
		for i := range 5 {
			r.start(fmt.Sprint("A", i+1), Request{Agent: "a", Tenant: "A"})
		}
		for i := range 2 {
			r.start(fmt.Sprint("B", i+1), Request{Agent: "a", Tenant: "B"})
		}
		r.start("C1", Request{Agent: "a", Tenant: "C"})
		// Another class does not disturb the rotation; it just goes first.
		r.start("U1", Request{Agent: "a", Tenant: "A", Priority: Urgent})
		hold()
		synctest.Wait()
		want := []string{"U1", "A1", "B1", "C1", "A2", "B2", "A3", "A4", "A5"}
		if !slices.Equal(r.order, want) {
			t.Fatalf("order %v, want %v", r.order, want)
		}
	})
}

func TestFreedSlotGoesToTheWaiterNotANewcomer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		got := make(chan string, 2)
		acquire := func(name string) {
			go func() {
				rel, err := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				got <- name
				<-t.Context().Done()
				rel()
			}()
		}
		acquire("waiter")
		synctest.Wait()
		// The slot frees without a release through the queue (say, a replica joined) and a
		// newcomer arrives before anyone calls Notify: the waiter gets the slot, the newcomer waits.
		s.setCap(2)
		acquire("newcomer")
		synctest.Wait()
		if len(got) != 1 || <-got != "waiter" {
			t.Fatal("the newcomer barged past the waiter")
		}
		if q.Depth("a") != 1 {
			t.Fatalf("depth %d, want the newcomer waiting", q.Depth("a"))
		}
		// A release hands the slot straight to the waiting newcomer.
		hold()
		synctest.Wait()
		if len(got) != 1 || <-got != "newcomer" {
			t.Fatal("the released slot did not reach the newcomer")
		}
		if s.peak > 2 {
			t.Fatalf("peak %d over capacity", s.peak)
		}
	})
}

func TestNotifyHandsOnSlotsThatFreedElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 0}
		done := make(chan error, 1)
		go func() {
			rel, err := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
			if err == nil {
				rel()
			}
			done <- err
		}()
		synctest.Wait()
		s.setCap(1) // a replica became ready
		synctest.Wait()
		if len(done) != 0 {
			t.Fatal("served before Notify")
		}
		q.Notify("a")
		q.Notify("unknown agent")
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := testingclock.NewFakeClock(t0)
		q := New(Options{Clock: clk})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		errc := make(chan error, 2)
		for _, d := range []time.Duration{2 * time.Second, 10 * time.Second} {
			go func() {
				rel, err := q.Acquire(t.Context(), Request{Agent: "a", Deadline: t0.Add(d)}, s.try)
				if err == nil {
					rel()
				}
				errc <- err
			}()
		}
		synctest.Wait()
		clk.Step(time.Second)
		synctest.Wait()
		if len(errc) != 0 {
			t.Fatal("refused before its deadline")
		}
		clk.Step(time.Second)
		synctest.Wait()
		err := <-errc
		var re *RefusedError
		if !errors.Is(err, ErrDeadline) || !errors.As(err, &re) || re.Waited != 2*time.Second || re.RetryAfter < MinRetryAfter || re.Agent != "a" {
			t.Fatalf("err = %#v, want a deadline refusal after 2s", err)
		}
		if st := q.Stats("a"); st.Depth != 1 || st.RefusedDeadline != 1 || st.OldestWait != 2*time.Second {
			t.Fatalf("stats %+v", st)
		}
		// The other one is served in time.
		hold()
		synctest.Wait()
		if err := <-errc; err != nil {
			t.Fatalf("second waiter: %v", err)
		}
		// A deadline already passed is refused without trying.
		if _, err := q.Acquire(t.Context(), Request{Agent: "a", Deadline: clk.Now()}, s.try); !errors.Is(err, ErrDeadline) {
			t.Fatalf("past deadline: err = %v", err)
		}
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{MaxQueue: 2})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		ctx, cancel := context.WithCancel(t.Context())
		for range 2 {
			go func() { _, _ = q.Acquire(ctx, Request{Agent: "a"}, s.try) }()
		}
		synctest.Wait()
		// Batch: nothing waiting is below it to make room.
		_, err := q.Acquire(ctx, Request{Agent: "a", Priority: Batch}, s.try)
		var re *RefusedError
		if !errors.Is(err, ErrQueueFull) || !errors.As(err, &re) || re.Depth != 2 || re.RetryAfter != time.Second {
			t.Fatalf("err = %v, want ErrQueueFull with depth 2 and Retry-After 1s", err)
		}
		// Another agent has its own queue.
		other := &slots{cap: 1}
		if rel, err := q.Acquire(ctx, Request{Agent: "b"}, other.try); err != nil {
			t.Fatalf("agent b: %v", err)
		} else {
			rel()
		}
		cancel()
		synctest.Wait()
		hold()
		if st := q.Stats("a"); st.RefusedFull != 1 || st.Canceled != 2 || st.Depth != 0 {
			t.Fatalf("stats %+v", st)
		}
		if got := q.Agents(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("Agents = %v", got)
		}
	})
}

// TestFullQueueMakesRoomForHigherClasses: a full queue of batch work refuses its newest batch
// waiter to take an urgent or normal task, which then waits; batch is refused when only batch
// and better waits.
func TestFullQueueMakesRoomForHigherClasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{MaxQueue: 2})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		errs := make([]chan error, 2)
		for i := range errs {
			errs[i] = make(chan error, 1)
			go func() {
				rel, err := q.Acquire(t.Context(), Request{Agent: "a", Priority: Batch}, s.try)
				if rel != nil {
					rel()
				}
				errs[i] <- err
			}()
			synctest.Wait() // batch 0 is older than batch 1
		}
		urgent := make(chan error, 1)
		go func() {
			rel, err := q.Acquire(t.Context(), Request{Agent: "a", Priority: Urgent}, s.try)
			if rel != nil {
				rel()
			}
			urgent <- err
		}()
		synctest.Wait()
		select {
		case err := <-errs[1]:
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrQueueFull) || re.Waited != 0 {
				t.Fatalf("displaced batch waiter: %v", err)
			}
		default:
			t.Fatal("the newest batch waiter was not refused to make room for the urgent task")
		}
		if _, err := q.Acquire(t.Context(), Request{Agent: "a", Priority: Batch}, s.try); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("a batch task into a queue full of better ones: %v", err)
		}
		if st := q.Stats("a"); st.Displaced != 1 || st.RefusedFull != 2 || st.Depth != 2 {
			t.Fatalf("stats %+v", st)
		}
		hold()
		synctest.Wait()
		if err := <-urgent; err != nil {
			t.Fatalf("urgent: %v", err)
		}
		if err := <-errs[0]; err != nil {
			t.Fatalf("the older batch waiter: %v", err)
		}
	})
}

// TestExpectedWaitPastTheDeadlineIsRefusedAtOnce: once the queue knows how fast slots free, a
// request that would wait past its deadline behind the ones ahead of it is refused at once,
// with a Retry-After of about how much longer it would have had to wait; one of a higher class,
// with fewer ahead, waits.
func TestExpectedWaitPastTheDeadlineIsRefusedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 1}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// One slot, freed every 100 ms: a steady stream of waiters measures the rate.
		rel, _ := q.Acquire(ctx, Request{Agent: "a"}, s.try)
		results := make(chan func(), 100)
		for range 40 {
			go func() {
				r, err := q.Acquire(ctx, Request{Agent: "a", Priority: Batch}, s.try)
				if err == nil {
					results <- r
				}
			}()
		}
		synctest.Wait()
		for range minRateSamples + 2 {
			time.Sleep(100 * time.Millisecond)
			rel()
			rel = <-results
		}
		// About 17 batch waiters ahead, one slot every 100 ms: 1.8 s.
		now := time.Now()
		_, err := q.Acquire(ctx, Request{Agent: "a", Priority: Batch, Deadline: now.Add(time.Second)}, s.try)
		var re *RefusedError
		if !errors.As(err, &re) || !errors.Is(err, ErrExpectedWait) || re.RetryAfter != time.Second {
			t.Fatalf("err = %v, want ErrExpectedWait with Retry-After 1s", err)
		}
		if time.Since(now) != 0 {
			t.Fatal("the refusal waited")
		}
		// Normal, with none of its class ahead, goes first.
		got := make(chan error, 1)
		go func() {
			r, err := q.Acquire(ctx, Request{Agent: "a", Deadline: now.Add(time.Second)}, s.try)
			if r != nil {
				r()
			}
			got <- err
		}()
		synctest.Wait()
		time.Sleep(100 * time.Millisecond)
		rel()
		if err := <-got; err != nil {
			t.Fatalf("normal task: %v", err)
		}
		if st := q.Stats("a"); st.RefusedExpected != 1 {
			t.Fatalf("stats %+v", st)
		}
		cancel()
	})
}

func TestCanceledWaitersLeaveNoTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 3)
		for _, tenant := range []string{"x", "y", "x"} {
			go func() {
				_, err := q.Acquire(ctx, Request{Agent: "a", Tenant: tenant}, s.try)
				errc <- err
			}()
		}
		synctest.Wait()
		cancel()
		synctest.Wait() // every waiter returned: the bubble would deadlock on a leak
		for range 3 {
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		}
		hold()
		if s.inUse() != 0 || q.Depth("a") != 0 {
			t.Fatalf("in use %d, depth %d", s.inUse(), q.Depth("a"))
		}
		// The tenant ring is empty again: a new waiter is served normally.
		if rel, err := q.Acquire(t.Context(), Request{Agent: "a", Tenant: "x"}, s.try); err != nil {
			t.Fatal(err)
		} else {
			rel()
		}
	})
}

func TestCancelRacingAGrantGivesTheSlotBack(t *testing.T) {
	for i := range 50 {
		synctest.Test(t, func(t *testing.T) {
			q := New(Options{})
			s := &slots{cap: 1}
			hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
			ctx, cancel := context.WithCancel(t.Context())
			type res struct {
				rel func()
				err error
			}
			out := make(chan res, 1)
			go func() {
				rel, err := q.Acquire(ctx, Request{Agent: "a"}, s.try)
				out <- res{rel, err}
			}()
			synctest.Wait()
			hold()   // grants the slot to the waiter (its result is buffered) ...
			cancel() // ... whose context ends before it looks
			r := <-out
			synctest.Wait()
			switch {
			case r.err == nil && s.inUse() == 1:
				r.rel()
			case errors.Is(r.err, context.Canceled) && s.inUse() == 0:
			default:
				t.Fatalf("run %d: err %v with %d slots in use", i, r.err, s.inUse())
			}
		})
	}
}

func TestTryErrorEndsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New(Options{})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		gone := errors.New("agent removed")
		var dead atomic.Bool
		try := func() (func(), error) {
			if dead.Load() {
				return nil, gone
			}
			return s.try()
		}
		errc := make(chan error, 1)
		go func() { _, err := q.Acquire(t.Context(), Request{Agent: "a"}, try); errc <- err }()
		synctest.Wait()
		dead.Store(true)
		hold()
		if err := <-errc; !errors.Is(err, gone) {
			t.Fatalf("err = %v, want the TryFunc's error", err)
		}
		if st := q.Stats("a"); st.Failed != 1 || st.Depth != 0 {
			t.Fatalf("stats %+v", st)
		}
		// An error on the fast path is returned as is, without queueing.
		if _, err := q.Acquire(t.Context(), Request{Agent: "a"}, try); !errors.Is(err, gone) {
			t.Fatalf("fast path: err = %v", err)
		}
	})
}

func TestWaitStats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := testingclock.NewFakeClock(t0)
		q := New(Options{Clock: clk})
		s := &slots{cap: 1}
		hold, _ := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
		rels := make(chan func(), 2)
		for range 2 {
			go func() {
				rel, err := q.Acquire(t.Context(), Request{Agent: "a"}, s.try)
				if err != nil {
					t.Error(err)
				}
				rels <- rel
			}()
			synctest.Wait()
			clk.Step(time.Second)
		}
		if st := q.Stats("a"); st.OldestWait != 2*time.Second || st.Depth != 2 {
			t.Fatalf("oldest %v depth %d, want 2s and 2", st.OldestWait, st.Depth)
		}
		hold() // the first waiter waited 2s
		(<-rels)()
		st := q.Stats("a") // the second waited 1s
		(<-rels)()
		if st.Admitted != 3 || st.Queued != 2 || st.Waited != 2 || st.WaitTotal != 3*time.Second || st.WaitMax != 2*time.Second {
			t.Fatalf("stats %+v", st)
		}
		if st.RecentWait < time.Second || st.RecentWait > 2*time.Second {
			t.Fatalf("recent wait %v, want between 1s and 2s", st.RecentWait)
		}
	})
}

// TestNeverOverCapacity runs many real goroutines through a small agent and checks that the
// slots are never oversubscribed and every request is served.
func TestNeverOverCapacity(t *testing.T) {
	q := New(Options{})
	s := &slots{cap: 3}
	var wg sync.WaitGroup
	var served atomic.Int64
	for g := range 40 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			for range 50 {
				req := Request{Agent: "a", Tenant: fmt.Sprint("t", rnd.IntN(4)), Priority: Priority(rnd.IntN(3) - 1)}
				rel, err := q.Acquire(t.Context(), req, s.try)
				if err != nil {
					t.Error(err)
					return
				}
				served.Add(1)
				rel()
			}
		})
	}
	wg.Wait()
	if s.peak > 3 || served.Load() != 2000 || s.inUse() != 0 || q.Depth("a") != 0 {
		t.Fatalf("peak %d, served %d, in use %d, depth %d", s.peak, served.Load(), s.inUse(), q.Depth("a"))
	}
}

func TestParsePriority(t *testing.T) {
	for s, want := range map[string]Priority{"urgent": Urgent, "normal": Normal, "": Normal, "batch": Batch} {
		if p, err := ParsePriority(s); err != nil || p != want {
			t.Errorf("ParsePriority(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePriority("high"); err == nil {
		t.Error("ParsePriority(high) succeeded")
	}
	if Priority(5).String() != "urgent" || Priority(-9).String() != "batch" || Normal.String() != "normal" {
		t.Error("out-of-range priorities must count as the nearest class")
	}
}
