package balancer

import (
	"sync"
	"testing"
	"time"
)

func TestP2CNeverPicksTheMostLoadedOfTwo(t *testing.T) {
	p := NewP2C(1)
	cands := []Candidate{{Key: "a", InFlight: 3, Capacity: 4}, {Key: "b", InFlight: 1, Capacity: 4}}
	for range 1000 {
		i, ok := p.Pick(cands)
		if !ok || cands[i].Key != "b" {
			t.Fatalf("Pick() = %d, %v; want the less loaded replica b", i, ok)
		}
	}
}

func TestP2CLoadIsRelativeToCapacity(t *testing.T) {
	p := NewP2C(2)
	// a: 4 of 8 busy (50%); b: 3 of 4 busy (75%). a has more tasks but more room.
	cands := []Candidate{{Key: "a", InFlight: 4, Capacity: 8}, {Key: "b", InFlight: 3, Capacity: 4}}
	for range 200 {
		if i, _ := p.Pick(cands); cands[i].Key != "a" {
			t.Fatal("picked the replica with less relative room")
		}
	}
}

func TestP2CSpreadsEvenlyWhenIdle(t *testing.T) {
	p := NewP2C(3)
	cands := []Candidate{{Key: "a", Capacity: 1}, {Key: "b", Capacity: 1}, {Key: "c", Capacity: 1}}
	counts := map[string]int{}
	for range 3000 {
		i, _ := p.Pick(cands)
		counts[cands[i].Key]++
	}
	for k, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("replica %s picked %d of 3000 times with equal load; want about 1000", k, n)
		}
	}
}

func TestP2CNeverPicksTheSingleWorstReplica(t *testing.T) {
	p := NewP2C(4)
	cands := []Candidate{{Key: "a", InFlight: 1, Capacity: 2}, {Key: "b", InFlight: 2, Capacity: 2}, {Key: "c", InFlight: 0, Capacity: 2}}
	for range 1000 {
		if i, _ := p.Pick(cands); cands[i].Key == "b" {
			t.Fatal("picked the fullest replica although two others had room")
		}
	}
}

func TestP2CEdgeCases(t *testing.T) {
	p := NewP2C(5)
	if _, ok := p.Pick(nil); ok {
		t.Fatal("Pick(nil) ok = true")
	}
	if i, ok := p.Pick([]Candidate{{Key: "only", InFlight: 99, Capacity: 1}}); !ok || i != 0 {
		t.Fatalf("Pick(one) = %d, %v", i, ok)
	}
	// A zero capacity is treated as 1, not a division by zero.
	if _, ok := p.Pick([]Candidate{{Key: "a"}, {Key: "b", InFlight: 1}}); !ok {
		t.Fatal("zero capacity broke Pick")
	}
}

func TestTracker(t *testing.T) {
	tr := NewTracker()
	var wg sync.WaitGroup
	releases := make(chan func(), 100)
	for range 100 {
		wg.Go(func() { releases <- tr.Acquire("a") })
	}
	wg.Wait()
	close(releases)
	if n := tr.InFlight("a"); n != 100 {
		t.Fatalf("InFlight = %d, want 100", n)
	}
	for r := range releases {
		r()
		r() // a second call must not count twice
	}
	if n := tr.InFlight("a"); n != 0 {
		t.Fatalf("InFlight after release = %d, want 0", n)
	}
}

func TestP2CGivesAReplicaWithoutLatencyItsShare(t *testing.T) {
	p := NewP2C(7)
	cands := []Candidate{{Key: "measured", Capacity: 4, Latency: 10 * time.Millisecond}, {Key: "restarted", Capacity: 4}}
	n := 0
	for range 1000 {
		if i, _ := p.Pick(cands); cands[i].Key == "restarted" {
			n++
		}
	}
	if n < 400 || n > 600 {
		t.Fatalf("the replica with no latency yet was picked %d of 1000 times; want about half", n)
	}
}
