package cli

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// The environment the commands that talk to a gateway read.
const (
	envGateway = "AGENTPLANE_GATEWAY"
	envToken   = "AGENTPLANE_TOKEN"
	envConfig  = "AGENTPLANE_CONFIG"
)

// maxTokenFileBytes bounds a token file: a JWT is a few KiB, the gateway refuses more than 16.
const maxTokenFileBytes = 16 << 10

// gatewayTarget is the gateway a command talks to, and the credentials it presents. Each
// setting remembers where it came from, so that an error can say which flag, variable or
// context to change without ever showing a secret.
type gatewayTarget struct {
	URL string
	// Token is sent as "Authorization: Bearer <token>": an API key or a JWT. Empty sends none.
	Token string
	// ClientCert and ClientKey are PEM files of a client certificate for mutual TLS; CACert the
	// CAs the gateway's certificate must chain to (default: the system's).
	ClientCert, ClientKey, CACert string

	urlFrom, tokenFrom, certFrom string
	// unsent says which context's credentials were not sent, because they are for another gateway.
	unsent string
	client *http.Client
}

// targetFlags are the flags of gatewayFlag, before they are resolved.
type targetFlags struct {
	gateway, token, clientCert, clientKey, caCert string
	context, config                               string
}

// gatewayFlag adds the flags that say which gateway a command talks to and how it
// authenticates: --gateway, --token, --client-cert, --client-key, --ca-cert, --context and
// --agentplane-config. They are resolved before the command runs, each setting taken from its
// flag, else the environment (AGENTPLANE_GATEWAY, AGENTPLANE_TOKEN), else the context of the
// config file (--context, else its current context), else the default (the address of up, no
// credentials). A context's credentials are only sent to its own gateway. No secret is ever
// printed, not even as a flag's default in --help.
func gatewayFlag(cmd *cobra.Command, target *gatewayTarget) {
	var f targetFlags
	fs := cmd.Flags()
	fs.StringVar(&f.gateway, "gateway", "", "gateway base URL (default: env "+envGateway+", the current context's, or "+defaultGatewayURL+")")
	fs.StringVar(&f.token, "token", "", "API key or bearer JWT for a gateway with authentication on (default: env "+envToken+", or the context's)")
	fs.StringVar(&f.clientCert, "client-cert", "", "PEM client certificate for a gateway with mutual TLS (needs --client-key and an https gateway)")
	fs.StringVar(&f.clientKey, "client-key", "", "PEM private key of --client-cert")
	fs.StringVar(&f.caCert, "ca-cert", "", "PEM CA bundle the gateway's certificate must chain to, for a gateway with a CA of its own")
	fs.StringVar(&f.context, "context", "", "context of the config file to use (default: its current context)")
	fs.StringVar(&f.config, "agentplane-config", "", "config file of named gateways (default: env "+envConfig+", or "+defaultConfigHint+")")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if prev != nil {
			if err := prev(c, args); err != nil {
				return err
			}
		}
		t, err := resolveTarget(f, os.Getenv)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if w := t.plaintextWarning(); w != "" {
			fmt.Fprintln(c.ErrOrStderr(), "Warning:", w)
		}
		*target = t
		return nil
	}
}

