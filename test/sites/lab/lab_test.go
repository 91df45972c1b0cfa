//go:build e2esites

package lab_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/sites/lab"
)

// oneWay is the latency between sites: every route and leaf connection crosses a proxy that
// holds each chunk this long in each direction.
const oneWay = 15 * time.Millisecond

// Ports of every server, each on its own site's address.
const (
	clientPort  = 4222
	clusterPort = 6222
	leafPort    = 7422
	monitorPort = 8222
)

// newLab makes a lab and checks, once the lab's own cleanup has run, that nothing of it is left.
func newLab(t *testing.T) *lab.Lab {
	t.Helper()
	var l *lab.Lab
	t.Cleanup(func() { // registered first, so it runs after the lab's cleanup
		if l == nil {
			return // skipped, or New failed
		}
		left, err := l.Leftovers()
		if err != nil {
			t.Errorf("list what lab %s left: %v", l.Name(), err)
			return
		}
		if len(left) > 0 {
			t.Errorf("lab %s left after its cleanup: %s", l.Name(), strings.Join(left, ", "))
		}
	})
	l = lab.New(t, lab.Options{})
	return l
}

// startNATS writes a server's configuration and runs it in its site, with its files in dir.
func startNATS(t *testing.T, site *lab.Site, dir string, write func(path string)) *lab.Proc {
	t.Helper()
	conf := filepath.Join(dir, site.Name(), "nats.conf")
	write(conf)
	return site.Start(t, "nats-server@"+site.Name(), filepath.Join(dir, site.Name(), "nats.log"),
		lab.NATSServer(t), "-c", conf)
}

// connect makes a client connection; opts may add a site's dialer. It is closed when t ends.
func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.Timeout(2 * time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, opts...)
	var nc *nats.Conn
	testutil.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		var err error
		nc, err = nats.Connect(url, opts...)
		return err
	})
	t.Cleanup(nc.Close)
	return nc
}

// put writes key=value, retrying until a write is acknowledged within timeout; it returns how
// long that took.
func put(t *testing.T, kv jetstream.KeyValue, key, value string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	testutil.Eventually(t, timeout, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := kv.PutString(ctx, key, value)
		return err
	})
	return time.Since(start)
}

// waitValue waits until key reads value.
func waitValue(t *testing.T, kv jetstream.KeyValue, key, value string, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		e, err := kv.Get(ctx, key)
		if err != nil {
			return err
		}
		return testutil.Check(string(e.Value()) == value, "%s is %q, want %q", key, e.Value(), value)
	})
}

// readINFO connects with dial and reads the server's first line, which is INFO.
func readINFO(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	if string(buf) != "INFO" {
		return fmt.Errorf("%s sent %q, want INFO", addr, buf)
	}
	return nil
}

var rootDialer = &net.Dialer{}

