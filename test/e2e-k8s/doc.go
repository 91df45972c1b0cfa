// Package e2ek8s tests the operator, the install manifests and the gateway's Kubernetes discovery
// on a real control plane — etcd, kube-apiserver, kube-controller-manager, kube-scheduler — with
// fake nodes in three zones (kwok), all built from source by hack/k8s-binaries.sh. Pods do not run
// processes: kwok marks them Running and Ready, which is what scheduling, the controllers and
// discovery see.
//
// The tests are behind the e2ek8s build tag, so `go test ./...` does not start a cluster:
//
//	make test-k8s     (or: go test -tags e2ek8s ./test/e2e-k8s, with K8S_DIR set)
package e2ek8s
