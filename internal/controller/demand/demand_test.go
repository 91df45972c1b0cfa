package demand_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/agentplane/agentplane/internal/controller/demand"
)

// gateway is a fake gateway's admin API answering GET /api/v1/agents with body, and counting the
// requests that carried the wanted bearer token (all requests when want is empty).
type gateway struct {
	*httptest.Server
	body   atomic.Value // string
	authed atomic.Int32
}

func newGateway(t *testing.T, want string, body string) *gateway {
	g := &gateway{}
	g.body.Store(body)
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/agents" {
			http.NotFound(w, r)
			return
		}
		if want != "" && r.Header.Get("Authorization") != "Bearer "+want {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		g.authed.Add(1)
		fmt.Fprint(w, g.body.Load().(string))
	}))
	t.Cleanup(g.Close)
	return g
}

// deadURL is a port that was listened on and closed: connections are refused.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestPollSumsOverGateways(t *testing.T) {
	a := newGateway(t, "", `{"agents":[{"name":"triage","inFlight":3,"queued":5},{"name":"billing","inFlight":1,"queued":0}]}`)
	b := newGateway(t, "", `{"agents":[{"name":"triage","inFlight":4,"queued":2,"desired":3,"ready":2}]}`)
	p := &demand.Poller{Logger: quiet()}
	gws, _ := demand.Static("clinic", a.URL, b.URL).Gateways(t.Context())
	sum, complete := p.Poll(t.Context(), gws, time.Now())
	if !complete {
		t.Error("complete = false with both gateways answering")
	}
	if got, want := sum["triage"], (demand.Tasks{InFlight: 7, Queued: 7}); got != want {
		t.Errorf("triage = %+v, want %+v", got, want)
	}
	if got, want := sum["billing"], (demand.Tasks{InFlight: 1}); got != want {
		t.Errorf("billing = %+v, want %+v", got, want)
	}
}

// A gateway that stops answering keeps its last answer for KeepFor, and then the demand is
// incomplete; a gateway that never answered makes it incomplete at once. Each poll has its
// deadline: a gateway that hangs does not hold the poll.
func TestPollKeepsADeadGatewaysLastAnswerForAWhile(t *testing.T) {
	a := newGateway(t, "", `{"agents":[{"name":"triage","inFlight":2,"queued":1}]}`)
	b := newGateway(t, "", `{"agents":[{"name":"triage","inFlight":5,"queued":0}]}`)
	p := &demand.Poller{Logger: quiet(), KeepFor: 10 * time.Second, Timeout: 300 * time.Millisecond}
	t0 := time.Now()
	gws := []demand.Gateway{{URL: a.URL}, {URL: b.URL}}
	if sum, complete := p.Poll(t.Context(), gws, t0); !complete || sum["triage"].InFlight != 7 {
		t.Fatalf("first poll = %+v complete %v", sum, complete)
	}

	b.Close() // b dies
	sum, complete := p.Poll(t.Context(), gws, t0.Add(5*time.Second))
	if !complete || sum["triage"] != (demand.Tasks{InFlight: 7, Queued: 1}) {
		t.Errorf("within KeepFor of b's last answer: %+v complete %v, want b's last demand kept and complete", sum, complete)
	}
	sum, complete = p.Poll(t.Context(), gws, t0.Add(11*time.Second))
	if complete || sum["triage"] != (demand.Tasks{InFlight: 2, Queued: 1}) {
		t.Errorf("past KeepFor: %+v complete %v, want only a's demand and incomplete", sum, complete)
	}

	// A gateway never heard from, and one that hangs past the timeout.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	p2 := &demand.Poller{Logger: quiet(), Timeout: 200 * time.Millisecond}
	start := time.Now()
	sum, complete = p2.Poll(t.Context(), []demand.Gateway{{URL: a.URL}, {URL: deadURL(t)}, {URL: hang.URL}}, time.Now())
	if complete || sum["triage"] != (demand.Tasks{InFlight: 2, Queued: 1}) {
		t.Errorf("with a dead and a hung gateway: %+v complete %v, want a's demand, incomplete", sum, complete)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("poll took %v; each gateway has a 200ms deadline", d)
	}

	// No gateway at all: nothing is known.
	if _, complete := p2.Poll(t.Context(), nil, time.Now()); complete {
		t.Error("complete = true with no gateway")
	}
}

