package scorer

import (
	"slices"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

func score(s balancer.Scorer, cs ...balancer.Candidate) []float64 {
	out := make([]float64, len(cs))
	s.Score(&balancer.Request{}, cs, out)
	return out
}

func TestLoad(t *testing.T) {
	got := score(Load{},
		balancer.Candidate{InFlight: 0, Capacity: 4},
		balancer.Candidate{InFlight: 1, Capacity: 4},
		balancer.Candidate{InFlight: 4, Capacity: 4},
		balancer.Candidate{InFlight: 4, Capacity: 8},
		balancer.Candidate{InFlight: 0, Capacity: 0})
	if want := []float64{1, 0.75, 0, 0.5, 1}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestLatency(t *testing.T) {
	got := score(Latency{},
		balancer.Candidate{Latency: 100 * time.Millisecond},
		balancer.Candidate{Latency: 500 * time.Millisecond},
		balancer.Candidate{}, // not measured yet
		balancer.Candidate{Latency: 200 * time.Millisecond})
	if want := []float64{1, 0.2, 1, 0.5}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := score(Latency{}, balancer.Candidate{}, balancer.Candidate{}); !slices.Equal(got, []float64{1, 1}) {
		t.Fatalf("nothing measured: got %v, want all 1", got)
	}
}

func TestDelay(t *testing.T) {
	got := score(Delay{},
		balancer.Candidate{Latency: 100 * time.Millisecond, InFlight: 2, Capacity: 4}, // 150
		balancer.Candidate{Latency: 200 * time.Millisecond, Capacity: 4},              // 200
		balancer.Candidate{Latency: 50 * time.Millisecond, InFlight: 4, Capacity: 2},  // 150
		balancer.Candidate{InFlight: 1, Capacity: 1})                                  // median 100 × 2
	if want := []float64{1, 0.75, 1, 0.75}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Nothing measured: by load alone.
	if got := score(Delay{}, balancer.Candidate{InFlight: 1, Capacity: 4}, balancer.Candidate{InFlight: 3, Capacity: 4}); !slices.Equal(got, []float64{1, 1.25 / 1.75}) {
		t.Fatalf("nothing measured: got %v", got)
	}
}
