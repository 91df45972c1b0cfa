package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

func request(h http.Header) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/agents/triage", nil)
	r.Header = h
	return r
}

func TestKeyStore(t *testing.T) {
	ks := NewKeyStore()
	const key = "k3y-with-enough-entropy-for-tests-0123456789"
	if _, err := ks.AddKey(key, Subject{Name: "ehr", Tenant: "clinic-a", Groups: []string{"clinicians"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.AddHash(HashKey("another-key-that-is-long-enough-000000"), Subject{Name: "batch", Tenant: "clinic-a"}); err != nil {
		t.Fatal(err)
	}
	agentKey, revoke, err := ks.IssueAgentKey("triage", "clinic-a")
	if err != nil || !strings.HasPrefix(agentKey, IssuedKeyPrefix) {
		t.Fatalf("IssueAgentKey = %q, %v", agentKey, err)
	}
	for _, tc := range []struct {
		name   string
		h      http.Header
		want   string
		wantEr error
	}{
		{"bearer", http.Header{"Authorization": {"Bearer " + key}}, "ehr", nil},
		{"x-api-key", http.Header{"X-Api-Key": {key}}, "ehr", nil},
		{"by hash", http.Header{"X-Api-Key": {"another-key-that-is-long-enough-000000"}}, "batch", nil},
		{"agent", http.Header{"Authorization": {"Bearer " + agentKey}}, "agent:triage", nil},
		{"unknown", http.Header{"Authorization": {"Bearer not-a-key-we-know-of-at-all-00000000"}}, "", ErrInvalidCredentials},
		{"jwt-shaped is not ours", http.Header{"Authorization": {"Bearer a.b.c"}}, "", ErrNoCredentials},
		{"none", http.Header{}, "", ErrNoCredentials},
		{"ambiguous", http.Header{"Authorization": {"Bearer " + key}, "X-Api-Key": {key}}, "", ErrInvalidCredentials},
	} {
		s, err := ks.Authenticate(request(tc.h))
		if tc.wantEr != nil {
			if !errors.Is(err, tc.wantEr) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantEr)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Errorf("%s: error text contains the key", tc.name)
			}
			continue
		}
		if err != nil || s.Name != tc.want {
			t.Errorf("%s: subject = %+v, %v; want %s", tc.name, s, err, tc.want)
		}
	}
	s, _ := ks.Authenticate(request(http.Header{"Authorization": {"Bearer " + agentKey}}))
	if a, ok := s.Agent(); !ok || a != "triage" || s.Kind != KindAgent {
		t.Errorf("agent subject = %+v", s)
	}
	revoke()
	if _, err := ks.Authenticate(request(http.Header{"Authorization": {"Bearer " + agentKey}})); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("revoked key: err = %v", err)
	}
	if _, err := ks.AddKey("short", Subject{Name: "x"}); err == nil {
		t.Error("AddKey accepted a short key")
	}
	if _, err := ks.AddKey(key, Subject{Name: "dup"}); err == nil {
		t.Error("AddKey accepted a duplicate key")
	}
}

// idp is a fake identity provider serving discovery and a JWKS whose keys tests can rotate.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]crypto.Signer
	fetches atomic.Int32
	down    atomic.Bool
}

func newIDP(t *testing.T) *idp {
	p := &idp{keys: map[string]crypto.Signer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		var keys []map[string]string
		for kid, k := range p.keys {
			keys = append(keys, jwkJSON(kid, k.Public()))
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) add(kid string, k crypto.Signer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = k
}

func jwkJSON(kid string, pub crypto.PublicKey) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		b, _ := k.Bytes()
		n := (len(b) - 1) / 2
		return map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": b64(b[1 : 1+n]), "y": b64(b[1+n:])}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
	}
	panic("unknown key")
}

var (
	rsaKey, _   = rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _    = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ = ed25519.GenerateKey(rand.Reader)
)

