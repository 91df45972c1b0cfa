package admission

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// DefaultMaxQueue bounds the waiters of one agent when Options.MaxQueue is 0.
const DefaultMaxQueue = 1000

// Bounds of the Retry-After hint.
const (
	MinRetryAfter = time.Second
	MaxRetryAfter = time.Minute
)

// ErrNoSlot is what a TryFunc returns (possibly wrapped) when every eligible replica is busy:
// the request waits in the queue.
var ErrNoSlot = errors.New("admission: no free slot")

// Reasons a request is refused; a *RefusedError matches one of them with errors.Is.
var (
	ErrQueueFull = errors.New("admission queue is full")
	ErrDeadline  = errors.New("deadline passed before a slot was free")
	// ErrExpectedWait refuses a request at once whose expected wait for a slot (the waiters
	// ahead of it over the rate slots have been freeing) ends after its deadline: better told
	// now, with Retry-After, than after waiting the whole deadline in vain.
	ErrExpectedWait = errors.New("the expected wait for a slot is longer than the queue timeout")
)

// Early refusal (ErrExpectedWait) needs this many slots handed to waiters in a row (the queue
// saturated) to trust its rate.
const minRateSamples = 20

// RefusedError is returned when a request gets no slot because the queue is full or its
// deadline passed. The gateway answers it with a JSON-RPC error and Retry-After.
type RefusedError struct {
	Agent string
	// Reason is ErrQueueFull, ErrDeadline or ErrExpectedWait.
	Reason error
	// Depth is how many requests were waiting for the agent.
	Depth int
	// Waited is how long this request waited.
	Waited time.Duration
	// RetryAfter is when trying again is worth it: the recent wait for a slot, within
	// [MinRetryAfter, MaxRetryAfter].
	RetryAfter time.Duration
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("agent %q: %v (%d waiting, waited %v; retry after %v)", e.Agent, e.Reason, e.Depth, e.Waited.Round(time.Millisecond), e.RetryAfter)
}

// Unwrap returns the reason.
func (e *RefusedError) Unwrap() error { return e.Reason }

// Request describes a task that needs a slot.
type Request struct {
	// Agent names the queue: each agent has its own.
	Agent string
	// Tenant is who the task is for; waiters of one class are served round robin by tenant.
	Tenant string
	// Priority is the task's class.
	Priority Priority
	// Deadline is when to stop waiting and refuse with ErrDeadline; zero waits until ctx ends.
	Deadline time.Time
}

// TryFunc tries to take a slot now, without blocking. It returns the function that gives the
// slot back, or an error wrapping ErrNoSlot when the request should wait, or another error to
// end the request with that error. The queue calls it with the agent's queue locked, possibly
// from another request's goroutine: it must be quick and must not call the Queue. Waiters of
// one agent must be interchangeable: when the best waiter's TryFunc finds no slot, the queue
// assumes no other waiter's would.
type TryFunc func() (release func(), err error)

// Options configure a Queue. Zero values take the defaults.
type Options struct {
	// MaxQueue bounds how many requests may wait per agent; more are refused with ErrQueueFull.
	MaxQueue int
	// Clock; default the real clock.
	Clock clock.Clock
}

// Queue admits tasks to an agent's replicas. When no slot is free, tasks wait by class (urgent,
// then normal, then batch), round robin across tenants within a class and in arrival order
// within a tenant, until a slot frees for them, their deadline passes or their context ends. A
// freed slot goes to the best waiter, never to a newcomer that arrives at the same moment.
//
// Slots free when a release function that Acquire returned is called; the queue then hands
// them on at once. A slot that frees otherwise (a replica became ready, joined, or a task
// ended that did not go through Acquire) reaches the waiters when someone calls Notify.
type Queue struct {
	maxQueue int
	clock    clock.Clock

	mu     sync.Mutex
	agents map[string]*agentQueue
}

// New returns a Queue.
func New(opts Options) *Queue {
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = DefaultMaxQueue
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Queue{maxQueue: opts.MaxQueue, clock: opts.Clock, agents: map[string]*agentQueue{}}
}

func (q *Queue) agent(name string) *agentQueue {
	q.mu.Lock()
	defer q.mu.Unlock()
	aq := q.agents[name]
	if aq == nil {
		aq = &agentQueue{name: name}
		q.agents[name] = aq
	}
	return aq
}

