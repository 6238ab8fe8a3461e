# exfilwatch build, test and demo entry points.
SHELL := /bin/bash
GO ?= go
PROTOC_GEN_GO_VERSION ?= v1.36.12
BIN := bin/exfilwatch

.PHONY: all build proto generate test demo lint vet fmt bench clean devstack-start devstack-stop

all: build

build:
	$(GO) build -o $(BIN) ./cmd/exfilwatch

# Regenerate Go code from proto/ (protoc from Debian's protobuf-compiler).
proto:
	@command -v protoc >/dev/null || { apt-get install -y -qq protobuf-compiler >/dev/null; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	PATH=$(CURDIR)/bin:$$PATH protoc -I proto --go_out=. --go_opt=module=github.com/exfilwatch/exfilwatch proto/exfilwatch/v1/*.proto

# Regenerate the eBPF objects (clang from Debian).
generate:
	$(GO) generate ./bpf/...

demo: build
	./$(BIN) demo

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .

clean:
	rm -rf bin
