# kombu-go: a Go peer of Python Kombu's Redis transport.
GO ?= go

.PHONY: demo test bench fmt lint vet deps fuzz chaos

## demo: a real producer and consumer over the Redis transport on an embedded miniredis
demo:
	$(GO) run ./examples/demo

## test: everything: gofmt, vet, go test -race (unit, integration on a private redis-server, interop with Python Kombu/Celery 5.2 and again 5.5), short fuzzing
test:
	bash scripts/test.sh

## bench: side-by-side benchmark against redis-benchmark and Python Kombu
bench:
	bash scripts/bench.sh

## deps: install gcc, redis-server and Debian's python3-kombu/celery/redis (apt-get), and the trixie Python set (.cache/pysets)
deps:
	bash scripts/deps.sh
	bash scripts/pysets.sh trixie >/dev/null

## chaos: the long fault runs: 100,000 messages with consumers killed by SIGKILL, then the other fault tests, printing the fault table
chaos:
	bash scripts/deps.sh
	KOMBU_REQUIRE_INTEGRATION=1 KOMBU_CHAOS_MESSAGES=$${KOMBU_CHAOS_MESSAGES:-100000} $(GO) test -count=1 -v -timeout 60m ./reliability/

## fuzz: run every fuzz target for 60s
fuzz:
	bash scripts/fuzz.sh 60s

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi
