package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/fleet"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/tasks"
	"github.com/agentplane/agentplane/internal/testutil"
)

// The fleet tests run real gateways sharing a real JetStream server (in this process, on a
// loopback port), as gateways of one site share a NATS cluster. test/sites runs the same across
// network namespaces, with nats-server processes and `agentplane up`.

const testBeat = 100 * time.Millisecond

func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

type fleetMember struct {
	id, url string
	journal *store.JetStream
	fleet   *fleet.Fleet
	stop    func() // stops the gateway as a kill would: no goodbye, no drain
}

func testSigner(t *testing.T, key string) *fleet.Signer {
	t.Helper()
	s, err := fleet.NewSigner([]byte(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const fleetKey = "0123456789abcdef0123456789abcdef-fleet"

// startMember starts a gateway of a fleet on natsURL: its own journal connection, fleet
// membership and listener.
func startMember(t *testing.T, natsURL, id, site string, src discovery.Source, signer *fleet.Signer, mod ...func(*Options)) *fleetMember {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	j, err := store.Open(ctx, store.Options{URL: natsURL, Prefix: "fleettest"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	f, err := fleet.New(ctx, fleet.Options{Conn: j.Conn(), ID: id, Site: site, URL: url, Prefix: "fleettest", Interval: testBeat})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Source: src, Journal: j, Site: site, Fleet: f, FleetSigner: signer, Listener: ln, DrainTimeout: time.Second}
	for _, m := range mod {
		m(&o)
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		j.Conn().Close() // heartbeats and journal writes stop at once, as when the process dies
		cancel()
		<-done
	}
	t.Cleanup(func() { stop(); _ = j.Close() })
	return &fleetMember{id: id, url: url, journal: j, fleet: f, stop: stop}
}

// eventuallyTrue waits for cond with testutil.Eventually, failing with the message.
func eventuallyTrue(t *testing.T, within time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	testutil.Eventually(t, within, 20*time.Millisecond, func() error { return testutil.Check(cond(), format, args...) })
}

func waitMembers(t *testing.T, m *fleetMember, n int) {
	t.Helper()
	eventuallyTrue(t, 5*time.Second, func() bool { return len(m.fleet.Members()) == n }, "gateway %s never saw %d members", m.id, n)
}

// postForwarded sends a message to url as a peer gateway would, with a fleet token; the
// caller closes the body.
func postForwarded(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(sendV1(1, "x")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(fleet.Header, token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A gateway that dies leaves its unfinished tasks in the journal with its lease; another gateway
// of the journal claims them once its heartbeats stop and runs them to their end.
func TestFleetTakesOverTasksOfADeadGateway(t *testing.T) {
	nurl := startNATS(t)
	slow := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "3s")})
	fast := startAgent(t, "triage", "1", simagent.Config{})
	a := startMember(t, nurl, "gw-a", "hub", testutil.NewSource(testutil.Agent("triage", 8, slow)), nil)
	b := startMember(t, nurl, "gw-b", "hub", testutil.NewSource(testutil.Agent("triage", 8, fast)), nil)
	waitMembers(t, b, 2)

	// Three blocking tasks to gateway A, which hands them to its slow replica; A dies with them.
	type answer struct {
		err error
	}
	answers := make(chan answer, 3)
	for i := range 3 {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, a.url+"/agents/triage", strings.NewReader(sendV1(i, "study")))
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(body), "TASK_STATE_COMPLETED") {
					err = fmt.Errorf("HTTP %d without a result", res.StatusCode) // the gateway stopped first
				}
			}
			answers <- answer{err}
		}()
	}
	var ids []string
	eventuallyTrue(t, 5*time.Second, func() bool {
		ids = ids[:0]
		pending, err := b.journal.Pending(t.Context())
		if err != nil {
			return false
		}
		for _, p := range pending {
			// A blocking task's dispatch is not journaled (its client waits): accepted.
			if p.Owner == "gw-a" && !tasks.Settled(p.State) {
				ids = append(ids, p.ID)
			}
		}
		return len(ids) == 3
	}, "gateway A never dispatched its three tasks")
	killed := time.Now()
	a.stop()
	for range 3 {
		if (<-answers).err == nil {
			t.Error("a client of the dead gateway got its result from it")
		}
	}

	// Gateway B claims them and runs them on its own replica; any gateway answers GetTask.
	for _, id := range ids {
		eventuallyTrue(t, 10*time.Second, func() bool {
			got, err := b.journal.Get(t.Context(), id)
			return err == nil && got.State == store.StateCompleted
		}, "task %s was never completed by the surviving gateway", id)
		got, _ := b.journal.Get(t.Context(), id)
		if got.Owner != "gw-b" || got.ReplicaURL != fast {
			t.Errorf("task %s: owner %q, replica %s; want gw-b, on its replica %s", id, got.Owner, got.ReplicaURL, fast)
		}
		r := post(t, b.url+"/agents/triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":9,"method":"GetTask","params":{"id":%q}}`, id))
		if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
			t.Errorf("GetTask %s on gateway B: %s", id, r.raw)
		}
	}
	t.Logf("tasks of the dead gateway completed %v after it died (heartbeat %v)", time.Since(killed).Round(10*time.Millisecond), testBeat)
}

// A gateway with no ready replica of an agent spills its tasks to a peer gateway at another site
// that has one; the peer runs them as its own caller's, audited with where they came from.
func TestFleetSpillsToAPeerGateway(t *testing.T) {
	nurl := startNATS(t)
	replica := startAgent(t, "triage", "0", simagent.Config{})
	down := testutil.Agent("triage", 4, testutil.ClosedURL(t))
	down.Endpoints[0].Ready = false
	signer := testSigner(t, fleetKey)
	a := startMember(t, nurl, "gw-clinic", "clinic", testutil.NewSource(down), signer)
	b := startMember(t, nurl, "gw-hub", "hub", testutil.NewSource(testutil.Agent("triage", 4, replica)), signer)
	waitMembers(t, a, 2)
	eventuallyTrue(t, 5*time.Second, func() bool {
		return len(a.fleet.Peers("triage")) == 1 && a.fleet.Peers("triage")[0].Agents["triage"].Ready == 1
	},
		"the clinic never saw the hub serve triage")

	r := post(t, a.url+"/agents/triage", sendV1(1, "referral"))
	id, state := taskState(t, r.resp.Result)
	if r.resp.Error != nil || state != "TASK_STATE_COMPLETED" || r.replica != "gw:gw-hub" {
		t.Fatalf("spilled task: replica %q: %s", r.replica, r.raw)
	}
	origin, err := a.journal.Get(t.Context(), id)
	if err != nil || origin.Replica != "gw:gw-hub" || origin.Owner != "gw-clinic" || origin.UpstreamID == "" {
		t.Fatalf("the origin's record: %+v, %v", origin, err)
	}
	peer, err := b.journal.Get(t.Context(), origin.UpstreamID)
	if err != nil || peer.Origin != "gw-clinic" || peer.Subject != origin.Subject || peer.State != store.StateCompleted {
		t.Fatalf("the peer's record: %+v, %v", peer, err)
	}
	// The task's id at the origin reads through the peer.
	g := post(t, a.url+"/agents/triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":%q}}`, id))
	if gid, st := taskState(t, g.resp.Result); gid != id || st != "TASK_STATE_COMPLETED" {
		t.Fatalf("GetTask at the origin: %s", g.raw)
	}
}

