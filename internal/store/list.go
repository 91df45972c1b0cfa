package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Entry is what a journal tells of a task when it lists tasks, without reading the task. Who
// asked and in which conversation are digests (Digest), so that a listing never carries them in
// the clear: callers compare them with the digest of what they look for.
type Entry struct {
	ID        string
	Agent     string
	State     TaskState
	Tenant    string // Digest(tenant)
	Owner     string // Digest(tenant, subject)
	Context   string // Digest(contextId)
	UpdatedAt time.Time
}

// Digest is the digest an Entry keeps of parts (a tenant; a tenant and a subject; a context id).
func Digest(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// entryOf is t's Entry.
func entryOf(t *Task) Entry {
	return Entry{ID: t.ID, Agent: t.Agent, State: t.State, Tenant: Digest(t.Tenant), Owner: Digest(t.Tenant, t.Subject),
		Context: Digest(t.ContextID), UpdatedAt: t.UpdatedAt}
}

// Headers a record carries beside the state, so that List reads headers only.
const (
	agentHeader   = "Agentplane-Agent"
	tenantHeader  = "Agentplane-Tenant"
	ownerHeader   = "Agentplane-Owner"
	contextHeader = "Agentplane-Context"
	updatedHeader = "Agentplane-Updated" // Unix nanoseconds
)

// setEntryHeaders writes t's Entry into h.
func setEntryHeaders(h nats.Header, t *Task) {
	e := entryOf(t)
	h.Set(stateHeader, string(e.State))
	h.Set(agentHeader, e.Agent)
	h.Set(tenantHeader, e.Tenant)
	h.Set(ownerHeader, e.Owner)
	h.Set(contextHeader, e.Context)
	h.Set(updatedHeader, strconv.FormatInt(e.UpdatedAt.UnixNano(), 10))
}

// entryFromHeaders reads an Entry from a record's headers; false for a record written before
// they were (its task must be read).
func entryFromHeaders(id string, h nats.Header) (Entry, bool) {
	ns, err := strconv.ParseInt(h.Get(updatedHeader), 10, 64)
	if err != nil || h.Get(ownerHeader) == "" {
		return Entry{}, false
	}
	return Entry{ID: id, Agent: h.Get(agentHeader), State: TaskState(h.Get(stateHeader)), Tenant: h.Get(tenantHeader),
		Owner: h.Get(ownerHeader), Context: h.Get(contextHeader), UpdatedAt: time.Unix(0, ns).UTC()}, true
}

// List implements Journal.
func (m *Memory) List(ctx context.Context, agent string) ([]Entry, error) {
	m.mu.Lock()
	recs := make([]memRecord, 0, len(m.tasks))
	for _, r := range m.tasks {
		recs = append(recs, r)
	}
	m.mu.Unlock()
	var out []Entry
	for _, r := range recs {
		t, err := decodeTask(r.data, r.rev)
		if err != nil {
			return nil, err
		}
		if t.Agent == agent {
			out = append(out, entryOf(t))
		}
	}
	return out, nil
}

// List implements Journal.
//
// Cost: one pass over the headers of the newest record of every key in the bucket, as Pending
// (about 300 bytes each), and no task read, except for records written by a version without
// the listing headers.
func (j *JetStream) List(ctx context.Context, agent string) ([]Entry, error) {
	var (
		out []Entry
		old []string // keys whose records carry no entry headers
	)
	err := j.scanHeaders(ctx, func(key string, h nats.Header) {
		id, err := decodeKey(key)
		if err != nil {
			return // a key this package did not write
		}
		if e, ok := entryFromHeaders(id, h); ok {
			if e.Agent == agent {
				out = append(out, e)
			}
			return
		}
		old = append(old, key)
	})
	if err == nil {
		err = j.readTasks(ctx, old, func(t *Task) {
			if t.Agent == agent {
				out = append(out, entryOf(t))
			}
		})
	}
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	return out, nil
}

// scanHeaders calls each with the key and headers of the newest record of every task in the
// bucket that is not deleted or expired, reading headers only.
func (j *JetStream) scanHeaders(ctx context.Context, each func(key string, h nats.Header)) error {
	octx, cancel := op(ctx)
	defer cancel()
	c, err := j.kvStream.CreateConsumer(octx, jetstream.ConsumerConfig{
		FilterSubject:     j.kvSubj + "*", // records; blob chunks have more tokens
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := op(context.WithoutCancel(ctx))
		defer cancel()
		if err := j.kvStream.DeleteConsumer(dctx, c.CachedInfo().Name); err != nil {
			// It goes by itself after a minute without use (InactiveThreshold).
			j.log.Warn("journal could not delete a scan's consumer", "err", err)
		}
	}()
	remaining := c.CachedInfo().NumPending
	for remaining > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if md, err := m.Metadata(); err == nil {
				remaining = md.NumPending
			}
			if h := m.Headers(); !isMarker(h) {
				each(strings.TrimPrefix(m.Subject(), j.kvSubj), h)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			break // the last records expired while we read
		}
	}
	return nil
}
