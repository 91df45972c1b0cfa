package k8scluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The real node's settings, from ../shared/KUBERNETES-TESTING.md ("A real node"):
//   - containerd needs restrict_oom_score_adj: the VM withholds CAP_SYS_RESOURCE, and runc fails
//     with "can't get final child's PID from pipe: EOF" without it;
//   - the host has cgroup v1, so the kubelet runs with failCgroupV1: false and the cgroupfs driver;
//   - kubelet 1.37 has no --pod-infra-container-image: the sandbox image is containerd's setting;
//   - pods sit on a CNI bridge and are reachable from the host at their pod IPs.
const (
	// CNIBinDir is where Debian's containernetworking-plugins installs the plugins.
	CNIBinDir = "/usr/lib/cni"
	// PodSubnet is the real node's pod network (the CNI bridge's host-local range).
	PodSubnet = "10.88.0.0/16"
	cniBridge = "apcni0"
	// RealNodeName is the name the kubelet registers.
	RealNodeName = "real-node"
	// realNodeLock is held while a real node runs.
	realNodeLock = "/tmp/agentplane-real-node.lock"
)

// RealNodeMissing says what the host lacks to run a real node, or "" when it has everything.
func RealNodeMissing(bin string) string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (the kubelet and containerd manage cgroups, mounts and network namespaces)")
	}
	for _, b := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (Debian packages containerd runc)")
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing = append(missing, "ip (Debian package iproute2)")
	}
	if _, err := os.Stat(filepath.Join(CNIBinDir, "bridge")); err != nil {
		missing = append(missing, CNIBinDir+"/bridge (Debian package containernetworking-plugins)")
	}
	if _, err := os.Stat(filepath.Join(bin, "kubelet")); err != nil {
		missing = append(missing, filepath.Join(bin, "kubelet")+" (make k8s-binaries)")
	}
	return strings.Join(missing, "; ")
}

// startRealNode starts a private containerd (its own root, state and socket, so that it never
// touches a containerd the host may run), imports the images, and starts a kubelet on it.
func (c *Cluster) startRealNode(ctx context.Context, opts Options) error {
	if m := RealNodeMissing(c.Bin); m != "" {
		return fmt.Errorf("a real node needs %s", m)
	}
	// One real node per machine: they would share the bridge and its subnet.
	lock, err := os.OpenFile(realNodeLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(realNodeLock)
		lock.Close()
		return fmt.Errorf("another real node runs on this machine (%s): they would share the CNI bridge %s and its subnet %s",
			strings.TrimSpace(string(owner)), cniBridge, PodSubnet)
	}
	_ = lock.Truncate(0)
	_, _ = fmt.Fprintf(lock, "pid %d, %s\n", os.Getpid(), c.Dir)
	c.nodeLock = lock
	// What an earlier real node left on the bridge holds addresses this one hands out again (its
	// IPAM starts afresh in Dir): remove it first.
	if err := removePodNetworks(); err != nil {
		return fmt.Errorf("pod networks left by an earlier real node: %w", err)
	}

	base := filepath.Join(c.Dir, "node")
	ctrd := filepath.Join(base, "containerd")
	sock := filepath.Join(ctrd, "containerd.sock")
	if len(sock)+len(".ttrpc") > 100 {
		return fmt.Errorf("containerd socket path %s is too long for a unix socket: use a shorter working directory", sock)
	}
	cniConf, ipam := filepath.Join(base, "cni"), filepath.Join(base, "cni-ipam")
	for _, d := range []string{ctrd, cniConf, ipam} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	sandbox := opts.SandboxImage
	if sandbox == "" {
		return errors.New("a real node needs Options.SandboxImage (a pause image among Options.Images)")
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(ctrd, "root"), filepath.Join(ctrd, "state"), sock, sock+".ttrpc", sandbox,
		filepath.Join(ctrd, "runc"), CNIBinDir, cniConf)
	configFile := filepath.Join(ctrd, "config.toml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return err
	}
	// The bridge without masquerading: pods talk to the host (the API server at the node IP, by
	// their default route through the bridge) and the host to them, which is all the install
	// needs; the host's iptables stay untouched.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "agentplane-e2e",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "loopback"}
  ]
}
`, cniBridge, PodSubnet, ipam)
	if err := os.WriteFile(filepath.Join(cniConf, "10-agentplane.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}

	containerd, err := c.startCmd("containerd", "containerd", "--config", configFile)
	if err != nil {
		return err
	}
	c.containerd, c.ctrSocket = containerd, sock
	c.procs = append(c.procs, containerd)
	if err := c.waitCtr(ctx, 30*time.Second); err != nil {
		return err
	}
	for _, img := range opts.Images {
		if out, err := c.Ctr(ctx, "images", "import", img); err != nil {
			return fmt.Errorf("import %s: %w\n%s", img, err, out)
		}
	}

	nodeIP := c.nodeIP
	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return err
		}
	}
	kubeletDir := filepath.Join(base, "kubelet")
	kc := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
address: %s
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
podLogsDir: %s
volumePluginDir: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
evictionHard: {memory.available: 50Mi, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 2s
nodeLeaseDurationSeconds: 8
maxPods: 60
`, sock, nodeIP, ports[0], ports[1], filepath.Join(base, "pod-logs"), filepath.Join(base, "volume-plugins"), c.kubeletClientCA)
	kcFile := filepath.Join(base, "kubelet.yaml")
	if err := os.WriteFile(kcFile, []byte(kc), 0o600); err != nil {
		return err
	}
	labels := []string{"agentplane.io/e2e-real-node=true"}
	for k, v := range opts.NodeLabels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	kubelet, err := c.start("kubelet", "--config", kcFile, "--kubeconfig", c.Kubeconfig,
		"--root-dir", kubeletDir, "--hostname-override", RealNodeName, "--node-ip", nodeIP,
		"--node-labels", strings.Join(labels, ","))
	if err != nil {
		return err
	}
	c.procs = append(c.procs, kubelet)
	c.kubelet = kubelet
	c.NodeName = RealNodeName
	if err := waitHTTP(ctx, kubelet, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/healthz", "", 60*time.Second); err != nil {
		return err
	}
	return c.waitNodeReady(ctx, RealNodeName, 90*time.Second, kubelet)
}

