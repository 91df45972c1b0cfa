//go:build e2esites

package sites

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/sites/lab"
)

// livePool is the set of gateways clients use, changed as the scenario kills or cuts them.
type livePool struct {
	mu   sync.Mutex
	urls []string
}

func (p *livePool) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.urls...)
}

func (p *livePool) set(urls ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls = urls
}

// lost are the tasks accepted and never seen to end.
func lost(results []*taskResult) []*taskResult {
	var out []*taskResult
	for _, r := range results {
		if r.accepted && r.state == "" {
			out = append(out, r)
		}
	}
	return out
}

// Topology (a): one site, a 3-server JetStream cluster, two gateways. One gateway is killed with
// kill -9 under load: the other claims its unfinished tasks and runs them; its clients read the
// results by task id from the survivor (half of them streaming clients, whose stream breaks).
func TestGatewayKilledUnderLoad(t *testing.T) {
	w := newWorld(t)
	site := w.lab.AddSite("hospital")
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats://"+site.Addr(clusterPort+i))
	}
	for i := range 3 {
		cfg := lab.ClusterConfig{ServerName: "n" + strconv.Itoa(i), Listen: site.Addr(clientPort + i), Monitor: site.Addr(monitorPort + i),
			StoreDir: filepath.Join(w.dir, "n"+strconv.Itoa(i), "js"), ClusterName: "hospital", ClusterListen: site.Addr(clusterPort + i), Routes: routes}
		w.natsServer(site, "n"+strconv.Itoa(i), func(p string) { cfg.WriteFile(t, p) }, site.Addr(monitorPort+i))
	}
	m := w.manifest("hospital", agentSpec{name: "triage", replicas: 2, maxConcurrency: 4, latency: "lognormal:1s,3s"})
	g1 := w.startGateway(site, "gw-1", gatewayPort, "nats://"+site.Addr(clientPort), m, "--journal-replicas", "3", "--log-level", "debug")
	g2 := w.startGateway(site, "gw-2", gatewayPort+1, "nats://"+site.Addr(clientPort+1), m, "--journal-replicas", "3", "--log-level", "debug")
	g1.waitFleet("gw-1", "gw-2")
	g2.waitFleet("gw-1", "gw-2")

	live := &livePool{}
	live.set(g1.url(), g2.url())
	ld := load{agent: "triage", n: 60, every: 100 * time.Millisecond, targets: live.get, readers: live.get, streaming: true}
	var killed time.Time
	var resumed atomic.Int64 // ns after the kill when the survivor claimed the first task
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(2500 * time.Millisecond)
		killed = time.Now()
		if err := g2.proc.Kill9(); err != nil {
			t.Errorf("kill -9 gw-2: %v", err)
		}
		live.set(g1.url())
		for time.Since(killed) < 30*time.Second {
			if n, err := g1.metric("agentplane_redispatches_total", `gateway_lost`); err == nil && n > 0 {
				resumed.Store(int64(time.Since(killed)))
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	results := ld.run(t.Context())
	<-done
	fromDead, streamsBroken := 0, 0
	for _, r := range results {
		if r.acceptedBy == g2.url() && r.finished.After(killed) {
			fromDead++
			if r.streamed {
				streamsBroken++ // a streaming client that read its result by id from gw-1
			}
		}
	}
	if fromDead == 0 {
		t.Errorf("no task accepted by the killed gateway was still running when it died: the scenario proves nothing")
	}
	tl := count(results)
	report(t, "gateway-kill", tl, fmt.Sprintf("tasks_of_dead_gateway=%d of_them_streams_resumed_by_id=%d resumed_after=%v heartbeat=%v p50=%v p99=%v",
		fromDead, streamsBroken, time.Duration(resumed.Load()).Round(10*time.Millisecond), heartbeat,
		percentile(results, 0.5).Round(10*time.Millisecond), percentile(results, 0.99).Round(10*time.Millisecond)), lost(results)...)
	for _, r := range lost(results) {
		a, _, err := call(t.Context(), http.DefaultClient, g1.url(), "triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, r.id))
		t.Logf("lost task %s (streamed %v) as gw-1 has it: %s %v", r.id, r.streamed, a.Result, err)
		for _, g := range []*gateway{g1, g2} {
			b, _ := os.ReadFile(filepath.Join(w.dir, g.id, "agentplane.log"))
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, r.id) || strings.Contains(line, "async") || strings.Contains(line, "journal") {
					t.Logf("%s: %s", g.id, line)
				}
			}
		}
	}
	if resumed.Load() == 0 {
		t.Errorf("the surviving gateway never claimed a task of the dead one")
	}
}