// Acquire returns a slot for req: at once if no one of the same agent is waiting and try
// finds one, otherwise after waiting its turn. It returns the slot's release function, to call
// exactly when the task leaves the replica (later calls do nothing), or a *RefusedError, ctx's
// error, or an error try returned.
func (q *Queue) Acquire(ctx context.Context, req Request, try TryFunc) (release func(), err error) {
	aq := q.agent(req.Agent)
	now := q.clock.Now()
	aq.mu.Lock()
	if !req.Deadline.IsZero() && !now.Before(req.Deadline) {
		aq.stats.RefusedDeadline++
		e := q.refused(aq, ErrDeadline, 0)
		aq.mu.Unlock()
		return nil, e
	}
	if aq.depth == 0 {
		rel, err := try()
		switch {
		case err == nil:
			aq.stats.Admitted++
			aq.mu.Unlock()
			return q.releaser(aq, rel), nil
		case !errors.Is(err, ErrNoSlot):
			aq.mu.Unlock()
			return nil, err
		}
	}
	if aq.depth >= q.maxQueue && !q.displace(aq, req.Priority) {
		aq.stats.RefusedFull++
		e := q.refused(aq, ErrQueueFull, 0)
		aq.mu.Unlock()
		return nil, e
	}
	if wait, ok := aq.expectedWait(req.Priority); ok && !req.Deadline.IsZero() && now.Add(wait).After(req.Deadline) {
		aq.stats.RefusedExpected++
		e := q.refused(aq, ErrExpectedWait, 0)
		e.RetryAfter = retryAfter(wait - req.Deadline.Sub(now))
		aq.mu.Unlock()
		return nil, e
	}
	if err := ctx.Err(); err != nil {
		aq.mu.Unlock()
		return nil, err
	}
	w := &waiter{req: req, try: try, since: now, result: make(chan result, 1)}
	aq.push(w)
	aq.stats.Queued++
	if aq.depth > 1 {
		// Others were waiting: a slot may have freed without a Notify. The best waiter gets
		// it, which is this request only if it is the best.
		q.dispatch(aq)
	}
	aq.mu.Unlock()

	var expired <-chan time.Time
	if !req.Deadline.IsZero() {
		t := q.clock.NewTimer(req.Deadline.Sub(now))
		defer t.Stop()
		expired = t.C()
	}
	select {
	case r := <-w.result:
		return r.release, r.err
	case <-ctx.Done():
		return q.abandon(aq, w, ctx.Err())
	case <-expired:
		return q.abandon(aq, w, ErrDeadline)
	}
}

// abandon takes w out of the queue because its context ended (why is ctx's error) or its
// deadline passed (ErrDeadline). If a slot reached it meanwhile, a passed deadline keeps the
// slot and an ended context gives it back.
func (q *Queue) abandon(aq *agentQueue, w *waiter, why error) (func(), error) {
	aq.mu.Lock()
	if w.done {
		aq.mu.Unlock()
		r := <-w.result
		if r.err != nil || why == ErrDeadline {
			return r.release, r.err
		}
		r.release()
		return nil, why
	}
	aq.remove(w)
	var err error = why
	if why == ErrDeadline {
		aq.stats.RefusedDeadline++
		err = q.refused(aq, ErrDeadline, q.clock.Since(w.since))
	} else {
		aq.stats.Canceled++
	}
	aq.mu.Unlock()
	return nil, err
}

// Notify hands free slots of agent to its waiters. Call it when slots may have freed other
// than by a release function from Acquire: a replica became ready or joined, an ejection
// ended, or a task that did not go through Acquire ended.
func (q *Queue) Notify(agent string) {
	q.mu.Lock()
	aq := q.agents[agent]
	q.mu.Unlock()
	if aq == nil {
		return
	}
	aq.mu.Lock()
	q.dispatch(aq)
	aq.mu.Unlock()
}

// dispatch gives free slots to the best waiters until try finds none. aq.mu is held.
func (q *Queue) dispatch(aq *agentQueue) {
	for {
		w := aq.best()
		if w == nil {
			return
		}
		rel, err := w.try()
		if errors.Is(err, ErrNoSlot) {
			return
		}
		aq.pop(w)
		if err != nil {
			aq.stats.Failed++
			w.result <- result{err: err}
			continue
		}
		now := q.clock.Now()
		waited := now.Sub(w.since)
		aq.handedOut(now)
		aq.stats.Admitted++
		aq.stats.Waited++
		aq.stats.WaitTotal += waited
		aq.stats.WaitMax = max(aq.stats.WaitMax, waited)
		aq.recentWait = ewma(aq.recentWait, waited, aq.stats.Waited)
		w.result <- result{release: q.releaser(aq, rel)}
	}
}

// ewma of recent waits, weighing a new wait 1/5 (1/n for the first few).
func ewma(avg, d time.Duration, n uint64) time.Duration {
	a := max(1/float64(n), 0.2)
	return time.Duration(float64(avg)*(1-a) + float64(d)*a)
}

// releaser wraps a slot's release so that the freed slot goes to the best waiter at once.
func (q *Queue) releaser(aq *agentQueue, rel func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			if rel != nil {
				rel()
			}
			aq.mu.Lock()
			q.dispatch(aq)
			aq.mu.Unlock()
		})
	}
}

