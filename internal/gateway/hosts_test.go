package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/testutil"
)

func getWithHost(t *testing.T, url, host string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// An agent's own host serves its card at the root and JSON-RPC at "/"; a client given the
// agent's path without its trailing slash is told what to use.
func TestAgentHostsAndCardDiscovery(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, a0)), func(o *Options) {
		o.AgentHosts = configv1.AgentHosts{Domain: "agents.example", Hosts: map[string]string{"frontdesk.hospital.example": "triage"}}
	})
	for _, host := range []string{"triage.agents.example", "frontdesk.hospital.example:443"} {
		code, _, body := getWithHost(t, srv.URL+"/.well-known/agent-card.json", host)
		if code != http.StatusOK {
			t.Fatalf("card at %s: %d %s", host, code, body)
		}
		var card struct {
			Interfaces []struct{ URL string } `json:"supportedInterfaces"`
		}
		if err := json.Unmarshal([]byte(body), &card); err != nil || len(card.Interfaces) == 0 {
			t.Fatalf("card at %s: %s", host, body)
		}
		for _, i := range card.Interfaces {
			if i.URL != "http://"+host+"/" {
				t.Errorf("card at %s names %s", host, i.URL)
			}
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/", strings.NewReader(sendV1(1, "hi")))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r rpcReply
		_ = json.NewDecoder(res.Body).Decode(&r.resp)
		res.Body.Close()
		if _, state := taskState(t, r.resp.Result); state != "TASK_STATE_COMPLETED" {
			t.Errorf("send at %s: %s", host, state)
		}
	}
	// Another host under the domain names an agent that does not exist; the gateway's own host
	// is not an agent's.
	if code, _, _ := getWithHost(t, srv.URL+"/.well-known/agent-card.json", "nope.agents.example"); code != http.StatusNotFound {
		t.Errorf("unknown agent host: %d", code)
	}
	if code, _, _ := getWithHost(t, srv.URL+"/healthz", "triage.agents.example"); code != http.StatusOK {
		t.Errorf("healthz on an agent host: %d", code)
	}
	code, _, body := getWithHost(t, srv.URL+"/agents/.well-known/agent-card.json", "")
	if code != http.StatusNotFound || !strings.Contains(body, "trailing slash") {
		t.Errorf("card without the agent's trailing slash: %d %s", code, body)
	}
}

// A card the gateway must rewrite loses the agent's signatures, says so, and links the card as
// signed; a card already naming the gateway's URLs is served as the agent signed it.
func TestSignedCards(t *testing.T) {
	signedCard := func(url string) []byte {
		b, _ := json.Marshal(map[string]any{"name": "triage", "description": "d", "version": "1",
			"supportedInterfaces": []any{map[string]any{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}},
			"capabilities":        map[string]any{},
			"signatures":          []any{map[string]any{"protected": "eyJhbGciOiJFUzI1NiJ9", "signature": "c2ln"}}})
		return b
	}
	var card []byte
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(card)
	}))
	t.Cleanup(agent.Close)
	_, srv := newGateway(t, testutil.NewSource(discovery.Agent{Name: "triage", Desired: 1,
		Endpoints: []discovery.Endpoint{{Name: "triage-0", URL: agent.URL, Ready: true}}}))

	card = signedCard(agent.URL + "/a2a")
	code, h, body := getWithHost(t, srv.URL+"/agents/triage/.well-known/agent-card.json", "")
	if code != http.StatusOK || strings.Contains(body, "signatures") || h.Get(HeaderCard) != "rewritten" ||
		!strings.Contains(h.Get("Link"), "/agents/triage/"+OriginalCardPath) {
		t.Fatalf("rewritten card: %d %v %s", code, h, body)
	}
	if code, _, body := getWithHost(t, srv.URL+"/agents/triage/"+OriginalCardPath, ""); code != http.StatusOK || body != string(card) {
		t.Fatalf("original card: %d %s", code, body)
	}
}