// resolveTarget decides the gateway and credentials from the flags, the environment and the
// config file: flags first, then the environment, then the context, then the default.
func resolveTarget(f targetFlags, getenv func(string) string) (gatewayTarget, error) {
	path := configPath(f.config, getenv)
	cfg, err := loadClientConfig(path)
	if err != nil {
		return gatewayTarget{}, err
	}
	var cx *configv1.ClientContext
	if name := cmp.Or(f.context, cfg.CurrentContext); name != "" {
		var ok bool
		if cx, ok = cfg.Context(name); !ok {
			return gatewayTarget{}, fmt.Errorf("--context %q: no such context in %s (agentplane config get-contexts lists them)", name, path)
		}
	}
	ctxName := func() string { return fmt.Sprintf("context %q", cx.Name) }

	var t gatewayTarget
	switch {
	case f.gateway != "":
		t.URL, t.urlFrom = f.gateway, "--gateway"
	case getenv(envGateway) != "":
		t.URL, t.urlFrom = getenv(envGateway), envGateway
	case cx != nil:
		t.URL, t.urlFrom = cx.Gateway, ctxName()
	default:
		t.URL, t.urlFrom = defaultGatewayURL, "the default"
	}
	u, err := url.Parse(t.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return gatewayTarget{}, fmt.Errorf("gateway URL %q (from %s): must be an http or https URL with a host, such as %s", t.URL, t.urlFrom, defaultGatewayURL)
	}

	// A context's credentials go to its own gateway only, unless the context was asked for by
	// name: a --gateway or AGENTPLANE_GATEWAY pointing elsewhere must not receive them.
	creds := cx
	if cx != nil && f.context == "" && !sameGateway(t.URL, cx.Gateway) {
		if cx.Token != "" || cx.TokenFile != "" || cx.ClientCert != "" {
			t.unsent = fmt.Sprintf("the current context %q has credentials for %s, which are not sent to %s (from %s); use --context %s to send them anyway",
				cx.Name, cx.Gateway, t.URL, t.urlFrom, cx.Name)
		}
		creds = nil
	}
	base := filepath0(path)

	switch {
	case f.token != "":
		t.Token, t.tokenFrom = f.token, "--token"
	case getenv(envToken) != "":
		t.Token, t.tokenFrom = getenv(envToken), envToken
	case creds != nil && creds.Token != "":
		t.Token, t.tokenFrom = creds.Token, "the token of "+ctxName()
	case creds != nil && creds.TokenFile != "":
		file := resolvePath(base, creds.TokenFile)
		if t.Token, err = readTokenFile(file); err != nil {
			return gatewayTarget{}, fmt.Errorf("%s, tokenFile: %w", ctxName(), err)
		}
		t.tokenFrom = fmt.Sprintf("the token file %s of %s", file, ctxName())
	}
	if strings.ContainsFunc(t.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return gatewayTarget{}, fmt.Errorf("the token from %s contains spaces, line breaks or control characters (it is not shown)", t.tokenFrom)
	}

	switch {
	case f.clientCert != "" || f.clientKey != "":
		if f.clientCert == "" || f.clientKey == "" {
			return gatewayTarget{}, errors.New("--client-cert and --client-key go together")
		}
		t.ClientCert, t.ClientKey, t.certFrom = f.clientCert, f.clientKey, "--client-cert"
	case creds != nil && creds.ClientCert != "":
		t.ClientCert, t.ClientKey, t.certFrom = resolvePath(base, creds.ClientCert), resolvePath(base, creds.ClientKey), "the client certificate of "+ctxName()
	}
	switch {
	case f.caCert != "":
		t.CACert = f.caCert
	case creds != nil && creds.CACert != "":
		t.CACert = resolvePath(base, creds.CACert)
	}
	if u.Scheme != "https" && (t.ClientCert != "" || t.CACert != "") {
		return gatewayTarget{}, fmt.Errorf("a client certificate or CA needs an https gateway URL; %s (from %s) is plain http", t.URL, t.urlFrom)
	}
	if t.client, err = t.newClient(); err != nil {
		return gatewayTarget{}, err
	}
	return t, nil
}

// newClient returns the HTTP client for the target: the default transport, with the target's
// client certificate and CAs.
func (g gatewayTarget) newClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if g.ClientCert == "" && g.CACert == "" {
		return &http.Client{Transport: tr}, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(g.ClientCert, g.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s (from %s): %w", g.ClientCert, g.certFrom, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if g.CACert != "" {
		pem, err := os.ReadFile(g.CACert)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", g.CACert)
		}
		tc.RootCAs = pool
	}
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr}, nil
}

// httpClient is the target's client; a target built without resolveTarget (in tests) uses
// the default one.
func (g gatewayTarget) httpClient() *http.Client {
	if g.client != nil {
		return g.client
	}
	return http.DefaultClient
}

// plaintextWarning says when a token would cross the network in clear: plain http to a host
// that is not this machine.
func (g gatewayTarget) plaintextWarning() string {
	u, err := url.Parse(g.URL)
	if g.Token == "" || err != nil || u.Scheme != "http" || isLoopbackHost(u.Hostname()) {
		return ""
	}
	return fmt.Sprintf("the token is sent over plain http to %s: anyone on the way can read it; use an https gateway URL", u.Host)
}

// sameGateway reports whether two gateway URLs name the same base, ignoring a trailing slash
// and the case of scheme and host.
func sameGateway(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(strings.TrimSuffix(s, "/"))
		if err != nil {
			return s
		}
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		return u.String()
	}
	return norm(a) == norm(b)
}

// readTokenFile reads a token, without its trailing line break.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxTokenFileBytes {
		return "", fmt.Errorf("%s: larger than %d bytes, so not a token", path, maxTokenFileBytes)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// authorize adds the target's credential to req.
func (g gatewayTarget) authorize(req *http.Request) {
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
}

