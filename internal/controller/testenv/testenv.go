// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) with the
// agentplane CRDs installed, once per test binary, for the operator's and the gateway discovery's
// tests.
//
// The binaries come from $KUBEBUILDER_ASSETS, else from the cache directory that
// hack/k8s-binaries.sh fills. When neither has them, tests skip with a message saying how to get
// them, except under CI (CI set), where the suite fails: a suite that silently skips in CI proves
// nothing.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/agentplane/agentplane/internal/controller"
	"github.com/agentplane/agentplane/internal/testutil"
)

// KubeVersion is the Kubernetes release whose binaries the tests run against.
const KubeVersion = "1.37.1"

// Env is a running API server.
type Env struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Client is an uncached admin client with the agentplane scheme.
	Client client.Client
	// Env is the underlying envtest environment, for AddUser.
	Env *envtest.Environment
	// StartTime is how long the control plane took to start.
	StartTime time.Duration

	skip string
}

// Assets returns the directory holding kube-apiserver and etcd.
func Assets() (string, error) {
	dirs := []string{os.Getenv("KUBEBUILDER_ASSETS")}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "agentplane", "k8s-v"+KubeVersion, "bin"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if isExec(filepath.Join(d, "kube-apiserver")) && isExec(filepath.Join(d, "etcd")) {
			return d, nil
		}
		if d == dirs[0] {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s has no kube-apiserver and etcd; run hack/k8s-binaries.sh envtest", d)
		}
	}
	return "", errors.New("kube-apiserver and etcd not found: set KUBEBUILDER_ASSETS, or run `make envtest-assets` " +
		"(hack/k8s-binaries.sh envtest, ~8 min once, cached in ~/.cache/agentplane)")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Main starts the API server, runs the tests and stops it; use it from TestMain:
//
//	var env = &testenv.Env{}
//	func TestMain(m *testing.M) { testenv.Main(m, env) }
//
// It does not return (it calls os.Exit). Without binaries it fails under CI and otherwise lets
// each test skip through Require.
func Main(m *testing.M, e *Env) {
	assets, err := Assets()
	if err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "FAIL: the envtest suite needs a real API server under CI:", err)
			os.Exit(1)
		}
		e.skip = err.Error()
		fmt.Fprintln(os.Stderr, "envtest suite skipped:", err)
		os.Exit(m.Run())
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	e.Env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	cfg, err := e.Env.Start()
	if err != nil {
		_ = e.Env.Stop() // it may have started etcd and the API server before failing
		fmt.Fprintln(os.Stderr, "FAIL: starting kube-apiserver and etcd from", assets+":", err)
		os.Exit(1)
	}
	e.StartTime = time.Since(start)
	e.Config = cfg
	e.Client, err = client.New(cfg, client.Options{Scheme: controller.NewScheme()})
	if err != nil {
		_ = e.Env.Stop()
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "envtest: kube-apiserver v%s and etcd from %s started in %v\n", KubeVersion, assets, e.StartTime.Round(time.Millisecond))
	code := m.Run()
	if err := e.Env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// Require skips t when the suite runs without an API server (never under CI, see Main).
func (e *Env) Require(t testing.TB) {
	t.Helper()
	if e == nil || e.Config == nil {
		reason := "no API server"
		if e != nil && e.skip != "" {
			reason = e.skip
		}
		t.Skip(reason)
	}
}

// Namespace creates a namespace for one test and returns its name.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	e.Require(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := e.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), ns) })
	return ns.Name
}
