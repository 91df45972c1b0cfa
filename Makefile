# agentplane — common tasks. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

GO        ?= go
BIN       ?= bin/agentplane
CACHE     ?= $(HOME)/.cache/agentplane
TOOLS     := $(CACHE)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/agentplane/agentplane/internal/cli.Version=$(VERSION)
FUZZTIME  ?= 10s

STATICCHECK_VERSION    := v0.8.2
CONTROLLER_GEN_VERSION := v0.23.0

.PHONY: help build run test test-short lint fmt vet staticcheck codegen verify-codegen fuzz clean

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

lint: vet staticcheck ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

$(TOOLS)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/staticcheck $@

staticcheck: $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
	$< ./...

$(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION):
	GOBIN=$(TOOLS) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/controller-gen $@

codegen: $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION) ## regenerate deepcopy code for api/
	$< object:headerFile=hack/boilerplate.go.txt paths=./api/...

verify-codegen: codegen ## fail if generated code is out of date
	@git diff --exit-code -- api/ || { echo "generated code is stale: run make codegen and commit"; exit 1; }

fuzz: ## run each fuzz test for FUZZTIME (default 10s)
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./internal/a2a
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/manifest
	$(GO) test -run '^$$' -fuzz '^FuzzParseLatency$$' -fuzztime $(FUZZTIME) ./internal/simagent
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./api/config/v1alpha1
	$(GO) test -run '^$$' -fuzz '^FuzzParseAuthorization$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run '^$$' -fuzz '^FuzzString$$' -fuzztime $(FUZZTIME) ./internal/redact

clean: ## remove build output
	rm -rf bin
