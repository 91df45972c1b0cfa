//go:build e2ek8s

package e2ek8s

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/agentplane/agentplane/internal/controller"
)

// Timings of the fake cluster. A node whose lease is not renewed for nodeGrace is NotReady; its
// pods are evicted tolerationSeconds later. kwok renews leases every leaseSeconds/4, well inside
// the grace period, so healthy nodes never flap.
const (
	leaseSeconds      = 8
	nodeGrace         = 16 * time.Second
	tolerationSeconds = 5
	zoneAnnotation    = "agentplane.io/e2e-kwok"
)

// cluster is etcd, kube-apiserver, kube-controller-manager, kube-scheduler and one kwok per zone
// (fake nodes that run fake pods), all local processes.
type cluster struct {
	bin, dir   string
	kubeconfig string
	cfg        *rest.Config
	client     client.Client
	procs      []*proc          // in start order; stopped in reverse (the API server before etcd)
	kwok       map[string]*proc // by zone
	kwokArgs   map[string][]string
	startTime  time.Duration
}

// proc is a started process with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// stop ends the process group: SIGTERM, then SIGKILL after 10s. Stopping twice is fine.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (c *cluster) start(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(c.bin, strings.SplitN(name, "@", 2)[0]), args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so stop reaches its children; killed with the test binary if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// tail is the end of a process's log, for failure messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200 or the process exits or timeout passes.
func waitHTTP(ctx context.Context, p *proc, url, token string, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s within %v: %s\n%s", p.name, url, timeout, last, p.tail())
}

// startCluster brings up the control plane and one kwok per zone with nodesPerZone fake nodes.
// beforeControllers runs once the API server is up and before the controller manager starts: CRDs
// installed there are known to the garbage collector from the start, instead of after its next
// 30-second discovery resync.
func startCluster(ctx context.Context, bin, dir string, zones []string, nodesPerZone int, beforeControllers func(*cluster) error) (c *cluster, err error) {
	begin := time.Now()
	c = &cluster{bin: bin, dir: dir, kwok: map[string]*proc{}, kwokArgs: map[string][]string{}}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	ports := make([]int, 6)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	etcdClient, etcdPeer, apiPort, cmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	// etcd
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	etcd, err := c.start("etcd", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL, "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--unsafe-no-fsync", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, etcd)
	if err := waitHTTP(ctx, etcd, etcdURL+"/health", "", 30*time.Second); err != nil {
		return nil, err
	}

	// credentials: an admin token, and the service-account signing key
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	token := hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	saKey, saPub := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, err
	}

	// kube-apiserver
	api, err := c.start("kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", filepath.Join(dir, "apiserver-certs"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", saPub,
		"--service-account-signing-key-file", saKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--default-not-ready-toleration-seconds", strconv.Itoa(tolerationSeconds),
		"--default-unreachable-toleration-seconds", strconv.Itoa(tolerationSeconds),
	)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, api)
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := waitHTTP(ctx, api, server+"/readyz", token, 60*time.Second); err != nil {
		return nil, err
	}
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: default}
current-context: e2e
`, server, token)
	if err := os.WriteFile(c.kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	c.cfg = &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	if c.client, err = client.New(c.cfg, client.Options{Scheme: controller.NewScheme()}); err != nil {
		return nil, err
	}

	if beforeControllers != nil {
		if err := beforeControllers(c); err != nil {
			return nil, err
		}
	}

	// kube-controller-manager: fast node monitoring and eviction for the zone-loss test
	cm, err := c.start("kube-controller-manager",
		"--kubeconfig", c.kubeconfig,
		"--authentication-kubeconfig", c.kubeconfig,
		"--authorization-kubeconfig", c.kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(cmPort),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file", saKey,
		"--node-monitor-period", "1s",
		"--node-monitor-grace-period", nodeGrace.String(),
		"--node-eviction-rate", "10",
		"--secondary-node-eviction-rate", "10",
		"--concurrent-deployment-syncs", "10",
	)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, cm)
	if err := waitHTTP(ctx, cm, "https://127.0.0.1:"+strconv.Itoa(cmPort)+"/healthz", token, 60*time.Second); err != nil {
		return nil, err
	}

	sched, err := c.start("kube-scheduler",
		"--kubeconfig", c.kubeconfig,
		"--authentication-kubeconfig", c.kubeconfig,
		"--authorization-kubeconfig", c.kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(schedPort),
		"--leader-elect=false",
	)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, sched)
	if err := waitHTTP(ctx, sched, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", token, 60*time.Second); err != nil {
		return nil, err
	}

	// kwok: one process per zone, so that a zone can be lost by stopping its process
	stages, err := kwokStages(bin, dir)
	if err != nil {
		return nil, err
	}
	for i, zone := range zones {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.kwokArgs[zone] = []string{
			"--kubeconfig", c.kubeconfig,
			"--config", stages,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector", zoneAnnotation + "=" + zone,
			"--cidr", fmt.Sprintf("10.%d.0.0/16", 10+i),
			"--node-lease-duration-seconds", strconv.Itoa(leaseSeconds),
			"--server-address", "127.0.0.1:" + strconv.Itoa(port),
		}
		if err := c.startKwok(zone); err != nil {
			return nil, err
		}
		for n := 1; n <= nodesPerZone; n++ {
			if err := c.client.Create(ctx, fakeNode(fmt.Sprintf("%s-%d", zone, n), zone)); err != nil {
				return nil, fmt.Errorf("create node: %w", err)
			}
		}
	}
	if err := c.waitNodesReady(ctx, len(zones)*nodesPerZone, 60*time.Second); err != nil {
		return nil, err
	}
	c.startTime = time.Since(begin)
	return c, nil
}

func (c *cluster) startKwok(zone string) error {
	p, err := c.start("kwok@"+zone, c.kwokArgs[zone]...)
	if err != nil {
		return err
	}
	c.kwok[zone] = p
	c.procs = append(c.procs, p)
	return nil
}

// kwokStages writes the stage configs kwok needs into one file.
func kwokStages(bin, dir string) (string, error) {
	stageDir := filepath.Join(filepath.Dir(bin), "kwok-stages")
	entries, err := os.ReadDir(stageDir)
	if err != nil {
		return "", fmt.Errorf("kwok stages (hack/k8s-binaries.sh cluster copies them): %w", err)
	}
	var docs []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(stageDir, e.Name()))
		if err != nil {
			return "", err
		}
		docs = append(docs, string(b))
	}
	out := filepath.Join(dir, "kwok.yaml")
	return out, os.WriteFile(out, []byte(strings.Join(docs, "\n---\n")), 0o600)
}

func fakeNode(name, zone string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{zoneAnnotation: zone, "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				corev1.LabelTopologyZone: zone, corev1.LabelHostname: name, corev1.LabelOSStable: "linux",
				corev1.LabelArchStable: "amd64", "type": "kwok", "agentplane.io/site": "clinic-a",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity, Phase: corev1.NodeRunning},
	}
}

func (c *cluster) waitNodesReady(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var nodes corev1.NodeList
		err := c.client.List(ctx, &nodes)
		ready := 0
		for _, n := range nodes.Items {
			if nodeReady(&n) {
				ready++
			}
		}
		if err == nil && ready >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d nodes ready after %v (err %v)", ready, want, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubectl runs the cluster's kubectl against it.
func (c *cluster) kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop()
	}
}
