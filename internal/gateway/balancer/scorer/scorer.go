package scorer

import (
	"github.com/agentplane/agentplane/internal/gateway/balancer"
)

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
