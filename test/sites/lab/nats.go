package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentplane/agentplane/internal/testutil"
)

// natsModule is nats-server's module; its root is the server's main package.
const natsModule = "github.com/nats-io/nats-server/v2"

// natsBuild keeps the tests of one process from building nats-server at the same time, and
// natsPath remembers what it built or found.
var (
	natsBuild sync.Mutex
	natsPath  string
)

// NATSServer returns the path of a nats-server binary of the version go.mod requires. It is
// built once per machine into $HOME/.cache/agentplane/bin/nats-server-<version>, under a
// temporary name first, so that a build that was killed leaves no partial binary.
func NATSServer(t testing.TB) string {
	t.Helper()
	natsBuild.Lock()
	defer natsBuild.Unlock()
	if natsPath == "" {
		path, err := buildNATSServer(t.Context())
		if err != nil {
			t.Fatalf("nats-server: %v", err)
		}
		natsPath = path
	}
	return natsPath
}

func buildNATSServer(ctx context.Context) (string, error) {
	root, err := testutil.RepoRoot()
	if err != nil {
		return "", err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building nats-server needs the go command in PATH: %w", err)
	}
	version, err := goOutput(ctx, root, goCmd, "list", "-m", "-f", "{{.Version}}", natsModule)
	if err != nil {
		return "", fmt.Errorf("find the version go.mod requires: %w", err)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w", err)
	}
	dir := filepath.Join(home, ".cache", "agentplane", "bin")
	path := filepath.Join(dir, "nats-server-"+version)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create the cache directory: %w", err)
	}
	removeStaleBuilds(dir)
	tmp, err := os.MkdirTemp(dir, ".nats-server-build-")
	if err != nil {
		return "", fmt.Errorf("create a build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "nats-server")
	if _, err := goOutput(ctx, root, goCmd, "build", "-trimpath", "-o", out, natsModule); err != nil {
		return "", err
	}
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("move the built nats-server into the cache: %w", err)
	}
	return path, nil
}

// removeStaleBuilds removes build directories that killed builds left, an hour after.
func removeStaleBuilds(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, ".nats-server-build-*"))
	for _, d := range stale {
		if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > time.Hour {
			_ = os.RemoveAll(d)
		}
	}
}