func sign(t testing.TB, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestJWT(t testing.TB, issuer, jwksURL string, now func() time.Time) *JWT {
	a, err := NewJWT(JWTOptions{
		Issuer: issuer, Audiences: []string{"agentplane", "other"}, Algorithms: configv1.PublicKeyAlgorithms,
		Keys:      NewJWKS(JWKSOptions{URL: jwksURL, Issuer: issuer, Now: now, MinRefreshInterval: 30 * time.Second}),
		ClockSkew: 30 * time.Second, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestJWT(t *testing.T) {
	p := newIDP(t)
	p.add("rsa1", rsaKey)
	p.add("ec1", ecKey)
	p.add("ed1", edKey)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	a := newTestJWT(t, p.srv.URL, "", clock) // discovery
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": p.srv.URL, "aud": "agentplane", "sub": "dr-who", "tenant": "clinic-a",
			"groups": []string{"clinicians", "oncall"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := good(); delete(c, k); return c }

	for _, tc := range []struct {
		name  string
		token string
		ok    bool
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, good()), true},
		{"PS384", sign(t, jwt.SigningMethodPS384, "rsa1", rsaKey, good()), true},
		{"ES256", sign(t, jwt.SigningMethodES256, "ec1", ecKey, good()), true},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, "ed1", edKey, good()), true},
		{"no kid tries the matching keys", sign(t, jwt.SigningMethodES256, "", ecKey, good()), true},
		{"audience list", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("aud", []string{"x", "other"})), true},
		{"expired within skew", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("exp", now.Add(-20*time.Second).Unix())), true},
		{"expired", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("exp", now.Add(-time.Minute).Unix())), false},
		{"no exp", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, without("exp")), false},
		{"not yet valid", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("nbf", now.Add(time.Minute).Unix())), false},
		{"issued in the future", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("iat", now.Add(time.Hour).Unix())), false},
		{"wrong issuer", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("iss", "https://evil")), false},
		{"wrong audience", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("aud", "someone-else")), false},
		{"no audience", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, without("aud")), false},
		{"no subject", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, without("sub")), false},
		{"reserved subject", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, with("sub", "agent:triage")), false},
		{"no tenant", sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, without("tenant")), false},
		{"wrong key for kid", sign(t, jwt.SigningMethodES256, "rsa1", ecKey, good()), false},
		{"signed by a stranger", sign(t, jwt.SigningMethodRS256, "rsa1", mustRSA(t), good()), false},
		{"alg none", noneToken(good()), false},
		{"HS256 with the public key as secret", sign(t, jwt.SigningMethodHS256, "rsa1", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey), good()), false},
		{"tampered payload", tamper(sign(t, jwt.SigningMethodRS256, "rsa1", rsaKey, good())), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := a.Authenticate(request(http.Header{"Authorization": {"Bearer " + tc.token}}))
			if tc.ok {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if s.Name != "dr-who" || s.Tenant != "clinic-a" || s.Kind != KindJWT {
					t.Fatalf("subject = %+v", s)
				}
				if !s.InGroup("oncall") {
					t.Fatalf("groups = %v", s.Groups)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("err = %v, want ErrInvalidCredentials", err)
			}
			if strings.Contains(err.Error(), tc.token) || ClientMessage(err) != "invalid or expired credentials" {
				t.Fatalf("error leaks: %q / %q", err.Error(), ClientMessage(err))
			}
		})
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func noneToken(c jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), "dr-who", "dr-evil", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestJWKSRefreshIsRateLimited(t *testing.T) {
	p := newIDP(t)
	p.add("k1", rsaKey)
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	a := newTestJWT(t, p.srv.URL, p.srv.URL+"/jwks", clock)
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": p.srv.URL, "aud": "agentplane", "sub": "s", "tenant": "t", "exp": clock().Add(time.Hour).Unix()}
	}
	auth := func(tok string) error {
		_, err := a.Verify(t.Context(), tok)
		return err
	}
	if err := auth(sign(t, jwt.SigningMethodRS256, "k1", rsaKey, claims())); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	// A flood of tokens with made-up key ids fetches at most once per minRefreshInterval.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() { _ = auth(sign(t, jwt.SigningMethodRS256, "made-up-"+string(rune('a'+i%26)), rsaKey, claims())) })
	}
	wg.Wait()
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches after a flood of unknown key ids = %d, want 2", n)
	}
	// Key rotation: a new key appears at the provider; after the min interval its first token
	// triggers one fetch and verifies.
	k2 := mustRSA(t)
	p.add("k2", k2)
	advance(31 * time.Second)
	if err := auth(sign(t, jwt.SigningMethodRS256, "k2", k2, claims())); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}
	// The provider goes down: known keys keep working past the refresh interval.
	p.down.Store(true)
	advance(2 * time.Hour)
	if err := auth(sign(t, jwt.SigningMethodRS256, "k1", rsaKey, claims())); err != nil {
		t.Fatalf("with the provider down, a known key: %v", err)
	}
}

