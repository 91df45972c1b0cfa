package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// marker stands for patient data in a task's request.
const marker = "MRN 9931-77 Jane Roe reports chest pain radiating to the left arm"

// journalFilesWith lists the journal files that hold marker in any stored form.
func journalFilesWith(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dataDir, "jetstream"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, f := range testutil.ReadableForms(marker) {
			if bytes.Contains(b, []byte(f)) {
				out = append(out, path)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sendMarked sends one task carrying marker and returns its id.
func sendMarked(t *testing.T, url string) string {
	t.Helper()
	r, err := post(t.Context(), url+"/agents/echo", sendV1(7, marker))
	if err != nil || r.Error != nil {
		t.Fatalf("send: %v %s", err, r.Body)
	}
	id, state := parseTask(r)
	if id == "" || state != "TASK_STATE_COMPLETED" {
		t.Fatalf("send answered %s", r.Body)
	}
	return id
}

// TestJournalEncryptedAtRest: with --journal-key-file, a task's request (patient data) is not on
// disk in any readable form, the journal reopens with the key, and another key is refused with a
// clear error instead of an empty journal. Without a key the same request is readable on disk,
// which shows the check can fail.
func TestJournalEncryptedAtRest(t *testing.T) {
	plain := startUp(t)
	sendMarked(t, plain.URL)
	if err := plain.stop(t); err != nil {
		t.Fatal(err)
	}
	if files := journalFilesWith(t, plain.DataDir); len(files) == 0 {
		t.Fatal("without a key the request should be readable in the journal; the check below would prove nothing")
	}

	keys := t.TempDir()
	keyFile, wrongFile := filepath.Join(keys, "journal.key"), filepath.Join(keys, "wrong.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongFile, []byte(strings.Repeat("w", 44)), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	up := startUp(t, "--data-dir", dataDir, "--journal-key-file", keyFile)
	id := sendMarked(t, up.URL)
	if err := up.stop(t); err != nil {
		t.Fatal(err)
	}
	if files := journalFilesWith(t, dataDir); len(files) > 0 {
		t.Fatalf("the request is readable on disk with encryption on: %v", files)
	}

	// Another key: refused at start, with a message that says why.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "up", "-f", "testdata/agents.yaml", "--listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--journal-key-file", wrongFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "encrypted with another key") {
		t.Fatalf("up with the wrong key: %v\n%s", err, out)
	}
	t.Logf("wrong key refused: %s", strings.TrimSpace(lastLine(string(out))))

	// The right key: the task is still there.
	again := startUp(t, "--data-dir", dataDir, "--journal-key-file", keyFile)
	r, err := post(t.Context(), again.URL+"/agents/echo", fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":%q}}`, id))
	if err != nil || r.Error != nil {
		t.Fatalf("GetTask after restart: %v %s", err, r.Body)
	}
	if _, state := parseTask(r); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("GetTask after restart: %s", r.Body)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestLargeTaskSurvivesARestart: a 7 MiB request (under the 8 MiB body limit) completes, and
// after `up` restarts on the same data directory GetTask still reads it completed. The journal
// once refused such records ("maximum payload exceeded") after answering the client, and the
// task was re-run and read failed or working.
func TestLargeTaskSurvivesARestart(t *testing.T) {
	dataDir := t.TempDir()
	up := startUp(t, "--data-dir", dataDir)
	text := strings.Repeat("large study notes ", (7<<20)/18)
	// 7 MiB through a race-built gateway and agent takes tens of seconds on a busy machine.
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	r, err := postWith(ctx, &http.Client{}, up.URL+"/agents/echo", sendV1(1, text)) // ctx bounds it
	if err != nil || r.Error != nil {
		t.Fatalf("7 MiB send: %v %.300s", err, r.Body)
	}
	id, state := parseTask(r)
	if state != "TASK_STATE_COMPLETED" {
		t.Fatalf("7 MiB send answered %.300s", r.Body)
	}
	if err := up.stop(t); err != nil {
		t.Fatal(err)
	}
	again := startUp(t, "--data-dir", dataDir)
	r, err = post(t.Context(), again.URL+"/agents/echo", fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"GetTask","params":{"id":%q}}`, id))
	if err != nil || r.Error != nil {
		t.Fatalf("GetTask after restart: %v %.300s", err, r.Body)
	}
	if _, state := parseTask(r); state != "TASK_STATE_COMPLETED" {
		t.Fatalf("GetTask of the 7 MiB task after restart: %.300s", r.Body)
	}
}
