// Command cluster runs a local Kubernetes cluster for developing agentplane: etcd, the API server,
// the controller manager and the scheduler as local processes, with the Agent CRD installed, fake
// nodes from kwok in zones, and optionally one real node (a kubelet on containerd) that runs the
// agentplane image built from this checkout. It stops everything on Ctrl-C.
//
//	go run ./hack/cluster up --real-node                 # one real node (root)
//	go run ./hack/cluster up --zones zone-a,zone-b,zone-c # three zones of fake nodes
//
// The binaries come from hack/k8s-binaries.sh (make k8s-binaries).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentplane/agentplane/internal/testutil"
	"github.com/agentplane/agentplane/test/k8scluster"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "up" {
		return fmt.Errorf("usage: go run ./hack/cluster up [--real-node] [--zones a,b,c] [--nodes-per-zone N] [--dir DIR]")
	}
	fs := flag.NewFlagSet("cluster up", flag.ContinueOnError)
	realNode := fs.Bool("real-node", false, "add one real node: a kubelet on a private containerd (needs root, containerd, runc, containernetworking-plugins)")
	zones := fs.String("zones", "", "comma-separated zones of fake kwok nodes")
	perZone := fs.Int("nodes-per-zone", 1, "fake nodes per zone")
	dir := fs.String("dir", "", "working directory for data and logs (default: a new one under /tmp, removed on exit)")
	bin := fs.String("bin", k8scluster.DefaultBin(), "directory of the Kubernetes binaries (make k8s-binaries)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "agentplane-cluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		return err
	}
	opts := k8scluster.Options{
		Bin: *bin, Dir: work, NodesPerZone: *perZone,
		BeforeControllers: func(c *k8scluster.Cluster) error {
			_, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-k", filepath.Join(root, "config", "crd"))
			return err
		},
	}
	if *zones != "" {
		opts.Zones = strings.Split(*zones, ",")
	}
	var imgs k8scluster.Images
	if *realNode {
		if m := k8scluster.RealNodeMissing(*bin); m != "" {
			return fmt.Errorf("a real node needs %s", m)
		}
		fmt.Println("building the static agentplane binary and its images ...")
		if imgs, err = k8scluster.BuildImages(ctx, root, filepath.Join(work, "images")); err != nil {
			return err
		}
		opts.RealNode, opts.Images, opts.SandboxImage = true, []string{imgs.Pause, imgs.Agent}, k8scluster.PauseImage
		opts.NodeLabels = map[string]string{corev1.LabelTopologyZone: "zone-a"}
	}
	c, err := k8scluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Printf("cluster up in %v; logs in %s\n\n  export KUBECONFIG=%s\n", c.StartTime.Round(1e6), work, c.Kubeconfig)
	if *realNode {
		env := c.PodAPIEnv()
		fmt.Printf(`
The real node %q runs the image %s (imagePullPolicy: Never; no registry).
Its containerd:   ctr --address %s -n k8s.io containers ls

Install agentplane as pods with a kustomize overlay over config/default that sets that image,
imagePullPolicy: Never, and, since this cluster runs no kube-proxy, the API server's address in
the operator's and gateway's env: KUBERNETES_SERVICE_HOST=%s KUBERNETES_SERVICE_PORT=%s
(docs/kubernetes.md, "A real node"). Or run them on this host from the built binary:
  %s operator --kubeconfig $KUBECONFIG --leader-elect=false --metrics-bind-address 0 --health-probe-bind-address 127.0.0.1:0
  %s gateway --kubeconfig $KUBECONFIG -n default
`, k8scluster.RealNodeName, k8scluster.AgentImage, c.CtrSocket(), env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"], imgs.Binary, imgs.Binary)
	}
	fmt.Println("\nCtrl-C stops the cluster.")
	<-ctx.Done()
	fmt.Println("stopping ...")
	return nil
}
