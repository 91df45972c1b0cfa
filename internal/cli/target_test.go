package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// envMap is a getenv over a fixed environment.
func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// Each setting is taken from its flag, else the environment, else the context (--context, else
// the current one), else the default; a context's credentials go only to its own gateway.
func TestResolveTargetPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, filepath.Join(dir, "prod.token"), "prod-token-from-file\n")
	writeFile(t, cfg, `apiVersion: agentplane.io/v1alpha1
kind: ClientConfig
currentContext: prod
contexts:
- name: prod
  gateway: http://prod.example:8080
  tokenFile: prod.token          # relative to the config file
- name: lab
  gateway: http://127.0.0.1:9090/
  token: lab-inline-token
`)
	noCfg := filepath.Join(dir, "missing.yaml")

	for _, tc := range []struct {
		name             string
		flags            targetFlags
		env              map[string]string
		wantURL, urlFrom string
		wantToken        string
		tokenFrom        string // a substring
		unsent           bool
	}{
		{name: "nothing: the default, no token", flags: targetFlags{config: noCfg},
			wantURL: defaultGatewayURL, urlFrom: "the default"},
		{name: "env only", flags: targetFlags{config: noCfg}, env: map[string]string{envGateway: "http://e:1", envToken: "env-tok"},
			wantURL: "http://e:1", urlFrom: envGateway, wantToken: "env-tok", tokenFrom: envToken},
		{name: "flags beat env", flags: targetFlags{config: noCfg, gateway: "http://f:1", token: "flag-tok"},
			env:     map[string]string{envGateway: "http://e:1", envToken: "env-tok"},
			wantURL: "http://f:1", urlFrom: "--gateway", wantToken: "flag-tok", tokenFrom: "--token"},
		{name: "the current context, its token file read", flags: targetFlags{config: cfg},
			wantURL: "http://prod.example:8080", urlFrom: `context "prod"`, wantToken: "prod-token-from-file", tokenFrom: "token file"},
		{name: "AGENTPLANE_CONFIG names the file", env: map[string]string{envConfig: cfg},
			wantURL: "http://prod.example:8080", wantToken: "prod-token-from-file"},
		{name: "--agentplane-config beats AGENTPLANE_CONFIG", flags: targetFlags{config: cfg}, env: map[string]string{envConfig: noCfg},
			wantURL: "http://prod.example:8080", wantToken: "prod-token-from-file"},
		{name: "--context picks another", flags: targetFlags{config: cfg, context: "lab"},
			wantURL: "http://127.0.0.1:9090/", wantToken: "lab-inline-token", tokenFrom: `context "lab"`},
		{name: "env token beats the context's", flags: targetFlags{config: cfg}, env: map[string]string{envToken: "env-tok"},
			wantURL: "http://prod.example:8080", wantToken: "env-tok", tokenFrom: envToken},
		{name: "env gateway elsewhere: the context's token is not sent there", flags: targetFlags{config: cfg},
			env: map[string]string{envGateway: "http://other:1"}, wantURL: "http://other:1", urlFrom: envGateway, unsent: true},
		{name: "--gateway elsewhere: not sent either", flags: targetFlags{config: cfg, gateway: "http://evil.example"},
			wantURL: "http://evil.example", unsent: true},
		{name: "--gateway naming the context's own gateway: sent", flags: targetFlags{config: cfg, gateway: "HTTP://prod.example:8080/"},
			wantURL: "HTTP://prod.example:8080/", wantToken: "prod-token-from-file"},
		{name: "--context asked for by name with --gateway: sent", flags: targetFlags{config: cfg, context: "lab", gateway: "http://127.0.0.1:7070"},
			wantURL: "http://127.0.0.1:7070", wantToken: "lab-inline-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveTarget(tc.flags, envMap(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got.URL != tc.wantURL || got.Token != tc.wantToken {
				t.Errorf("URL %q token %q, want %q %q", got.URL, got.Token, tc.wantURL, tc.wantToken)
			}
			if tc.urlFrom != "" && got.urlFrom != tc.urlFrom {
				t.Errorf("URL from %q, want %q", got.urlFrom, tc.urlFrom)
			}
			if !strings.Contains(got.tokenFrom, tc.tokenFrom) {
				t.Errorf("token from %q, want it to say %q", got.tokenFrom, tc.tokenFrom)
			}
			if (got.unsent != "") != tc.unsent {
				t.Errorf("unsent = %q, want set: %t", got.unsent, tc.unsent)
			}
			if strings.Contains(got.unsent, "prod-token-from-file") {
				t.Errorf("the note on unsent credentials shows the token: %q", got.unsent)
			}
		})
	}
}

func TestResolveTargetErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), `apiVersion: agentplane.io/v1alpha1
kind: ClientConfig
contexts:
- {name: empty-file, gateway: "http://127.0.0.1:1", tokenFile: empty.token}
`)
	writeFile(t, filepath.Join(dir, "empty.token"), "\n")
	for _, tc := range []struct {
		name  string
		flags targetFlags
		want  string
	}{
		{"unknown context", targetFlags{config: cfg, context: "nope"}, `--context "nope": no such context`},
		{"empty token file", targetFlags{config: cfg, context: "empty-file"}, "is empty"},
		{"not a URL", targetFlags{config: cfg, gateway: "127.0.0.1:8080"}, "must be an http or https URL"},
		{"cert without key", targetFlags{config: cfg, gateway: "https://x", clientCert: "c.pem"}, "--client-cert and --client-key go together"},
		{"CA over http", targetFlags{config: cfg, gateway: "http://x", caCert: "ca.pem"}, "needs an https gateway URL"},
		{"token with a line break", targetFlags{config: cfg, token: "a\nb"}, "line breaks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolveTarget(tc.flags, envMap(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "a\nb") {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "apiVersion: agentplane.io/v1alpha1\nkind: ClientConfig\ncontexts:\n- {name: a, gateway: 'http://x', tokn: y}\n")
	if _, err := resolveTarget(targetFlags{config: bad}, envMap(nil)); err == nil || !strings.Contains(err.Error(), `unknown field "contexts[0].tokn"`) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("a misspelt field: %v", err)
	}
}

// A 401 says what was sent and where to give credentials, and never the token; a 403 says the
// credentials were accepted but are not an admin's.
func TestUnauthorizedSaysWhatToDo(t *testing.T) {
	const token = "sekrit-0123456789abcdef0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Header.Get("Authorization") {
		case "":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"authentication required"}`))
		case "Bearer nurse":
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"the admin API is for members of group agentplane-admins"}`))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid or expired credentials"}`))
		}
	}))
	defer srv.Close()
	t.Setenv(envConfig, filepath.Join(t.TempDir(), "none.yaml"))
	t.Setenv(envToken, "")
	t.Setenv(envGateway, "")

	for _, cmd := range [][]string{{"agents"}, {"replicas"}, {"tasks"}} {
		_, errs, code := runCLI(t.Context(), t, newGetCommand, append(cmd, "--gateway", srv.URL)...)
		if code != 1 || !strings.Contains(errs, "401 Unauthorized") || !strings.Contains(errs, "no credentials were sent") ||
			!strings.Contains(errs, "--token or AGENTPLANE_TOKEN") || !strings.Contains(errs, "config set-context") {
			t.Errorf("get %s without a token: code %d, %q", cmd[0], code, errs)
		}
	}
	_, errs, _ := runCLI(t.Context(), t, newDescribeCommand, "agent", "triage", "--gateway", srv.URL, "--token", token)
	if !strings.Contains(errs, "did not accept the token from --token") || strings.Contains(errs, token) {
		t.Errorf("describe with a wrong token: %q", errs)
	}
	t.Setenv(envToken, token)
	_, errs, _ = runCLI(t.Context(), t, newLogsCommand, "triage-0", "--replica", "0", "--gateway", srv.URL)
	if !strings.Contains(errs, "token from AGENTPLANE_TOKEN") || strings.Contains(errs, token) {
		t.Errorf("logs with a wrong AGENTPLANE_TOKEN: %q", errs)
	}
	_, errs, _ = runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL, "--token", "nurse")
	if !strings.Contains(errs, "403 Forbidden") || !strings.Contains(errs, "group agentplane-admins") || !strings.Contains(errs, "the token from --token") {
		t.Errorf("get with a nurse's token: %q", errs)
	}
}

