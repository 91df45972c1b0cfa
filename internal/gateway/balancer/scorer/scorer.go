package scorer

import (
	"slices"
	"time"

	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

// Delay scores a replica by the time a task placed on it is expected to take, relative to the
// best: its recent task duration stretched by how busy it is,
//
//	cost = Latency × (1 + InFlight / Capacity),  score = cheapest cost / own cost.
//
// A model server works on its tasks at once and each gets slower as the batch grows, so an idle
// slow replica can beat a busy fast one and a busy fast one can beat an idle slow one; neither
// load alone nor latency alone sees that. A replica not measured yet (new or restarted) counts
// at the median of the measured ones, so it gets tasks and is measured; when none is measured
// every replica costs the same per unit of load and the least loaded wins.
type Delay struct{}

var _ balancer.Scorer = Delay{}

// Score implements balancer.Scorer.
func (Delay) Score(_ *balancer.Request, cands []balancer.Candidate, scores []float64) {
	unmeasured := median(cands)
	cheapest := 0.0
	for i, c := range cands {
		lat := c.Latency
		if lat <= 0 {
			lat = unmeasured
		}
		cost := Cost(lat, c)
		scores[i] = cost
		if i == 0 || cost < cheapest {
			cheapest = cost
		}
	}
	for i, cost := range scores {
		if cost <= 0 {
			scores[i] = 1
			continue
		}
		scores[i] = cheapest / cost
	}
}

// Cost is the time a task placed on c is expected to take when c's tasks take lat: lat ×
// (1 + InFlight / Capacity), in nanoseconds. Delay scores by it.
func Cost(lat time.Duration, c balancer.Candidate) float64 {
	return float64(lat) * (1 + float64(c.InFlight)/float64(max(c.Capacity, 1)))
}

// median is the median measured latency of cands, or 1ns when none is measured.
func median(cands []balancer.Candidate) time.Duration {
	var ls []time.Duration
	for _, c := range cands {
		if c.Latency > 0 {
			ls = append(ls, c.Latency)
		}
	}
	if len(ls) == 0 {
		return 1
	}
	slices.Sort(ls)
	return ls[len(ls)/2]
}

// Load rates a replica by its free room: 1 − InFlight/Capacity, so an idle replica scores 1
// and a full one 0. Capacity below 1 counts as 1.
type Load struct{}

var _ balancer.Scorer = Load{}

// Score implements balancer.Scorer.
func (Load) Score(_ *balancer.Request, cands []balancer.Candidate, scores []float64) {
	for i, c := range cands {
		scores[i] = 1 - float64(c.InFlight)/float64(max(c.Capacity, 1))
	}
}

// Latency rates a replica by its recent task duration (Candidate.Latency, an EWMA the gateway
// keeps with balancer.EWMA) relative to the fastest candidate: fastest/own, so the fastest
// scores 1 and a replica five times slower 0.2. A replica with no recent duration scores 1,
// so that new and restarted replicas get tasks and a measurement.
type Latency struct{}

var _ balancer.Scorer = Latency{}

// Score implements balancer.Scorer.
func (Latency) Score(_ *balancer.Request, cands []balancer.Candidate, scores []float64) {
	var fastest int64
	for _, c := range cands {
		if c.Latency > 0 && (fastest == 0 || int64(c.Latency) < fastest) {
			fastest = int64(c.Latency)
		}
	}
	for i, c := range cands {
		if c.Latency <= 0 {
			scores[i] = 1
			continue
		}
		scores[i] = float64(fastest) / float64(c.Latency)
	}
}
