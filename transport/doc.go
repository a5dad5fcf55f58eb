// Package transport is the backend contract of kombu-go, what Kombu's
// kombu.transport.virtual.Channel asks of a broker: a backend (package
// redis, package memory) implements the small Backend interface (put,
// fetch, size, purge, delete, binding table, ack, restore), and may
// implement optional capabilities that the engine (package
// transport/virtual) finds by type assertion: routing in the backend
// (Publisher, BatchPublisher, BatchPutter, each with a fallback that
// routes in the engine and calls Put), broadcast (Fanout: without it a
// fanout exchange is refused), and operators' reads (Inspector, Pinger).
//
// Fetch is the one way messages leave a backend: one message or many,
// waiting or not, with acks riding along (FetchRequest), so the engine
// has one fetch path whatever the backend. The conformance suite in
// transport/transporttest is the contract's specification.
//
// Backends register themselves for URL schemes with Register, as
// database/sql drivers do; the root package kombu opens them by URL. The
// package also holds what backends and the engine share: the errors
// callers test with errors.Is, topic-pattern routing (KeyToPattern,
// MatchTopic, Lookup), URLs and option parsing, and the clock.
package transport
