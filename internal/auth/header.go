package auth

import (
	"errors"
	"net/http"
	"strings"
)

// MaxCredentialBytes bounds an Authorization or X-API-Key header value.
const MaxCredentialBytes = 16 << 10

// HeaderAPIKey carries an API key as an alternative to "Authorization: Bearer".
const HeaderAPIKey = "X-API-Key"

var errMalformed = errors.New("malformed Authorization header")

// ParseAuthorization parses an Authorization header value of the form `<scheme> <token68>`
// (RFC 9110 §11.4 with a token68 credential, the only form Bearer uses). Surrounding spaces and
// tabs are ignored and the scheme keeps its case; anything else — no credential, parameters,
// commas, inner spaces, control characters, or a value over MaxCredentialBytes — is an error.
func ParseAuthorization(h string) (scheme, credential string, err error) {
	if len(h) > MaxCredentialBytes {
		return "", "", errMalformed
	}
	h = strings.Trim(h, " \t")
	i := strings.IndexAny(h, " \t")
	if i <= 0 {
		return "", "", errMalformed
	}
	scheme, credential = h[:i], strings.TrimLeft(h[i:], " \t")
	if !isToken(scheme) || !isToken68(credential) {
		return "", "", errMalformed
	}
	return scheme, credential, nil
}

// FormatAuthorization is the inverse of ParseAuthorization.
func FormatAuthorization(scheme, credential string) string { return scheme + " " + credential }

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isToken68 reports whether s is an RFC 9110 token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~"
// / "+" / "/" ) *"=".
func isToken68(s string) bool {
	n := len(s)
	for n > 0 && s[n-1] == '=' {
		n--
	}
	if n == 0 {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
		default:
			return false
		}
	}
	return true
}

// looksLikeJWT reports whether a bearer credential has the three dot-separated parts of a JWS
// compact serialization. API keys never contain two dots, which is how the API-key and JWT
// authenticators tell their credentials apart.
func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

// credentials are what a request presents in its headers.
type credentials struct {
	bearer string // from Authorization: Bearer
	apiKey string // from X-API-Key
}

// readCredentials extracts the header credentials of r. More than one Authorization or
// X-API-Key header, both at once, a scheme other than Bearer, or a malformed value is an
// invalid credential: the request is ambiguous, and guessing would let one credential shadow
// another.
func readCredentials(r *http.Request) (credentials, error) {
	var c credentials
	authz := r.Header.Values("Authorization")
	keys := r.Header.Values(HeaderAPIKey)
	switch {
	case len(authz) > 1:
		return c, invalid("", "more than one Authorization header")
	case len(keys) > 1:
		return c, invalid("", "more than one X-API-Key header")
	case len(authz) == 1 && len(keys) == 1:
		return c, invalid("", "both Authorization and X-API-Key headers")
	}
	if len(authz) == 1 {
		scheme, cred, err := ParseAuthorization(authz[0])
		if err != nil {
			return c, invalid("", "malformed Authorization header")
		}
		if !strings.EqualFold(scheme, "Bearer") {
			return c, invalid("", "unsupported Authorization scheme (only Bearer)")
		}
		c.bearer = cred
	}
	if len(keys) == 1 {
		k := strings.Trim(keys[0], " \t")
		if k == "" || len(k) > MaxCredentialBytes || !isToken68(k) {
			return c, invalid("", "malformed X-API-Key header")
		}
		c.apiKey = k
	}
	return c, nil
}