// goOutput runs the go command in dir and returns its trimmed standard output.
func goOutput(ctx context.Context, dir, goCmd string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s (in %s): %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// Failure detection of the servers the configurations describe: a peer that stops answering is
// given up after PingMax pings PingInterval apart, a few seconds rather than minutes.
const (
	defaultPingInterval = time.Second
	defaultPingMax      = 3
)

// JetStream limits of each server, so that several on one machine do not each claim most of
// its memory and disk.
const (
	maxMemoryStore = 256 << 20
	maxFileStore   = 2 << 30
)

// ClusterConfig is the configuration of a hub server with JetStream: a member of a JetStream
// cluster, or with no ClusterName a hub of its own, optionally accepting leaf connections.
type ClusterConfig struct {
	ServerName string // server_name; required
	Listen     string // client host:port; required
	Monitor    string // monitoring host:port (http); empty for none
	StoreDir   string // JetStream's store_dir; required
	Domain     string // JetStream domain; empty for none

	ClusterName   string   // cluster name; empty for a server without a cluster
	ClusterListen string   // cluster host:port; required with ClusterName
	Routes        []string // route URLs, nats://host:port: each other member, or a proxy to it

	LeafListen string // host:port where leaf servers connect; empty for none

	PingInterval time.Duration // between pings on client, leaf and route connections; 0 is 1s
	PingMax      int           // unanswered pings before a connection is closed; 0 is 3
}

// Render returns the configuration file's text. Routes are not advertised (no_advertise), so
// that members only use the routes given, which may be delaying proxies.
func (c ClusterConfig) Render() (string, error) {
	var w confWriter
	interval, pings := w.server(c.ServerName, c.Listen, c.Monitor, c.PingInterval, c.PingMax)
	w.jetStream(c.StoreDir, c.Domain)
	if c.ClusterName != "" {
		w.open("cluster")
		w.str("name", c.ClusterName, true)
		w.str("listen", c.ClusterListen, true)
		w.boolean("no_advertise", true)
		w.duration("ping_interval", interval)
		w.number("ping_max", pings)
		w.list("routes", c.Routes)
		w.close()
	} else if c.ClusterListen != "" || len(c.Routes) > 0 {
		w.fail("ClusterListen and Routes need a ClusterName")
	}
	if c.LeafListen != "" {
		w.open("leafnodes")
		w.str("listen", c.LeafListen, true)
		w.close()
	}
	return w.result()
}

// server writes what every server's configuration starts with: its name, client and monitoring
// addresses, and its pings, and returns the ping settings it used.
func (w *confWriter) server(name, listen, monitor string, pingInterval time.Duration, pingMax int) (time.Duration, int) {
	w.str("server_name", name, true)
	w.str("listen", listen, true)
	w.str("http", monitor, false)
	interval, pings := pingDefaults(pingInterval, pingMax)
	w.duration("ping_interval", interval)
	w.number("ping_max", pings)
	return interval, pings
}

// WriteFile writes the configuration to path.
func (c ClusterConfig) WriteFile(t testing.TB, path string) {
	t.Helper()
	writeConfig(t, path, c.ServerName, c.Render)
}

// LeafConfig is the configuration of a leaf server, such as a clinic's: its own JetStream in
// its own domain, connected to a hub as a leaf.
type LeafConfig struct {
	ServerName string   // server_name; required
	Listen     string   // client host:port; required
	Monitor    string   // monitoring host:port (http); empty for none
	StoreDir   string   // JetStream's store_dir; required
	Domain     string   // JetStream domain; required, so that its JetStream stays its own
	Remotes    []string // the hub's leaf URLs, nats://host:port, or proxies to it; required

	Reconnect    time.Duration // wait between attempts to reach the hub; 0 is 1s
	PingInterval time.Duration // between pings on client and leaf connections; 0 is 1s
	PingMax      int           // unanswered pings before a connection is closed; 0 is 3
}

// Render returns the configuration file's text.
func (c LeafConfig) Render() (string, error) {
	var w confWriter
	w.server(c.ServerName, c.Listen, c.Monitor, c.PingInterval, c.PingMax)
	if c.Domain == "" {
		w.fail("a leaf server needs a JetStream Domain, or its JetStream would merge with the hub's")
	}
	w.jetStream(c.StoreDir, c.Domain)
	if len(c.Remotes) == 0 {
		w.fail("a leaf server needs Remotes, the hub's leaf URLs")
	}
	reconnect := c.Reconnect
	if reconnect <= 0 {
		reconnect = time.Second
	}
	w.open("leafnodes")
	w.duration("reconnect", reconnect)
	w.line("remotes: [")
	w.depth++
	for _, url := range c.Remotes {
		w.open("")
		w.str("url", url, true)
		w.close()
	}
	w.depth--
	w.line("]")
	w.close()
	return w.result()
}

// WriteFile writes the configuration to path.
func (c LeafConfig) WriteFile(t testing.TB, path string) {
	t.Helper()
	writeConfig(t, path, c.ServerName, c.Render)
}

func writeConfig(t testing.TB, path, server string, render func() (string, error)) {
	t.Helper()
	text, err := render()
	if err != nil {
		t.Fatalf("configuration of nats-server %q: %v", server, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("configuration of nats-server %q: %v", server, err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatalf("configuration of nats-server %q: %v", server, err)
	}
}

func pingDefaults(interval time.Duration, pings int) (time.Duration, int) {
	if interval <= 0 {
		interval = defaultPingInterval
	}
	if pings <= 0 {
		pings = defaultPingMax
	}
	return interval, pings
}

// confWriter writes a nats-server configuration file; the first problem found is its error.
type confWriter struct {
	b     strings.Builder
	depth int
	err   error
}

func (w *confWriter) fail(format string, args ...any) {
	if w.err == nil {
		w.err = fmt.Errorf(format, args...)
	}
}

func (w *confWriter) line(s string) {
	w.b.WriteString(strings.Repeat("  ", w.depth))
	w.b.WriteString(s)
	w.b.WriteByte('\n')
}

// quote quotes a string value. The format has escapes, but none of our values needs them, so
// a value that would is refused rather than escaped.
func (w *confWriter) quote(key, val string) string {
	if strings.ContainsAny(val, "\"\\\n\r$") {
		w.fail("%s %q: quotes, backslashes, dollar signs and line breaks are not supported", key, val)
	}
	return `"` + val + `"`
}

// str writes key: "val"; an empty val is left out, or is an error when required.
func (w *confWriter) str(key, val string, required bool) {
	if val == "" {
		if required {
			w.fail("%s is required", key)
		}
		return
	}
	w.line(key + ": " + w.quote(key, val))
}

func (w *confWriter) number(key string, n int) { w.line(fmt.Sprintf("%s: %d", key, n)) }

func (w *confWriter) boolean(key string, v bool) { w.line(fmt.Sprintf("%s: %t", key, v)) }

func (w *confWriter) duration(key string, d time.Duration) {
	w.line(key + ": " + w.quote(key, d.String()))
}

func (w *confWriter) list(key string, vals []string) {
	w.line(key + ": [")
	w.depth++
	for _, v := range vals {
		w.line(w.quote(key, v))
	}
	w.depth--
	w.line("]")
}

// open starts a block, key { ... }, or an anonymous map in a list when key is empty.
func (w *confWriter) open(key string) {
	if key == "" {
		w.line("{")
	} else {
		w.line(key + " {")
	}
	w.depth++
}

func (w *confWriter) close() {
	w.depth--
	w.line("}")
}

func (w *confWriter) jetStream(storeDir, domain string) {
	w.open("jetstream")
	w.str("store_dir", storeDir, true)
	w.str("domain", domain, false)
	w.number("max_memory_store", maxMemoryStore)
	w.number("max_file_store", maxFileStore)
	w.close()
}

func (w *confWriter) result() (string, error) {
	if w.err != nil {
		return "", w.err
	}
	return w.b.String(), nil
}

// WaitHealthy waits until the nats-server whose monitoring port is at monitorAddr (host:port)
// answers its health check with JetStream enabled (/healthz?js-enabled-only=true), and fails t
// when it does not within timeout. Being healthy this way does not mean a cluster has formed.
func WaitHealthy(t testing.TB, monitorAddr string, timeout time.Duration) {
	t.Helper()
	url := "http://" + monitorAddr + "/healthz?js-enabled-only=true"
	testutil.Eventually(t, timeout, 100*time.Millisecond, func() error {
		return GetJSON(t.Context(), url, time.Second, nil)
	})
}

// Leafs returns how many leaf servers are connected to the nats-server whose monitoring port is
// at monitorAddr (host:port), from its /leafz.
func Leafs(ctx context.Context, monitorAddr string) (int, error) {
	var leafz struct {
		Leafs int `json:"leafnodes"`
	}
	err := GetJSON(ctx, "http://"+monitorAddr+"/leafz", 2*time.Second, &leafz)
	return leafz.Leafs, err
}

// GetJSON decodes what GET url answers, within timeout; an answer other than 200 is an error.
// With into nil only the status is checked.
func GetJSON(ctx context.Context, url string, timeout time.Duration, into any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if into == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
