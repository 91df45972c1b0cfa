package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// Options are what FromConfig needs besides the configuration.
type Options struct {
	// HTTPClient fetches JWT key sets and discovery documents; default a client without
	// environment proxies.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// LookupEnv and ReadFile read secrets; defaults os.LookupEnv and os.ReadFile.
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
	// RateLimiter bounds the rate limiter's memory.
	RateLimiter RateLimiterOptions
}

// Stack is the gateway's authentication, authorization and rate limiting, built from one
// configuration.
type Stack struct {
	// Authenticator tries API keys (Keys), then JWT, then mTLS.
	Authenticator Authenticator
	// Keys holds the configured API keys; the supervisor adds agent replicas' keys to it at run
	// time with IssueAgentKey.
	Keys *KeyStore
	// Authorizer applies the policies.
	Authorizer *Authorizer
	// RateLimiter applies the rate limits.
	RateLimiter *RateLimiter
}

// FromConfig builds the Stack of a defaulted, validated configuration. It reads key files and
// environment variables once, keeping only hashes of API keys.
func FromConfig(c *configv1.GatewayConfig, o Options) (*Stack, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	keys := NewKeyStore()
	for i, k := range c.Auth.APIKeys {
		s := Subject{Name: k.Subject, Tenant: k.Tenant, Groups: k.Groups, Kind: KindAPIKey}
		if k.Agent != "" {
			s = AgentSubject(k.Agent, k.Tenant)
			s.Groups = k.Groups
		}
		var err error
		switch {
		case k.SHA256 != "":
			_, err = keys.AddHash(k.SHA256, s)
		case k.KeyFile != "":
			var b []byte
			if b, err = o.ReadFile(k.KeyFile); err == nil {
				_, err = keys.AddKey(strings.TrimSpace(string(b)), s)
			}
		case k.KeyEnv != "":
			v, ok := o.LookupEnv(k.KeyEnv)
			if !ok {
				err = fmt.Errorf("environment variable %s is not set", k.KeyEnv)
			} else {
				_, err = keys.AddKey(strings.TrimSpace(v), s)
			}
		default:
			err = errors.New("no key")
		}
		if err != nil {
			return nil, fmt.Errorf("auth.apiKeys[%d]: %w", i, err)
		}
	}
	chain := Chain{keys}
	if j := c.Auth.JWT; j != nil {
		jo := JWTOptions{
			Issuer: j.Issuer, Audiences: j.Audiences, Algorithms: j.Algorithms,
			SubjectClaim: j.SubjectClaim, TenantClaim: j.TenantClaim, GroupsClaim: j.GroupsClaim,
			Tenant: j.Tenant, Now: o.Now,
		}
		if j.ClockSkew != nil {
			jo.ClockSkew = j.ClockSkew.Duration
		}
		if j.HMACSecretFile != "" {
			b, err := o.ReadFile(j.HMACSecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth.jwt.hmacSecretFile: %w", err)
			}
			jo.HMACSecret = []byte(strings.TrimSpace(string(b)))
		} else {
			ko := JWKSOptions{URL: j.JWKSURL, Issuer: j.Issuer, Client: o.HTTPClient, Now: o.Now, Logger: o.Logger}
			if j.FetchTimeout != nil {
				ko.FetchTimeout = j.FetchTimeout.Duration
			}
			if j.RefreshInterval != nil {
				ko.RefreshInterval = j.RefreshInterval.Duration
			}
			if j.MinRefreshInterval != nil {
				ko.MinRefreshInterval = j.MinRefreshInterval.Duration
			}
			jo.Keys = NewJWKS(ko)
		}
		ja, err := NewJWT(jo)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt: %w", err)
		}
		chain = append(chain, ja)
	}
	if m := c.Auth.MTLS; m != nil {
		chain = append(chain, NewMTLS(*m))
	}
	authz, err := NewAuthorizer(c.Policies)
	if err != nil {
		return nil, err
	}
	return &Stack{
		Authenticator: chain,
		Keys:          keys,
		Authorizer:    authz,
		RateLimiter:   NewRateLimiter(c.RateLimits, o.RateLimiter),
	}, nil
}
