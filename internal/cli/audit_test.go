package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/audit"
)

func runAudit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newAuditCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exitError); ok {
			code = ee.code
		}
		return out.String() + err.Error(), code
	}
	return out.String(), code
}

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "audit.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, _ := audit.LoadKey(keyFile, "")
	logDir := filepath.Join(dir, "audit")
	w, err := audit.Open(audit.Options{Path: filepath.Join(logDir, "audit.jsonl"), HMACKey: key, MaxFileBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if err := w.Write(t.Context(), audit.Record{Subject: "s", Tenant: "t", Agent: "a", Method: "SendMessage", Outcome: "ok", HTTPStatus: 200}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()

	out, code := runAudit(t, "verify", "--hmac-key-file", keyFile, logDir)
	if code != 0 || !strings.Contains(out, "audit log intact") || !strings.Contains(out, "HMAC-SHA-256") {
		t.Fatalf("intact log: code %d\n%s", code, out)
	}
	out, code = runAudit(t, "verify", logDir)
	if code != 1 || !strings.Contains(out, "give its key") {
		t.Fatalf("keyed log without key: code %d\n%s", code, out)
	}
	files, _ := filepath.Glob(filepath.Join(logDir, "*.jsonl"))
	b, _ := os.ReadFile(files[1])
	_ = os.WriteFile(files[1], bytes.Replace(b, []byte(`"outcome":"ok"`), []byte(`"outcome":"no"`), 1), 0o600)
	out, code = runAudit(t, "verify", "--hmac-key-file", keyFile, logDir)
	if code != 1 || !strings.Contains(out, files[1]+":2: seq") || !strings.Contains(out, "edited") {
		t.Fatalf("edited log: code %d\n%s", code, out)
	}
	if _, code = runAudit(t, "verify", filepath.Join(dir, "missing")); code != 2 {
		t.Fatalf("missing file: code %d", code)
	}
}

func TestAuditVerifyCheckpoints(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "checkpoint.key")
	if err := os.WriteFile(keyFile, []byte("a checkpoint key of 32 bytes or more\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, _ := audit.LoadKey(keyFile, "")
	logDir, cpPath := filepath.Join(dir, "audit"), filepath.Join(dir, "elsewhere", "checkpoints.jsonl")
	taken := time.Now().Add(-2 * time.Hour)
	w, err := audit.Open(audit.Options{Path: filepath.Join(logDir, "audit.jsonl"), MaxFileBytes: 4096,
		Now: func() time.Time { return taken }, Checkpoints: &audit.CheckpointOptions{Path: cpPath, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if err := w.Write(t.Context(), audit.Record{Subject: "s", Tenant: "t", Agent: "a", Method: "SendMessage", Outcome: "ok", HTTPStatus: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	out, code := runAudit(t, "verify", "--checkpoints", cpPath, "--checkpoint-key", keyFile, logDir)
	// "taken 2h0m" and some seconds: the verify runs a little later.
	if code != 0 || !strings.Contains(out, "checkpoints: 1 signed") || !strings.Contains(out, "taken 2h0m") ||
		!strings.Contains(out, "0 record(s) after the newest checkpoint") {
		t.Fatalf("intact log: code %d\n%s", code, out)
	}
	if out, code = runAudit(t, "verify", "--checkpoints", cpPath, "--checkpoint-key", keyFile, "--max-checkpoint-age", "1h", logDir); code != 1 || !strings.Contains(out, "more than --max-checkpoint-age") {
		t.Fatalf("old checkpoint with --max-checkpoint-age: code %d\n%s", code, out)
	}
	if out, code = runAudit(t, "verify", "--checkpoints", cpPath, logDir); code != 2 || !strings.Contains(out, "give --checkpoint-key") {
		t.Fatalf("no checkpoint key: code %d\n%s", code, out)
	}

	// The newest file deleted: the chain is intact without the checkpoints, broken with them.
	files, _ := filepath.Glob(filepath.Join(logDir, "*.jsonl"))
	if err := os.Remove(files[len(files)-1]); err != nil {
		t.Fatal(err)
	}
	if out, code = runAudit(t, "verify", logDir); code != 0 {
		t.Fatalf("newest file deleted, without checkpoints: code %d\n%s", code, out)
	}
	out, code = runAudit(t, "verify", "--checkpoints", cpPath, "--checkpoint-key", keyFile, logDir)
	if code != 1 || !strings.Contains(out, "audit log broken") || !strings.Contains(out, "newest files deleted") {
		t.Fatalf("newest file deleted, with checkpoints: code %d\n%s", code, out)
	}
}
