package gateway

import (
	"context"
	"net/http"
	"time"
)

// probeInterval is how often ejected replicas are probed.
const probeInterval = time.Second

// probeEjected probes every ejected replica's agent card until ctx ends, and puts a replica
// back into rotation as soon as it answers, rather than when its ejection runs out. Replicas in
// rotation are not probed here: tasks are the gateway's probes, and readiness comes from
// discovery.
func (g *Gateway) probeEjected(ctx context.Context) {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, url := range g.ejector.EjectedKeys(g.opts.Now()) {
			if g.probe(ctx, url) {
				g.ejector.Readmit(url)
				g.log.Info("ejected replica answers its probe again; back in rotation", "url", url)
				for _, a := range g.opts.Source.Snapshot() {
					g.queue.Notify(a.Name)
				}
			}
		}
	}
}

func (g *Gateway) probe(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+cardPath, nil)
	if err != nil {
		return false
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
