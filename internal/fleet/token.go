package fleet

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Header carries a fleet token on a task one gateway forwards to another.
const Header = "Agentplane-Fleet-Token"

// MinKeyLength is the shortest fleet key accepted, in bytes.
const MinKeyLength = 32

// tokenTTL bounds how long a fleet token is accepted after it was signed: it is signed for one
// request, sent at once.
const tokenTTL = time.Minute

// Claims are what a forwarded task carries from its origin gateway: who asked (the original
// caller, whom the receiving gateway authorizes as if it had called), and where it came from.
type Claims struct {
	// Origin is the forwarding gateway's id and OriginSite its site.
	Origin     string `json:"origin"`
	OriginSite string `json:"originSite,omitempty"`
	// Subject, Tenant and Groups are the original caller's.
	Subject string   `json:"sub"`
	Tenant  string   `json:"tenant,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// Agent the task is for, and the origin's task id for it.
	Agent string `json:"agent"`
	Task  string `json:"task,omitempty"`
	jwt.RegisteredClaims
}

// Signer signs and verifies fleet tokens with the fleet's shared key (HMAC-SHA256, as a JWT).
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a Signer for key, which every gateway of the fleet shares.
func NewSigner(key []byte, now func() time.Time) (*Signer, error) {
	if len(key) < MinKeyLength {
		return nil, fmt.Errorf("the fleet key has %d bytes; it needs at least %d (for example: head -c 32 /dev/urandom | base64)", len(key), MinKeyLength)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: key, now: now}, nil
}

// Sign returns a token for c, valid for a minute.
func (s *Signer) Sign(c Claims) (string, error) {
	now := s.now()
	c.IssuedAt = jwt.NewNumericDate(now)
	c.ExpiresAt = jwt.NewNumericDate(now.Add(tokenTTL))
	c.Issuer = c.Origin
	return jwt.NewWithClaims(jwt.SigningMethodHS256, &c).SignedString(s.key)
}

// ErrInvalidToken is the error of a fleet token that is malformed, expired or not signed with
// the fleet's key.
var ErrInvalidToken = errors.New("invalid fleet token")

// Verify returns the claims of a token signed with the fleet's key, or ErrInvalidToken.
func (s *Signer) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(), jwt.WithTimeFunc(s.now), jwt.WithLeeway(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Origin == "" || c.Subject == "" || c.Agent == "" {
		return nil, fmt.Errorf("%w: origin, subject and agent are required", ErrInvalidToken)
	}
	return &c, nil
}
