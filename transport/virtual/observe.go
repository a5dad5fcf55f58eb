package virtual

import "time"

// Observer receives the engine's message events, for metrics (package
// kombuprom turns them into Prometheus metrics). Its methods are called
// synchronously where the event happens, some on the hot path: they must be
// quick, safe for concurrent use, and never block. Queue is the queue a
// message was delivered from.
type Observer interface {
	// Published reports one publish (Publish, PublishRaw, or one message
	// of PublishBatch): how many queues it reached, how long the broker
	// took, and its error.
	Published(exchange, routingKey string, routed int, d time.Duration, err error)
	// Fetched reports one fetch that took n messages from the broker and
	// how long it took (for a blocking fetch, including the wait for the
	// first message).
	Fetched(n int, d time.Duration)
	// Delivered reports a message handed to a consumer's handler.
	Delivered(queue string)
	// Settled reports how a delivered message ended.
	Settled(queue string, s Settlement)
	// RestoredExpired reports messages whose visibility timeout passed,
	// put back by the restore sweep.
	RestoredExpired(n int)
}

// Settlement is how a delivered message ended.
type Settlement int

// The settlements.
const (
	// Acked: acknowledged (removed for good).
	Acked Settlement = iota
	// Requeued: rejected with requeue, back on its queue.
	Requeued
	// Rejected: rejected without requeue (dropped, as in Kombu).
	Rejected
	// DeadLettered: it could not be delivered (malformed, refused content
	// type, too large) and was moved to the dead-letter queue, or kept by
	// the backend where it keeps envelopes it cannot parse. Such a message
	// was never Delivered.
	DeadLettered
	// Restored: still unsettled when its consumer stopped or the channel
	// was recovered or closed: put back on its queue.
	Restored
)

// String returns the settlement's name: "acked", "requeued", ...
func (s Settlement) String() string {
	switch s {
	case Acked:
		return "acked"
	case Requeued:
		return "requeued"
	case Rejected:
		return "rejected"
	case DeadLettered:
		return "dead_lettered"
	case Restored:
		return "restored"
	}
	return "unknown"
}

// nopObserver is the Observer when none is set.
type nopObserver struct{}

func (nopObserver) Published(string, string, int, time.Duration, error) {}
func (nopObserver) Fetched(int, time.Duration)                          {}
func (nopObserver) Delivered(string)                                    {}
func (nopObserver) Settled(string, Settlement)                          {}
func (nopObserver) RestoredExpired(int)                                 {}
