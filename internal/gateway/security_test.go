package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/redact"
	"github.com/agentplane/agentplane/internal/simagent"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/testutil"
)

const jwtSecret = "a-test-only-hmac-secret-of-at-least-32-bytes!!"

// secureGateway runs a gateway with API keys for two tenants, JWT, policies, a rate limit and
// an audit log, in front of real simulated agents.
type secureGateway struct {
	url      string
	auditDir string
	logs     *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newSecureGateway(t *testing.T, extra ...discovery.Agent) *secureGateway {
	t.Helper()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secretFile, []byte(jwtSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgYAML := fmt.Sprintf(`apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
auth:
  apiKeys:
  - {subject: alice, tenant: clinic-a, groups: [nurses], keyEnv: TEST_KEY_ALICE}
  - {subject: bob, tenant: clinic-b, groups: [nurses], keyEnv: TEST_KEY_BOB}
  - {subject: carol, tenant: clinic-a, groups: [billing], keyEnv: TEST_KEY_CAROL}
  - {subject: ops, tenant: clinic-a, groups: [agentplane-admins], keyEnv: TEST_KEY_OPS}
  jwt:
    issuer: https://idp.test
    audiences: [agentplane]
    hmacSecretFile: %s
    algorithms: [HS256]
    tenantClaim: tenant
policies:
- {name: nurses, groups: [nurses], agents: [triage]}
- {name: jwt-users, subjects: ["dave"], agents: [triage]}
- {name: billing, groups: [billing], agents: [billing]}
rateLimits:
- {name: per-subject, groups: [nurses], requestsPerSecond: 1, burst: 5}
- {name: token-budget, subjects: [carol], requestsPerSecond: 100, burst: 100, tokensPerMinute: 10, tokenBurst: 10}
audit:
  path: %s
  fsync: always
`, secretFile, filepath.Join(dir, "audit", "audit.jsonl"))
	cfg, err := configv1.Decode([]byte(cfgYAML))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for k, v := range map[string]string{"TEST_KEY_ALICE": "key-alice-0123456789abcdef0123456789", "TEST_KEY_BOB": "key-bob-0123456789abcdef0123456789",
		"TEST_KEY_CAROL": "key-carol-0123456789abcdef0123456789", "TEST_KEY_OPS": "key-ops-0123456789abcdef0123456789"} {
		t.Setenv(k, v)
	}
	logs := &syncBuf{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := auth.FromConfig(cfg, auth.Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.FromConfig(cfg.Audit, dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aw.Close() })
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	src := testutil.NewSource(append([]discovery.Agent{testutil.Agent("triage", 4, a0), testutil.Agent("billing", 4, a0)}, extra...)...)
	red := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "993177", "[MRN]"), "Jane Roe", "[NAME]")
	}
	g, err := New(Options{Source: src, Journal: store.NewMemory(), Auth: st, Audit: aw, Logger: logger, Redact: red})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return &secureGateway{url: srv.URL, auditDir: filepath.Join(dir, "audit"), logs: logs}
}

func (s *secureGateway) post(t *testing.T, agent, token, body string) (int, http.Header, a2a.Response, string) {
	t.Helper()
	code, header, raw := s.do(t, http.MethodPost, "/agents/"+agent, token, "application/json", body)
	var r a2a.Response
	_ = jsonUnmarshal([]byte(raw), &r)
	return code, header, r, raw
}

