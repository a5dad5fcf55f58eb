// Package reliability holds kombu-go's fault-injection tests; it has no
// code of its own. Each test injects one kind of fault against a real
// redis-server and checks the at-least-once promise: every message a
// publish reported as sent is handled, duplicates are bounded by what was
// in flight when the fault hit, and nothing is dropped silently.
//
//   - TestChaosKill: consumer processes (internal/chaosconsumer, built
//     without the race detector) killed with SIGKILL at random moments and
//     restarted, while a producer publishes. KOMBU_CHAOS_MESSAGES sets the
//     number of messages (10,000 by default; `make chaos` runs 100,000).
//   - TestRedisRestart: a redis-server with appendonly/appendfsync always
//     killed and restarted while producers (WithRetry) and consumers run.
//   - TestTCPFaults: a TCP proxy between the clients and redis-server that
//     drops every connection or stalls them (stops forwarding without
//     closing).
//   - TestBadInput: malformed and refused messages, one table row each:
//     the typed error the error handler saw and where the message ended.
//   - TestGracefulShutdown: handlers in flight get the shutdown timeout,
//     then every unacked message is restored.
//   - TestPublishRetryGivesUp, TestUnroutable, TestCredentialsRedacted:
//     WithRetry's bounded policy and its give-up error, Kombu's silent drop
//     of unroutable publishes (WithMandatory for ErrNoRoute), and no
//     password in any error, log line or kombu command output.
//
// TLS, ACL and Sentinel failover tests live in package redis
// (tls_test.go, sentinel_test.go); fuzz targets beside the code they fuzz.
//
// Run with -v to see each test's row of the fault table; set
// KOMBU_RELIABILITY_REPORT to a file name to have the rows appended there.
package reliability
