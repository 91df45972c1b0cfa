package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

// JWTOptions configure a JWT authenticator.
type JWTOptions struct {
	// Issuer must equal the token's "iss".
	Issuer string
	// Audiences: the token's "aud" must contain one of them.
	Audiences []string
	// Algorithms allowed; "none" never is, and HMAC algorithms only with HMACSecret.
	Algorithms []string
	// Keys verify public-key signatures. Exactly one of Keys and HMACSecret is set.
	Keys *JWKS
	// HMACSecret verifies HS256/384/512 signatures.
	HMACSecret []byte
	// ClockSkew tolerated on exp, nbf and iat.
	ClockSkew time.Duration
	// SubjectClaim, TenantClaim and GroupsClaim name the claims to read; default sub, tenant,
	// groups.
	SubjectClaim, TenantClaim, GroupsClaim string
	// Tenant applies when a token has no tenant claim; when both are missing the token is refused.
	Tenant string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// JWT authenticates "Authorization: Bearer <JWT>" with a token from an identity provider. It
// checks the signature with an allowed algorithm, the issuer, one of the audiences, expiry
// (required), not-before and issued-at with the clock skew, and reads subject, tenant and groups
// from the configured claims.
type JWT struct {
	o      JWTOptions
	parser *jwt.Parser
}

var _ Authenticator = (*JWT)(nil)

var hmacAlgs = []string{"HS256", "HS384", "HS512"}

// NewJWT checks o and returns the authenticator.
func NewJWT(o JWTOptions) (*JWT, error) {
	if o.Issuer == "" || len(o.Audiences) == 0 {
		return nil, errors.New("auth: JWT needs an issuer and at least one audience")
	}
	if (o.Keys == nil) == (len(o.HMACSecret) == 0) {
		return nil, errors.New("auth: JWT needs either a key set or an HMAC secret")
	}
	if len(o.HMACSecret) > 0 && len(o.HMACSecret) < 32 {
		return nil, errors.New("auth: a JWT HMAC secret must be at least 32 bytes")
	}
	if len(o.Algorithms) == 0 {
		return nil, errors.New("auth: JWT needs at least one allowed algorithm")
	}
	for _, a := range o.Algorithms {
		isHMAC := slices.Contains(hmacAlgs, a)
		switch {
		case strings.EqualFold(a, "none"):
			return nil, errors.New(`auth: JWT algorithm "none" is never allowed`)
		case isHMAC && o.Keys != nil:
			return nil, fmt.Errorf("auth: JWT algorithm %s is not allowed with a public key set", a)
		case !isHMAC && o.Keys == nil:
			return nil, fmt.Errorf("auth: JWT algorithm %s needs a public key set", a)
		case jwt.GetSigningMethod(a) == nil:
			return nil, fmt.Errorf("auth: unknown JWT algorithm %q", a)
		}
	}
	if o.SubjectClaim == "" {
		o.SubjectClaim = "sub"
	}
	if o.TenantClaim == "" {
		o.TenantClaim = "tenant"
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(o.Algorithms),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(o.Audiences...),
		jwt.WithLeeway(o.ClockSkew),
		jwt.WithTimeFunc(o.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return &JWT{o: o, parser: p}, nil
}

// Authenticate implements Authenticator.
func (a *JWT) Authenticate(r *http.Request) (*Subject, error) {
	c, err := readCredentials(r)
	if err != nil {
		return nil, err
	}
	if c.bearer == "" || !looksLikeJWT(c.bearer) {
		return nil, none(KindJWT, "no bearer token")
	}
	return a.Verify(r.Context(), c.bearer)
}

// Verify checks a raw token and returns its subject.
func (a *JWT) Verify(ctx context.Context, token string) (*Subject, error) {
	claims := jwt.MapClaims{}
	_, err := a.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		alg, _ := t.Header["alg"].(string)
		if a.o.Keys == nil {
			return a.o.HMACSecret, nil
		}
		kid, _ := t.Header["kid"].(string)
		keys, err := a.o.Keys.keysFor(ctx, kid, alg)
		if err != nil {
			return nil, err
		}
		if len(keys) == 1 {
			return keys[0], nil
		}
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
		for i, k := range keys {
			set.Keys[i] = crypto.PublicKey(k)
		}
		return set, nil
	})
	if err != nil {
		return nil, invalid(KindJWT, "%s", jwtReason(err))
	}
	name, ok := claims[a.o.SubjectClaim].(string)
	if !ok || !validName(name) {
		return nil, invalid(KindJWT, "claim %q is missing or not a usable name", a.o.SubjectClaim)
	}
	if strings.HasPrefix(name, AgentPrefix) {
		return nil, invalid(KindJWT, "subject %q uses the reserved agent: prefix", name)
	}
	tenant := a.o.Tenant
	if v, present := claims[a.o.TenantClaim]; present {
		t, ok := v.(string)
		if !ok || !validName(t) {
			return nil, invalid(KindJWT, "claim %q is not a usable name", a.o.TenantClaim)
		}
		tenant = t
	}
	if tenant == "" {
		return nil, invalid(KindJWT, "token has no %q claim and no default tenant is configured", a.o.TenantClaim)
	}
	var groups []string
	switch v := claims[a.o.GroupsClaim].(type) {
	case nil:
	case string:
		groups = []string{v}
	case []any:
		for _, g := range v {
			if s, ok := g.(string); ok && validName(s) {
				groups = append(groups, s)
			}
		}
	default:
		return nil, invalid(KindJWT, "claim %q is neither a string nor a list", a.o.GroupsClaim)
	}
	return &Subject{Name: name, Tenant: tenant, Groups: groups, Kind: KindJWT}, nil
}

// jwtReason names why a token failed, for logs.
func jwtReason(err error) string {
	for _, e := range []struct {
		err    error
		reason string
	}{
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "bad signature or disallowed algorithm"},
		{ErrUnknownKey, "unknown signing key"},
		{jwt.ErrTokenExpired, "expired"},
		{jwt.ErrTokenNotValidYet, "not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "issued in the future"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenRequiredClaimMissing, "required claim missing"},
		{jwt.ErrTokenUnverifiable, "unverifiable"},
	} {
		if errors.Is(err, e.err) {
			return e.reason
		}
	}
	return "invalid token"
}

// validName reports whether s can serve as a subject, tenant or group: 1 to 256 bytes, printable,
// no spaces.
func validName(s string) bool {
	return s != "" && len(s) <= 256 && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) })
}