// Topology (b): three sites, one JetStream server each, one cluster stretched over them (R3),
// 20 ms between sites, one gateway per site. In order: a burst at a small site with and without
// spilling to the others; an agent restricted to two sites with both of them cut off; a whole
// site cut mid-load while clients keep sending to the other two.
func TestStretchedClusterSites(t *testing.T) {
	w := newWorld(t)
	names := []string{"a", "b", "c"}
	sites := map[string]*lab.Site{}
	var proxies []*lab.Proxy
	for _, n := range names {
		sites[n] = w.lab.AddSite(n)
		proxies = append(proxies, lab.Delay(t, w.lab.HostIP()+":0", sites[n].Addr(clusterPort), interSite))
	}
	for i, n := range names {
		var routes []string
		for j, p := range proxies {
			if j != i {
				routes = append(routes, "nats://"+p.Addr())
			}
		}
		s := sites[n]
		cfg := lab.ClusterConfig{ServerName: n, Listen: s.Addr(clientPort), Monitor: s.Addr(monitorPort),
			StoreDir: filepath.Join(w.dir, n, "js"), ClusterName: "fleet", ClusterListen: s.Addr(clusterPort), Routes: routes}
		w.natsServer(s, n, func(p string) { cfg.WriteFile(t, p) }, s.Addr(monitorPort))
	}
	records := agentSpec{name: "records", replicas: 1, maxConcurrency: 4, latency: "100ms", allowedSites: []string{"a", "b"}}
	manifests := map[string]string{
		// Site a is small: one replica taking two tasks at once.
		"a": w.manifest("a", agentSpec{name: "triage", replicas: 1, maxConcurrency: 2, latency: "300ms"}, records),
		"b": w.manifest("b", agentSpec{name: "triage", replicas: 2, maxConcurrency: 4, latency: "300ms"}, records),
		"c": w.manifest("c", agentSpec{name: "triage", replicas: 2, maxConcurrency: 4, latency: "300ms"}),
	}
	gws := map[string]*gateway{}
	for _, n := range names {
		extra := []string{"--journal-replicas", "3"}
		if n == "a" {
			extra = append(extra, "--spill-after=-1s") // first without spilling
		}
		gws[n] = w.startGateway(sites[n], "gw-"+n, gatewayPort, "nats://"+sites[n].Addr(clientPort), manifests[n], extra...)
	}
	for _, g := range gws {
		g.waitFleet("gw-a", "gw-b", "gw-c")
	}
	all := func() []string { return []string{gws["a"].url(), gws["b"].url(), gws["c"].url()} }

	// Burst: 60 tasks at once to site a, whose replica takes 2 at a time (300 ms each).
	burst := func() []*taskResult {
		only := func() []string { return []string{gws["a"].url()} }
		return load{agent: "triage", n: 60, every: 5 * time.Millisecond, targets: only, readers: all, blocking: true}.run(t.Context())
	}
	without := burst()
	ga := gws["a"]
	if err := ga.proc.Stop(); err != nil {
		t.Logf("stopping gw-a: %v", err)
	}
	ga.extra = []string{"--journal-replicas", "3", "--spill-after=200ms"}
	ga.start()
	ga.waitFleet("gw-a", "gw-b", "gw-c")
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		peers, err := ga.fleet()
		return testutil.Check(err == nil && len(peers) == 3, "gw-a sees %v (%v)", peers, err)
	})
	with := burst()
	spilled, _ := ga.metric("agentplane_dispatches_total", `replica="gw:`)
	report(t, "burst-spill", count(append(without, with...)), fmt.Sprintf("p99_without_spill=%v p99_with_spill=%v p50_without=%v p50_with=%v spilled=%.0f",
		percentile(without, 0.99).Round(10*time.Millisecond), percentile(with, 0.99).Round(10*time.Millisecond),
		percentile(without, 0.5).Round(10*time.Millisecond), percentile(with, 0.5).Round(10*time.Millisecond), spilled))
	if spilled == 0 {
		t.Errorf("no task of the burst spilled to another site")
	}

	// Residency: records may run only at sites a and b. Both are cut off; every task sent to c
	// is refused, none runs at c.
	sites["a"].Cut()
	sites["b"].Cut()
	onlyC := func() []string { return []string{gws["c"].url()} }
	res := load{agent: "records", n: 20, every: 20 * time.Millisecond, targets: onlyC, readers: onlyC, within: 5 * time.Second}.run(t.Context())
	tl := count(res)
	for _, r := range res {
		if r.accepted {
			tl.violations++
		} else if r.refused == nil || r.refused.Error.Code != -32056 {
			t.Errorf("a records task at site c was not refused for residency: %+v", r.refused)
		}
	}
	report(t, "residency-allowed-sites-down", tl, "")
	sites["a"].Restore()
	sites["b"].Restore()
	for _, g := range gws {
		g.waitFleet("gw-a", "gw-b", "gw-c")
	}

	// Site c is cut off mid-load; clients keep sending to a and b, and read the tasks c had taken
	// from them.
	live := &livePool{}
	live.set(all()...)
	got := make(chan []*taskResult, 1)
	go func() {
		got <- load{agent: "triage", n: 60, every: 100 * time.Millisecond, targets: live.get, readers: live.get}.run(t.Context())
	}()
	time.Sleep(2 * time.Second)
	cut := time.Now()
	live.set(gws["a"].url(), gws["b"].url())
	sites["c"].Cut() // from the test's goroutine: Cut fails the test itself
	results := <-got
	fromCut := 0
	for _, r := range results {
		if r.acceptedBy == gws["c"].url() && r.finished.After(cut) {
			fromCut++
		}
	}
	report(t, "site-cut", count(results), fmt.Sprintf("tasks_of_cut_site=%d p50=%v p99=%v", fromCut,
		percentile(results, 0.5).Round(10*time.Millisecond), percentile(results, 0.99).Round(10*time.Millisecond)), lost(results)...)
	if fromCut == 0 {
		t.Errorf("no task accepted at the cut site was still running when it was cut: the scenario proves nothing")
	}
}

// Topology (c): a hub and a clinic joined as a NATS leaf node with its own JetStream domain.
// Cut off, the clinic keeps serving its own agents to its own clients; restored, it rejoins the
// fleet.
func TestLeafClinicCutOffAndRejoined(t *testing.T) {
	w := newWorld(t)
	hub, clinic := w.lab.AddSite("hub"), w.lab.AddSite("clinic")
	hubCfg := lab.ClusterConfig{ServerName: "hub", Listen: hub.Addr(clientPort), Monitor: hub.Addr(monitorPort),
		StoreDir: filepath.Join(w.dir, "hub", "js"), Domain: "hub", LeafListen: hub.Addr(leafPort)}
	w.natsServer(hub, "hub", func(p string) { hubCfg.WriteFile(t, p) }, hub.Addr(monitorPort))
	toHub := lab.Delay(t, w.lab.HostIP()+":0", hub.Addr(leafPort), interSite)
	leafCfg := lab.LeafConfig{ServerName: "clinic", Listen: clinic.Addr(clientPort), Monitor: clinic.Addr(monitorPort),
		StoreDir: filepath.Join(w.dir, "clinic", "js"), Domain: "clinic", Remotes: []string{"nats://" + toHub.Addr()}}
	w.natsServer(clinic, "clinic", func(p string) { leafCfg.WriteFile(t, p) }, clinic.Addr(monitorPort))

	triage := agentSpec{name: "triage", replicas: 2, maxConcurrency: 4, latency: "200ms"}
	gh := w.startGateway(hub, "gw-hub", gatewayPort, "nats://"+hub.Addr(clientPort), w.manifest("hub", triage))
	gc := w.startGateway(clinic, "gw-clinic", gatewayPort, "nats://"+clinic.Addr(clientPort), w.manifest("clinic", triage))
	gh.waitFleet("gw-hub", "gw-clinic")
	gc.waitFleet("gw-hub", "gw-clinic")

	// The clinic's own clients, inside the clinic, keep sending while it is cut off.
	own := func() []string { return []string{gc.url()} }
	got := make(chan []*taskResult, 1)
	go func() {
		got <- load{agent: "triage", n: 40, every: 100 * time.Millisecond, targets: own, readers: own, client: siteClient(clinic)}.run(t.Context())
	}()
	time.Sleep(time.Second)
	cutAt := time.Now()
	clinic.Cut()
	results := <-got
	whileCut := 0
	for _, r := range results {
		if r.state == "TASK_STATE_COMPLETED" && r.finished.After(cutAt) {
			whileCut++
		}
	}
	if whileCut == 0 {
		t.Errorf("no task completed at the clinic while it was cut off")
	}
	// The hub saw the clinic leave, and sees it again once the link is back.
	testutil.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
		ids, err := gh.fleet()
		return testutil.Check(err == nil && len(ids) == 1, "the hub still sees %v (%v) with the clinic cut off", ids, err)
	})
	clinic.Restore()
	restored := time.Now()
	gh.waitFleet("gw-hub", "gw-clinic")
	rejoin := time.Since(restored)
	report(t, "leaf-clinic-cut-rejoined", count(results), fmt.Sprintf("completed_while_cut=%d rejoined_after=%v",
		whileCut, rejoin.Round(10*time.Millisecond)))
}