func (q *Queue) refused(aq *agentQueue, reason error, waited time.Duration) *RefusedError {
	return &RefusedError{Agent: aq.name, Reason: reason, Depth: aq.depth, Waited: waited, RetryAfter: retryAfter(aq.recentWait)}
}

// retryAfter is d in whole seconds within [MinRetryAfter, MaxRetryAfter].
func retryAfter(d time.Duration) time.Duration {
	d = min(max(d, MinRetryAfter), MaxRetryAfter)
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// displace makes room in aq's full queue for a request of priority p: the newest waiter of
// the lowest class below p, if any, is refused with ErrQueueFull, as it would have been had it
// come after. So a full queue of batch work never turns an urgent task away. aq.mu is held.
func (q *Queue) displace(aq *agentQueue, p Priority) bool {
	for ci := numClasses - 1; ci > p.class(); ci-- {
		c := &aq.classes[ci]
		var newest *waiter
		for e := c.ring.Front(); e != nil; e = e.Next() {
			if w := e.Value.(*tenantQueue).fifo.Back().Value.(*waiter); newest == nil || w.since.After(newest.since) {
				newest = w
			}
		}
		if newest == nil {
			continue
		}
		aq.remove(newest)
		aq.stats.RefusedFull++
		aq.stats.Displaced++
		newest.result <- result{err: q.refused(aq, ErrQueueFull, q.clock.Since(newest.since))}
		return true
	}
	return false
}

// Stats of one agent's queue, for metrics and autoscaling. Counters only grow.
type Stats struct {
	// Depth is how many requests wait now, and DepthByPriority by class.
	Depth           int
	DepthByPriority map[Priority]int
	// OldestWait is how long the longest-waiting request has waited so far; 0 when none waits.
	OldestWait time.Duration
	// Admitted counts requests that got a slot, at once or after waiting.
	Admitted uint64
	// Queued counts requests that had to wait; Waited those of them that then got a slot,
	// WaitTotal their total wait (mean = WaitTotal / Waited) and WaitMax the longest.
	Queued    uint64
	Waited    uint64
	WaitTotal time.Duration
	WaitMax   time.Duration
	// RecentWait is a moving average of the latest waits; it sets RetryAfter.
	RecentWait time.Duration
	// Refusals: the queue was full, the deadline passed, the waiter's context ended, or its
	// TryFunc failed with an error other than ErrNoSlot while it waited.
	RefusedFull, RefusedDeadline, Canceled, Failed uint64
	// RefusedExpected counts requests refused at once because their expected wait ended after
	// their deadline (ErrExpectedWait).
	RefusedExpected uint64
	// Displaced counts waiters refused (and counted in RefusedFull) to make room in a full
	// queue for a request of a higher class.
	Displaced uint64
}

// Stats returns the stats of agent's queue.
func (q *Queue) Stats(agent string) Stats {
	q.mu.Lock()
	aq := q.agents[agent]
	q.mu.Unlock()
	s := Stats{DepthByPriority: map[Priority]int{Urgent: 0, Normal: 0, Batch: 0}}
	if aq == nil {
		return s
	}
	now := q.clock.Now()
	aq.mu.Lock()
	defer aq.mu.Unlock()
	s2 := aq.stats
	s2.DepthByPriority = s.DepthByPriority
	s2.Depth = aq.depth
	s2.RecentWait = aq.recentWait
	for ci := range aq.classes {
		c := &aq.classes[ci]
		for e := c.ring.Front(); e != nil; e = e.Next() {
			tq := e.Value.(*tenantQueue)
			s2.DepthByPriority[classPriority(ci)] += tq.fifo.Len()
			if head := tq.fifo.Front().Value.(*waiter); now.Sub(head.since) > s2.OldestWait {
				s2.OldestWait = now.Sub(head.since)
			}
		}
	}
	return s2
}

// Depth returns how many requests wait for agent.
// Waiting is Depth without waiting for the agent's queue lock: safe to call from a TryFunc,
// which runs under it.
func (q *Queue) Waiting(agent string) int {
	q.mu.Lock()
	aq := q.agents[agent]
	q.mu.Unlock()
	if aq == nil {
		return 0
	}
	return int(aq.waiting.Load())
}

func (q *Queue) Depth(agent string) int {
	q.mu.Lock()
	aq := q.agents[agent]
	q.mu.Unlock()
	if aq == nil {
		return 0
	}
	aq.mu.Lock()
	defer aq.mu.Unlock()
	return aq.depth
}

// Agents returns the agents that have used the queue, sorted.
func (q *Queue) Agents() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	names := make([]string, 0, len(q.agents))
	for n := range q.agents {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