func (c *Cluster) waitNodeReady(ctx context.Context, name string, timeout time.Duration, kubelet *Proc) error {
	deadline := time.Now().Add(timeout)
	for {
		var n corev1.Node
		err := c.Client.Get(ctx, client.ObjectKey{Name: name}, &n)
		if err == nil && NodeReady(&n) {
			return nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			c.describeNodes(ctx, &b)
			return fmt.Errorf("node %s not Ready within %v (%v)\n%skubelet log:\n%s", name, timeout, err, b.String(), kubelet.Tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kubelet.done:
			return fmt.Errorf("kubelet exited (%v):\n%s", kubelet.err, kubelet.Tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitCtr waits until containerd answers on its socket.
func (c *Cluster) waitCtr(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.Ctr(ctx, "version")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not answering within %v: %v %s\n%s", timeout, err, out, c.containerd.Tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.containerd.done:
			return fmt.Errorf("containerd exited (%v):\n%s", c.containerd.err, c.containerd.Tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ctr runs ctr against the real node's containerd, in the k8s.io namespace the kubelet uses.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	if c.ctrSocket == "" {
		return "", errors.New("the cluster has no real node")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.ctrSocket, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
	return string(out), err
}

// KillContainer kills a container of the real node with SIGKILL, as the kernel's OOM killer or a
// crash would; containerID is a pod's status.containerStatuses[].containerID.
func (c *Cluster) KillContainer(ctx context.Context, containerID string) error {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	if !ok {
		return fmt.Errorf("container %q is not a containerd container", containerID)
	}
	if out, err := c.Ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
		return fmt.Errorf("ctr tasks kill %s: %w\n%s", id, err, out)
	}
	return nil
}

// Containers lists the ids of the containers (pod sandboxes included) in the real node's
// containerd that match every ctr filter given, for example
// `labels."io.kubernetes.pod.namespace"==default`.
func (c *Cluster) Containers(ctx context.Context, filters ...string) ([]string, error) {
	out, err := c.Ctr(ctx, append([]string{"containers", "list", "--quiet"}, filters...)...)
	if err != nil {
		return nil, fmt.Errorf("ctr containers list: %w\n%s", err, out)
	}
	return strings.Fields(out), nil
}

// stopRealNode runs first in Stop: it cordons the node and has the kubelet stop every pod it
// runs, so that their containers, sandboxes and network namespaces go the normal way. Whatever
// is left afterwards is removed by cleanupContainerd.
func (c *Cluster) stopRealNode() {
	if c.NodeName == "" || c.Client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Cordon first, or the controllers would put replacements for the deleted pods on the node.
	var node corev1.Node
	if err := c.Client.Get(ctx, client.ObjectKey{Name: c.NodeName}, &node); err == nil {
		before := node.DeepCopy()
		node.Spec.Unschedulable = true
		_ = c.Client.Patch(ctx, &node, client.MergeFrom(before))
	}
	var pods corev1.PodList
	if err := c.Client.List(ctx, &pods, client.MatchingFields{"spec.nodeName": c.NodeName}); err == nil {
		for i := range pods.Items {
			_ = c.Client.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(0))
		}
	}
	// Stopped is not enough: containerd stops a sandbox's task before it tears down the sandbox's
	// network, so wait for the pods' veths to leave the bridge too. cleanupContainerd removes the
	// containers the kubelet's once-a-minute garbage collection has not, and reapLeftovers any
	// network that is still there.
	for ctx.Err() == nil {
		ids, err := c.RunningTasks(ctx)
		links, lerr := bridgeLinks()
		if err != nil || lerr != nil || (len(ids) == 0 && len(links) == 0) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cleanupContainerd removes what containerd still runs, then (after containerd is stopped, see
// Stop) kills leftover shims and unmounts what is still mounted under the working directory.
func (c *Cluster) cleanupContainerd() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, _ := c.Containers(ctx)
	for _, id := range ids {
		_, _ = c.Ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
		_, _ = c.Ctr(ctx, "tasks", "delete", "--force", id)
		_, _ = c.Ctr(ctx, "containers", "delete", id)
	}
}

// reapLeftovers kills the containerd shims of this cluster's containerd and unmounts anything
// still mounted under the working directory, deepest first.
func (c *Cluster) reapLeftovers() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.Contains(args[0], "containerd-shim") || !slices.Contains(args, c.ctrSocket) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == c.Dir || strings.HasPrefix(f[4], c.Dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	_ = removePodNetworks()
}

// bridgeLink is the host end of a pod's veth pair on the CNI bridge, and the network namespace
// (under /var/run/netns) of the pod's end.
type bridgeLink struct {
	name, netns string
}

// bridgeLinks lists what is attached to the CNI bridge: the pods' veths. No bridge, no links.
func bridgeLinks() ([]bridgeLink, error) {
	out, err := exec.Command("ip", "-o", "link", "show", "master", cniBridge).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return nil, nil
		}
		return nil, fmt.Errorf("ip link show master %s: %w: %s", cniBridge, err, out)
	}
	var links []bridgeLink
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// 34: veth03ed0042@if2: <...> master apcni0 ... link-netns cni-3b7db8f1-...
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		l := bridgeLink{name: name}
		if i := slices.Index(f, "link-netns"); i >= 0 && i+1 < len(f) {
			l.netns = f[i+1]
		}
		links = append(links, l)
	}
	return links, nil
}

// removePodNetworks deletes every pod network on the CNI bridge: the host end of each veth pair
// (which takes the pod's end, and its address, with it) and the pod's network namespace. Only
// the one real node of the machine (see realNodeLock) uses the bridge, so it calls this with
// the lock held, before its containerd starts and after it stops: a network the kubelet did not
// tear down (a sandbox stopped as the node stopped, a test binary killed) keeps answering for its
// address, and the next real node's IPAM, which starts afresh, gives that address to a new pod:
// the kubelet's probes of the new pod then reach the old namespace and are refused.
func removePodNetworks() error {
	links, err := bridgeLinks()
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range links {
		// Gone already (the kubelet finished its teardown meanwhile) is fine.
		if out, err := exec.Command("ip", "link", "delete", l.name).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", l.name, err, out))
		}
		if strings.HasPrefix(l.netns, "cni-") {
			if out, err := exec.Command("ip", "netns", "delete", l.netns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", l.netns, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// hostIP is the first IPv4 address of an interface that is up and not loopback: the kubelet's
// InternalIP (a node IP may not be a loopback address).
func hostIP() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == cniBridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String(), nil
			}
		}
	}
	return "", errors.New("no non-loopback IPv4 address for the kubelet's node IP")
}

// writeKubeletClientCerts makes a CA the kubelet trusts for client certificates and a client
// certificate for the API server in system:masters. It returns the CA, certificate and key files.
func writeKubeletClientCerts(dir string) (ca, cert, key string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentplane-e2e-kubelet-client-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", err
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caCert, &clientKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		return "", "", "", err
	}
	ca, cert, key = filepath.Join(dir, "kubelet-client-ca.crt"), filepath.Join(dir, "apiserver-kubelet-client.crt"), filepath.Join(dir, "apiserver-kubelet-client.key")
	for f, b := range map[string][]byte{
		ca:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return "", "", "", err
		}
	}
	return ca, cert, key, nil
}

