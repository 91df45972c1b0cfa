package balancer

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestP2CComparesScoreFirst(t *testing.T) {
	p := NewP2C(6)
	// b is more loaded but scores higher (the policy's scorers said so): score wins.
	cands := []Candidate{{Key: "a", InFlight: 0, Capacity: 4, Score: 0.5}, {Key: "b", InFlight: 3, Capacity: 4, Score: 0.9}}
	for range 200 {
		if i, _ := p.Pick(cands); cands[i].Key != "b" {
			t.Fatal("picked the lower score")
		}
	}
}

func TestP2CBreaksLoadTiesByLatency(t *testing.T) {
	p := NewP2C(7)
	cands := []Candidate{{Key: "slow", InFlight: 1, Capacity: 4, Latency: time.Second}, {Key: "fast", InFlight: 1, Capacity: 4, Latency: 100 * time.Millisecond}}
	for range 200 {
		if i, _ := p.Pick(cands); cands[i].Key != "fast" {
			t.Fatal("equal load: picked the slower replica")
		}
	}
}

func TestTrackerTryAcquireNeverExceedsCapacity(t *testing.T) {
	tr := NewTracker()
	var got, peak atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 64 {
		wg.Go(func() {
			<-start
			for range 200 {
				release, ok := tr.TryAcquire("a", 3)
				if !ok {
					continue
				}
				n := got.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				got.Add(-1)
				release()
				release()
			}
		})
	}
	close(start)
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Fatalf("%d tasks held at once on a replica of capacity 3", p)
	}
	if n := tr.InFlight("a"); n != 0 {
		t.Fatalf("InFlight after all released = %d", n)
	}
	if _, ok := tr.TryAcquire("b", 0); !ok {
		t.Fatal("capacity 0 must count as 1")
	}
	if _, ok := tr.TryAcquire("b", 0); ok {
		t.Fatal("a second task fit in capacity 0 (counted as 1)")
	}
}

func TestEWMA(t *testing.T) {
	e := NewEWMA(10 * time.Second)
	t0 := time.Unix(1000, 0)
	if _, ok := e.Value("a", t0); ok {
		t.Fatal("value before any observation")
	}
	e.Observe("a", 100*time.Millisecond, t0)
	if v, ok := e.Value("a", t0); !ok || v != 100*time.Millisecond {
		t.Fatalf("first observation: %v %v", v, ok)
	}
	// One decay constant later a new value weighs 1-1/e ≈ 63%.
	e.Observe("a", 1100*time.Millisecond, t0.Add(10*time.Second))
	v, _ := e.Value("a", t0.Add(10*time.Second))
	if want := 100*time.Millisecond + time.Duration(0.632*float64(time.Second)); v < want-5*time.Millisecond || v > want+5*time.Millisecond {
		t.Fatalf("after one decay constant: %v, want about %v", v, want)
	}
	// Tasks ending at the same instant still count, each at least MinWeight.
	before := v
	e.Observe("a", 10*time.Second, t0.Add(10*time.Second))
	if v, _ = e.Value("a", t0.Add(10*time.Second)); v <= before {
		t.Fatalf("a simultaneous observation was ignored: %v", v)
	}
	// Stale values are no longer current, but stand as the last guess for a while, then are
	// forgotten so that a once-slow replica is tried again.
	if _, ok := e.Value("a", t0.Add(10*time.Second+50*time.Second)); ok {
		t.Fatal("a value 5 decay constants old is still reported")
	}
	if last, ok := e.Last("a", t0.Add(10*time.Second+50*time.Second)); !ok || last != v {
		t.Fatalf("Last 5 decay constants on = %v %v, want %v", last, ok, v)
	}
	if _, ok := e.Last("a", t0.Add(10*time.Second+100*time.Second)); ok {
		t.Fatal("Last still guesses after 10 decay constants")
	}
	e.Observe("b", time.Second, t0)
	e.Retain(func(k string) bool { return k == "a" })
	if _, ok := e.Value("b", t0); ok {
		t.Fatal("Retain kept b")
	}
}

// dropAll is a filter that refuses everything with err; the real filters live in package filter.
type dropAll struct{ err error }

func (d dropAll) Filter(*Request, []Candidate) []Candidate { return nil }
func (d dropAll) Refusal() error                           { return d.err }

func TestPolicyReturnsIndexInCallerSlice(t *testing.T) {
	odd := FilterFunc(func(_ *Request, cs []Candidate) []Candidate {
		out := cs[:0]
		for _, c := range cs {
			if c.InFlight%2 == 1 {
				out = append(out, c)
			}
		}
		return out
	})
	// The scorer prefers the highest InFlight; the picker takes the best score.
	byInFlight := ScorerFunc(func(_ *Request, cs []Candidate, s []float64) {
		for i, c := range cs {
			s[i] = float64(c.InFlight) / 10
		}
	})
	best := PickerFunc(func(cs []Candidate) (int, bool) {
		i := slices.IndexFunc(cs, func(c Candidate) bool {
			return !slices.ContainsFunc(cs, func(d Candidate) bool { return d.Score > c.Score })
		})
		return i, i >= 0
	})
	p := &Policy{Name: "t", Filters: []Filter{odd}, Scorers: []Weighted{{byInFlight, 1}}, Picker: best}
	cands := []Candidate{{Key: "a", InFlight: 1}, {Key: "b", InFlight: 2}, {Key: "c", InFlight: 5}, {Key: "d", InFlight: 4}}
	orig := slices.Clone(cands)
	i, err := p.Pick(Request{}, cands)
	if err != nil || cands[i].Key != "c" {
		t.Fatalf("Pick = %d, %v; want index 2 (c)", i, err)
	}
	if !slices.Equal(cands, orig) {
		t.Fatal("Pick modified the caller's slice")
	}
}

