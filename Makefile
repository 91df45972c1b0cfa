# agentplane — common tasks. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

GO        ?= go
BIN       ?= bin/agentplane
CACHE     ?= $(HOME)/.cache/agentplane
TOOLS     := $(CACHE)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/agentplane/agentplane/internal/cli.Version=$(VERSION)
FUZZTIME  ?= 200000x

STATICCHECK_VERSION    := v0.8.2
CONTROLLER_GEN_VERSION := v0.23.0

.PHONY: help build run test test-short test-sites lint fmt vet staticcheck verify-tidy codegen verify-codegen fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the static agentplane binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/agentplane

run: build ## run the example clinic (examples/clinic) behind the gateway on 127.0.0.1:8080
	./$(BIN) up -f examples/clinic

test: ## run every test with the race detector (unit, fuzz seeds, end-to-end)
	$(GO) test -race -count=1 ./...

test-short: ## unit tests only, without the end-to-end suite
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)

# The sites suite needs root: network namespaces, a bridge and veths (test/sites/lab). Without
# root it is skipped, except in CI, where it fails.
test-sites: ## multi-site end-to-end tests: sites in network namespaces, real nats-servers, delayed links (root)
	$(GO) test -race -tags e2esites -count=1 -timeout 20m -v ./test/sites/...

lint: verify-tidy vet staticcheck ## go mod tidy check, gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

verify-tidy: ## fail if go.mod or go.sum is not what go mod tidy makes it
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result (the diff above shows what it changes)"; exit 1; }

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2ek8s ./test/e2e-k8s/...
	$(GO) vet -tags e2esites ./test/sites/...

$(TOOLS)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/staticcheck $@

staticcheck: $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
	$< ./...
	$< -tags e2ek8s ./test/e2e-k8s/...
	$< -tags e2esites ./test/sites/...

$(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION):
	GOBIN=$(TOOLS) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $@

codegen: $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION) ## regenerate deepcopy code for api/
	$< object:headerFile=hack/boilerplate.go.txt paths=./api/...

verify-codegen: codegen ## fail if generated code is out of date
	@git diff --exit-code -- api/ || { echo "generated code is stale: run make codegen and commit"; exit 1; }

# FUZZ_TARGETS lists every fuzz test as package:Name. The budget is a count of executions
# (Nx), not a duration: a duration budget races Go's fuzz coordinator when it expires and
# can fail with a bare "context deadline exceeded" and no crasher (go.dev/issue/75804,
# fixed only in Go 1.27). A count has no deadline, so a slow machine only runs longer.
FUZZ_TARGETS := \
	./internal/a2a:FuzzParseRequest \
	./internal/a2a:FuzzGatewayAndSDKAgree \
	./internal/a2a:FuzzRESTRequest \
	./internal/a2a:FuzzParsePushRequest \
	./internal/manifest:FuzzDecode \
	./internal/simagent:FuzzParseLatency \
	./internal/simagent:FuzzParseTokenCount \
	./internal/simagent:FuzzParseSpeed \
	./internal/simagent:FuzzReadLLMRequest \
	./api/config/v1alpha1:FuzzDecode \
	./internal/auth:FuzzParseAuthorization \
	./internal/redact:FuzzString \
	./internal/store:FuzzKeyEncoding \
	./internal/fleet:FuzzPeerInput

fuzz: ## run each fuzz test for FUZZTIME executions (default 200000x; a duration such as 30s also works)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$name\$$' -fuzztime $(FUZZTIME) $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

clean: ## remove build output
	rm -rf bin

# --- Kubernetes: CRD and RBAC generation, API server binaries, envtest and kwok suites ----------
K8S_VERSION ?= 1.37.1
K8S_DIR     ?= $(CACHE)/k8s-v$(K8S_VERSION)
K8S_BIN     := $(K8S_DIR)/bin
K8S_PKGS    := ./internal/controller/... ./internal/discovery/kubernetes/...

.PHONY: manifests verify-manifests envtest-assets k8s-binaries test-k8s e2e-k8s real-node-deps cluster tools verify-ci-deps

manifests: $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION) ## regenerate the CRD (config/crd/bases, chart) and the operator's RBAC role from markers
	$< crd:allowDangerousTypes=true paths=./api/... output:crd:artifacts:config=config/crd/bases
	$< rbac:roleName=agentplane-operator paths=./internal/controller/... output:rbac:artifacts:config=config/rbac
	mkdir -p charts/agentplane/crds charts/agentplane/files
	cp config/crd/bases/agentplane.io_agents.yaml charts/agentplane/crds/
	cp config/rbac/role.yaml charts/agentplane/files/operator-role.yaml

verify-manifests: manifests ## fail if the CRD or RBAC manifests are out of date
	@git diff --exit-code -- config/crd config/rbac charts/agentplane/crds charts/agentplane/files || { echo "manifests are stale: run make manifests and commit"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard config/crd config/rbac charts/agentplane/crds charts/agentplane/files)" || { echo "untracked generated manifests: run make manifests and commit"; exit 1; }

envtest-assets: ## build kube-apiserver and etcd for envtest into $(K8S_BIN) (cached; ~8 min cold)
	hack/k8s-binaries.sh envtest

k8s-binaries: ## build every Kubernetes binary the suites use (control plane, kubelet, etcd, kwok, helm) into $(K8S_BIN) (cached; ~15 min cold)
	hack/k8s-binaries.sh all

test-k8s: k8s-binaries ## envtest suites, then the Kubernetes e2e (kwok multi-zone cluster and real node)
	KUBEBUILDER_ASSETS=$(K8S_BIN) $(GO) test -race -count=1 $(K8S_PKGS)
	$(MAKE) e2e-k8s

# E2E_RUN=TestRealNode runs one of them. The real-node test needs root and REAL_NODE_PKGS; it is
# skipped without them, except in CI, where it fails.
E2E_RUN ?= .
e2e-k8s: k8s-binaries ## the Kubernetes e2e: kwok multi-zone cluster, and agents in containers on a real kubelet
	K8S_DIR=$(K8S_DIR) $(GO) test -race -tags e2ek8s -count=1 -timeout 20m -v -run '$(E2E_RUN)' ./test/e2e-k8s/...

# What a real node needs from Debian: the container runtime and the CNI plugins (bridge).
REAL_NODE_PKGS := containerd runc containernetworking-plugins iproute2
real-node-deps: ## install the real node's Debian packages (root)
	@missing=""; for p in $(REAL_NODE_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

tools: $(TOOLS)/staticcheck-$(STATICCHECK_VERSION) $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION) ## install staticcheck and controller-gen into the cache

verify-ci-deps: ## fail naming each external binary or package the tests need that is missing
	STATICCHECK_VERSION=$(STATICCHECK_VERSION) CONTROLLER_GEN_VERSION=$(CONTROLLER_GEN_VERSION) \
	K8S_DIR=$(K8S_DIR) TOOLS=$(TOOLS) hack/verify-ci-deps.sh

CLUSTER_ARGS ?= --real-node
cluster: k8s-binaries ## run a local cluster until Ctrl-C (CLUSTER_ARGS: --real-node, --zones a,b,c)
	$(GO) run ./hack/cluster up $(CLUSTER_ARGS)

# In CI the envtest suites in `make test` must run, not skip: build their binaries first.
ifneq ($(CI),)
test test-short: envtest-assets
endif