// CtrSocket is the real node's containerd socket, for ctr --address.
func (c *Cluster) CtrSocket() string { return c.ctrSocket }

// RunningTasks lists the ids of the containers (pod sandboxes included) whose process runs.
func (c *Cluster) RunningTasks(ctx context.Context) ([]string, error) {
	out, err := c.Ctr(ctx, "tasks", "list")
	if err != nil {
		return nil, fmt.Errorf("ctr tasks list: %w\n%s", err, out)
	}
	var ids []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "RUNNING" {
			ids = append(ids, f[0])
		}
	}
	return ids, nil
}

// PodAPIEnv is the environment that points a pod's in-cluster client at the API server: this
// cluster runs no kube-proxy, so the kubernetes Service's cluster IP (what the kubelet puts in
// KUBERNETES_SERVICE_HOST) leads nowhere; the API server's node IP and port do. The certificate
// the API server presents names the node IP, and pods trust it through kube-root-ca.crt.
func (c *Cluster) PodAPIEnv() map[string]string {
	return map[string]string{"KUBERNETES_SERVICE_HOST": c.nodeIP, "KUBERNETES_SERVICE_PORT": strconv.Itoa(c.apiPort)}
}

// KubeletDir is the kubelet's root directory (pods' volumes are under pods/<uid>/volumes).
func (c *Cluster) KubeletDir() string { return filepath.Join(c.Dir, "node", "kubelet") }
