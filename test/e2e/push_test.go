package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// pushReceiver is a webhook that answers 500 while failing is set, and records every POST.
type pushReceiver struct {
	failing atomic.Bool
	mu      sync.Mutex
	got     []pushSeen
}

type pushSeen struct {
	id, token, task, state string
	failed                 bool
}

func (p *pushReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var v struct {
		Task struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"task"`
	}
	_ = json.Unmarshal(body, &v)
	s := pushSeen{id: r.Header.Get("X-Agentplane-Notification-Id"), token: r.Header.Get("X-A2A-Notification-Token"),
		task: v.Task.ID, state: v.Task.Status.State, failed: p.failing.Load()}
	p.mu.Lock()
	p.got = append(p.got, s)
	p.mu.Unlock()
	if s.failed {
		http.Error(w, "receiver down", http.StatusInternalServerError)
	}
}

// seen returns the POSTs of task id in state, failed or not.
func (p *pushReceiver) seen(id, state string, failed bool) []pushSeen {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pushSeen
	for _, s := range p.got {
		if s.task == id && s.state == state && s.failed == failed {
			out = append(out, s)
		}
	}
	return out
}

// TestPushNotificationSurvivesAGatewayCrash: an async task with a push config completes while
// its webhook fails; agentplane up is killed with SIGKILL while the notification waits for its
// next retry, started again on the same data directory, and the notification arrives, with
// the same notification id as before the crash.
func TestPushNotificationSurvivesAGatewayCrash(t *testing.T) {
	recv := &pushReceiver{}
	recv.failing.Store(true)
	hook := httptest.NewServer(recv)
	defer hook.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: agentplane.io/v1alpha1
kind: GatewayConfig
pushNotifications:
  allowedNetworks: [127.0.0.1/32]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	up := startUp(t, "-f", "testdata/async.yaml", "--config", cfg, "--data-dir", dataDir)
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"messageId":"push-1","role":"ROLE_USER","parts":[{"text":"CT head"}]},`+
		`"configuration":{"returnImmediately":true,"taskPushNotificationConfig":{"url":%q,"token":"e2e-token"}}}}`, hook.URL+"/a2a/push")
	r, err := post(t.Context(), up.URL+"/agents/batch", body)
	if err != nil || r.Error != nil {
		t.Fatalf("async send: %v %s", err, r.Body)
	}
	id, state := parseTask(r)
	if id == "" || state != "TASK_STATE_SUBMITTED" {
		t.Fatalf("async send answered %s", r.Body)
	}
	// The task completes; its notification fails twice and waits for its next retry.
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		n := len(recv.seen(id, "TASK_STATE_COMPLETED", true))
		return testutil.Check(n >= 2, "%d failed notifications of the completed task, want 2", n)
	})
	before := recv.seen(id, "TASK_STATE_COMPLETED", true)
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-up.done
	up.done <- nil
	t.Logf("killed agentplane up with the notification of task %s pending after %d failed POSTs", id, len(before))

	startUp(t, "-f", "testdata/async.yaml", "--config", cfg, "--data-dir", dataDir)
	recv.failing.Store(false)
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() error {
		return testutil.Check(len(recv.seen(id, "TASK_STATE_COMPLETED", false)) > 0, "the completed task's notification has not arrived after the restart")
	})
	got := recv.seen(id, "TASK_STATE_COMPLETED", false)[0]
	if got.token != "e2e-token" {
		t.Errorf("token header = %q, want e2e-token", got.token)
	}
	if got.id != before[0].id || !strings.HasPrefix(got.id, id+":") {
		t.Errorf("notification id after the restart %q, before %q: want one id, starting with the task id", got.id, before[0].id)
	}
	t.Logf("REPORT push notification after kill -9 and restart: delivered, id %s, %d failed POSTs before", got.id, len(recv.seen(id, "TASK_STATE_COMPLETED", true)))
}
