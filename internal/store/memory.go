package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Memory is a Journal held in memory, for tests of the code that uses a Journal. It keeps the
// semantics of the JetStream journal (revisions and compare-and-set, ErrExists, ErrNotFound,
// at-most-max handlers, redelivery after an error, no id handled twice at once) but nothing
// survives the process. Records are stored as JSON, as JetStream stores them, so a field that
// does not round-trip through JSON shows up in tests.
type Memory struct {
	mu      sync.Mutex
	rev     uint64
	tasks   map[string]memRecord
	queue   []memItem       // waiting ids, oldest first
	running map[string]bool // ids being handled
	wake    chan struct{}   // closed and replaced whenever queue or running changes
	// retryDelay is the first redelivery delay after a handler error; it doubles per attempt.
	retryDelay time.Duration
	limits     Limits
}

var _ Journal = (*Memory)(nil)

type memRecord struct {
	data []byte
	rev  uint64
}

type memItem struct {
	id        string
	notBefore time.Time
	attempts  int
	delivered bool // has been handed to a handler before (so Enqueue adds another copy)
}

// NewMemory returns an empty in-memory journal with the default Limits.
func NewMemory() *Memory { return NewMemoryWithLimits(Limits{}) }

// NewMemoryWithLimits returns an empty in-memory journal that refuses tasks over limits (zero
// fields take the defaults), as the JetStream journal does.
func NewMemoryWithLimits(limits Limits) *Memory {
	return &Memory{
		tasks:      map[string]memRecord{},
		running:    map[string]bool{},
		wake:       make(chan struct{}),
		retryDelay: 10 * time.Millisecond,
		limits:     limits.withDefaults(),
	}
}

// Limits returns the limits Create and Update enforce.
func (m *Memory) Limits() Limits { return m.limits }

// encode checks t against the limits and returns its record.
func (m *Memory) encode(t *Task) ([]byte, error) {
	if err := m.limits.check(t); err != nil {
		return nil, err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode task: %w", err)
	}
	if len(data) > MaxRecordBytes {
		if err := checkRest(t, MaxRecordBytes); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// Create implements Journal.
func (m *Memory) Create(ctx context.Context, t *Task) error {
	if _, err := encodeKey(t.ID); err != nil {
		return err
	}
	data, err := m.encode(t)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", t.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tasks[t.ID]; ok {
		return fmt.Errorf("store: create %s: %w", t.ID, ErrExists)
	}
	m.rev++
	m.tasks[t.ID] = memRecord{data: data, rev: m.rev}
	t.Revision = m.rev
	return nil
}

// Get implements Journal.
func (m *Memory) Get(ctx context.Context, id string) (*Task, error) {
	m.mu.Lock()
	r, ok := m.tasks[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("store: get %s: %w", id, ErrNotFound)
	}
	return decodeTask(r.data, r.rev)
}

// Update implements Journal.
func (m *Memory) Update(ctx context.Context, t *Task) error {
	data, err := m.encode(t)
	if err != nil {
		return fmt.Errorf("store: update %s: %w", t.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.tasks[t.ID]
	if !ok {
		return fmt.Errorf("store: update %s: %w", t.ID, ErrNotFound)
	}
	if r.rev != t.Revision {
		return fmt.Errorf("store: update %s at revision %d: %w", t.ID, t.Revision, ErrConflict)
	}
	m.rev++
	m.tasks[t.ID] = memRecord{data: data, rev: m.rev}
	t.Revision = m.rev
	return nil
}

// Pending implements Journal. Tasks come oldest first.
func (m *Memory) Pending(ctx context.Context) ([]*Task, error) {
	m.mu.Lock()
	recs := make([]memRecord, 0, len(m.tasks))
	for _, r := range m.tasks {
		recs = append(recs, r)
	}
	m.mu.Unlock()
	var out []*Task
	for _, r := range recs {
		t, err := decodeTask(r.data, r.rev)
		if err != nil {
			return nil, err
		}
		if !t.State.Terminal() {
			out = append(out, t)
		}
	}
	sortTasks(out)
	return out, nil
}

// Enqueue implements Journal. Enqueueing an id that is already waiting and has never been
// handed to a handler does nothing; otherwise (the id is new, being handled, or waiting to be
// retried) one more delivery is queued.
func (m *Memory) Enqueue(ctx context.Context, id string) error {
	if _, err := encodeKey(id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range m.queue {
		if it.id == id && !it.delivered {
			return nil
		}
	}
	m.queue = append(m.queue, memItem{id: id})
	m.signalLocked()
	return nil
}

// Consume implements Journal.
func (m *Memory) Consume(ctx context.Context, max int, handle func(ctx context.Context, id string) error) error {
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
		it, ok, wake, wait := m.take(time.Now())
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { done <- struct{}{} }()
			err := handle(ctx, it.id)
			m.finish(it, err)
		}()
	}
}

// take removes the first waiting id that is due and not being handled, and marks it running.
// Otherwise it returns a channel closed on the next change and how long until the next item is
// due (0 if none is).
func (m *Memory) take(now time.Time) (memItem, bool, <-chan struct{}, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var wait time.Duration
	for i, it := range m.queue {
		if m.running[it.id] {
			continue
		}
		if d := it.notBefore.Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		m.queue = slices.Delete(m.queue, i, i+1)
		m.running[it.id] = true
		return it, true, nil, 0
	}
	return memItem{}, false, m.wake, wait
}

func (m *Memory) finish(it memItem, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.running, it.id)
	if err != nil {
		it.attempts++
		it.delivered = true
		it.notBefore = time.Now().Add(retryBackoff(m.retryDelay, it.attempts))
		m.queue = append(m.queue, it)
	}
	m.signalLocked()
}

func (m *Memory) signalLocked() {
	close(m.wake)
	m.wake = make(chan struct{})
}

// retryBackoff is the delay before delivery number attempt+1 after attempt failed ones: base
// doubled per failure, at most 10 s.
func retryBackoff(base time.Duration, attempt int) time.Duration {
	const maxDelay = 10 * time.Second
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	return min(d, maxDelay)
}

func decodeTask(data []byte, rev uint64) (*Task, error) {
	t := new(Task)
	if err := json.Unmarshal(data, t); err != nil {
		return nil, fmt.Errorf("store: decode task at revision %d: %w", rev, err)
	}
	t.Revision = rev
	return t, nil
}

// sortTasks orders tasks oldest first, then by id.
func sortTasks(ts []*Task) {
	slices.SortFunc(ts, func(a, b *Task) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}
