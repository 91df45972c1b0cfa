package filter

import (
	"slices"
	"testing"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

func keys(cs []balancer.Candidate) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Key)
	}
	return out
}

func run(f balancer.Filter, req balancer.Request, cs ...balancer.Candidate) []string {
	return keys(f.Filter(&req, slices.Clone(cs)))
}

func TestResidency(t *testing.T) {
	a1 := balancer.Candidate{Key: "a1", Site: "a", Ready: true}
	a2 := balancer.Candidate{Key: "a2", Site: "a"}
	b1 := balancer.Candidate{Key: "b1", Site: "b", Ready: true}
	nosite := balancer.Candidate{Key: "x", Ready: true}
	cases := []struct {
		name    string
		allowed []string
		want    []string
	}{
		{"no rule keeps all", nil, []string{"a1", "a2", "b1", "x"}},
		{"one site", []string{"a"}, []string{"a1", "a2"}},
		{"two sites", []string{"b", "a"}, []string{"a1", "a2", "b1"}},
		{"no replica there", []string{"c"}, []string{}},
	}
	for _, tc := range cases {
		if got := run(Residency{}, balancer.Request{AllowedSites: tc.allowed}, a1, a2, b1, nosite); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if (Residency{}).Refusal() != balancer.ErrResidency {
		t.Fatal("Residency must refuse with ErrResidency")
	}
}

func TestReady(t *testing.T) {
	got := run(Ready{}, balancer.Request{}, balancer.Candidate{Key: "up", Ready: true}, balancer.Candidate{Key: "down"})
	if !slices.Equal(got, []string{"up"}) {
		t.Fatalf("got %v", got)
	}
	if got := run(Ready{}, balancer.Request{}, balancer.Candidate{Key: "down"}); len(got) != 0 {
		t.Fatalf("a replica that is not ready was kept: %v", got)
	}
	if (Ready{}).Refusal() != balancer.ErrUnavailable {
		t.Fatal("Ready must refuse with ErrUnavailable")
	}
}

func TestNotEjected(t *testing.T) {
	ok := balancer.Candidate{Key: "ok"}
	ej := balancer.Candidate{Key: "ej", Ejected: true}
	ej2 := balancer.Candidate{Key: "ej2", Ejected: true}
	if got := run(NotEjected{}, balancer.Request{}, ej, ok, ej2); !slices.Equal(got, []string{"ok"}) {
		t.Fatalf("got %v, want [ok]", got)
	}
	// All ejected: keep them rather than refuse.
	if got := run(NotEjected{}, balancer.Request{}, ej, ej2); !slices.Equal(got, []string{"ej", "ej2"}) {
		t.Fatalf("all ejected: got %v, want both kept", got)
	}
}

func TestCapacity(t *testing.T) {
	got := run(Capacity{}, balancer.Request{},
		balancer.Candidate{Key: "free", InFlight: 3, Capacity: 4},
		balancer.Candidate{Key: "full", InFlight: 4, Capacity: 4},
		balancer.Candidate{Key: "over", InFlight: 5, Capacity: 4},
		balancer.Candidate{Key: "zero-idle", InFlight: 0, Capacity: 0},
		balancer.Candidate{Key: "zero-busy", InFlight: 1, Capacity: 0})
	if !slices.Equal(got, []string{"free", "zero-idle"}) {
		t.Fatalf("got %v", got)
	}
	if (Capacity{}).Refusal() != balancer.ErrSaturated {
		t.Fatal("Capacity must refuse with ErrSaturated")
	}
}

func TestPreferSite(t *testing.T) {
	l := balancer.Candidate{Key: "local", Site: "here"}
	r := balancer.Candidate{Key: "remote", Site: "there"}
	if got := run(PreferSite{Site: "here"}, balancer.Request{}, r, l); !slices.Equal(got, []string{"local"}) {
		t.Fatalf("got %v, want only local", got)
	}
	if got := run(PreferSite{Site: "here"}, balancer.Request{}, r); !slices.Equal(got, []string{"remote"}) {
		t.Fatalf("no local replica: got %v, want the remote one", got)
	}
	if got := run(PreferSite{}, balancer.Request{}, r, l); !slices.Equal(got, []string{"remote", "local"}) {
		t.Fatalf("no own site: got %v, want all", got)
	}
}
