package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/testutil"
)

const (
	keyAlice = "key-alice-0123456789abcdef0123456789"
	keyOps   = "key-ops-0123456789abcdef0123456789"
)

// auditRecords reads every call record the gateway wrote.
func auditRecords(t *testing.T, dir string) []audit.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []audit.Record
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r audit.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.Kind == "" {
				out = append(out, r)
			}
		}
		fh.Close()
	}
	return out
}

// do sends one request to the gateway; header holds extra name, value pairs ("Host" sets the
// request's host).
func (s *secureGateway) do(t *testing.T, method, path, token, contentType string, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, s.url+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(raw)
}

// Finding 1: method smuggling through a parser differential is refused, and nothing runs.
func TestMethodSmugglingIsRefused(t *testing.T) {
	s := newSecureGateway(t)
	code, _, body := s.do(t, http.MethodPost, "/agents/triage", keyAlice, "application/json",
		`{"jsonrpc":"2.0","id":1,"method":"ListTasks","Method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[{"text":"x"}]}}}`)
	if code != http.StatusOK || !strings.Contains(body, `"code":-32600`) || !strings.Contains(body, "differ only in case") {
		t.Fatalf("smuggled method: %d %s", code, body)
	}
}

// Finding 2: no Content-Type, or two, is 415: a web page cannot post a Blob without a preflight.
func TestContentTypeIsRequiredExactlyOnce(t *testing.T) {
	s := newSecureGateway(t)
	send := sendV1(1, "x")
	if code, _, body := s.do(t, http.MethodPost, "/agents/triage", keyAlice, "", send); code != http.StatusUnsupportedMediaType {
		t.Fatalf("no Content-Type: %d %s", code, body)
	}
	if code, _, body := s.do(t, http.MethodPost, "/agents/triage", keyAlice, "application/json", send, "Content-Type", "text/plain"); code != http.StatusUnsupportedMediaType {
		t.Fatalf("two Content-Types: %d %s", code, body)
	}
	if code, _, body := s.do(t, http.MethodPost, "/agents/triage", keyAlice, "application/json; charset=utf-8", send); code != http.StatusOK {
		t.Fatalf("one JSON Content-Type: %d %s", code, body)
	}
}

// Finding 3: /readyz names the agents that are down only to admins.
func TestReadyzNamesAgentsOnlyToAdmins(t *testing.T) {
	s := newSecureGateway(t, discovery.Agent{Name: "crashy", Desired: 1, MaxConcurrency: 1})
	code, _, body := s.do(t, http.MethodGet, "/readyz", "", "", "")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "crashy") {
		t.Fatalf("anonymous /readyz: %d %q", code, body)
	}
	code, _, body = s.do(t, http.MethodGet, "/readyz", keyOps, "", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "crashy") {
		t.Fatalf("admin /readyz: %d %q", code, body)
	}
}

// Finding 4: every call is audited — admin API, metrics, agent list, cards, refusals — with who,
// which route and the outcome. Finding 6: caller-written task ids and agent names reach the
// audit redacted.
func TestEveryCallIsAuditedAndCallerTextRedacted(t *testing.T) {
	s := newSecureGateway(t)
	for _, c := range []struct{ method, path, token string }{
		{http.MethodGet, "/api/v1/tasks", ""},                                            // 401
		{http.MethodGet, "/api/v1/tasks", keyAlice},                                      // 403
		{http.MethodGet, "/api/v1/tasks/0199c3e0-7a5b-7c1e-9f00-000000000001", keyAlice}, // 403: one task is for admins too
		{http.MethodGet, "/api/v1/audit", keyOps},                                        // an admin reading the audit log
		{http.MethodGet, "/agents", keyAlice},                                            // the agent list
		{http.MethodGet, "/agents/triage/.well-known/agent-card.json", keyAlice},
		{http.MethodGet, "/agents/Jane Roe 993177/.well-known/agent-card.json", keyOps},
	} {
		s.do(t, c.method, strings.ReplaceAll(c.path, " ", "%20"), c.token, "", "")
	}
	s.do(t, http.MethodPost, "/agents/triage", keyAlice, "application/json", `{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"MRN-993177"}}`)
	recs := auditRecords(t, s.auditDir)
	want := map[string]string{
		"GET /api/v1/tasks|anonymous|unauthenticated":             "",
		"GET /api/v1/tasks|alice|forbidden":                       "",
		"GET /api/v1/tasks/{id}|alice|forbidden":                  "",
		"GET /api/v1/audit|ops|ok":                                "",
		"GET /agents|alice|ok":                                    "",
		"GET /agents/{name}/.well-known/agent-card.json|alice|ok": "",
	}
	raw, _ := json.Marshal(recs)
	for _, r := range recs {
		delete(want, r.Route+"|"+r.Subject+"|"+r.Outcome)
	}
	if len(want) > 0 {
		t.Fatalf("calls with no audit record: %v\nrecords: %s", want, raw)
	}
	if strings.Contains(string(raw), "993177") || strings.Contains(string(raw), "Jane Roe") {
		t.Fatalf("caller-written identifiers reached the audit unredacted: %s", raw)
	}
}

// Finding 7: the card's URL never comes from an unchecked Host header.
func TestCardURLIgnoresAForeignHost(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 1, a0)))
	s := &secureGateway{url: srv.URL}
	_, _, card := s.do(t, http.MethodGet, "/agents/triage/.well-known/agent-card.json", "", "", "", "Host", "evil.example")
	if strings.Contains(card, "evil.example") || !strings.Contains(card, strings.TrimPrefix(srv.URL, "http://")) {
		t.Fatalf("card served for Host evil.example:\n%s", card)
	}
	_, _, card = s.do(t, http.MethodGet, "/agents/triage/.well-known/agent-card.json", "", "", "")
	if !strings.Contains(card, srv.URL+"/agents/triage") {
		t.Fatalf("card for the gateway's own address:\n%s", card)
	}
}
