package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Kubernetes commands refuse bad settings before they contact any cluster.
func TestKubeCommandsRefuseBadSettings(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	shortKey := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(shortKey, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"gateway on a remote address without authentication", []string{"gateway", "--listen", ":8080"}, 2, "not a loopback address"},
		{"gateway journal sync", []string{"gateway", "--journal-sync", "sometimes"}, 2, "--journal-sync"},
		{"gateway queue timeout", []string{"gateway", "--queue-timeout", "0s"}, 2, "--queue-timeout"},
		{"gateway journal key file missing", []string{"gateway", "--journal-key-file", missing}, 2, "--journal-key-file"},
		{"gateway journal key too short", []string{"gateway", "--journal-key-file", shortKey}, 2, "needs at least 32"},
		{"gateway profiling on a remote address", []string{"gateway", "--pprof-listen", ":6060", "--kubeconfig", missing, "--data-dir", t.TempDir()}, 2, "must be a loopback address"},
		{"gateway without a cluster", []string{"gateway", "--kubeconfig", missing, "--data-dir", t.TempDir()}, 1, "kubernetes client config"},
		{"operator log level", []string{"operator", "--log-level", "loud"}, 2, "--log-level"},
		{"operator without a cluster", []string{"operator", "--kubeconfig", missing}, 1, "kubernetes client config"},
		{"operator autoscale interval", []string{"operator", "--autoscale-interval", "0s", "--kubeconfig", missing}, 2, "--autoscale-interval"},
		{"operator gateway token file missing", []string{"operator", "--gateway-token-file", missing, "--kubeconfig", missing}, 2, "--gateway-token-file"},
		{"operator gateway token file empty", []string{"operator", "--gateway-token-file", empty, "--kubeconfig", missing}, 2, "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			streams := Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}
			root := NewRootCommand(streams)
			if c, _, err := root.Find([]string{tc.args[0]}); err != nil || c == root {
				// Until root.go registers them.
				root.AddCommand(newOperatorCommand(streams), newGatewayCommand(streams))
			}
			root.SetArgs(tc.args)
			err := root.ExecuteContext(t.Context())
			if err == nil {
				t.Fatal("accepted")
			}
			code := 1
			var ee *exitError
			if errors.As(err, &ee) {
				code = ee.code
			}
			if code != tc.code || !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("exit %d %q, want exit %d mentioning %q", code, err, tc.code, tc.contains)
			}
		})
	}
}
