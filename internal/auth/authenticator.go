package auth

import (
	"errors"
	"net/http"
)

// Authenticator tells who sent a request. It returns an error matching ErrNoCredentials when the
// request carries no credential of its kind, so that a Chain tries the next one, and an error
// matching ErrInvalidCredentials when a credential of its kind is present but not good.
type Authenticator interface {
	Authenticate(r *http.Request) (*Subject, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*Subject, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*Subject, error) { return f(r) }

// Chain tries each authenticator in order. The first to return a subject wins; the first to
// find its kind of credential and refuse it ends the chain, so that a bad credential is never
// passed over in favour of another. With no credential at all it returns ErrNoCredentials.
type Chain []Authenticator

var _ Authenticator = Chain(nil)

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (*Subject, error) {
	if _, err := readCredentials(r); err != nil {
		return nil, err
	}
	for _, a := range c {
		s, err := a.Authenticate(r)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, ErrNoCredentials) {
			return nil, err
		}
	}
	c2, _ := readCredentials(r)
	if c2.bearer != "" || c2.apiKey != "" {
		// A credential no configured method accepts, such as a JWT with JWT auth not configured.
		return nil, invalid("", "no configured method accepts this credential")
	}
	return nil, none("", "the request carries no credential")
}