func TestPollSendsTheBearerToken(t *testing.T) {
	g := newGateway(t, "s3cret", `{"agents":[{"name":"triage","inFlight":1,"queued":2}]}`)
	gws := []demand.Gateway{{URL: g.URL}}
	if _, complete := (&demand.Poller{Logger: quiet()}).Poll(t.Context(), gws, time.Now()); complete {
		t.Error("complete without the token the gateway wants (401)")
	}
	sum, complete := (&demand.Poller{Logger: quiet(), Token: "s3cret"}).Poll(t.Context(), gws, time.Now())
	if !complete || sum["triage"] != (demand.Tasks{InFlight: 1, Queued: 2}) || g.authed.Load() != 1 {
		t.Errorf("with the token: %+v complete %v, authed %d", sum, complete, g.authed.Load())
	}
}

func TestPollHonoursCancellation(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	(&demand.Poller{Logger: quiet(), Timeout: time.Minute}).Poll(ctx, []demand.Gateway{{URL: hang.URL}}, time.Now())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("poll returned %v after its context was cancelled", d)
	}
}

func TestEndpointSlicesListsReadyGateways(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	slice := func(ns, name string, labels map[string]string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("metrics"), Port: ptr.To[int32](9090)}, {Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
			Endpoints:   eps,
		}
	}
	gw := map[string]string{"app.kubernetes.io/name": demand.GatewayAppName, discoveryv1.LabelServiceName: "agentplane-gateway"}
	ep := func(ip string, ready, terminating bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &terminating},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: ip}}
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		slice("agentplane-system", "gw-1", gw, ep("10.0.0.2", true, false), ep("10.0.0.3", false, false), ep("10.0.0.4", true, true)),
		slice("agentplane-system", "gw-2", gw, ep("10.0.0.5", true, false), ep("10.0.0.2", true, false)),
		slice("agentplane-system", "other", map[string]string{"app.kubernetes.io/name": "something-else"}, ep("10.0.0.9", true, false)),
		slice("elsewhere", "gw-3", gw, ep("10.0.1.1", true, false)),
	).Build()
	src := &demand.EndpointSlices{Reader: c, Namespace: "agentplane-system", Serves: "clinic"}
	got, err := src.Gateways(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []demand.Gateway{{URL: "http://10.0.0.2:8080", Namespace: "clinic"}, {URL: "http://10.0.0.5:8080", Namespace: "clinic"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gateways = %v, want %v (ready, not terminating, port http, this namespace and label only, once each)", got, want)
	}
}

// Wait is a long poll: it answers true as soon as the gateway says a task waits, false when the
// wait passes, and an error for a gateway that cannot wait (an older one: 404).
func TestWaitForAWaitingTask(t *testing.T) {
	release := make(chan struct{})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/autoscale/wait" || r.Header.Get("Authorization") != "Bearer tok" {
			http.NotFound(w, r)
			return
		}
		wait, err := time.ParseDuration(r.URL.Query().Get("timeout"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-release:
			fmt.Fprint(w, `{"waiting":true}`)
		case <-time.After(wait):
			fmt.Fprint(w, `{"waiting":false}`)
		}
	}))
	defer gw.Close()
	p := &demand.Poller{Token: "tok", Timeout: time.Second}
	if w, err := p.Wait(t.Context(), gw.URL, 50*time.Millisecond); err != nil || w {
		t.Errorf("Wait with no task waiting = %v, %v; want false, nil", w, err)
	}
	go func() { time.Sleep(100 * time.Millisecond); close(release) }()
	start := time.Now()
	if w, err := p.Wait(t.Context(), gw.URL, 10*time.Second); err != nil || !w {
		t.Errorf("Wait when a task waits = %v, %v; want true, nil", w, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Wait answered after %v, not when the task waited", took)
	}
	old := &demand.Poller{Timeout: time.Second} // no token: the gateway answers 404 as an older one would
	if _, err := old.Wait(t.Context(), gw.URL, time.Second); err == nil {
		t.Error("Wait at a gateway that cannot wait did not fail")
	}
}
