package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/time/rate"
)

// MaxJWKSBytes bounds a key set or discovery document.
const MaxJWKSBytes = 1 << 20

// MinRSABits is the smallest RSA key accepted from a key set.
const MinRSABits = 2048

// ErrUnknownKey: the token names a key id the key set does not have, even after a refresh (or a
// refresh was not allowed yet).
var ErrUnknownKey = errors.New("unknown signing key")

// JWKSOptions configure a JWKS.
type JWKSOptions struct {
	// URL of the key set. When empty, Issuer's OpenID Connect discovery document names it.
	URL string
	// Issuer, for discovery.
	Issuer string
	// Client fetches; default a client without proxies from the environment.
	Client *http.Client
	// FetchTimeout bounds one fetch; default 5s.
	FetchTimeout time.Duration
	// RefreshInterval: keys older than this are fetched again before use; default 1h.
	RefreshInterval time.Duration
	// MinRefreshInterval: a token with an unknown key id fetches the set at most this often;
	// default 30s.
	MinRefreshInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// JWKS is a cached JSON Web Key Set. Keys are fetched on first use, again when older than the
// refresh interval, and early when a token names an unknown key id — at most once per minimum
// refresh interval, so that tokens with made-up key ids cannot make the gateway hammer the
// identity provider. Concurrent fetches are merged into one. When a fetch fails the keys held
// are kept.
type JWKS struct {
	o       JWKSOptions
	limiter *rate.Limiter

	mu       sync.Mutex
	keys     []jwk
	fetched  time.Time
	url      string    // discovered or configured
	failedAt time.Time // of the last failed fetch, zero after a success
	lastErr  error
	inflight *fetchCall
}

type fetchCall struct {
	done chan struct{}
	err  error
}

type jwk struct {
	kid string
	alg string // "" when the key does not say
	key crypto.PublicKey
}

// NewJWKS returns a key set that fetches lazily.
func NewJWKS(o JWKSOptions) *JWKS {
	if o.Client == nil {
		o.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 5 * time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = time.Hour
	}
	if o.MinRefreshInterval <= 0 {
		o.MinRefreshInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &JWKS{o: o, url: o.URL, limiter: rate.NewLimiter(rate.Every(o.MinRefreshInterval), 1)}
}

// keysFor returns the keys that may have signed a token with key id kid and algorithm alg.
func (j *JWKS) keysFor(ctx context.Context, kid, alg string) ([]crypto.PublicKey, error) {
	now := j.o.Now()
	j.mu.Lock()
	keys := match(j.keys, kid, alg)
	due := j.fetched.IsZero() || now.Sub(j.fetched) >= j.o.RefreshInterval
	failedRecently := !j.failedAt.IsZero() && now.Sub(j.failedAt) < j.o.MinRefreshInterval
	j.mu.Unlock()

	fetch := false
	switch {
	case due && !failedRecently:
		fetch = true
	case len(keys) > 0:
		return keys, nil
	case kid != "" && !failedRecently && j.limiter.AllowN(now, 1):
		fetch = true
	}
	if fetch {
		if err := j.refresh(ctx); err != nil {
			j.o.Logger.Warn("fetching the JWT key set failed; keeping the keys held", "err", err)
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if keys = match(j.keys, kid, alg); len(keys) > 0 {
		return keys, nil
	}
	if j.fetched.IsZero() && j.lastErr != nil {
		return nil, fmt.Errorf("%w: the key set could not be fetched: %w", ErrUnknownKey, j.lastErr)
	}
	return nil, ErrUnknownKey
}

func match(keys []jwk, kid, alg string) []crypto.PublicKey {
	var out []crypto.PublicKey
	for _, k := range keys {
		if (kid == "" || k.kid == kid) && (k.alg == "" || k.alg == alg) && keyFitsAlg(k.key, alg) {
			out = append(out, k.key)
		}
	}
	return out
}

func keyFitsAlg(k crypto.PublicKey, alg string) bool {
	switch k.(type) {
	case *rsa.PublicKey:
		return len(alg) == 5 && (alg[:2] == "RS" || alg[:2] == "PS")
	case *ecdsa.PublicKey:
		return len(alg) == 5 && alg[:2] == "ES"
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// refresh fetches the key set once, merging concurrent calls.
func (j *JWKS) refresh(ctx context.Context) error {
	j.mu.Lock()
	c := j.inflight
	if c == nil {
		c = &fetchCall{done: make(chan struct{})}
		j.inflight = c
		go func() {
			// Detached from the caller, so that one caller giving up does not fail the others.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), j.o.FetchTimeout)
			defer cancel()
			keys, url, err := j.fetch(fctx)
			j.mu.Lock()
			if err == nil {
				j.keys, j.url = keys, url
				j.fetched, j.failedAt, j.lastErr = j.o.Now(), time.Time{}, nil
			} else {
				j.failedAt, j.lastErr = j.o.Now(), err
			}
			c.err = err
			j.inflight = nil
			j.mu.Unlock()
			close(c.done)
		}()
	}
	j.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *JWKS) fetch(ctx context.Context) ([]jwk, string, error) {
	j.mu.Lock()
	url := j.url
	j.mu.Unlock()
	if url == "" {
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, j.o.Client), j.o.Issuer)
		if err != nil {
			return nil, "", fmt.Errorf("OpenID Connect discovery for %s: %w", j.o.Issuer, err)
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
			return nil, "", fmt.Errorf("OpenID Connect discovery for %s: no jwks_uri", j.o.Issuer)
		}
		url = meta.JWKSURI
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.o.Client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("fetching the JWT key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("fetching the JWT key set from %s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("reading the JWT key set: %w", err)
	}
	if len(body) > MaxJWKSBytes {
		return nil, "", fmt.Errorf("the JWT key set at %s is larger than %d bytes", url, MaxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, "", fmt.Errorf("the JWT key set at %s: %w", url, err)
	}
	return keys, url, nil
}

// parseJWKS parses a JSON Web Key Set, keeping the signature keys it can use (RSA of at least
// MinRSABits, EC on P-256/384/521, Ed25519) and skipping others. A set with no usable key is an
// error.
func parseJWKS(data []byte) ([]jwk, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	var out []jwk
	for _, raw := range set.Keys {
		var k struct {
			Kty, Kid, Alg, Use, Crv string
			N, E, X, Y              string
		}
		if json.Unmarshal(raw, &k) != nil || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub, err := parseJWK(k.Kty, k.Crv, k.N, k.E, k.X, k.Y)
		if err != nil {
			continue
		}
		if k.Alg != "" && !keyFitsAlg(pub, k.Alg) {
			continue
		}
		out = append(out, jwk{kid: k.Kid, alg: k.Alg, key: pub})
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signature key")
	}
	return out, nil
}

func parseJWK(kty, crv, n, e, x, y string) (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding
	switch kty {
	case "RSA":
		nb, err1 := b64.DecodeString(n)
		eb, err2 := b64.DecodeString(e)
		if err1 != nil || err2 != nil || len(eb) == 0 || len(eb) > 4 {
			return nil, errors.New("bad RSA key")
		}
		nn := new(big.Int).SetBytes(nb)
		ee := int(new(big.Int).SetBytes(eb).Int64())
		if nn.BitLen() < MinRSABits || ee < 3 || ee%2 == 0 {
			return nil, errors.New("weak RSA key")
		}
		return &rsa.PublicKey{N: nn, E: ee}, nil
	case "EC":
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		size := (curve.Params().BitSize + 7) / 8
		xb, err1 := b64.DecodeString(x)
		yb, err2 := b64.DecodeString(y)
		if err1 != nil || err2 != nil || len(xb) != size || len(yb) != size {
			return nil, errors.New("bad EC key")
		}
		return ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, xb...), yb...))
	case "OKP":
		xb, err := b64.DecodeString(x)
		if crv != "Ed25519" || err != nil || len(xb) != ed25519.PublicKeySize {
			return nil, errors.New("bad OKP key")
		}
		return ed25519.PublicKey(xb), nil
	}
	return nil, errors.New("unsupported key type")
}