func TestJWKSUnavailableAtStart(t *testing.T) {
	p := newIDP(t)
	p.down.Store(true)
	a := newTestJWT(t, p.srv.URL, p.srv.URL+"/jwks", time.Now)
	tok := sign(t, jwt.SigningMethodRS256, "k1", rsaKey, jwt.MapClaims{"iss": p.srv.URL, "aud": "agentplane", "sub": "s", "tenant": "t", "exp": time.Now().Add(time.Hour).Unix()})
	for range 5 {
		if _, err := a.Verify(t.Context(), tok); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches while the provider is down = %d, want 1 (failures back off)", n)
	}
}

func TestNewJWTRefusesUnsafeAlgorithms(t *testing.T) {
	ks := NewJWKS(JWKSOptions{URL: "https://idp/jwks"})
	for _, o := range []JWTOptions{
		{Issuer: "i", Audiences: []string{"a"}, Keys: ks, Algorithms: []string{"none"}},
		{Issuer: "i", Audiences: []string{"a"}, Keys: ks, Algorithms: []string{"HS256"}},
		{Issuer: "i", Audiences: []string{"a"}, HMACSecret: []byte(strings.Repeat("s", 32)), Algorithms: []string{"RS256"}},
		{Issuer: "i", Audiences: []string{"a"}, HMACSecret: []byte("short"), Algorithms: []string{"HS256"}},
		{Issuer: "i", Audiences: []string{"a"}, Algorithms: []string{"RS256"}},
	} {
		if _, err := NewJWT(o); err == nil {
			t.Errorf("NewJWT(%+v) succeeded", o)
		}
	}
}

func TestJWTHMAC(t *testing.T) {
	secret := []byte(strings.Repeat("s3cret", 8))
	now := time.Now()
	a, err := NewJWT(JWTOptions{Issuer: "i", Audiences: []string{"a"}, HMACSecret: secret, Algorithms: []string{"HS256"}, Tenant: "default-t"})
	if err != nil {
		t.Fatal(err)
	}
	c := jwt.MapClaims{"iss": "i", "aud": "a", "sub": "svc", "exp": now.Add(time.Minute).Unix()}
	s, err := a.Verify(t.Context(), sign(t, jwt.SigningMethodHS256, "", secret, c))
	if err != nil || s.Tenant != "default-t" {
		t.Fatalf("subject = %+v, %v; want default tenant", s, err)
	}
	if _, err := a.Verify(t.Context(), sign(t, jwt.SigningMethodHS512, "", secret, c)); err == nil {
		t.Fatal("HS512 accepted though only HS256 is allowed")
	}
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	set, _ := json.Marshal(map[string]any{"keys": []any{
		jwkJSON("small", &small.PublicKey),
		map[string]string{"kty": "oct", "k": "c2VjcmV0"},
		map[string]string{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
		func() map[string]string { m := jwkJSON("enc", &rsaKey.PublicKey); m["use"] = "enc"; return m }(),
		func() map[string]string { m := jwkJSON("mismatch", &rsaKey.PublicKey); m["alg"] = "ES256"; return m }(),
		jwkJSON("good", &ecKey.PublicKey),
	}})
	keys, err := parseJWKS(set)
	if err != nil || len(keys) != 1 || keys[0].kid != "good" {
		t.Fatalf("ParseJWKS = %+v, %v; want only the good key", keys, err)
	}
	if _, err := parseJWKS([]byte(`{"keys":[]}`)); err == nil {
		t.Fatal("an empty set parsed")
	}
}

// certs makes a CA and a client certificate it signed.
func clientCert(t *testing.T, cn string, uri string) (*x509.Certificate, *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	leaf, _ := x509.ParseCertificate(der)
	return leaf, ca
}

func TestMTLS(t *testing.T) {
	leaf, ca := clientCert(t, "ehr-bridge", "spiffe://clinic-a/ns/ehr/sa/bridge")
	verified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, ca}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	req := func(cs *tls.ConnectionState) *http.Request { r := request(http.Header{}); r.TLS = cs; return r }

	cn := NewMTLS(configv1.MTLS{SubjectFrom: configv1.SubjectFromCommonName, DefaultTenant: "clinic-a"})
	if s, err := cn.Authenticate(req(verified)); err != nil || s.Name != "ehr-bridge" || s.Tenant != "clinic-a" || s.Kind != KindMTLS {
		t.Fatalf("CN: %+v, %v", s, err)
	}
	uri := NewMTLS(configv1.MTLS{SubjectFrom: configv1.SubjectFromURISAN, Tenants: []configv1.TenantMapping{
		{Match: "spiffe://clinic-b/*", Tenant: "clinic-b"},
		{Match: "spiffe://clinic-a/*", Tenant: "clinic-a", Groups: []string{"services"}},
	}})
	if s, err := uri.Authenticate(req(verified)); err != nil || s.Name != "spiffe://clinic-a/ns/ehr/sa/bridge" || s.Tenant != "clinic-a" || !s.InGroup("services") {
		t.Fatalf("URI SAN: %+v, %v", s, err)
	}
	if _, err := uri.Authenticate(req(unverified)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unverified certificate: %v", err)
	}
	if _, err := uri.Authenticate(req(nil)); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("plain HTTP: %v", err)
	}
	unmapped := NewMTLS(configv1.MTLS{SubjectFrom: configv1.SubjectFromURISAN, Tenants: []configv1.TenantMapping{{Match: "spiffe://clinic-b/*", Tenant: "clinic-b"}}})
	if _, err := unmapped.Authenticate(req(verified)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unmapped subject: %v", err)
	}
	agentLeaf, agentCA := clientCert(t, "agent:triage", "")
	spoof := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{agentLeaf}, VerifiedChains: [][]*x509.Certificate{{agentLeaf, agentCA}}}
	if _, err := cn.Authenticate(req(spoof)); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("certificate claiming an agent subject: %v", err)
	}
}

