// Package interop holds the interoperability suite between kombu-go and
// Python Kombu on a real redis-server: Go publishes and Python consumes,
// Python publishes and Go consumes, both write the same Redis keys byte for
// byte, and each side restores, requeues and recovers what the other left.
//
// The package has no API; everything is in its tests:
//
//	TestGoToPython, TestPythonToGo     the matrix (cases_test.go), both directions,
//	                                   under Kombu's defaults and the Celery docs' options
//	TestWireKeysIdentical              same work, same keys, members and envelope bytes
//	TestTopicPatternsLikePython        topic patterns and routing against Python's re
//	TestPythonConsumerDiesGoRestores,  a dead consumer on one side, restored by the other
//	TestGoConsumerKilledPythonRestores
//	TestPythonDiesGoRestoresInOrder,   the same with several messages: order kept
//	TestGoKilledPythonRestoresInOrder
//	TestConcurrentRestoreNoDuplicates, both sides restoring at once; the shared mutex
//	TestGoHonoursKombuRestoreMutex
//	TestRequeueAcrossPeers,            requeue on one side seen by the other
//	TestRequeuePriorityList,
//	TestAckEmulationOffRequeueShape
//	TestSimpleQueue                    kombu.simple.SimpleQueue and Go's, both ways
//	TestCompetingConsumers             Go and Python consuming one queue at once
//	TestKombu53TypeMarkers             {"__type__", "__value__"} bodies
//	TestOtherDatabase                  db 5: lists and fanout channel names
//
// The Python side is testdata/peer.py, run with Debian's python3 and
// python3-kombu 5.2.4 and python3-redis. Run the suite with `make test`, or
// by hand against any redis-server:
//
//	KOMBU_TEST_REDIS_URL=redis://127.0.0.1:6379/0 KOMBU_REQUIRE_INTEGRATION=1 go test -race -v ./interop/
//
// Every test isolates itself with fresh names and a fresh global_keyprefix
// given to both sides, so it can share one redis-server with other tests.
package interop