// The config file is written 0600, read back as written, and config view redacts inline
// tokens; get-contexts says what kind of credentials a context has, not what they are.
func TestConfigFileCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.yaml")
	t.Setenv(envConfig, path)
	tokFile := writeFile(t, filepath.Join(dir, "ops.token"), "ops-token-0123456789abcdef0123456789\n")
	const inline = "inline-0123456789abcdef0123456789"

	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runCLI(t.Context(), t, newConfigCommand, args...)
	}
	if _, errs, code := run("set-context", "local", "--gateway", "http://127.0.0.1:8080", "--token-file", tokFile, "--use"); code != 0 {
		t.Fatal(errs)
	}
	if _, errs, code := run("set-context", "clinic", "--gateway", "https://gw.clinic.example:8443", "--token", inline); code != 0 || !strings.Contains(errs, "Warning") {
		t.Fatalf("code %d %q", code, errs)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v", err, fi.Mode())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("config dir mode %v", di.Mode())
	}

	out, _, _ := run("view")
	if strings.Contains(out, inline) || !strings.Contains(out, "token: REDACTED") || !strings.Contains(out, tokFile) {
		t.Errorf("config view:\n%s", out)
	}
	out, _, _ = run("get-contexts")
	if strings.Contains(out, inline) || !regexp.MustCompile(`(?m)^\*\s+local\s+http://127.0.0.1:8080\s+token file$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\s+clinic\s+https://gw.clinic.example:8443\s+token$`).MatchString(out) {
		t.Errorf("get-contexts:\n%s", out)
	}
	if out, _, _ := run("current-context"); out != "local\n" {
		t.Errorf("current-context %q", out)
	}
	if _, _, code := run("use-context", "clinic"); code != 0 {
		t.Fatal("use-context")
	}
	if out, _, _ := run("current-context"); out != "clinic\n" {
		t.Errorf("after use-context: %q", out)
	}
	if _, errs, code := run("use-context", "nope"); code != 2 || !strings.Contains(errs, `no context "nope"`) {
		t.Errorf("use-context nope: %d %q", code, errs)
	}

	// Changing one setting keeps the others; a token file replaces an inline token.
	if _, errs, code := run("set-context", "clinic", "--token-file", tokFile); code != 0 {
		t.Fatal(errs)
	}
	c, err := loadClientConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if x, _ := c.Context("clinic"); x.Gateway != "https://gw.clinic.example:8443" || x.Token != "" || x.TokenFile != tokFile {
		t.Errorf("clinic after set-context --token-file: %+v", *x)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), inline) {
		t.Error("the replaced inline token is still in the file")
	}

	// A context that cannot be valid is refused and the file left as it was.
	if _, errs, code := run("set-context", "clinic", "--ca-cert", "ca.pem", "--gateway", "http://plain.example"); code != 2 || !strings.Contains(errs, "need an https gateway URL") {
		t.Errorf("CA over http: %d %q", code, errs)
	}
	if after, _ := os.ReadFile(path); string(after) != string(raw) {
		t.Error("a refused set-context changed the file")
	}
	if _, errs, code := run("delete-context", "clinic"); code != 0 || !strings.Contains(errs, "was the current context") {
		t.Errorf("delete-context: %d %q", code, errs)
	}
}

// writeClientCert writes a new CA and a client certificate with common name cn signed by it,
// as PEM files in dir; it returns the CA and the files of the certificate and its key.
func writeClientCert(t *testing.T, dir, cn string) (ca *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile = writeFile(t, filepath.Join(dir, cn+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile = writeFile(t, filepath.Join(dir, cn+"-key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return ca, certFile, keyFile
}

// With a client certificate and the gateway's CA, from flags or from a context, the CLI speaks
// mutual TLS to an https gateway; without the CA it says the gateway's certificate is not
// trusted, and without a certificate that the gateway wants one, each naming the flag to use.
func TestCLIClientCertificate(t *testing.T) {
	dir := t.TempDir()
	clientCA, certFile, keyFile := writeClientCert(t, dir, "ops-laptop")
	var (
		mu     sync.Mutex
		gotCNs []string
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotCNs = append(gotCNs, r.TLS.VerifiedChains[0][0].Subject.CommonName)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"agents":[{"name":"triage","state":"Running","desired":1,"ready":1,"maxConcurrency":4}]}`))
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCA)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused on purpose
	srv.StartTLS()
	defer srv.Close()
	caFile := writeFile(t, filepath.Join(dir, "gateway-ca.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	cfg := filepath.Join(dir, "config.yaml")
	t.Setenv(envConfig, cfg)
	t.Setenv(envToken, "")
	t.Setenv(envGateway, "")

	_, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL)
	if code == 0 || !strings.Contains(errs, "does not trust") || !strings.Contains(errs, "--ca-cert") {
		t.Errorf("without the CA: code %d %q", code, errs)
	}
	_, errs, code = runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL, "--ca-cert", caFile)
	if code == 0 || !strings.Contains(errs, "--client-cert") {
		t.Errorf("without a client certificate: code %d %q", code, errs)
	}
	out, errs, code := runCLI(t.Context(), t, newGetCommand, "agents", "--gateway", srv.URL, "--ca-cert", caFile, "--client-cert", certFile, "--client-key", keyFile)
	if code != 0 || !strings.Contains(out, "triage") {
		t.Fatalf("with flags: %d %q %q", code, out, errs)
	}
	if _, errs, code := runCLI(t.Context(), t, newConfigCommand, "set-context", "mtls", "--gateway", srv.URL, "--ca-cert", caFile,
		"--client-cert", certFile, "--client-key", keyFile, "--use"); code != 0 {
		t.Fatal(errs)
	}
	if out, errs, code := runCLI(t.Context(), t, newGetCommand, "agents"); code != 0 || !strings.Contains(out, "triage") {
		t.Fatalf("with the context: %d %q %q", code, out, errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gotCNs) != 2 || gotCNs[0] != "ops-laptop" || gotCNs[1] != "ops-laptop" {
		t.Errorf("the gateway saw client certificates %v", gotCNs)
	}
}
