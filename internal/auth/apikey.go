package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// MinKeyLength is the shortest raw API key accepted from a file or the environment. Keys are
// meant to be random (IssueKey makes 256-bit ones), so that their SHA-256 is a safe verifier.
const MinKeyLength = 32

// IssuedKeyPrefix starts keys made by IssueKey, so that secret scanners can recognise them.
const IssuedKeyPrefix = "apk_"

// KeyStore authenticates API keys: "Authorization: Bearer <key>" (a bearer that is not shaped
// like a JWT) or "X-API-Key: <key>". It keeps only the SHA-256 of each key and compares the
// presented key's hash against every stored hash in constant time, so that the time taken says
// nothing about which stored key, if any, is near. Keys can be added and revoked while it serves.
type KeyStore struct {
	mu      sync.Mutex                 // serializes writers
	entries atomic.Pointer[[]keyEntry] // copy-on-write; readers never lock
	nextID  uint64
}

type keyEntry struct {
	id      uint64
	hash    [sha256.Size]byte
	subject *Subject
}

var _ Authenticator = (*KeyStore)(nil)

// NewKeyStore returns an empty store.
func NewKeyStore() *KeyStore {
	k := &KeyStore{}
	k.entries.Store(&[]keyEntry{})
	return k
}

// HashKey returns the lowercase hex SHA-256 of key, the form apiKeys[].sha256 takes.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// AddHash adds a key by the hex SHA-256 HashKey returns. It returns a function that revokes it.
func (k *KeyStore) AddHash(hexHash string, s Subject) (revoke func(), err error) {
	var h [sha256.Size]byte
	if n, err := hex.Decode(h[:], []byte(hexHash)); err != nil || n != sha256.Size {
		return nil, errors.New("auth: a key hash must be 64 hex digits")
	}
	return k.add(h, s)
}

// AddKey adds a raw key, of at least MinKeyLength token68 characters (letters, digits and
// -._~+/), keeping only its hash. It returns a function that revokes it.
func (k *KeyStore) AddKey(key string, s Subject) (revoke func(), err error) {
	if len(key) < MinKeyLength || len(key) > MaxCredentialBytes || !isToken68(key) {
		return nil, fmt.Errorf("auth: an API key must be %d to %d characters of letters, digits and -._~+/", MinKeyLength, MaxCredentialBytes)
	}
	if looksLikeJWT(key) {
		return nil, errors.New("auth: an API key must not contain two dots, or it reads as a JWT")
	}
	return k.add(sha256.Sum256([]byte(key)), s)
}

// IssueKey makes a random 256-bit key for s, adds it, and returns it with its revoke function.
// The supervisor uses it to give each agent replica its own key (see IssueAgentKey).
func (k *KeyStore) IssueKey(s Subject) (key string, revoke func(), err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	key = IssuedKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	revoke, err = k.AddKey(key, s)
	return key, revoke, err
}

// IssueAgentKey issues a key whose subject is "agent:<agent>" of kind agent in tenant, for an
// agent's replica calling the gateway (the supervisor passes it in AGENTPLANE_TOKEN).
func (k *KeyStore) IssueAgentKey(agent, tenant string) (key string, revoke func(), err error) {
	if agent == "" {
		return "", nil, errors.New("auth: agent name is empty")
	}
	return k.IssueKey(AgentSubject(agent, tenant))
}

// AgentSubject is the subject of agent's replicas.
func AgentSubject(agent, tenant string) Subject {
	return Subject{Name: AgentPrefix + agent, Tenant: tenant, Kind: KindAgent}
}

func (k *KeyStore) add(h [sha256.Size]byte, s Subject) (func(), error) {
	if s.Name == "" {
		return nil, errors.New("auth: subject name is empty")
	}
	if s.Kind == "" {
		s.Kind = KindAPIKey
	}
	s.Groups = slices.Clone(s.Groups)
	k.mu.Lock()
	defer k.mu.Unlock()
	old := *k.entries.Load()
	for _, e := range old {
		if e.hash == h {
			return nil, errors.New("auth: this key is already registered")
		}
	}
	k.nextID++
	id := k.nextID
	next := append(slices.Clip(old), keyEntry{id: id, hash: h, subject: &s})
	k.entries.Store(&next)
	return func() { k.remove(id) }, nil
}

func (k *KeyStore) remove(id uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := *k.entries.Load()
	next := slices.DeleteFunc(slices.Clone(old), func(e keyEntry) bool { return e.id == id })
	k.entries.Store(&next)
}

// Len returns how many keys are registered.
func (k *KeyStore) Len() int { return len(*k.entries.Load()) }

// Authenticate implements Authenticator.
func (k *KeyStore) Authenticate(r *http.Request) (*Subject, error) {
	c, err := readCredentials(r)
	if err != nil {
		return nil, err
	}
	key := c.apiKey
	if key == "" {
		if c.bearer == "" || looksLikeJWT(c.bearer) {
			return nil, none(KindAPIKey, "no API key")
		}
		key = c.bearer
	}
	s := k.lookup(key)
	if s == nil {
		return nil, invalid(KindAPIKey, "unknown API key")
	}
	out := *s
	out.Groups = slices.Clone(s.Groups)
	return &out, nil
}

// lookup compares the key's hash with every stored hash, never stopping early.
func (k *KeyStore) lookup(key string) *Subject {
	h := sha256.Sum256([]byte(key))
	var found *Subject
	for _, e := range *k.entries.Load() {
		if subtle.ConstantTimeCompare(e.hash[:], h[:]) == 1 {
			found = e.subject
		}
	}
	return found
}
