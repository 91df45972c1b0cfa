#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries, etcd and kwok from the Go module proxy into a cache
# directory outside the clone, so tests can run against a real API server on a machine with no
# cluster and no container engine. Idempotent: a binary that is already there is not rebuilt, so a
# warm run costs nothing.
#
#   hack/k8s-binaries.sh [envtest|all]    (default: all)
#     envtest  etcd, kube-apiserver              (what KUBEBUILDER_ASSETS needs)
#     all      + kube-controller-manager, kube-scheduler, kubectl, kwok, helm, kubelet
#              (everything the suites use: test/e2e-k8s runs the kwok cluster and a real kubelet)
#     cluster  the same as all (the name an earlier version used)
#
# Every binary the suites use is in `all`: a set that leaves one out is only caught on a machine
# whose cache is cold, which is how a missing kubelet once passed CI. hack/verify-ci-deps.sh
# checks the result.
#
# Output: $K8S_DIR (default $HOME/.cache/agentplane/k8s-v$KUBE_VERSION)/bin/<name>, the kwok stage
# configs in $K8S_DIR/kwok-stages/, and $K8S_DIR/VERSIONS. Prints the path of bin/ last, so
#   export KUBEBUILDER_ASSETS=$(hack/k8s-binaries.sh envtest | tail -1)
# works. Cold on 2 cores: about 8 min for envtest, 15 min for all (the API server alone is 7).
# Each binary gets a progress line: "[3/8] building kube-scheduler", then its time.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.1}"   # k8s.io/kubernetes v1.37.1 ⇔ staging modules v0.37.1
ETCD_VERSION="${ETCD_VERSION:-3.7.0}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
K8S_DIR="${K8S_DIR:-$HOME/.cache/agentplane/k8s-v$KUBE_VERSION}"
BIN="$K8S_DIR/bin"
WORK="$K8S_DIR/.build"

set_="${1:-all}"
case "$set_" in
  envtest)     want=(etcd kube-apiserver) ;;
  all|cluster) want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok helm) ;;
  *) echo "usage: $0 [envtest|all]" >&2; exit 2 ;;
esac

# The scratch modules are ours, not the caller's: a caller's -mod=readonly (CI) would stop
# `go mod tidy`, and GOTOOLCHAIN=local keeps the installed Go.
export GOFLAGS="-buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0
mkdir -p "$BIN" "$WORK"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
step=0
timed() { # timed NAME CMD...: run CMD, report its wall time
  local name=$1 start=$SECONDS; shift
  step=$((step + 1))
  log "[$step/$todo] building $name"
  "$@"
  log "[$step/$todo] built $name in $((SECONDS - start))s"
}
need() { local b; for b in "${want[@]}"; do [ "$b" = "$1" ] && return 0; done; return 1; }
missing() { need "$1" && [ ! -x "$BIN/$1" ]; }

# The Kubernetes commands still to build; they share one scratch module.
kube_cmds=()
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  missing "$c" && kube_cmds+=("$c")
done

