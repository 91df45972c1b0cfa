package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Kinds of subject, by how they authenticated.
const (
	KindAPIKey = "apikey"
	KindJWT    = "jwt"
	KindMTLS   = "mtls"
	KindAgent  = "agent"
)

// AgentPrefix starts the name of every agent subject, "agent:<agent name>". Only keys configured
// or issued for an agent carry it; a JWT or certificate naming such a subject is refused.
const AgentPrefix = "agent:"

// Subject is an authenticated caller.
type Subject struct {
	// Name identifies the caller within its tenant: a configured API-key subject, a JWT's subject
	// claim, a certificate's name, or "agent:<name>" for an agent's replicas.
	Name string
	// Tenant the caller belongs to; tasks are isolated by it.
	Tenant string
	// Groups the caller is in, for policies.
	Groups []string
	// Kind is how the caller authenticated: apikey, jwt, mtls or agent.
	Kind string
}

// Agent returns the agent name of an agent subject.
func (s *Subject) Agent() (string, bool) {
	if s == nil || s.Kind != KindAgent || len(s.Name) <= len(AgentPrefix) || s.Name[:len(AgentPrefix)] != AgentPrefix {
		return "", false
	}
	return s.Name[len(AgentPrefix):], true
}

// InGroup reports whether the subject is in group g.
func (s *Subject) InGroup(g string) bool { return s != nil && slices.Contains(s.Groups, g) }

type subjectKey struct{}

// NewContext returns a context carrying s.
func NewContext(ctx context.Context, s *Subject) context.Context {
	return context.WithValue(ctx, subjectKey{}, s)
}

// FromContext returns the subject NewContext put in ctx.
func FromContext(ctx context.Context) (*Subject, bool) {
	s, ok := ctx.Value(subjectKey{}).(*Subject)
	return s, ok && s != nil
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoCredentials: the request carries no credential of any configured kind. Answer 401.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials: a credential is present but unknown, expired, not yet valid, badly
	// signed, malformed or ambiguous. Answer 401.
	ErrInvalidCredentials = errors.New("invalid or expired credentials")
	// ErrForbidden: the subject is authenticated but no policy allows the request. Answer 403.
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited: the subject's budget for the agent is spent. Answer 429 with Retry-After.
	ErrRateLimited = errors.New("rate limited")
)

// CredentialError says why a credential was refused, for logs. Its text never contains the
// credential. It matches ErrNoCredentials or ErrInvalidCredentials.
type CredentialError struct {
	Method string // apikey, jwt, mtls, or "" when no method claimed the request
	Reason string
	Err    error // ErrNoCredentials or ErrInvalidCredentials
}

func (e *CredentialError) Error() string {
	if e.Method == "" {
		return e.Err.Error() + ": " + e.Reason
	}
	return e.Err.Error() + " (" + e.Method + "): " + e.Reason
}

func (e *CredentialError) Unwrap() error { return e.Err }

func invalid(method, format string, args ...any) error {
	return &CredentialError{Method: method, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidCredentials}
}

func none(method, reason string) error {
	return &CredentialError{Method: method, Reason: reason, Err: ErrNoCredentials}
}

// ForbiddenError names what was refused. It matches ErrForbidden.
type ForbiddenError struct {
	Subject, Tenant, Agent, Skill string
}

func (e *ForbiddenError) Error() string {
	msg := fmt.Sprintf("forbidden: no policy allows subject %q (tenant %q) to call agent %q", e.Subject, e.Tenant, e.Agent)
	if e.Skill != "" {
		msg += fmt.Sprintf(" skill %q", e.Skill)
	}
	return msg
}

func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

// RateLimitError says which budget is spent and when to try again. It matches ErrRateLimited.
type RateLimitError struct {
	Rule       string        // the rateLimits rule
	Budget     string        // "requests" or "tokens"
	RetryAfter time.Duration // until the budget allows one more request
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limited by rule %q (%s); retry after %v", e.Rule, e.Budget, e.RetryAfter.Round(time.Millisecond))
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfterSeconds is the value of a Retry-After header for d: whole seconds, rounded up, at
// least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// HTTPStatus maps an error of this package to the HTTP status to answer with, 500 for others.
func HTTPStatus(err error) int {
	switch {
	case errors.Is(err, ErrNoCredentials), errors.Is(err, ErrInvalidCredentials):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// ClientMessage is what to tell the client about err: it never says which check failed, so that
// a caller learns nothing about keys, tokens or policies beyond the status.
func ClientMessage(err error) string {
	switch {
	case errors.Is(err, ErrNoCredentials):
		return "authentication required"
	case errors.Is(err, ErrInvalidCredentials):
		return "invalid or expired credentials"
	case errors.Is(err, ErrForbidden):
		return "not allowed"
	case errors.Is(err, ErrRateLimited):
		return "rate limit exceeded; retry later"
	}
	return "internal error"
}

// Challenge is the WWW-Authenticate header value to send with a 401.
const Challenge = `Bearer realm="agentplane"`
