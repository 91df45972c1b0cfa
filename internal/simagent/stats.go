package simagent

import (
	"context"
	"sync"

	"github.com/a2aproject/a2a-go/v2/a2a"
)

// Stats is the body of GET /simagent/stats.
type Stats struct {
	Agent           string `json:"agent"`
	Replica         string `json:"replica"`
	Accepted        int64  `json:"accepted"`        // tasks that arrived at the executor
	Completed       int64  `json:"completed"`       // tasks that ended completed
	Failed          int64  `json:"failed"`          // tasks that ended failed (simulated or shutdown)
	Canceled        int64  `json:"canceled"`        // tasks canceled or abandoned by their client
	InFlight        int64  `json:"inFlight"`        // tasks holding a concurrency slot now
	Waiting         int64  `json:"waiting"`         // tasks queued for a slot now
	MaxInFlightSeen int64  `json:"maxInFlightSeen"` // high-water mark of InFlight

	LLM *LLMStats `json:"llm,omitempty"` // in --llm mode only
}

// stats holds the live counters. active counts executions that have not
// returned yet; idle is closed (and replaced) whenever it drops to zero.
type stats struct {
	mu     sync.Mutex
	s      Stats
	active int64
	idle   chan struct{}

	// llm reads the --llm counters; nil otherwise. Called without mu held.
	llm func() LLMStats
}

func newStats(agent, replica string) *stats {
	idle := make(chan struct{})
	close(idle)
	return &stats{s: Stats{Agent: agent, Replica: replica}, idle: idle}
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	s := st.s
	st.mu.Unlock()
	if st.llm != nil {
		l := st.llm()
		s.LLM = &l
	}
	return s
}

// accept records an arriving task and returns the accepted count including it.
func (st *stats) accept() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Accepted++
	if st.active == 0 {
		st.idle = make(chan struct{})
	}
	st.active++
	return st.s.Accepted
}

func (st *stats) waitBegin() {
	st.mu.Lock()
	st.s.Waiting++
	st.mu.Unlock()
}

func (st *stats) waitEnd(acquired bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Waiting--
	if acquired {
		st.s.InFlight++
		st.s.MaxInFlightSeen = max(st.s.MaxInFlightSeen, st.s.InFlight)
	}
}

func (st *stats) release() {
	st.mu.Lock()
	st.s.InFlight--
	st.mu.Unlock()
}

// finish records the end of an execution.
func (st *stats) finish(state a2a.TaskState) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch state {
	case a2a.TaskStateCompleted:
		st.s.Completed++
	case a2a.TaskStateFailed:
		st.s.Failed++
	default: // canceled, or abandoned when the SDK stopped consuming events
		st.s.Canceled++
	}
	st.active--
	if st.active == 0 {
		close(st.idle)
	}
}

// waitIdle blocks until no execution is running or ctx ends.
func (st *stats) waitIdle(ctx context.Context) error {
	st.mu.Lock()
	idle := st.idle
	st.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
