package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The CLI talks to a gateway with authentication on: --token (or AGENTPLANE_TOKEN) is sent as a
// bearer credential on every admin call, and never shown in --help.
func TestCLISendsItsToken(t *testing.T) {
	const token = "key-ops-0123456789abcdef0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or invalid credentials"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"agents":[{"name":"triage","state":"Running","desired":1,"ready":1,"maxConcurrency":4}]}`))
	}))
	defer srv.Close()

	if _, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL); code == 0 || !strings.Contains(errs, "401") && !strings.Contains(errs, "credentials") {
		t.Fatalf("without a token: code %d, %q", code, errs)
	}
	if out, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL, "--token", token); code != 0 || !strings.Contains(out, "triage") {
		t.Fatalf("with --token: code %d, %q %q", code, out, errs)
	}
	t.Setenv("AGENTPLANE_TOKEN", token)
	if out, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL); code != 0 || !strings.Contains(out, "triage") {
		t.Fatalf("with AGENTPLANE_TOKEN: code %d, %q %q", code, out, errs)
	}
	if out, errs, _ := runCLI(t.Context(), t, newGetCommand, "--help"); strings.Contains(out+errs, token) {
		t.Fatal("--help shows the token")
	}
}
