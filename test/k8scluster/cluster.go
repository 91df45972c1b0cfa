// Package k8scluster runs a Kubernetes cluster from local processes for tests and development:
// etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with fake nodes from kwok (one
// kwok per zone, so that a zone can be lost by stopping its process) and, optionally, one real
// node: a kubelet on a private containerd with runc and the CNI bridge, whose pods are real
// containers. The binaries come from hack/k8s-binaries.sh (see ../shared/KUBERNETES-TESTING.md
// for why each setting is what it is).
package k8scluster

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

// Timings of the cluster. A node whose lease is not renewed for NodeGrace is NotReady; its
// pods are evicted tolerationSeconds later. kwok renews leases every leaseSeconds/4, well inside
// the grace period, so healthy nodes never flap.
const (
	leaseSeconds      = 8
	NodeGrace         = 16 * time.Second
	tolerationSeconds = 5
	zoneAnnotation    = "agentplane.io/e2e-kwok"
)

// Cluster is etcd, kube-apiserver, kube-controller-manager, kube-scheduler and one kwok per zone
// (fake nodes that run fake pods), all local processes.
type Cluster struct {
	Bin        string // the directory of the binaries
	Dir        string // data and logs of every process
	Kubeconfig string // an admin kubeconfig (a token in system:masters)
	Config     *rest.Config
	Client     client.Client
	procs      []*Proc          // in start order; stopped in reverse (the API server before etcd)
	kwok       map[string]*Proc // by zone
	kwokArgs   map[string][]string

	// the real node, when Options.RealNode
	kubeletClientCA string
	containerd      *Proc
	kubelet         *Proc
	ctrSocket       string
	nodeLock        *os.File // held while the real node runs
	nodeIP          string   // the real node's InternalIP, where pods reach the API server
	apiPort         int
	NodeName        string        // the real node's name
	StartTime       time.Duration // how long Start took
}

// Proc is a process of the cluster, with its log file.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