// send sends req with the target's credentials. An error says what to check: the address, the
// gateway's certificate, the client certificate.
func (g gatewayTarget) send(req *http.Request) (*http.Response, error) {
	g.authorize(req)
	resp, err := g.httpClient().Do(req)
	if err == nil {
		return resp, nil
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return nil, fmt.Errorf("the gateway at %s has a certificate this machine does not trust: %w (give its CA with --ca-cert, or caCert in the context)", g.URL, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("no answer from the gateway at %s in time: %w", g.URL, err)
	}
	// crypto/tls reports an alert from the server as a net.OpError of Op "remote error".
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "remote error" && g.ClientCert == "" {
		return nil, fmt.Errorf("the gateway at %s refused the TLS handshake: %w (does it require a client certificate? give --client-cert and --client-key)", g.URL, err)
	}
	return nil, fmt.Errorf("cannot reach the gateway at %s (from %s): %w (is agentplane up running? set --gateway, %s or a context)", g.URL, g.urlFrom, err, envGateway)
}

// statusError turns an error answer into an error. 401 and 403 say which credentials were sent
// and where to give others; they never show a token.
func (g gatewayTarget) statusError(resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return &exitError{code: 1, err: g.unauthorized()}
	case http.StatusForbidden:
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e adminErrorBody
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if g.Token == "" && g.ClientCert == "" {
			return fmt.Errorf("the gateway at %s answered 403 Forbidden: %s", g.URL, msg)
		}
		return fmt.Errorf("the gateway at %s answered 403 Forbidden: %s. It accepted %s, but does not let its subject do this: use an admin's credentials",
			g.URL, msg, g.sentCredentials())
	}
	return adminResponseError(resp)
}

// unauthorized explains a 401.
func (g gatewayTarget) unauthorized() error {
	var b strings.Builder
	fmt.Fprintf(&b, "the gateway at %s answered 401 Unauthorized: ", g.URL)
	switch {
	case g.Token != "":
		fmt.Fprintf(&b, "it did not accept the token from %s (unknown, expired or revoked; it is not shown here). "+
			"Give another with --token, %s, or a context's tokenFile", g.tokenFrom, envToken)
	case g.ClientCert != "":
		fmt.Fprintf(&b, "it did not accept %s. Give an admin's API key or JWT with --token or %s", g.certFrom, envToken)
	default:
		fmt.Fprintf(&b, "its authentication is on and no credentials were sent. Give an admin's API key or JWT with --token or %s, "+
			"a client certificate with --client-cert and --client-key, or keep them in a context: "+
			"agentplane config set-context NAME --gateway %s --token-file FILE, then agentplane config use-context NAME", envToken, g.URL)
	}
	if g.unsent != "" {
		b.WriteString(". Note: " + g.unsent)
	}
	return errors.New(b.String())
}

// sentCredentials says which credentials a request carried, never their value.
func (g gatewayTarget) sentCredentials() string {
	var parts []string
	if g.Token != "" {
		parts = append(parts, "the token from "+g.tokenFrom)
	}
	if g.ClientCert != "" {
		parts = append(parts, g.certFrom)
	}
	return strings.Join(parts, " and ")
}

// adminDo sends a request to an admin endpoint of the gateway and decodes its JSON answer into
// v. An error answer becomes an error with the gateway's message.
func adminDo(ctx context.Context, method string, gw gatewayTarget, path string, body []byte, v any) error {
	raw, err := adminRaw(ctx, method, gw, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the gateway answered something else than JSON: %w", err)
	}
	return nil
}

// adminRaw is adminDo without the decoding: the answer's body, at most 16 MiB.
func adminRaw(ctx context.Context, method string, gw gatewayTarget, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(gw.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, &exitError{code: 2, err: fmt.Errorf("gateway URL %q: %w", gw.URL, err)}
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := gw.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, gw.statusError(resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// adminResponseError turns an error answer of an admin endpoint into an error.
func adminResponseError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e adminErrorBody
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		msg := strings.TrimSpace(string(raw))
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			return fmt.Errorf("the gateway answered %s to %s: is it an agentplane up with the admin API? (%s)", resp.Status, resp.Request.URL.Path, msg)
		}
		return fmt.Errorf("the gateway answered %s: %s", resp.Status, msg)
	}
	err := fmt.Errorf("%s", e.Error)
	if d := e.Diff; d != nil && d.Changed() {
		var b strings.Builder
		_ = printDiff(&b, *d)
		err = fmt.Errorf("%s\nwhat it set out to do:\n%s", e.Error, strings.TrimSpace(b.String()))
	}
	if resp.StatusCode == http.StatusBadRequest {
		return &exitError{code: 2, err: err}
	}
	return err
}
