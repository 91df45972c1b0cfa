package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is one audit entry. The Writer sets Seq, Time, PrevHash and Hash (and the header fields
// Kind, File, PrevFile, Alg of a file's first record); the caller fills the rest. No field may
// hold message content, tokens or patient identifiers.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Kind is empty for a call and KindFile for the header record that starts each file.
	Kind string `json:"kind,omitempty"`
	// Route is what was called: "a2a" for an agent call, else the route's pattern
	// ("GET /api/v1/tasks", "GET /agents/{name}/.well-known/agent-card.json", ...).
	Route      string `json:"route,omitempty"`
	Subject    string `json:"subject,omitempty"`
	Tenant     string `json:"tenant,omitempty"`
	Agent      string `json:"agent,omitempty"`
	Method     string `json:"method,omitempty"`
	TaskID     string `json:"taskId,omitempty"`
	Outcome    string `json:"outcome,omitempty"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	LatencyMs  int64  `json:"latencyMs,omitempty"`
	Replica    string `json:"replica,omitempty"`
	Site       string `json:"site,omitempty"`
	// Via is, for a task another gateway of the fleet forwarded here, that gateway's id: the
	// Subject is the caller it authenticated.
	Via string `json:"via,omitempty"`
	// File is, in a header record, the name this file was created with.
	File string `json:"file,omitempty"`
	// PrevFile is, in a header record, the name of the file before it in the chain.
	PrevFile string `json:"prevFile,omitempty"`
	// Alg is, in a header record, AlgSHA256 or AlgHMACSHA256: how this file's hashes are made.
	Alg      string `json:"alg,omitempty"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash,omitempty"`
}

// Record kinds and hash algorithms.
const (
	KindFile      = "file"
	AlgSHA256     = "sha256"
	AlgHMACSHA256 = "hmac-sha256"
)

// MaxFieldBytes bounds each string field of a record; longer values are cut.
const MaxFieldBytes = 256

// MinKeyBytes is the shortest HMAC key accepted.
const MinKeyBytes = 32

// Sink receives audit records. Write returns once the record is durable as configured; the
// gateway calls it before it completes the response, and fails the request if it errors.
type Sink interface {
	Write(ctx context.Context, r Record) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, r Record) error

// Write calls f(ctx, r).
func (f SinkFunc) Write(ctx context.Context, r Record) error { return f(ctx, r) }

// hashSuffix is what follows the canonical body in a line: `,"hash":"<64 hex>"}`.
const hashSuffixLen = len(`,"hash":"`) + 64 + len(`"}`)

// canonical returns the record's JSON without its hash: the bytes that are hashed.
func canonical(r *Record) ([]byte, error) {
	c := *r
	c.Hash = ""
	return json.Marshal(&c)
}

// sum returns the hex hash of body: SHA-256, or HMAC-SHA-256 when key is set.
func sum(key, body []byte) string {
	if len(key) > 0 {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// encodeLine returns the record as one line with its hash, and sets r.Hash.
func encodeLine(r *Record, key []byte) ([]byte, error) {
	body, err := canonical(r)
	if err != nil {
		return nil, err
	}
	r.Hash = sum(key, body)
	return sealLine(body, "hash", r.Hash), nil
}

// sealLine is the canonical JSON object body with one more string field, name, appended last,
// as one line: how a record carries its hash and a checkpoint its signature.
func sealLine(body []byte, name, value string) []byte {
	line := make([]byte, 0, len(body)+len(name)+len(value)+8)
	line = append(line, body[:len(body)-1]...)
	line = append(line, `,"`...)
	line = append(line, name...)
	line = append(line, `":"`...)
	line = append(line, value...)
	line = append(line, `"}`...)
	return append(line, '\n')
}

// decodeLine parses one line (without its newline) and checks that it is exactly what
// encodeLine would write for the record it holds, so that no byte can change unnoticed: not a
// field, not the order of keys, not whitespace, not a duplicate or unknown key. It returns the
// record and the canonical body its hash covers.
func decodeLine(line []byte) (*Record, []byte, error) {
	if len(line) < hashSuffixLen+2 || !bytes.HasPrefix(line[len(line)-hashSuffixLen:], []byte(`,"hash":"`)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return nil, nil, errors.New("not a record: it does not end with its hash")
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, nil, fmt.Errorf("not a record: %v", err)
	}
	if dec.More() {
		return nil, nil, errors.New("not a record: more than one JSON value on the line")
	}
	body, err := canonical(&r)
	if err != nil {
		return nil, nil, fmt.Errorf("not a record: %v", err)
	}
	want := make([]byte, 0, len(line))
	want = append(want, body[:len(body)-1]...)
	want = append(want, `,"hash":"`...)
	want = append(want, r.Hash...)
	want = append(want, `"}`...)
	if !bytes.Equal(want, line) {
		return nil, nil, errors.New("record is not in canonical form: it was edited")
	}
	return &r, body, nil
}

// sanitize makes caller-supplied fields valid UTF-8 of bounded length, so that the canonical
// encoding is stable and one record cannot grow without bound.
func sanitize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// LoadKey reads an HMAC key from file or, when file is empty, from the environment variable env.
// Surrounding whitespace is dropped; the rest must be at least MinKeyBytes long. Both empty
// means no key.
func LoadKey(file, env string) ([]byte, error) {
	var raw string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the audit HMAC key: %w", err)
		}
		raw = string(b)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("the audit HMAC key variable %s is not set", env)
		}
		raw = v
	default:
		return nil, nil
	}
	key := []byte(strings.TrimSpace(raw))
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("the audit HMAC key must be at least %d bytes", MinKeyBytes)
	}
	return key, nil
}
