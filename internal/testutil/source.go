// Package testutil holds helpers shared by tests: a settable discovery source and upstreams
// that fail in the ways real replicas do.
package testutil

import (
	"net"
	"sync"
	"testing"

	"github.com/agentplane/agentplane/internal/discovery"
)

// Source is a discovery.Source whose agents a test sets.
type Source struct {
	mu      sync.Mutex
	agents  []discovery.Agent
	changed chan struct{}
}

var _ discovery.Source = (*Source)(nil)

// NewSource returns a Source holding agents.
func NewSource(agents ...discovery.Agent) *Source {
	return &Source{agents: agents, changed: make(chan struct{})}
}

// Snapshot implements discovery.Source.
func (s *Source) Snapshot() []discovery.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.agents
}

// Changed implements discovery.Source.
func (s *Source) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Set replaces the agents and signals a change.
func (s *Source) Set(agents ...discovery.Agent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents = agents
	close(s.changed)
	s.changed = make(chan struct{})
}

// Agent builds a ready agent with one endpoint per URL.
func Agent(name string, maxConcurrency int, urls ...string) discovery.Agent {
	a := discovery.Agent{Name: name, State: discovery.AgentStateless, MaxConcurrency: maxConcurrency, Desired: len(urls)}
	for i, u := range urls {
		a.Endpoints = append(a.Endpoints, discovery.Endpoint{
			Agent: name, Name: name + "-" + string(rune('0'+i)), Index: i, URL: u, Ready: true, State: discovery.StateRunning,
		})
	}
	return a
}

// ClosedURL returns the URL of a port that was listened on and closed: connecting to it is
// refused, as with a replica that just died.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return u
}