// A forwarded task never hops again: a peer with no replica of its own refuses it rather than
// sending it on.
func TestFleetForwardsOneHopAtMost(t *testing.T) {
	nurl := startNATS(t)
	signer := testSigner(t, fleetKey)
	down := func() discovery.Agent {
		a := testutil.Agent("triage", 4, testutil.ClosedURL(t))
		a.Endpoints[0].Ready = false
		return a
	}
	a := startMember(t, nurl, "gw-a", "a", testutil.NewSource(down()), signer, func(o *Options) { o.QueueTimeout = time.Second })
	b := startMember(t, nurl, "gw-b", "b", testutil.NewSource(down()), signer, func(o *Options) { o.QueueTimeout = time.Second })
	waitMembers(t, a, 2)
	token, err := signer.Sign(fleet.Claims{Origin: "gw-a", Subject: "anonymous", Agent: "triage"})
	if err != nil {
		t.Fatal(err)
	}
	res := postForwarded(t, b.url+"/agents/triage", token)
	var r struct {
		Error *struct{ Message string } `json:"error"`
	}
	_ = json.NewDecoder(res.Body).Decode(&r)
	res.Body.Close()
	if r.Error == nil || res.Header.Get(HeaderReplica) == "gw:gw-a" {
		t.Fatalf("a forwarded task with no replica at its peer: replica %q, error %+v; want it refused there", res.Header.Get(HeaderReplica), r.Error)
	}
	if n := a.fleet.Peers("triage"); len(n) != 1 {
		t.Fatalf("gateway B is not a peer of A: %v", n)
	}
}