func signJWT(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecurityDecisions(t *testing.T) {
	gw := newSecureGateway(t)
	now := time.Now()
	valid := signJWT(t, jwtSecret, jwt.MapClaims{"iss": "https://idp.test", "aud": "agentplane", "sub": "dave", "tenant": "clinic-a", "exp": now.Add(time.Hour).Unix()})
	expired := signJWT(t, jwtSecret, jwt.MapClaims{"iss": "https://idp.test", "aud": "agentplane", "sub": "dave", "exp": now.Add(-time.Hour).Unix()})
	forged := signJWT(t, "another-secret-that-is-also-32-bytes-long!!", jwt.MapClaims{"iss": "https://idp.test", "aud": "agentplane", "sub": "dave", "exp": now.Add(time.Hour).Unix()})

	// Alice creates a task; it is hers.
	code, _, r, raw := gw.post(t, "triage", "key-alice-0123456789abcdef0123456789", sendV1(1, "PHI-MARKER-123-45-6789 chest pain"))
	if code != 200 || r.Error != nil {
		t.Fatalf("alice's task: %d %s", code, raw)
	}
	id, _ := taskState(t, r.Result)
	get := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":%q}}`, id)

	tests := []struct {
		name, agent, token, body string
		status, code             int
	}{
		{"no credential", "triage", "", sendV1(1, "x"), 401, a2a.CodeInvalidRequest},
		{"unknown key", "triage", "key-mallory", sendV1(1, "x"), 401, a2a.CodeInvalidRequest},
		{"expired JWT", "triage", expired, sendV1(1, "x"), 401, a2a.CodeInvalidRequest},
		{"wrongly signed JWT", "triage", forged, sendV1(1, "x"), 401, a2a.CodeInvalidRequest},
		{"valid JWT", "triage", valid, sendV1(1, "x"), 200, 0},
		{"disallowed agent", "billing", "key-alice-0123456789abcdef0123456789", sendV1(1, "x"), 403, CodeForbidden},
		{"disallowed unknown agent is 403, not 404", "payroll", "key-alice-0123456789abcdef0123456789", sendV1(1, "x"), 403, CodeForbidden},
		{"owner reads her task", "triage", "key-alice-0123456789abcdef0123456789", get, 200, 0},
		{"other tenant gets not found", "triage", "key-bob-0123456789abcdef0123456789", get, 200, a2a.CodeTaskNotFound},
		{"same tenant, other subject gets not found", "triage", valid, get, 200, a2a.CodeTaskNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, r, raw := gw.post(t, tt.agent, tt.token, tt.body)
			if code != tt.status {
				t.Fatalf("HTTP %d, want %d: %s", code, tt.status, raw)
			}
			if tt.code == 0 && r.Error != nil {
				t.Fatalf("unexpected error: %s", raw)
			}
			if tt.code != 0 && (r.Error == nil || r.Error.Code != tt.code) {
				t.Fatalf("answer %s, want code %d", raw, tt.code)
			}
			if code == 401 && h.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// The not-found answer for someone else's task is the same as for a task that never existed.
	_, _, other, _ := gw.post(t, "triage", "key-bob-0123456789abcdef0123456789", get)
	_, _, none, _ := gw.post(t, "triage", "key-bob-0123456789abcdef0123456789", strings.Replace(get, id, "no-such-task-0000", 1))
	if strings.ReplaceAll(other.Error.Message, id, "X") != strings.ReplaceAll(none.Error.Message, "no-such-task-0000", "X") {
		t.Fatalf("someone else's task (%q) is distinguishable from a missing one (%q)", other.Error.Message, none.Error.Message)
	}

	// Rate limit: burst 5 at 1/s for nurses; bob has used 2 requests above.
	var limited bool
	for i := range 10 {
		code, h, r, raw := gw.post(t, "triage", "key-bob-0123456789abcdef0123456789", sendV1(100+i, "x"))
		if code == 429 {
			if h.Get("Retry-After") == "" || r.Error == nil || r.Error.Code != CodeRateLimited {
				t.Fatalf("429 without Retry-After or code: %s", raw)
			}
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("bob was never rate limited")
	}

	// Tokens reported by the agent count against carol's token budget (10 a minute); each task
	// reports a dozen or so, so she is refused within a few tasks although her request rate is low.
	limited = false
	for i := range 5 {
		code, h, _, raw := gw.post(t, "billing", "key-carol-0123456789abcdef0123456789", sendV1(200+i, "invoice for visit"))
		if code == 429 {
			if h.Get("Retry-After") == "" {
				t.Fatalf("429 without Retry-After: %s", raw)
			}
			limited = true
			break
		}
		if code != 200 {
			t.Fatalf("carol's task %d: %d %s", i, code, raw)
		}
	}
	if !limited {
		t.Fatal("reported tokens never exhausted carol's token budget")
	}

	// The admin API is for admins only.
	for token, want := range map[string]int{"": 401, "key-alice-0123456789abcdef0123456789": 403, "key-ops-0123456789abcdef0123456789": 200} {
		req, _ := http.NewRequest(http.MethodGet, gw.url+"/api/v1/tasks", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("admin API with %q: %d, want %d", token, res.StatusCode, want)
		}
	}

	// Admins read the audit trail over the API.
	req, _ := http.NewRequest(http.MethodGet, gw.url+"/api/v1/audit?limit=3", nil)
	req.Header.Set("Authorization", "Bearer key-ops-0123456789abcdef0123456789")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var trail struct {
		Records []audit.Record `json:"records"`
	}
	if err := json.NewDecoder(res.Body).Decode(&trail); err != nil || res.StatusCode != 200 || len(trail.Records) != 3 {
		t.Fatalf("GET /api/v1/audit: %d %v %+v", res.StatusCode, err, trail)
	}
	res.Body.Close()

	// Every call left an audit record, the chain verifies, and no record or log line carries
	// the message content or a credential.
	files, _ := filepath.Glob(filepath.Join(gw.auditDir, "*"))
	rep, err := audit.Verify(files...)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if rep.Records < len(tests)+5 {
		t.Fatalf("audit has %d records for at least %d calls", rep.Records, len(tests)+5)
	}
	var all strings.Builder
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all.Write(b)
	}
	auditText := all.String()
	for _, secret := range []string{"PHI-MARKER", "123-45-6789", "chest pain", "key-alice", "key-bob", valid, jwtSecret} {
		if strings.Contains(auditText, secret) {
			t.Errorf("the audit log contains %q", secret)
		}
		if strings.Contains(gw.logs.String(), secret) {
			t.Errorf("the gateway log contains %q", secret)
		}
	}
	for _, want := range []string{`"outcome":"unauthenticated"`, `"outcome":"forbidden"`, `"outcome":"rate-limited"`, `"subject":"alice"`, `"tenant":"clinic-a"`} {
		if !strings.Contains(auditText, want) {
			t.Errorf("the audit log has no %s", want)
		}
	}
}

// TestFloodOfBadRequestsDoesNotStopValidOnes sends oversized, malformed and deeply nested
// requests at once with valid ones; every valid one must succeed.
func TestFloodOfBadRequestsDoesNotStopValidOnes(t *testing.T) {
	a0 := startAgent(t, "triage", "0", simagent.Config{})
	_, srv := newGateway(t, testutil.NewSource(testutil.Agent("triage", 64, a0)), func(o *Options) { o.MaxBodyBytes = 64 << 10 })
	bad := []string{
		sendV1(1, strings.Repeat("x", 200<<10)),
		`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":` + strings.Repeat("[", 5000),
		"\x00\x01\x02 not json",
		`{"jsonrpc":"2.0","id":{"a":1},"method":"SendMessage"}`,
		strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100),
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				body := bad[(w+i)%len(bad)]
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/agents/triage", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if res, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		})
	}
	for i := range 40 {
		wg.Go(func() {
			r := post(t, srv.URL+"/agents/triage", sendV1(i, "valid"))
			if r.resp.Error != nil {
				mu.Lock()
				failures++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d valid requests failed during the flood", failures)
	}
}

// TestAgentErrorTextIsRedactedInTheJournal: an agent that refuses a message with text holding a
// patient identifier; the reason the gateway keeps (journal, task list, dashboard) has it masked.
func TestAgentErrorTextIsRedactedInTheJournal(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			fmt.Fprintf(w, `{"supportedInterfaces":[{"url":%q,"protocolBinding":"JSONRPC","protocolVersion":"1.0"}]}`, srv.URL)
			return
		}
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"unknown patient SSN 123-45-6789"}}`)
	}))
	defer srv.Close()
	cfg, err := configv1.Decode([]byte("apiVersion: agentplane.io/v1alpha1\nkind: GatewayConfig\n"))
	if err != nil {
		t.Fatal(err)
	}
	red, err := redact.New(cfg.Redaction)
	if err != nil {
		t.Fatal(err)
	}
	j := store.NewMemory()
	_, gw := newGateway(t, testutil.NewSource(testutil.Agent("triage", 4, srv.URL)), func(o *Options) { o.Redact = red.String; o.Journal = j })
	post(t, gw.URL+"/agents/triage", sendV1(1, "x"))
	var list struct {
		Tasks []TaskSummary `json:"tasks"`
	}
	getJSON(t, gw.URL+"/api/v1/tasks", &list)
	if len(list.Tasks) != 1 || strings.Contains(list.Tasks[0].Reason, "123-45-6789") || !strings.Contains(list.Tasks[0].Reason, "unknown patient SSN") {
		t.Fatalf("task reason %+v", list.Tasks)
	}
	stored, err := j.Get(t.Context(), list.Tasks[0].ID)
	if err != nil || strings.Contains(stored.Reason, "123-45-6789") {
		t.Fatalf("journal reason %q (%v)", stored.Reason, err)
	}
}
