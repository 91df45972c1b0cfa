package auth

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

func BenchmarkAPIKey100Keys(b *testing.B) {
	ks := NewKeyStore()
	var last string
	for i := range 100 {
		last = fmt.Sprintf("bench-key-%03d-0123456789-0123456789-0123", i)
		_, _ = ks.AddKey(last, Subject{Name: fmt.Sprint("s", i), Tenant: "t"})
	}
	r := request(http.Header{"Authorization": {"Bearer " + last}})
	chain := Chain{ks}
	for b.Loop() {
		if _, err := chain.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

func benchJWT(b *testing.B, method jwt.SigningMethod, kid string, key any) {
	p := newIDP(&testing.T{})
	defer p.srv.Close()
	p.add("rsa1", rsaKey)
	p.add("ec1", ecKey)
	p.add("ed1", edKey)
	a := newTestJWT(b, p.srv.URL, p.srv.URL+"/jwks", time.Now)
	tok := sign(b, method, kid, key, jwt.MapClaims{"iss": p.srv.URL, "aud": "agentplane", "sub": "s", "tenant": "t", "exp": time.Now().Add(time.Hour).Unix()})
	r := request(http.Header{"Authorization": {"Bearer " + tok}})
	chain := Chain{NewKeyStore(), a}
	if _, err := chain.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := chain.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJWTRS256(b *testing.B) { benchJWT(b, jwt.SigningMethodRS256, "rsa1", rsaKey) }
func BenchmarkJWTES256(b *testing.B) { benchJWT(b, jwt.SigningMethodES256, "ec1", ecKey) }
func BenchmarkJWTEdDSA(b *testing.B) { benchJWT(b, jwt.SigningMethodEdDSA, "ed1", edKey) }

func BenchmarkAuthorizerAllow(b *testing.B) {
	var ps []configv1.Policy
	for i := range 50 {
		ps = append(ps, configv1.Policy{Name: fmt.Sprint("p", i), Groups: []string{fmt.Sprint("g", i)}, Agents: []string{fmt.Sprint("agent-", i, "-*")}, MaxPriority: configv1.PriorityNormal})
	}
	a, _ := NewAuthorizer(ps)
	s := &Subject{Name: "bob", Tenant: "t", Groups: []string{"g49"}}
	for b.Loop() {
		if err := a.Allow(s, "agent-49-x", ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	l := NewRateLimiter([]configv1.RateLimit{{Name: "r", RequestsPerSecond: 1e6, Burst: 1e6, TokensPerMinute: 1e9, TokenBurst: 1e9}}, RateLimiterOptions{})
	s := &Subject{Name: "bob", Tenant: "t"}
	now := time.Now()
	for b.Loop() {
		_ = l.Allow(s, "triage", now)
	}
}
