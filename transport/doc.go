// Package transport is the backend contract of kombu-go, what Kombu's
// kombu.transport.virtual.Channel asks of a broker: a backend (package
// redis, package memory) implements the small Backend interface (put, get,
// size, purge, delete, binding table, unacked records and restore), and
// may implement optional capabilities (BlockingGetter, Publisher,
// BatchPutter, BatchGetter, BatchAcker, BatchPublisher, Fanout, Inspector,
// Pinger) that the engine (package transport/virtual) finds by type
// assertion, each with a fallback there. The conformance suite in
// transport/transporttest is the contract's specification.
//
// Backends register themselves for URL schemes with Register, as
// database/sql drivers do; the root package kombu opens them by URL. The
// package also holds what backends and the engine share: the errors
// callers test with errors.Is, topic-pattern routing (KeyToPattern,
// MatchTopic, Lookup), URLs and option parsing, and the clock.
package transport
