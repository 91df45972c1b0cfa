package cli

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// The Kubernetes commands refuse bad settings before they contact any cluster.
func TestKubeCommandsRefuseBadSettings(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	cases := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"gateway on a remote address without authentication", []string{"gateway", "--listen", ":8080"}, 2, "not a loopback address"},
		{"gateway journal sync", []string{"gateway", "--journal-sync", "sometimes"}, 2, "--journal-sync"},
		{"gateway without a cluster", []string{"gateway", "--kubeconfig", missing, "--data-dir", t.TempDir()}, 1, "kubernetes client config"},
		{"operator log level", []string{"operator", "--log-level", "loud"}, 2, "--log-level"},
		{"operator without a cluster", []string{"operator", "--kubeconfig", missing}, 1, "kubernetes client config"},
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
