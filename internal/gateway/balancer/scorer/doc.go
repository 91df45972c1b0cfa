// Package scorer holds the balancer's scorers: each rates the candidates left by the filters
// in [0, 1], higher is better, and a policy sums them with weights into Candidate.Score for
// its picker.
package scorer
