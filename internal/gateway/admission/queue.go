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
	aq.depth--
	aq.waiting.Store(int64(aq.depth))
}
