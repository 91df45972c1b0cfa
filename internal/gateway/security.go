package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/agentplane/agentplane/internal/a2a"
	"github.com/agentplane/agentplane/internal/audit"
	"github.com/agentplane/agentplane/internal/auth"
	"github.com/agentplane/agentplane/internal/discovery"
	"github.com/agentplane/agentplane/internal/store"
	"github.com/agentplane/agentplane/internal/telemetry"
)

// DefaultAdminGroup is the group whose members may use the admin API when authentication is on.
const DefaultAdminGroup = "agentplane-admins"

// anonymous is the caller when the gateway has no authentication configured (embedded mode on
// loopback): it may do everything.
var anonymous = &auth.Subject{Name: "anonymous", Kind: "none"}

// authenticate returns the caller, or answers 401 itself and returns false.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Subject, bool) {
	if g.opts.Auth == nil {
		return anonymous, true
	}
	s, err := g.opts.Auth.Authenticator.Authenticate(r)
	if who, ok := r.Context().Value(callerKey{}).(*callerRef); ok && err == nil {
		who.subject = s
	}
	if err != nil {
		g.log.Info("request not authenticated", "reason", err.Error(), "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", auth.Challenge)
		rpcError(w, http.StatusUnauthorized, nil, a2a.Errorf(a2a.CodeInvalidRequest, "%s", auth.ClientMessage(err)))
		return nil, false
	}
	return s, true
}

// authorize checks that s may call agent, then its rate limit. It answers itself and returns
// false when not.
func (g *Gateway) authorize(w http.ResponseWriter, id []byte, s *auth.Subject, agent string) (outcome, bool) {
	if g.opts.Auth == nil {
		return "", true
	}
	if err := g.opts.Auth.Authorizer.Allow(s, agent, ""); err != nil {
		g.log.Info("request forbidden", "subject", s.Name, "tenant", s.Tenant, "agent", agent)
		rpcError(w, http.StatusForbidden, id, &a2a.Error{Code: CodeForbidden, Message: auth.ClientMessage(err)})
		return outcomeForbidden, false
	}
	if g.opts.Auth.RateLimiter != nil {
		if err := g.opts.Auth.RateLimiter.Allow(s, agent, g.opts.Now()); err != nil {
			var rl *auth.RateLimitError
			retry := time.Second
			if errors.As(err, &rl) {
				retry = rl.RetryAfter
			}
			w.Header().Set("Retry-After", auth.RetryAfterSeconds(retry))
			rpcError(w, http.StatusTooManyRequests, id, &a2a.Error{Code: CodeRateLimited, Message: auth.ClientMessage(err)})
			return outcomeRateLimited, false
		}
	}
	return "", true
}

// canSee reports whether s may see task t. Another subject's task answers as not found.
func canSee(a *auth.Stack, s *auth.Subject, t *store.Task) bool {
	return a == nil || a.Authorizer.CanSeeTask(s, t.Subject, t.Tenant)
}

// tokenCharger returns what charges the tokens an agent reported for a task to its subject's
// budget and metrics.
func tokenCharger(a *auth.Stack, m *telemetry.Metrics, now func() time.Time) func(t *store.Task, in, out int64) {
	return func(t *store.Task, in, out int64) {
		m.Tokens(t.Agent, t.Subject, telemetry.TokensInput, int(in))
		m.Tokens(t.Agent, t.Subject, telemetry.TokensOutput, int(out))
		if a == nil || a.RateLimiter == nil || in+out <= 0 {
			return
		}
		a.RateLimiter.ChargeTokens(&auth.Subject{Name: t.Subject, Tenant: t.Tenant}, t.Agent, in+out, now())
	}
}

// requireAdmin guards the admin API: when authentication is on, only members of the admin group
// may use it.
func (g *Gateway) requireAdmin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.opts.Auth != nil {
			s, ok := g.authenticate(w, r)
			if !ok {
				return
			}
			if !s.InGroup(g.opts.AdminGroup) {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "the admin API is for members of group " + g.opts.AdminGroup})
				return
			}
		}
		next(w, r)
	}
}

// statusRecorder remembers the status a handler answered with, for the audit record.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// audit writes the record of one call. It runs before the handler returns, so before the
// response is complete; if the record cannot be written the gateway reports itself not ready,
// since it can no longer account for calls.
func (g *Gateway) audit(r *http.Request, rec audit.Record) {
	if g.opts.Audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := g.opts.Audit.Write(ctx, rec); err != nil {
		g.auditBroken.Store(true)
		g.log.Error("audit record could not be written; the gateway is no longer ready", "err", err)
	}
}

// isAdmin reports whether r comes from an authenticated member of the admin group. It answers
// nothing itself.
func isAdmin(a *auth.Stack, group string, r *http.Request) bool {
	s, err := a.Authenticator.Authenticate(r)
	return err == nil && s.InGroup(group)
}

// callerKey holds, in a request's context, who the audited call turned out to come from.
type callerKey struct{}

type callerRef struct{ subject *auth.Subject }

// audited writes an audit record of every call to h, refused or not: who (anonymous until
// authenticated), which route, the status and its outcome.
func (g *Gateway) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := g.opts.Now()
		who := &callerRef{subject: anonymous}
		sw := &statusRecorder{ResponseWriter: w}
		h(sw, r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
		rec := audit.Record{Subject: who.subject.Name, Tenant: who.subject.Tenant, Route: r.Pattern,
			Outcome: string(outcomeOf(sw.status)), HTTPStatus: sw.status, LatencyMs: g.opts.Now().Sub(start).Milliseconds()}
		if name := r.PathValue("name"); name != "" {
			rec.Agent = name
			if _, ok := discovery.Lookup(g.opts.Source.Snapshot(), name); !ok {
				rec.Agent = g.opts.Redact(name)
			}
		}
		g.audit(r, rec)
	}
}

// outcomeOf names how a call that is not an A2A call ended, from its status.
func outcomeOf(status int) outcome {
	switch {
	case status == 0 || status < 400:
		return outcomeOK
	case status == http.StatusUnauthorized:
		return outcomeUnauthenticated
	case status == http.StatusForbidden:
		return outcomeForbidden
	case status == http.StatusTooManyRequests:
		return outcomeRateLimited
	case status == http.StatusRequestEntityTooLarge:
		return outcomeTooLarge
	case status == http.StatusNotFound:
		return outcomeAgentNotFound
	case status == http.StatusServiceUnavailable:
		return outcomeUnavailable
	}
	return outcomeBadRequest
}
