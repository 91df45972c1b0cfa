package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// memQueue is the in-memory queue of Memory: at-least-once delivery to at most max handlers,
// redelivery after an error, and no id handled twice at once.
type memQueue struct {
	mu      sync.Mutex
	queue   []memItem       // waiting items, oldest first
	running map[string]bool // ids being handled
	wake    chan struct{}   // closed and replaced whenever queue or running changes
	// retryDelay is the first redelivery delay after a handler error; it doubles per attempt.
	retryDelay time.Duration
}

type memItem struct {
	id        string
	rev       uint64
	queued    time.Time
	notBefore time.Time
	attempts  int
	delivered bool // has been handed to a handler before (so add queues another copy)
}

func newMemQueue(retryDelay time.Duration) *memQueue {
	return &memQueue{running: map[string]bool{}, wake: make(chan struct{}), retryDelay: retryDelay}
}

// add queues id at rev, unless the same id and rev waits and was never delivered.
func (q *memQueue) add(id string, rev uint64, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.queue {
		if it.id == id && it.rev == rev && !it.delivered {
			return
		}
	}
	q.queue = append(q.queue, memItem{id: id, rev: rev, queued: now})
	q.signalLocked()
}

func (q *memQueue) consume(ctx context.Context, max int, handle func(ctx context.Context, it memItem) error) error {
	if max < 1 {
		max = 1
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	active := 0
	done := make(chan struct{}, max)
	for {
		for active >= max {
			select {
			case <-done:
				active--
			case <-ctx.Done():
				return nil
			}
		}
		it, ok, wake, wait := q.take(time.Now())
		if !ok {
			var timer <-chan time.Time
			var tm *time.Timer
			if wait > 0 {
				tm = time.NewTimer(wait)
				timer = tm.C
			}
			select {
			case <-wake:
			case <-timer:
			case <-done:
				active--
			case <-ctx.Done():
			}
			if tm != nil {
				tm.Stop()
			}
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		active++
		wg.Go(func() {
			defer func() { done <- struct{}{} }()
			err := handle(ctx, it)
			q.finish(it, err)
		})
	}
}

// take removes the first waiting item that is due and not being handled, and marks its id
// running. Otherwise it returns a channel closed on the next change and how long until the
// next item is due (0 if none is).
func (q *memQueue) take(now time.Time) (memItem, bool, <-chan struct{}, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var wait time.Duration
	for i, it := range q.queue {
		if q.running[it.id] {
			continue
		}
		if d := it.notBefore.Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		q.queue = slices.Delete(q.queue, i, i+1)
		q.running[it.id] = true
		return it, true, nil, 0
	}
	return memItem{}, false, q.wake, wait
}

func (q *memQueue) finish(it memItem, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.running, it.id)
	if err != nil {
		it.attempts++
		it.delivered = true
		it.notBefore = time.Now().Add(redeliveryDelay(err, q.retryDelay, it.attempts))
		q.queue = append(q.queue, it)
	}
	q.signalLocked()
}

func (q *memQueue) signalLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}