func TestPolicyScoresAreWeightedAndClamped(t *testing.T) {
	var seen []float64
	p := &Policy{Name: "t",
		Scorers: []Weighted{
			{ScorerFunc(func(_ *Request, _ []Candidate, s []float64) { s[0], s[1] = 2, -1 }), 1},  // clamped to 1, 0
			{ScorerFunc(func(_ *Request, _ []Candidate, s []float64) { s[0], s[1] = 0, 1 }), 0.5}, // 0, 0.5
		},
		Picker: PickerFunc(func(cs []Candidate) (int, bool) {
			for _, c := range cs {
				seen = append(seen, c.Score)
			}
			return 0, true
		}),
	}
	if _, err := p.Pick(Request{}, []Candidate{{Key: "a", Score: 7}, {Key: "b"}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []float64{1, 0.5}) {
		t.Fatalf("scores = %v, want [1 0.5]", seen)
	}
}

func TestPolicyRefusalNamesTheReason(t *testing.T) {
	for _, reason := range []error{ErrSaturated, ErrResidency, ErrUnavailable} {
		p := &Policy{Name: "t", Filters: []Filter{dropAll{reason}}, Picker: NewP2C(1)}
		_, err := p.Pick(Request{}, []Candidate{{Key: "a"}})
		var nre *NoReplicaError
		if !errors.Is(err, reason) || !errors.As(err, &nre) || nre.Candidates != 1 {
			t.Fatalf("err = %v, want %v in a NoReplicaError", err, reason)
		}
	}
	p := &Policy{Name: "t", Filters: []Filter{FilterFunc(func(*Request, []Candidate) []Candidate { return nil })}, Picker: NewP2C(1)}
	if _, err := p.Pick(Request{}, []Candidate{{Key: "a"}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a filter that is not a Refuser: err = %v, want ErrUnavailable", err)
	}
	if _, err := p.Pick(Request{}, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no candidates: err = %v, want ErrUnavailable", err)
	}
}

func TestPolicyUsesAffinityOnlyWithAKey(t *testing.T) {
	var keyed string
	p := &Policy{Name: "t", Picker: PickerFunc(func([]Candidate) (int, bool) { return 0, true }),
		Affinity: keyPickerFunc(func(k string, _ []Candidate) (int, bool) { keyed = k; return 1, true })}
	cands := []Candidate{{Key: "a"}, {Key: "b"}}
	if i, _ := p.Pick(Request{}, cands); i != 0 || keyed != "" {
		t.Fatal("no key: the affinity picker was used")
	}
	if i, _ := p.Pick(Request{AffinityKey: "ctx-1"}, cands); i != 1 || keyed != "ctx-1" {
		t.Fatal("with a key: the affinity picker was not used")
	}
}

type keyPickerFunc func(string, []Candidate) (int, bool)

func (f keyPickerFunc) PickKey(k string, c []Candidate) (int, bool) { return f(k, c) }

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	if err := r.Register(&Policy{Name: "b", Picker: NewP2C(1)}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(&Policy{Name: "a", Picker: NewP2C(1)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*Policy{nil, {Picker: NewP2C(1)}, {Name: "a", Picker: NewP2C(1)}, {Name: "c"}} {
		if r.Register(bad) == nil {
			t.Errorf("Register(%+v) succeeded", bad)
		}
	}
	if _, ok := r.Get("a"); !ok {
		t.Fatal("Get(a) not found")
	}
	if got := r.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Names = %v", got)
	}
}

func TestEWMAMedian(t *testing.T) {
	e := NewEWMA(time.Second)
	t0 := time.Now()
	if _, ok := e.Median("a", t0, 1); ok {
		t.Fatal("Median of a key never observed")
	}
	// Heavy-tailed durations: most short, a few a hundred times longer. The average follows the
	// long ones; the median does not.
	for i := range 40 {
		d := 100 * time.Millisecond
		if i%5 == 4 {
			d = 10 * time.Second
		}
		e.Observe("a", d, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	now := t0.Add(4 * time.Second)
	if m, ok := e.Median("a", now, 4); !ok || m != 100*time.Millisecond {
		t.Errorf("Median = %v %v, want 100ms", m, ok)
	}
	if v, _ := e.Value("a", now); v < time.Second {
		t.Errorf("the average %v did not follow the long tasks: the test no longer shows why Median exists", v)
	}
	// Only the last RecentTasks count: 32 slow tasks after them move the median.
	for i := range RecentTasks {
		e.Observe("a", time.Second, now.Add(time.Duration(i)*time.Millisecond))
	}
	if m, _ := e.Median("a", now.Add(time.Second), 1); m != time.Second {
		t.Errorf("Median after %d one-second tasks = %v, want 1s", RecentTasks, m)
	}
	// Too few tasks, or too long ago, and there is no median.
	e.Observe("b", time.Second, t0)
	if _, ok := e.Median("b", t0, 2); ok {
		t.Error("Median with 1 task when 2 are asked for")
	}
	if _, ok := e.Median("b", t0.Add(10*time.Second), 1); ok {
		t.Error("Median 10 decay constants after the last task")
	}
	// A stale average starts over; the recent durations stay.
	e.Observe("b", 3*time.Second, t0.Add(5*time.Second))
	if m, ok := e.Median("b", t0.Add(5*time.Second), 2); !ok || m != 3*time.Second {
		t.Errorf("Median after the average started over = %v %v, want 3s of [1s 3s]", m, ok)
	}
	if v, _ := e.Value("b", t0.Add(5*time.Second)); v != 3*time.Second {
		t.Errorf("Value after 5 decay constants = %v, want the new task alone, 3s", v)
	}
}
