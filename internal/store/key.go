package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidID is returned for a task id the journal cannot store: empty, or longer than
// MaxIDLen bytes.
var ErrInvalidID = errors.New("invalid task id")

// MaxIDLen is the longest task id the journal accepts, in bytes.
const MaxIDLen = 512

// encodedKeyMark starts every encoded key. It is a valid KV key character that plain keys never
// contain, so the mapping from ids to keys is one to one.
const encodedKeyMark = "="

// encodeKey maps a task id to a JetStream KV key. Ids made only of ASCII letters, digits, '-'
// and '_' (UUIDs, ULIDs, the gateway's own ids) are used as they are, so keys stay readable in
// `nats kv` tools; any other id becomes "=" followed by its unpadded base64url encoding.
func encodeKey(id string) (string, error) {
	if id == "" || len(id) > MaxIDLen {
		return "", fmt.Errorf("%w: length %d", ErrInvalidID, len(id))
	}
	if plainID(id) {
		return id, nil
	}
	return encodedKeyMark + base64.RawURLEncoding.EncodeToString([]byte(id)), nil
}

// decodeKey is the inverse of encodeKey.
func decodeKey(key string) (string, error) {
	rest, ok := strings.CutPrefix(key, encodedKeyMark)
	if !ok {
		if key == "" || !plainID(key) {
			return "", fmt.Errorf("%w: key %q", ErrInvalidID, key)
		}
		return key, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("%w: key %q", ErrInvalidID, key)
	}
	return string(b), nil
}

func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
