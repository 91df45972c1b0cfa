package cli

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/redact"
)

// security is what a GatewayConfig file sets up; the zero value is "no config file": no
// authentication, no audit log, loopback only.
type security struct {
	cfg    *configv1.GatewayConfig
	listen string
	keys   *auth.Stack // set once built; issues replicas' own credentials
}

// replicaEnv is what every replica is told of the gateway: where it is, and, when callers must
// authenticate, a key of its own (subject agent:<name>) that lives as long as its process, so
// that an agent delegating to another agent is authenticated and authorized like any caller.
func replicaEnv(s *security, gatewayURL, agent string) ([]string, func(), error) {
	env := []string{"AGENTPLANE_GATEWAY=" + gatewayURL}
	if s.keys == nil {
		return env, func() {}, nil
	}
	key, revoke, err := s.keys.Keys.IssueAgentKey(agent, "")
	if err != nil {
		return nil, nil, err
	}
	return append(env, "AGENTPLANE_TOKEN="+key), revoke, nil
}

func loadSecurity(path string) (security, error) {
	if path == "" {
		return security{}, nil
	}
	cfg, err := configv1.Load(path)
	if err != nil {
		return security{}, fmt.Errorf("--config: %w", err)
	}
	s := security{cfg: cfg}
	if len(cfg.Listeners) > 1 {
		return security{}, fmt.Errorf("--config %s: agentplane up serves one listener; %d are configured", path, len(cfg.Listeners))
	}
	if len(cfg.Listeners) == 1 {
		s.listen = cfg.Listeners[0].Address
	}
	return s, nil
}

func (s security) authenticated() bool {
	if s.cfg == nil {
		return false
	}
	a := s.cfg.Auth
	return len(a.APIKeys) > 0 || a.JWT != nil || a.MTLS != nil
}

// apply sets the gateway's authentication, authorization, rate limits, audit, TLS and limits,
// and returns what to close when the gateway has stopped.
func (s security) apply(o *gateway.Options, dataDir string, logger *slog.Logger, maxBodyFromFlag bool) (func(), error) {
	if s.cfg == nil {
		return func() {}, nil
	}
	c := s.cfg
	if s.authenticated() {
		st, err := auth.FromConfig(c, auth.Options{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		o.Auth = st
	}
	if len(c.Listeners) == 1 && c.Listeners[0].TLS != nil {
		tc, err := auth.ServerTLSConfig(c.Listeners[0].TLS)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		o.TLS = tc
	}
	o.AgentHosts = c.AgentHosts
	l := c.Limits
	if !maxBodyFromFlag {
		o.MaxBodyBytes = l.MaxBodyBytes
	}
	o.MaxHeaderBytes = int(l.MaxHeaderBytes)
	o.MaxJSONDepth = int(l.MaxJSONDepth)
	o.MaxSSELineBytes = int(l.MaxSSELineBytes)
	o.MaxConcurrentRequests = int(l.MaxConcurrentRequests)
	o.MaxStreamsPerConnection = int(l.MaxConcurrentStreamsPerConnection)
	if l.ReadHeaderTimeout != nil {
		o.ReadHeaderTimeout = l.ReadHeaderTimeout.Duration
	}
	if l.ReadTimeout != nil {
		o.ReadTimeout = l.ReadTimeout.Duration
	}
	if l.IdleTimeout != nil {
		o.IdleTimeout = l.IdleTimeout.Duration
	}
	push, err := pushOptions(c.PushNotifications)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	o.Push = push
	if !c.Redaction.Disabled {
		red, err := redact.New(c.Redaction)
		if err != nil {
			return nil, fmt.Errorf("--config: redaction: %w", err)
		}
		o.Redact = red.String
	}
	aw, err := audit.FromConfig(c.Audit, dataDir, logger)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	o.Audit = aw
	return func() {
		if err := aw.Close(); err != nil {
			logger.Error("closing the audit log", "err", err)
		}
	}, nil
}

// describe says in one line what protects the gateway.
// authenticates says whether callers must authenticate.
func (s security) authenticates() bool {
	if s.cfg == nil {
		return false
	}
	a := s.cfg.Auth
	return len(a.APIKeys) > 0 || a.JWT != nil || a.MTLS != nil
}

func (s security) describe() string {
	if s.cfg == nil {
		return "no authentication and no audit log (no --config): listening on loopback only"
	}
	var kinds []string
	a := s.cfg.Auth
	if len(a.APIKeys) > 0 {
		kinds = append(kinds, "API keys")
	}
	if a.JWT != nil {
		kinds = append(kinds, "JWT")
	}
	if a.MTLS != nil {
		kinds = append(kinds, "mTLS")
	}
	authn := "no authentication"
	if len(kinds) > 0 {
		authn = "authentication: " + strings.Join(kinds, ", ") + fmt.Sprintf("; %d policies", len(s.cfg.Policies))
	}
	if c := s.cfg.Audit.Checkpoints; c != nil {
		return authn + "; audit log on, with checkpoints to " + c.Path
	}
	return authn + "; audit log on"
}

// pushOptions is the gateway's push notification configuration from a GatewayConfig.
func pushOptions(c configv1.PushNotifications) (gateway.PushOptions, error) {
	var o gateway.PushOptions
	for i, n := range c.AllowedNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return o, fmt.Errorf("pushNotifications.allowedNetworks[%d]: %w", i, err)
		}
		o.AllowedNetworks = append(o.AllowedNetworks, p)
	}
	if c.Timeout != nil {
		o.Timeout = c.Timeout.Duration
	}
	if c.GiveUpAfter != nil {
		o.GiveUpAfter = c.GiveUpAfter.Duration
	}
	return o, nil
}
