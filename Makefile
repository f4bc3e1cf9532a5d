# l2span — see README.md. `make run` and `make test` set a fresh machine up.
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN     := bin
CMDS    := ./cmd/l2span-brain ./cmd/l2spanctl ./cmd/l2span-agent ./cmd/l2span-bgpd
# The whole suite must stay well inside CI's limit.
TEST_TIMEOUT ?= 25m

.PHONY: all deps build test lint unit run bench soak generate dist clean

all: build

## deps: install the Debian packages tests and the demo need (idempotent), and Go modules.
deps:
	./scripts/deps.sh
	$(GO) mod download

## build: the three binaries into ./bin.
build:
	$(GO) build -o $(BIN)/ $(CMDS)

## lint: gofmt, go vet, staticcheck.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## test: everything, root tests included (CI runs this as root).
test: deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

## unit: the tests that need neither root nor Debian packages.
unit:
	$(GO) test -count=1 ./cmd/... ./brain/... ./agent/... ./vtep/... ./internal/...

## run: a brain on SQLite and two netns pods; shows a ping crossing. Ctrl-C tears it down.
run: deps build
	./scripts/demo.sh

## bench: speed and memory goals, side by side with their baselines.
bench: deps build
	./scripts/bench.sh

## soak: TestChaos's long form (SOAK_DURATION, default 10m); plots memory and goroutines into docs/soak.png.
soak: deps build
	./scripts/soak.sh

## generate: regenerate committed generated code.
generate:
	$(GO) generate ./...

## dist: static binaries, units, example configs and docs in $(DIST)/l2span.tar.gz.
DIST ?= dist
dist:
	rm -rf $(DIST)/l2span && mkdir -p $(DIST)/l2span/deploy $(DIST)/l2span/docs
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(DIST)/l2span/bin/ $(CMDS)
	cp -r deploy/systemd deploy/examples $(DIST)/l2span/deploy/
	cp README.md $(DIST)/l2span/ && cp docs/*.md docs/openapi.yaml $(DIST)/l2span/docs/
	tar -C $(DIST) -czf $(DIST)/l2span.tar.gz l2span
	@echo $(DIST)/l2span.tar.gz

clean:
	rm -rf $(BIN) dist
