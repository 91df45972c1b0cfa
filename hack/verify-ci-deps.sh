#!/usr/bin/env bash
# Checks that every external binary and package the test suites use is present, and names each one
# that is missing with the step that should have produced it. .ci/run calls it (make
# verify-ci-deps) after its install and build steps and before any test, so a missing install step
# fails in seconds with a clear line, instead of at the end of a long run — and a warm cache on the
# machine that ran CI last cannot hide it: the list is checked, not what happened to be built.
#
#   hack/verify-ci-deps.sh            check; exit 1 naming what is missing
#   hack/verify-ci-deps.sh --list     print what is checked, one line each
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.1}"
K8S_DIR="${K8S_DIR:-$HOME/.cache/agentplane/k8s-v$KUBE_VERSION}"
TOOLS="${TOOLS:-$HOME/.cache/agentplane/bin}"
STATICCHECK_VERSION="${STATICCHECK_VERSION:?set by the Makefile}"
CONTROLLER_GEN_VERSION="${CONTROLLER_GEN_VERSION:?set by the Makefile}"
CNI_DIR=/usr/lib/cni

# Each line: kind|what|how to check|who provides it.
#   cmd  NAME       found on PATH
#   file PATH       an executable file
#   dir  PATH       a directory
deps=(
  "cmd|go|the toolchain (/usr/local/go)"
  "cmd|gcc|apt-get install gcc libc6-dev (the race detector needs cgo)"
  "cmd|make|apt-get install make"
  "cmd|git|apt-get install git"
  "cmd|chromium|apt-get install chromium (test/ui)"
  "cmd|node|hack/node.sh (test/e2e: examples/js-agent, Node.js 20 or later)"
  "cmd|npm|apt-get install npm (test/e2e: npm ci for examples/js-agent)"
  "file|$TOOLS/staticcheck-$STATICCHECK_VERSION|make staticcheck"
  "file|$TOOLS/controller-gen-$CONTROLLER_GEN_VERSION|make codegen"
  "file|$K8S_DIR/bin/etcd|make k8s-binaries (envtest, e2e-k8s)"
  "file|$K8S_DIR/bin/kube-apiserver|make k8s-binaries (envtest, e2e-k8s)"
  "file|$K8S_DIR/bin/kube-controller-manager|make k8s-binaries (e2e-k8s)"
  "file|$K8S_DIR/bin/kube-scheduler|make k8s-binaries (e2e-k8s)"
  "file|$K8S_DIR/bin/kubectl|make k8s-binaries (e2e-k8s)"
  "file|$K8S_DIR/bin/kubelet|make k8s-binaries (e2e-k8s real node)"
  "file|$K8S_DIR/bin/kwok|make k8s-binaries (e2e-k8s kwok nodes)"
  "file|$K8S_DIR/bin/helm|make k8s-binaries (e2e-k8s chart checks)"
  "dir|$K8S_DIR/kwok-stages|make k8s-binaries (kwok stage configs)"
  "cmd|containerd|make real-node-deps (Debian containerd)"
  "cmd|ctr|make real-node-deps (Debian containerd)"
  "cmd|runc|make real-node-deps (Debian runc)"
  "file|$CNI_DIR/bridge|make real-node-deps (Debian containernetworking-plugins)"
  "file|$CNI_DIR/host-local|make real-node-deps (Debian containernetworking-plugins)"
  "file|$CNI_DIR/loopback|make real-node-deps (Debian containernetworking-plugins)"
  "cmd|ip|apt-get install iproute2 (the real node's network)"
)

if [ "${1:-}" = "--list" ]; then
  for d in "${deps[@]}"; do IFS='|' read -r kind what who <<<"$d"; printf '%-5s %-70s %s\n' "$kind" "$what" "$who"; done
  exit 0
fi

missing=0
for d in "${deps[@]}"; do
  IFS='|' read -r kind what who <<<"$d"
  case "$kind" in
    cmd)  command -v "$what" >/dev/null 2>&1 && continue ;;
    file) [ -x "$what" ] && continue ;;
    dir)  [ -d "$what" ] && continue ;;
  esac
  echo "missing: $what — provided by: $who" >&2
  missing=$((missing + 1))
done
if [ "$missing" -gt 0 ]; then
  echo "verify-ci-deps: $missing of ${#deps[@]} dependencies missing" >&2
  exit 1
fi
echo "verify-ci-deps: all ${#deps[@]} dependencies present"
