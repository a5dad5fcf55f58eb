// Package interop holds the interoperability suite between kombu-go and
// Python Kombu on a real redis-server: Go publishes and Python consumes,
// Python publishes and Go consumes, both write the same Redis keys byte for
// byte, and each side restores, requeues and recovers what the other left.
//
// The package has no API; everything is in its tests. The Python side lives
// in testdata/peer.py and runs on Debian's python3 with python3-kombu 5.2.4
// and python3-redis. Run it with `make test`, or by hand:
//
//	KOMBU_TEST_REDIS_URL=redis://127.0.0.1:6379/0 KOMBU_REQUIRE_INTEGRATION=1 go test -race -v ./interop/
//
// Every test isolates itself with fresh names and a fresh global_keyprefix
// given to both sides, so it can share one redis-server with other tests.
package interop