// Three sites, one JetStream cluster member in each, their routes through 15 ms proxies. The
// cluster forms, keeps quorum when one site is cut off, and the site catches up once restored.
func TestJetStreamClusterAcrossSites(t *testing.T) {
	t.Parallel() // with the other test: two labs side by side
	l := newLab(t)
	dir := t.TempDir()
	var sites []*lab.Site
	for _, name := range []string{"east", "west", "north"} {
		sites = append(sites, l.AddSite(name))
	}
	// A proxy in front of each member's cluster port: every route to it crosses the delay.
	var proxies []*lab.Proxy
	for _, s := range sites {
		proxies = append(proxies, lab.Delay(t, l.HostIP()+":0", s.Addr(clusterPort), oneWay))
	}
	for i, s := range sites {
		var routes []string
		for j, p := range proxies {
			if j != i {
				routes = append(routes, "nats://"+p.Addr())
			}
		}
		cfg := lab.ClusterConfig{
			ServerName:    s.Name(),
			Listen:        s.Addr(clientPort),
			Monitor:       s.Addr(monitorPort),
			StoreDir:      filepath.Join(dir, s.Name(), "jetstream"),
			ClusterName:   "lab",
			ClusterListen: s.Addr(clusterPort),
			Routes:        routes,
		}
		startNATS(t, s, dir, func(path string) { cfg.WriteFile(t, path) })
	}
	for _, s := range sites {
		lab.WaitHealthy(t, s.Addr(monitorPort), 30*time.Second)
	}

	// The root namespace reaches every site, and sites reach each other across the bridge.
	for _, s := range sites {
		if err := readINFO(t.Context(), rootDialer.DialContext, s.Addr(clientPort)); err != nil {
			t.Fatalf("root namespace to site %s: %v", s.Name(), err)
		}
		for _, from := range sites {
			if err := readINFO(t.Context(), from.DialContext, s.Addr(clientPort)); err != nil {
				t.Fatalf("site %s to site %s: %v", from.Name(), s.Name(), err)
			}
		}
	}

	// The cluster forms: an R3 bucket needs a meta leader and all three members.
	nc := connect(t, "nats://"+sites[0].Addr(clientPort))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	var kv jetstream.KeyValue
	start := time.Now()
	testutil.Eventually(t, time.Minute, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "lab", Replicas: 3})
		return err
	})
	t.Logf("R3 bucket created %v after the servers were healthy", time.Since(start).Round(time.Millisecond))
	put(t, kv, "before", "1", 10*time.Second)
	waitValue(t, kv, "before", "1", 10*time.Second)

	// Every route crosses a proxy: its peer is the bridge address, and its RTT has the delay.
	testutil.Eventually(t, 15*time.Second, 250*time.Millisecond, func() error {
		var routez struct {
			Routes []struct {
				Name string `json:"remote_name"`
				IP   string `json:"ip"`
				RTT  string `json:"rtt"`
			} `json:"routes"`
		}
		if err := lab.GetJSON(t.Context(), "http://"+sites[0].Addr(monitorPort)+"/routez", 2*time.Second, &routez); err != nil {
			return err
		}
		if len(routez.Routes) < 2 {
			return fmt.Errorf("%d routes, want one or more to each of 2 peers", len(routez.Routes))
		}
		for _, r := range routez.Routes {
			rtt, err := time.ParseDuration(r.RTT)
			if err != nil {
				return fmt.Errorf("route to %s: rtt %q: %v", r.Name, r.RTT, err)
			}
			if r.IP != l.HostIP() || rtt < 2*oneWay {
				return fmt.Errorf("route to %s from %s with RTT %v, want from the proxies at %s with at least %v", r.Name, r.IP, rtt, l.HostIP(), 2*oneWay)
			}
		}
		return nil
	})

	// A client through a proxy sees twice its delay, and not much more.
	viaProxy := connect(t, "nats://"+lab.Delay(t, l.HostIP()+":0", sites[0].Addr(clientPort), oneWay).Addr())
	fastest := time.Hour
	for range 5 {
		rtt, err := viaProxy.RTT()
		if err != nil {
			t.Fatalf("RTT through the proxy: %v", err)
		}
		if rtt < 2*oneWay {
			t.Fatalf("RTT through a proxy of %v each way is %v, want at least %v", oneWay, rtt, 2*oneWay)
		}
		fastest = min(fastest, rtt)
	}
	if limit := 2*oneWay + 50*time.Millisecond; fastest >= limit {
		t.Fatalf("fastest of 5 RTTs through a proxy of %v each way is %v, want under %v", oneWay, fastest, limit)
	}
	t.Logf("RTT through a proxy of %v each way: %v", oneWay, fastest)

	// Cut off the site of the bucket's leader: nothing reaches it, and the other two keep
	// quorum, electing a leader among themselves.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	info, err := js.Stream(ctx, "KV_lab")
	cancel()
	if err != nil {
		t.Fatalf("the bucket's stream: %v", err)
	}
	leader := info.CachedInfo().Cluster.Leader
	i := slices.IndexFunc(sites, func(s *lab.Site) bool { return s.Name() == leader })
	if i < 0 {
		t.Fatalf("the bucket's leader is %q, not one of the sites", leader)
	}
	cut, other := sites[i], sites[(i+1)%len(sites)]
	js, err = jetstream.New(connect(t, "nats://"+other.Addr(clientPort)))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	kv, err = js.KeyValue(ctx, "lab")
	cancel()
	if err != nil {
		t.Fatalf("bucket lab from site %s: %v", other.Name(), err)
	}
	cut.Cut()
	if err := readINFO(t.Context(), rootDialer.DialContext, cut.Addr(clientPort)); err == nil {
		t.Fatalf("the root namespace still reaches site %s after Cut", cut.Name())
	}
	if err := readINFO(t.Context(), other.DialContext, cut.Addr(clientPort)); err == nil {
		t.Fatalf("site %s still reaches site %s after Cut", other.Name(), cut.Name())
	}
	took := put(t, kv, "during-cut", "2", 30*time.Second)
	t.Logf("with the leader's site %s cut off, a put through site %s succeeded after %v", cut.Name(), other.Name(), took.Round(time.Millisecond))

	// Restored, the site catches up: a client of its server reads what was written without it.
	cut.Restore()
	js3, err := jetstream.New(connect(t, "nats://"+cut.Addr(clientPort)))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	var kv3 jetstream.KeyValue
	testutil.Eventually(t, 30*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		kv3, err = js3.KeyValue(ctx, "lab")
		return err
	})
	waitValue(t, kv3, "during-cut", "2", 30*time.Second)
}

// A hub and a clinic, the clinic a leaf server with its own JetStream domain, connected through
// a 15 ms proxy. Cut off, the clinic keeps serving its own bucket; restored, it is a leaf again.
func TestClinicLeafAcrossACut(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	dir := t.TempDir()
	hub, clinic := l.AddSite("hub"), l.AddSite("clinic")
	leafProxy := lab.Delay(t, l.HostIP()+":0", hub.Addr(leafPort), oneWay)
	hubCfg := lab.ClusterConfig{
		ServerName: "hub",
		Listen:     hub.Addr(clientPort),
		Monitor:    hub.Addr(monitorPort),
		StoreDir:   filepath.Join(dir, "hub", "jetstream"),
		Domain:     "hub",
		LeafListen: hub.Addr(leafPort),
	}
	clinicCfg := lab.LeafConfig{
		ServerName: "clinic",
		Listen:     clinic.Addr(clientPort),
		Monitor:    clinic.Addr(monitorPort),
		StoreDir:   filepath.Join(dir, "clinic", "jetstream"),
		Domain:     "clinic",
		Remotes:    []string{"nats://" + leafProxy.Addr()},
	}
	startNATS(t, hub, dir, func(path string) { hubCfg.WriteFile(t, path) })
	startNATS(t, clinic, dir, func(path string) { clinicCfg.WriteFile(t, path) })
	lab.WaitHealthy(t, hub.Addr(monitorPort), 30*time.Second)
	lab.WaitHealthy(t, clinic.Addr(monitorPort), 30*time.Second)
	waitLeafs(t, hub, 1, 20*time.Second)

	hubNC := connect(t, "nats://"+hub.Addr(clientPort))
	// The clinic's client lives in the clinic, so that a cut leaves it with its server.
	clinicNC := connect(t, "nats://"+clinic.Addr(clientPort), nats.SetCustomDialer(clinic))
	clinicJS, err := jetstream.New(clinicNC)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	var kv jetstream.KeyValue
	testutil.Eventually(t, 30*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		kv, err = clinicJS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "notes"})
		return err
	})
	put(t, kv, "before", "1", 10*time.Second)
	answer(t, hubNC, "hub.echo")
	roundTrip(t, clinicNC, "hub.echo", 20*time.Second)

	clinic.Cut()
	waitLeafs(t, hub, 0, 20*time.Second) // the hub gives up on the leaf after its pings
	took := put(t, kv, "during-cut", "2", 5*time.Second)
	waitValue(t, kv, "during-cut", "2", 5*time.Second)
	t.Logf("cut off, the clinic took %v to store a value in its own bucket", took.Round(time.Millisecond))

	clinic.Restore()
	start := time.Now()
	waitLeafs(t, hub, 1, 30*time.Second)
	roundTrip(t, clinicNC, "hub.echo", 20*time.Second)
	t.Logf("restored, the clinic was a leaf again with a round trip after %v", time.Since(start).Round(time.Millisecond))

	// Across the leaf, a hub client reads the clinic's bucket in the clinic's domain.
	fromHub, err := jetstream.NewWithDomain(hubNC, "clinic")
	if err != nil {
		t.Fatalf("jetstream in domain clinic: %v", err)
	}
	var remote jetstream.KeyValue
	testutil.Eventually(t, 20*time.Second, 500*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		remote, err = fromHub.KeyValue(ctx, "notes")
		return err
	})
	waitValue(t, remote, "during-cut", "2", 20*time.Second)
}

// waitLeafs waits until the server of site has n leaf connections.
func waitLeafs(t *testing.T, site *lab.Site, n int, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, 250*time.Millisecond, func() error {
		got, err := lab.Leafs(t.Context(), site.Addr(monitorPort))
		if err != nil {
			return err
		}
		return testutil.Check(got == n, "%s has %d leaf connections, want %d", site.Name(), got, n)
	})
}

// answer replies to every request on subject with its own data, until t ends.
func answer(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		t.Fatalf("subscribe %s: %v", subject, err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// roundTrip waits until a request on subject comes back with its data.
func roundTrip(t *testing.T, nc *nats.Conn, subject string, timeout time.Duration) {
	t.Helper()
	testutil.Eventually(t, timeout, 250*time.Millisecond, func() error {
		m, err := nc.Request(subject, []byte("ping"), time.Second)
		if err != nil {
			return fmt.Errorf("request %s: %w", subject, err)
		}
		return testutil.Check(string(m.Data) == "ping", "reply %q, want %q", m.Data, "ping")
	})
}