# todo counts the steps of this run (the scratch module is one when it is still to be made), so
# each progress line says how far along the build is.
todo=0
for b in "${want[@]}"; do missing "$b" && todo=$((todo + 1)); done
[ ${#kube_cmds[@]} -gt 0 ] && [ ! -f "$WORK/kubernetes/.ready" ] && todo=$((todo + 1))
if [ "$todo" = 0 ]; then
  log "all of ${want[*]} already built in $BIN"
fi

total_start=$SECONDS

# --- Kubernetes: a scratch module requiring k8s.io/kubernetes with a replace per staging module.
if [ ${#kube_cmds[@]} -gt 0 ]; then
  mod="$WORK/kubernetes"
  if [ ! -f "$mod/.ready" ]; then
    timed "scratch module k8s.io/kubernetes@v$KUBE_VERSION" bash -c '
      set -euo pipefail
      rm -rf "$1"; mkdir -p "$1"; cd "$1"
      gomod=$(go mod download -json "k8s.io/kubernetes@v$2" | sed -n "s/^[[:space:]]*\"GoMod\": \"\(.*\)\",\{0,1\}$/\1/p")
      [ -f "$gomod" ] || { echo "cannot download k8s.io/kubernetes@v$2" >&2; exit 1; }
      {
        echo "module agentplane.local/k8s-binaries"
        echo
        echo "go $(go env GOVERSION | sed "s/^go\([0-9]*\.[0-9]*\).*/\1/").0"
        echo
        echo "require k8s.io/kubernetes v$2"
        echo
        # kubernetes replaces each staging module with ./staging/src/k8s.io/<name>; we replace it
        # with the published tag of the same release (v1.N.M ⇔ v0.N.M).
        grep -Eo "^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+" "$gomod" |
          awk -v v="v0.${2#1.}" "{print \"replace \" \$1 \" => \" \$1 \" \" v}"
      } > go.mod
      {
        echo "//go:build tools"
        echo
        echo "package tools"
        echo
        echo "import ("
        for c in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
          echo "	_ \"k8s.io/kubernetes/cmd/$c\""
        done
        echo ")"
      } > tools.go
      go mod tidy
      touch .ready
    ' _ "$mod" "$KUBE_VERSION"
  fi
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=${KUBE_VERSION%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X $pkg.gitTreeState=clean"
  done
  for c in "${kube_cmds[@]}"; do
    timed "$c" bash -c 'cd "$1" && go build -trimpath -ldflags "$2" -o "$3.tmp" "k8s.io/kubernetes/cmd/$4" && mv "$3.tmp" "$3"' \
      _ "$mod" "$ldflags" "$BIN/$c" "$c"
  done
fi

# --- etcd: its own scratch module (etcd's go.mod has replace directives of its own).
if missing etcd; then
  mod="$WORK/etcd"
  timed "etcd v$ETCD_VERSION" bash -c '
    set -euo pipefail
    mkdir -p "$1"; cd "$1"
    [ -f go.mod ] || go mod init agentplane.local/etcd-binary >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$2"
    go build -trimpath -ldflags "-s -w" -o "$3.tmp" go.etcd.io/etcd/server/v3 && mv "$3.tmp" "$3"
  ' _ "$mod" "$ETCD_VERSION" "$BIN/etcd"
fi

# --- kwok, and the stage configs it needs (it exits with "no stages found" without them).
if missing kwok; then
  timed "kwok v$KWOK_VERSION" bash -c '
    set -euo pipefail
    GOBIN="$1/.gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$2"
    mv "$1/.gobin/kwok" "$3"
  ' _ "$WORK" "$KWOK_VERSION" "$BIN/kwok"
fi
if need kwok && [ ! -d "$K8S_DIR/kwok-stages" ]; then
  dir=$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  mkdir -p "$K8S_DIR/kwok-stages.tmp"
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    [ -f "$dir/kustomize/stage/$s.yaml" ] || { echo "kwok stage $s not found under $dir/kustomize/stage" >&2; exit 1; }
    cp "$dir/kustomize/stage/$s.yaml" "$K8S_DIR/kwok-stages.tmp/"
  done
  chmod -R u+w "$K8S_DIR/kwok-stages.tmp"
  mv "$K8S_DIR/kwok-stages.tmp" "$K8S_DIR/kwok-stages"
fi

# --- helm, to render the chart in the e2e (Debian has no helm package).
if missing helm; then
  timed "helm v$HELM_VERSION" bash -c '
    set -euo pipefail
    GOBIN="$1/.gobin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v$2"
    mv "$1/.gobin/helm" "$3"
  ' _ "$WORK" "$HELM_VERSION" "$BIN/helm"
fi

printf 'kubernetes=v%s\netcd=v%s\nkwok=v%s\nhelm=v%s\n' "$KUBE_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$HELM_VERSION" > "$K8S_DIR/VERSIONS"
log "binaries ready in $((SECONDS - total_start))s: $(cd "$BIN" && ls | tr '\n' ' ')"
echo "$BIN"
