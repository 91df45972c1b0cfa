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
	mu     sync.Mutex
	rev    uint64
	tasks  map[string]memRecord
	async  *memQueue // asynchronous tasks
	notify *memQueue // push notifications
	limits Limits
}

var _ Journal = (*Memory)(nil)

type memRecord struct {
	data []byte
	rev  uint64
}

// NewMemory returns an empty in-memory journal with the default Limits.
func NewMemory() *Memory { return NewMemoryWithLimits(Limits{}) }

// NewMemoryWithLimits returns an empty in-memory journal that refuses tasks over limits (zero
// fields take the defaults), as the JetStream journal does.
func NewMemoryWithLimits(limits Limits) *Memory {
	return &Memory{
		tasks:  map[string]memRecord{},
		async:  newMemQueue(10 * time.Millisecond),
		notify: newMemQueue(10 * time.Millisecond),
		limits: limits.withDefaults(),
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
	m.async.add(id, 0, time.Now())
	return nil
}

// Consume implements Journal.
func (m *Memory) Consume(ctx context.Context, max int, handle func(ctx context.Context, id string) error) error {
	return m.async.consume(ctx, max, func(ctx context.Context, it memItem) error { return handle(ctx, it.id) })
}

// Notify implements Journal, with Enqueue's rule for copies: a notice of the same id and
// revision that waits and was never delivered is not queued twice.
func (m *Memory) Notify(ctx context.Context, id string, rev uint64) error {
	if _, err := encodeKey(id); err != nil {
		return err
	}
	m.notify.add(id, rev, time.Now())
	return nil
}

// ConsumeNotifications implements Journal.
func (m *Memory) ConsumeNotifications(ctx context.Context, max int, handle func(ctx context.Context, n Notice) error) error {
	return m.notify.consume(ctx, max, func(ctx context.Context, it memItem) error {
		return handle(ctx, Notice{TaskID: it.id, Revision: it.rev, Delivery: it.attempts + 1, Queued: it.queued})
	})
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
