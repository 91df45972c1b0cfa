package admission

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// agentQueue holds one agent's waiters: a class per priority, a FIFO per tenant within a class,
// the tenants with waiters in a ring served round robin.
type agentQueue struct {
	name string

	mu         sync.Mutex
	classes    [numClasses]class
	depth      int
	waiting    atomic.Int64 // depth, readable without mu (from a TryFunc)
	stats      Stats
	recentWait time.Duration
	// byClass is depth per class.
	byClass [numClasses]int
	// While waiters are served one after another (the queue saturated), interval is a moving
	// average of the time between slots handed to them, over samples hand-outs; lastHandOut
	// is when the latest was. They start again when a waiter comes to an empty queue.
	lastHandOut time.Time
	interval    time.Duration
	samples     int
}

// handedOut records that a slot went to a waiter at now. aq.mu is held.
func (aq *agentQueue) handedOut(now time.Time) {
	if !aq.lastHandOut.IsZero() {
		d := max(now.Sub(aq.lastHandOut), 0)
		aq.samples++
		a := max(1/float64(aq.samples), 0.05)
		aq.interval = time.Duration(float64(aq.interval)*(1-a) + float64(d)*a)
	}
	aq.lastHandOut = now
}

// expectedWait estimates how long a request of priority p would wait: the waiters of its class
// and the higher ones, each taking one of the slots freeing at the recent rate. False until
// the rate is known.
func (aq *agentQueue) expectedWait(p Priority) (time.Duration, bool) {
	if aq.samples < minRateSamples {
		return 0, false
	}
	ahead := 0
	for ci := 0; ci <= p.class(); ci++ {
		ahead += aq.byClass[ci]
	}
	return time.Duration(ahead+1) * aq.interval, true
}

type class struct {
	tenants map[string]*tenantQueue
	ring    list.List     // of *tenantQueue that have waiters, in serving order
	next    *list.Element // the tenant served next; nil means the front
}

type tenantQueue struct {
	name   string
	fifo   list.List // of *waiter
	inRing *list.Element
}

type waiter struct {
	req    Request
	try    TryFunc
	since  time.Time
	result chan result // buffered: the dispatcher never blocks on it
	elem   *list.Element
	tq     *tenantQueue
	done   bool // out of the queue: a result was sent
}

type result struct {
	release func()
	err     error
}

// push queues w at the end of its tenant's FIFO. A tenant that had no waiters joins the ring
// just before the tenant served next, so it is served after everyone already waiting in its
// class had a turn.
func (aq *agentQueue) push(w *waiter) {
	c := &aq.classes[w.req.Priority.class()]
	if c.tenants == nil {
		c.tenants = map[string]*tenantQueue{}
	}
	tq := c.tenants[w.req.Tenant]
	if tq == nil {
		tq = &tenantQueue{name: w.req.Tenant}
		c.tenants[w.req.Tenant] = tq
		if c.next != nil {
			tq.inRing = c.ring.InsertBefore(tq, c.next)
		} else {
			tq.inRing = c.ring.PushBack(tq)
		}
	}
	w.tq = tq
	w.elem = tq.fifo.PushBack(w)
	if aq.depth == 0 {
		// Saturated again after a pause: the rate is measured afresh.
		aq.lastHandOut, aq.interval, aq.samples = time.Time{}, 0, 0
	}
	aq.byClass[w.req.Priority.class()]++
	aq.depth++
	aq.waiting.Store(int64(aq.depth))
}

// best returns the waiter to serve next, or nil.
func (aq *agentQueue) best() *waiter {
	for ci := range aq.classes {
		c := &aq.classes[ci]
		e := c.next
		if e == nil {
			e = c.ring.Front()
		}
		if e != nil {
			return e.Value.(*tenantQueue).fifo.Front().Value.(*waiter)
		}
	}
	return nil
}

// pop takes w, which best returned, out of the queue and moves its class's turn to the next
// tenant.
func (aq *agentQueue) pop(w *waiter) {
	c := &aq.classes[w.req.Priority.class()]
	c.next = w.tq.inRing.Next()
	aq.remove(w)
}

// remove takes w out of the queue wherever it is.
func (aq *agentQueue) remove(w *waiter) {
	c := &aq.classes[w.req.Priority.class()]
	tq := w.tq
	tq.fifo.Remove(w.elem)
	if tq.fifo.Len() == 0 {
		if c.next == tq.inRing {
			c.next = tq.inRing.Next()
		}
		c.ring.Remove(tq.inRing)
		delete(c.tenants, tq.name)
	}
	w.done = true
	aq.byClass[w.req.Priority.class()]--
	aq.depth--
	aq.waiting.Store(int64(aq.depth))
}
