package store_test

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentplane/agentplane/internal/store"
)

const (
	phi = "Patient Jane Roe, DOB 1970-01-01, MRN 4417-22: chest pain since 3am" // must not reach the disk in clear
	key = "0123456789abcdef0123456789abcdef-test-key"
)

// request is the task's request as stored: a JSON-encoded []byte is base64.
var (
	request       = []byte(`{"text":"` + phi + `"}`)
	storedRequest = base64.StdEncoding.EncodeToString(request)
)

// writeTask opens a journal, stores a task carrying phi in its request and result, and closes it.
func writeTask(t *testing.T, opts store.Options) {
	t.Helper()
	j, err := store.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	task := &store.Task{ID: "t-1", Agent: "triage", Method: "SendMessage", Dialect: "1.0", State: store.StateDispatched,
		Subject: "dr.jane.roe@clinic.example", Request: request, Result: []byte(`{"echo":"` + phi + `"}`)}
	if err := j.Create(t.Context(), task); err != nil {
		t.Fatal(err)
	}
	if err := j.Enqueue(t.Context(), "t-1"); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// largeRequest is a request too large for one message: it is stored as blob chunks, raw.
var largeRequest = append([]byte(`{"text":"`+phi+`","scan":"`), append(bytes.Repeat([]byte("A"), 3<<20), `"}`...)...)

// writeLargeTask opens a journal, stores a task whose request (largeRequest) and answer are
// kept as blobs, and closes it.
func writeLargeTask(t *testing.T, opts store.Options) {
	t.Helper()
	j, err := store.Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	task := &store.Task{ID: "t-large", Agent: "triage", Method: "SendMessage", Dialect: "1.0", State: store.StateAccepted, Request: largeRequest}
	if err := j.Create(t.Context(), task); err != nil {
		t.Fatal(err)
	}
	task.State, task.Result = store.StateCompleted, append([]byte(`{"echo":"`+phi+`","pad":"`), append(bytes.Repeat([]byte("B"), 2<<20), `"}`...)...)
	if err := j.Update(t.Context(), task); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestEncryptionAtRestLarge: the blobs of a large task are encrypted too.
func TestEncryptionAtRestLarge(t *testing.T) {
	plain := testOptions(t.TempDir())
	writeLargeTask(t, plain)
	if files := filesWith(t, plain.DataDir, phi); len(files) == 0 {
		t.Fatal("without a key the large task should be stored in clear; the check below would prove nothing")
	}

	enc := testOptions(t.TempDir())
	enc.EncryptionKey = key
	writeLargeTask(t, enc)
	for _, clear := range []string{phi, base64.StdEncoding.EncodeToString([]byte(phi)), strings.Repeat("A", 64), strings.Repeat("B", 64)} {
		if files := filesWith(t, enc.DataDir, clear); len(files) > 0 {
			t.Fatalf("%.40q... in clear on disk with encryption on: %v", clear, files)
		}
	}
	j := open(t, enc)
	got, err := j.Get(t.Context(), "t-large")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Request, largeRequest) || !strings.Contains(string(got.Result), phi) {
		t.Fatalf("large task read back: request %d bytes, result %d bytes", len(got.Request), len(got.Result))
	}
}

// filesWith lists the files under dir that contain s.
func filesWith(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEncryptionAtRest: with a key, no stored byte shows the task's contents, and the journal
// opens again with that key only. Without a key the same contents are on disk in clear, which is
// what makes the first check mean something.
func TestEncryptionAtRest(t *testing.T) {
	plain := testOptions(t.TempDir())
	writeTask(t, plain)
	if files := filesWith(t, plain.DataDir, storedRequest); len(files) == 0 {
		t.Fatal("without a key the task should be stored in clear; the check below would prove nothing")
	}

	enc := testOptions(t.TempDir())
	enc.EncryptionKey = key
	writeTask(t, enc)
	for _, clear := range []string{storedRequest, "dr.jane.roe@clinic.example", `"agent":"triage"`} {
		if files := filesWith(t, enc.DataDir, clear); len(files) > 0 {
			t.Fatalf("%q in clear on disk with encryption on: %v", clear, files)
		}
	}
	if files := filesWith(t, enc.DataDir, key); len(files) > 0 {
		t.Fatalf("the key itself is on disk: %v", files)
	}

	// The same key reads the task back.
	j := open(t, enc)
	got, err := j.Get(t.Context(), "t-1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got.Request), phi) {
		t.Fatalf("request read back = %s", got.Request)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		opts func() store.Options
		want string
	}{
		{"another key", func() store.Options { o := enc; o.EncryptionKey = strings.Repeat("x", 40); return o }, "encrypted with another key"},
		{"no key", func() store.Options { o := enc; o.EncryptionKey = ""; return o }, "is encrypted: give its encryption key"},
		{"a key for a clear journal", func() store.Options { o := plain; o.EncryptionKey = key; return o }, "is not encrypted"},
		{"a short key", func() store.Options { o := testOptions(t.TempDir()); o.EncryptionKey = "short"; return o }, "at least 32"},
		{"a key with an external server", func() store.Options {
			return store.Options{URL: "nats://127.0.0.1:1", EncryptionKey: key}
		}, "external server encrypts with its own configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := store.Open(t.Context(), tc.opts())
			if err == nil {
				j.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
		})
	}
}

// A journal written before the key check existed (data, no record) opens without a key and is
// refused with one, rather than looking empty.
func TestEncryptionKeyOnLegacyJournal(t *testing.T) {
	opts := testOptions(t.TempDir())
	writeTask(t, opts)
	if err := os.Remove(filepath.Join(opts.DataDir, "journal-encryption")); err != nil {
		t.Fatal(err)
	}
	withKey := opts
	withKey.EncryptionKey = key
	if _, err := store.Open(t.Context(), withKey); err == nil || !strings.Contains(err.Error(), "written without encryption") {
		t.Fatalf("Open with a key on a clear legacy journal: %v", err)
	}
	j := open(t, opts)
	if _, err := j.Get(t.Context(), "t-1"); err != nil {
		t.Fatal(err)
	}
}
