package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// MTLS authenticates callers by the client certificate the TLS handshake verified against the
// listener's client CA (r.TLS.VerifiedChains). A certificate that was presented but not verified
// is refused, never trusted.
type MTLS struct {
	subjectFrom   string
	tenants       []tenantRule
	defaultTenant string
}

type tenantRule struct {
	match  string
	tenant string
	groups []string
}

var _ Authenticator = (*MTLS)(nil)

// NewMTLS returns an mTLS authenticator for a defaulted, validated configuration.
func NewMTLS(c configv1.MTLS) *MTLS {
	m := &MTLS{subjectFrom: c.SubjectFrom, defaultTenant: c.DefaultTenant}
	for _, t := range c.Tenants {
		m.tenants = append(m.tenants, tenantRule{match: t.Match, tenant: t.Tenant, groups: t.Groups})
	}
	return m
}

// Authenticate implements Authenticator.
func (m *MTLS) Authenticate(r *http.Request) (*Subject, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, none(KindMTLS, "no client certificate")
	}
	if len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil, invalid(KindMTLS, "client certificate not verified")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	var name string
	switch m.subjectFrom {
	case configv1.SubjectFromURISAN:
		if len(leaf.URIs) > 0 {
			name = leaf.URIs[0].String()
		}
	default:
		name = leaf.Subject.CommonName
	}
	if !validName(name) {
		return nil, invalid(KindMTLS, "client certificate has no usable %s", m.subjectFrom)
	}
	if strings.HasPrefix(name, AgentPrefix) {
		return nil, invalid(KindMTLS, "subject %q uses the reserved agent: prefix", name)
	}
	for _, t := range m.tenants {
		if Glob(t.match, name) {
			return &Subject{Name: name, Tenant: t.tenant, Groups: append([]string(nil), t.groups...), Kind: KindMTLS}, nil
		}
	}
	if m.defaultTenant != "" {
		return &Subject{Name: name, Tenant: m.defaultTenant, Kind: KindMTLS}, nil
	}
	return nil, invalid(KindMTLS, "no tenant mapping matches subject %q", name)
}

// ServerTLSConfig builds the TLS configuration of a listener: its certificate, TLS 1.2 or 1.3 at
// least, and with a client CA, client certificates verified against it.
func ServerTLSConfig(c *configv1.ListenerTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the listener certificate: %w", err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if c.MinVersion == configv1.TLS13 {
		cfg.MinVersion = tls.VersionTLS13
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the client CA file holds no PEM certificate")
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if c.ClientAuth == configv1.ClientAuthRequire {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}
