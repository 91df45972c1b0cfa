package v1alpha1

import (
	"fmt"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Default values applied by SetDefaults.
const (
	DefaultListenAddress                     = "127.0.0.1:8080"
	DefaultMaxBodyBytes                      = 8 << 20
	DefaultMaxHeaderBytes                    = 64 << 10
	DefaultMaxJSONDepth                      = 64
	DefaultMaxSSELineBytes                   = 4 << 20
	DefaultMaxConcurrentStreamsPerConnection = 100
	DefaultMaxConcurrentRequests             = 10000
	DefaultReadHeaderTimeout                 = 10 * time.Second
	DefaultReadTimeout                       = 60 * time.Second
	DefaultIdleTimeout                       = 120 * time.Second
	DefaultClockSkew                         = 30 * time.Second
	DefaultFetchTimeout                      = 5 * time.Second
	DefaultRefreshInterval                   = time.Hour
	DefaultMinRefreshInterval                = 30 * time.Second
	DefaultSubjectClaim                      = "sub"
	DefaultTenantClaim                       = "tenant"
	DefaultGroupsClaim                       = "groups"
	DefaultAuditMaxFileBytes                 = 100 << 20
	DefaultFsyncInterval                     = time.Second
	DefaultCheckpointInterval                = time.Minute
	DefaultPushTimeout                       = 10 * time.Second
	DefaultPushGiveUpAfter                   = 24 * time.Hour
)

// PublicKeyAlgorithms are the JWT algorithms allowed by default with public keys.
var PublicKeyAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// HMACAlgorithms are the JWT algorithms allowed by default with a shared secret.
var HMACAlgorithms = []string{"HS256", "HS384", "HS512"}

// BuiltinPatterns are the redaction patterns applied by default.
var BuiltinPatterns = []string{PatternSSN, PatternMRN, PatternPhone, PatternEmail}

// SetDefaults fills every optional field of c that has a default. It is idempotent.
func (c *GatewayConfig) SetDefaults() {
	// An empty list means none: "rateLimits: []" and no rateLimits at all are the same config
	// (found by the fuzzer, whose round trip tells them apart otherwise).
	if len(c.Policies) == 0 {
		c.Policies = nil
	}
	if len(c.RateLimits) == 0 {
		c.RateLimits = nil
	}
	if len(c.Auth.APIKeys) == 0 {
		c.Auth.APIKeys = nil
	}
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Address: DefaultListenAddress}}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = fmt.Sprintf("listener-%d", i)
		}
		if t := l.TLS; t != nil {
			if t.MinVersion == "" {
				t.MinVersion = TLS12
			}
			if t.ClientCAFile != "" && t.ClientAuth == "" {
				t.ClientAuth = ClientAuthVerifyIfGiven
			}
		}
	}
	if j := c.Auth.JWT; j != nil {
		if len(j.Algorithms) == 0 {
			if j.HMACSecretFile != "" {
				j.Algorithms = append([]string(nil), HMACAlgorithms...)
			} else {
				j.Algorithms = append([]string(nil), PublicKeyAlgorithms...)
			}
		}
		defaultDuration(&j.ClockSkew, DefaultClockSkew)
		defaultDuration(&j.FetchTimeout, DefaultFetchTimeout)
		defaultDuration(&j.RefreshInterval, DefaultRefreshInterval)
		defaultDuration(&j.MinRefreshInterval, DefaultMinRefreshInterval)
		defaultString(&j.SubjectClaim, DefaultSubjectClaim)
		defaultString(&j.TenantClaim, DefaultTenantClaim)
		defaultString(&j.GroupsClaim, DefaultGroupsClaim)
	}
	if m := c.Auth.MTLS; m != nil {
		defaultString(&m.SubjectFrom, SubjectFromCommonName)
	}
	for i := range c.Policies {
		if c.Policies[i].MaxPriority == "" {
			c.Policies[i].MaxPriority = PriorityNormal
		}
	}
	l := &c.Limits
	defaultInt(&l.MaxBodyBytes, DefaultMaxBodyBytes)
	defaultInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	defaultInt(&l.MaxJSONDepth, DefaultMaxJSONDepth)
	defaultInt(&l.MaxSSELineBytes, DefaultMaxSSELineBytes)
	defaultInt(&l.MaxConcurrentStreamsPerConnection, DefaultMaxConcurrentStreamsPerConnection)
	defaultInt(&l.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	defaultDuration(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defaultDuration(&l.ReadTimeout, DefaultReadTimeout)
	defaultDuration(&l.WriteTimeout, 0)
	defaultDuration(&l.IdleTimeout, DefaultIdleTimeout)
	for i := range c.RateLimits {
		r := &c.RateLimits[i]
		if r.Burst == 0 && r.RequestsPerSecond > 0 {
			r.Burst = int32(min(math.Ceil(r.RequestsPerSecond), math.MaxInt32))
		}
		if r.TokenBurst == 0 && r.TokensPerMinute > 0 {
			r.TokenBurst = r.TokensPerMinute
		}
	}
	pn := &c.PushNotifications
	if len(pn.AllowedNetworks) == 0 {
		pn.AllowedNetworks = nil
	}
	defaultDuration(&pn.Timeout, DefaultPushTimeout)
	defaultDuration(&pn.GiveUpAfter, DefaultPushGiveUpAfter)
	a := &c.Audit
	defaultInt(&a.MaxFileBytes, DefaultAuditMaxFileBytes)
	defaultString(&a.Fsync, FsyncAlways)
	if a.Fsync == FsyncInterval {
		defaultDuration(&a.FsyncInterval, DefaultFsyncInterval)
	}
	if a.Checkpoints != nil {
		defaultDuration(&a.Checkpoints.Interval, DefaultCheckpointInterval)
	}
	if !c.Redaction.Disabled {
		if len(c.Redaction.Patterns) == 0 {
			c.Redaction.Patterns = append([]string(nil), BuiltinPatterns...)
		}
	}
}

func defaultString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func defaultInt[T int32 | int64](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

func defaultDuration(p **metav1.Duration, v time.Duration) {
	if *p == nil {
		*p = &metav1.Duration{Duration: v}
	}
}