func TestChain(t *testing.T) {
	ks := NewKeyStore()
	const key = "k3y-with-enough-entropy-for-tests-0123456789"
	_, _ = ks.AddKey(key, Subject{Name: "ehr", Tenant: "a"})
	leaf, ca := clientCert(t, "svc", "")
	chain := Chain{ks, NewMTLS(configv1.MTLS{SubjectFrom: configv1.SubjectFromCommonName, DefaultTenant: "a"})}
	withCert := func(h http.Header) *http.Request {
		r := request(h)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf, ca}}}
		return r
	}
	if s, err := chain.Authenticate(withCert(http.Header{"X-Api-Key": {key}})); err != nil || s.Name != "ehr" {
		t.Fatalf("key first: %+v %v", s, err)
	}
	if s, err := chain.Authenticate(withCert(http.Header{})); err != nil || s.Name != "svc" {
		t.Fatalf("certificate: %+v %v", s, err)
	}
	// A wrong key is not passed over in favour of the certificate.
	if _, err := chain.Authenticate(withCert(http.Header{"X-Api-Key": {"wrong-key-0000000000000000000000000000"}})); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong key with a good certificate: %v", err)
	}
	if _, err := chain.Authenticate(request(http.Header{})); !errors.Is(err, ErrNoCredentials) || HTTPStatus(err) != 401 {
		t.Fatalf("nothing: %v", err)
	}
	// A JWT when JWT auth is not configured is refused, not ignored.
	if _, err := chain.Authenticate(request(http.Header{"Authorization": {"Bearer a.b.c"}})); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unconfigured JWT: %v", err)
	}
}

func TestFromConfig(t *testing.T) {
	c := &configv1.GatewayConfig{APIVersion: configv1.APIVersion, Kind: configv1.KindGatewayConfig,
		Auth: configv1.Auth{APIKeys: []configv1.APIKey{
			{Subject: "ehr", Tenant: "a", KeyEnv: "EHR_KEY"},
			{Agent: "triage", Tenant: "a", KeyFile: "/secrets/triage"},
		}},
		Policies: []configv1.Policy{{Name: "p", Subjects: []string{"agent:*"}, Agents: []string{"radiology"}}},
	}
	c.SetDefaults()
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	st, err := FromConfig(c, Options{
		LookupEnv: func(k string) (string, bool) { return "ehr-key-0123456789-0123456789-0123456789", k == "EHR_KEY" },
		ReadFile:  func(string) ([]byte, error) { return []byte("triage-key-0123456789-0123456789-012345\n"), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.Authenticator.Authenticate(request(http.Header{"Authorization": {"Bearer triage-key-0123456789-0123456789-012345"}}))
	if err != nil || s.Name != "agent:triage" || s.Kind != KindAgent {
		t.Fatalf("agent key from file: %+v, %v", s, err)
	}
	if err := st.Authorizer.Allow(s, "radiology", ""); err != nil {
		t.Fatalf("agent-to-agent policy: %v", err)
	}
	if _, err := FromConfig(c, Options{LookupEnv: func(string) (string, bool) { return "", false }, ReadFile: func(string) ([]byte, error) { return nil, errors.New("nope") }}); err == nil ||
		!strings.Contains(err.Error(), "auth.apiKeys[0]") {
		t.Fatalf("missing env: err = %v", err)
	}
}