// Stop ends the process group: SIGTERM, then SIGKILL after 10s. Stopping twice is fine.
func (p *Proc) Stop() {
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

// start runs one of the cluster's binaries; name is the binary, or binary@instance.
func (c *Cluster) start(name string, args ...string) (*Proc, error) {
	return c.startCmd(name, filepath.Join(c.Bin, strings.SplitN(name, "@", 2)[0]), args...)
}

// startCmd runs path (a file, or a command found in PATH) with its log in Dir/name.log.
func (c *Cluster) startCmd(name, path string, args ...string) (*Proc, error) {
	logPath := filepath.Join(c.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so stop reaches its children; killed with the test binary if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Tail is the end of a process's log, for failure messages.
func (p *Proc) Tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// FreePort is a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200 or the process exits or timeout passes.
func waitHTTP(ctx context.Context, p *Proc, url, token string, timeout time.Duration) error {
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
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.Tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s within %v: %s\n%s", p.name, url, timeout, last, p.Tail())
}

// Options says what to start.
type Options struct {
	Bin string // directory of the binaries (DefaultBin() when empty)
	Dir string // working directory: data, configuration and one log per process

	Zones        []string // one kwok per zone, each with NodesPerZone fake nodes
	NodesPerZone int

	// RealNode adds one real node: a kubelet on its own containerd (root only; see realnode.go).
	RealNode bool
	// Images are OCI image tarballs imported into the real node's containerd before the kubelet
	// starts; SandboxImage (one of them) is the pod sandbox ("pause") image.
	Images       []string
	SandboxImage string
	// NodeLabels are added to the real node, for example its zone.
	NodeLabels map[string]string

	// BeforeControllers runs once the API server is up and before the controller manager starts:
	// CRDs installed there are known to the garbage collector from the start, instead of after its
	// next 30-second discovery resync.
	BeforeControllers func(*Cluster) error
}

// DefaultBin is where hack/k8s-binaries.sh puts the binaries: $K8S_DIR/bin, else
// ~/.cache/agentplane/k8s-v1.37.1/bin.
func DefaultBin() string {
	dir := os.Getenv("K8S_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "agentplane", "k8s-v1.37.1")
	}
	return filepath.Join(dir, "bin")
}

// Start brings up the control plane, then the real node (if asked for) and one kwok per zone. On
// error everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	bin, dir, zones, nodesPerZone := opts.Bin, opts.Dir, opts.Zones, opts.NodesPerZone
	if bin == "" {
		bin = DefaultBin()
	}
	begin := time.Now()
	c = &Cluster{Bin: bin, Dir: dir, kwok: map[string]*Proc{}, kwokArgs: map[string][]string{}}
	started := c // c is nil once an error is returned
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	ports := make([]int, 6)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
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
	apiArgs, bind := []string{}, "127.0.0.1"
	if opts.RealNode {
		// Pods reach the API server at the node's IP: there is no kube-proxy, so the kubernetes
		// Service's cluster IP leads nowhere (see PodAPIEnv). Its token is still required.
		if c.nodeIP, err = hostIP(); err != nil {
			return nil, err
		}
		bind = "0.0.0.0"
		c.apiPort = apiPort
		// The API server reaches the kubelet (logs, exec) by the node's InternalIP, with a client
		// certificate the kubelet trusts; as a member of system:masters it is then authorized.
		ca, cert, key, err := writeKubeletClientCerts(filepath.Join(dir, "pki"))
		if err != nil {
			return nil, err
		}
		c.kubeletClientCA = ca
		apiArgs = append(apiArgs, "--kubelet-client-certificate", cert, "--kubelet-client-key", key,
			"--kubelet-preferred-address-types", "InternalIP")
	}
	api, err := c.start("kube-apiserver", append(apiArgs,
		"--etcd-servers", etcdURL,
		"--bind-address", bind,
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
	)...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, api)
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := waitHTTP(ctx, api, server+"/readyz", token, 60*time.Second); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
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
	if err := os.WriteFile(c.Kubeconfig, []byte(kc), 0o600); err != nil {
		return nil, err
	}
	c.Config = &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: controller.NewScheme()}); err != nil {
		return nil, err
	}

	if opts.BeforeControllers != nil {
		if err := opts.BeforeControllers(c); err != nil {
			return nil, err
		}
	}

	// kube-controller-manager: fast node monitoring and eviction for the zone-loss test
	cm, err := c.start("kube-controller-manager",
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
		"--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(cmPort),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file", saKey,
		// Published to every namespace as kube-root-ca.crt, which pods trust for the API server:
		// the API server's self-signed bundle (its certificate and the CA that signed it).
		"--root-ca-file", filepath.Join(dir, "apiserver-certs", "apiserver.crt"),
		"--node-monitor-period", "1s",
		"--node-monitor-grace-period", NodeGrace.String(),
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
		"--kubeconfig", c.Kubeconfig,
		"--authentication-kubeconfig", c.Kubeconfig,
		"--authorization-kubeconfig", c.Kubeconfig,
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

	if opts.RealNode {
		if err := c.startRealNode(ctx, opts); err != nil {
			return nil, err
		}
	}

	// kwok: one process per zone, so that a zone can be lost by stopping its process
	stages, err := kwokStages(bin, dir)
	if err != nil {
		return nil, err
	}
	for i, zone := range zones {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		c.kwokArgs[zone] = []string{
			"--kubeconfig", c.Kubeconfig,
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
			if err := c.Client.Create(ctx, fakeNode(fmt.Sprintf("%s-%d", zone, n), zone)); err != nil {
				return nil, fmt.Errorf("create node: %w", err)
			}
		}
	}
	want := len(zones) * nodesPerZone
	if opts.RealNode {
		want++
	}
	if err := c.waitNodesReady(ctx, want, 60*time.Second); err != nil {
		return nil, err
	}
	c.StartTime = time.Since(begin)
	return c, nil
}

func (c *Cluster) startKwok(zone string) error {
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
		return "", fmt.Errorf("kwok stages (make k8s-binaries copies them): %w", err)
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

func (c *Cluster) waitNodesReady(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var nodes corev1.NodeList
		err := c.Client.List(ctx, &nodes)
		ready := 0
		for _, n := range nodes.Items {
			if NodeReady(&n) {
				ready++
			}
		}
		if err == nil && ready >= want {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			c.describeNodes(ctx, &b)
			return fmt.Errorf("%d of %d nodes ready after %v (err %v)\n%s", ready, want, timeout, err, b.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kubectl runs the cluster's kubectl against it.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop stops every process in reverse start order (the API server before etcd). With a real node
// it first has the kubelet remove its pods, then removes what containerd still runs and unmounts
// what is left under Dir, so that nothing outlives the cluster.
func (c *Cluster) Stop() {
	c.stopRealNode()
	for i := len(c.procs) - 1; i >= 0; i-- {
		if c.procs[i] == c.containerd {
			c.cleanupContainerd()
		}
		c.procs[i].Stop()
	}
	if c.containerd != nil {
		c.reapLeftovers()
	}
	if c.nodeLock != nil {
		c.nodeLock.Close() // releases the lock
		c.nodeLock = nil
	}
}

// StopZone stops the kwok of a zone: its nodes stop renewing their leases, as if the zone were
// lost.
func (c *Cluster) StopZone(zone string) { c.kwok[zone].Stop() }