// A fleet token signed with another key, or for another agent, is refused with 401, and the
// task is not run.
func TestFleetRefusesForeignTokens(t *testing.T) {
	nurl := startNATS(t)
	replica := startAgent(t, "triage", "0", simagent.Config{})
	b := startMember(t, nurl, "gw-b", "hub", testutil.NewSource(testutil.Agent("triage", 4, replica)), testSigner(t, fleetKey))
	foreign := testSigner(t, "another key, also at least 32 bytes long")
	own := testSigner(t, fleetKey)
	for name, sign := range map[string]func() (string, error){
		"other key":   func() (string, error) { return foreign.Sign(fleet.Claims{Origin: "x", Subject: "s", Agent: "triage"}) },
		"other agent": func() (string, error) { return own.Sign(fleet.Claims{Origin: "x", Subject: "s", Agent: "billing"}) },
		"garbage":     func() (string, error) { return "not.a.token", nil },
	} {
		token, err := sign()
		if err != nil {
			t.Fatal(err)
		}
		res := postForwarded(t, b.url+"/agents/triage", token)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, res.StatusCode)
		}
	}
	if p, _ := b.journal.Pending(t.Context()); len(p) != 0 {
		t.Errorf("a refused forwarded task was journaled: %d pending", len(p))
	}
}

// A gateway outside an agent's allowed sites refuses its tasks before journaling them, and names
// the gateways where they may go.
func TestFleetResidencyRefusesOutsideAllowedSites(t *testing.T) {
	nurl := startNATS(t)
	replica := startAgent(t, "records", "0", simagent.Config{})
	signer := testSigner(t, fleetKey)
	restricted := func(url string) discovery.Agent {
		a := testutil.Agent("records", 4, url)
		a.AllowedSites = []string{"hub"}
		a.Endpoints[0].Site = "hub"
		return a
	}
	a := startMember(t, nurl, "gw-clinic", "clinic", testutil.NewSource(restricted(testutil.ClosedURL(t))), signer)
	b := startMember(t, nurl, "gw-hub", "hub", testutil.NewSource(restricted(replica)), signer)
	waitMembers(t, a, 2)
	r := post(t, a.url+"/agents/records", sendV1(1, "patient record"))
	if r.resp.Error == nil || r.resp.Error.Code != CodeResidency || !strings.Contains(r.resp.Error.Message, b.url) {
		t.Fatalf("want a residency refusal naming %s: %d %s", b.url, r.status, r.raw)
	}
	if p, _ := a.journal.Pending(t.Context()); len(p) != 0 {
		t.Fatalf("the refused task was journaled: %+v", p[0])
	}
	// At the hub, where it may run, it does.
	if r := post(t, b.url+"/agents/records", sendV1(2, "patient record")); r.resp.Error != nil {
		t.Fatalf("at an allowed site: %s", r.raw)
	}
}

// CancelTask sent to any gateway of the fleet reaches the gateway that runs the task, which
// cancels it as its own (on the replica that holds it, once the agent has said its id for it).
func TestFleetCancelReachesTheGatewayThatRunsTheTask(t *testing.T) {
	nurl := startNATS(t)
	slow := startAgent(t, "triage", "0", simagent.Config{Latency: latency(t, "5s")})
	signer := testSigner(t, fleetKey)
	a := startMember(t, nurl, "gw-a", "hub", testutil.NewSource(testutil.Agent("triage", 4, slow)), signer)
	b := startMember(t, nurl, "gw-b", "hub", testutil.NewSource(testutil.Agent("triage", 4, testutil.ClosedURL(t))), signer)
	waitMembers(t, b, 2)
	send := `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"m-c","role":"ROLE_USER","parts":[{"text":"x"}]},"configuration":{"returnImmediately":true}}}`
	r := post(t, a.url+"/agents/triage", send)
	id, _ := taskState(t, r.resp.Result)
	eventuallyTrue(t, 5*time.Second, func() bool {
		got, err := a.journal.Get(t.Context(), id)
		return err == nil && got.State == store.StateDispatched && got.Owner == "gw-a"
	}, "gateway A never dispatched the task")
	c := post(t, b.url+"/agents/triage", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"CancelTask","params":{"id":%q}}`, id))
	if _, st := taskState(t, c.resp.Result); st != "TASK_STATE_CANCELED" || c.replica != "gw:gw-a" {
		t.Fatalf("CancelTask at gateway B: replica %q: %s", c.replica, c.raw)
	}
	got, err := b.journal.Get(t.Context(), id)
	if err != nil || got.State != store.StateCanceled {
		t.Fatalf("the journal after the cancellation: %+v, %v", got, err)
	}
}
