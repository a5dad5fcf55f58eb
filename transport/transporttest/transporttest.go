// Package transporttest is the conformance suite every kombu-go transport
// backend must pass, in the manner of watermill's pubsub/tests: a backend
// package calls Run from its own tests with the Features it promises and a
// constructor, and is done when the suite passes.
//
// The suite drives the backend through the core (virtual.Transport and
// virtual.Channel), so it proves the behaviour users see: Kombu's envelope
// bytes, priorities, routing, prefetch, ack emulation, requeue and restore,
// and that nothing is lost when consumers close, crash, panic, or meet
// malformed messages or failing backends.
//
// It also exports a fake Clock and Faulty, a fault-injecting Backend wrapper,
// for backend-specific tests.
package transporttest

import (
	"testing"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// Features declares what a backend promises. Cases for a promise the backend
// does not make either check the documented fallback (for example
// ErrUnsupported when a fanout exchange is declared without Fanout) or are
// skipped with a message saying which feature is off; nothing is skipped
// silently.
type Features struct {
	// Fanout: the backend implements transport.Fanout. The suite checks
	// that the backend implements it exactly when this is set.
	Fanout bool
	// Persistent: messages outlive the backend value; a second backend from
	// newBackend sees what the first one stored (redis: yes; memory: each
	// backend is a private broker, no).
	Persistent bool
	// RestartBroker, if set, restarts the server while a consumer is
	// running; the suite then checks that every message is still acked
	// (real redis only). Needs Persistent.
	RestartBroker func(t *testing.T)
	// DeadLetterQueue is the queue (a name Fetch, Put and Size accept, so
	// before any key prefix) where the backend's Fetch keeps envelopes it
	// cannot read (memory.DeadLetterKey). If set, the suite checks that each
	// envelope the backend reports as kept (*transport.MalformedError with
	// Where set) is there byte for byte; if empty it checks only the error.
	DeadLetterQueue string
	// NoNonFiniteJSON declares that the backend cannot read envelopes
	// holding the NaN or Infinity tokens Python's json.dumps may write
	// (miniredis's Lua cjson refuses them; redis-server's accepts them).
	// The round-trip case then leaves that envelope out, saying so.
	NoNonFiniteJSON bool
	// NoCrossQueuePriority, if set, says why the backend serves priorities
	// strictly within each queue but not step-major across the queues of
	// one take (the sharded Redis Cluster layout: one queue per slot, so
	// no command sees two queues' lists). The step-major case then checks
	// the weaker promise instead (every message taken once, each queue's
	// own messages in priority order) and logs the reason.
	NoCrossQueuePriority string
	// PollingInterval is the transports' PollingInterval (the blocking-get
	// timeout, or the sleep between empty polls). Zero means 100 ms.
	PollingInterval time.Duration
	// Timeout bounds every wait for something that must happen. Zero means
	// 15 s. It is a generous deadline, never a sleep the result depends on.
	Timeout time.Duration
	// Quiet is how long the suite watches for something that must not
	// happen (a delivery beyond the prefetch limit, a fanout message to a
	// queue whose binding does not match). Zero means 3×PollingInterval.
	Quiet time.Duration
}

func (f *Features) setDefaults() {
	if f.PollingInterval <= 0 {
		f.PollingInterval = 100 * time.Millisecond
	}
	if f.Timeout <= 0 {
		f.Timeout = 15 * time.Second
	}
	if f.Quiet <= 0 {
		f.Quiet = 3 * f.PollingInterval
	}
}

// Epoch is where the suite's fake clocks start. It lies far in the future,
// so consumers running on the system clock never take the suite's unacked
// records for expired ones.
//
// Within one Run, cases that move their clock past the visibility timeout
// (the "Sweeps" group) run one after another from Epoch; every other case
// runs in parallel from Epoch plus half an hour with the default one-hour
// visibility timeout. So a sweep (which restores every expired record,
// whoever owns it, as Kombu's restore_visible does) only ever reaches the
// records of the sweeping case, even when all cases share one unacked store.
var Epoch = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	// visibility is the transports' VisibilityTimeout (Kombu's default).
	visibility = time.Hour
	// parallelOffset separates the parallel cases' clocks from Epoch.
	parallelOffset = 30 * time.Minute
)

// Run runs the conformance suite. newBackend returns a fresh backend for one
// case; the transport the case builds over it owns it and closes it. The
// backend must:
//
//   - use Kombu's default priority steps (0, 3, 6, 9);
//   - timestamp unacked records with clock (the suite drives visibility
//     timeouts with it);
//   - tolerate other cases using the same server at the same time: cases
//     isolate themselves by fresh UUID queue and exchange names, not by
//     wiping anything.
//
// Unacked records are swept by time, not by name, so backends built by
// newBackend should not share their unacked store with unrelated tests
// running concurrently on the system clock (give the suite its own database
// or key prefix); see Epoch for how the cases keep out of each other's way.
func Run(t *testing.T, f Features, newBackend func(t *testing.T, clock transport.Clock) transport.Backend) {
	t.Helper()
	f.setDefaults()
	s := &suite{f: f, newBackend: newBackend}
	// One group, so that every case in it has finished before the broker
	// restart below: a restart in the middle would stall the other cases.
	t.Run("Shared", func(t *testing.T) {
		for _, c := range s.parallelCases() {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.fn(t)
			})
		}
		// The sweeping cases run in order, in parallel with the cases above.
		t.Run("Sweeps", func(t *testing.T) {
			t.Parallel()
			for _, c := range s.sweepCases() {
				t.Run(c.name, c.fn)
			}
		})
	})
	t.Run("RestartBroker", s.testRestartBroker)
}

type testCase struct {
	name string
	fn   func(t *testing.T)
}

type suite struct {
	f          Features
	newBackend func(t *testing.T, clock transport.Clock) transport.Backend
}

func (s *suite) parallelCases() []testCase {
	return []testCase{
		{"Capabilities", s.testCapabilities},
		{"EnvelopeRoundTrip", s.testEnvelopeRoundTrip},
		{"PriorityOrder", s.testPriorityOrder},
		{"PriorityStepMajorAcrossQueues", s.testStepMajor},
		{"DirectRouting", s.testDirectRouting},
		{"TopicRouting", s.testTopicRouting},
		{"FanoutRouting", s.testFanoutRouting},
		{"FanoutAckAndRestore", s.testFanoutAckRestore},
		{"NoRoute", s.testNoRoute},
		{"Prefetch", s.testPrefetch},
		{"RequeueGoesToBack", s.testRequeue},
		{"CloseRestoresToFront", s.testCloseRestores},
		{"CancelRestoresToFront", s.testCancelRestores},
		{"ConcurrentConsumers", s.testConcurrentConsumers},
		{"ConcurrentClose", s.testConcurrentClose},
		{"CancelIsPrompt", s.testCancelIsPrompt},
		{"HandlerPanic", s.testHandlerPanic},
		{"MalformedEnvelope", s.testMalformed},
		{"ContentDisallowed", s.testContentDisallowed},
		{"GetEmpty", s.testGetEmpty},
		{"SizePurgeDelete", s.testSizePurgeDelete},
		{"FetchWait", s.testFetchWait},
		{"Inspector", s.testInspector},
		{"FaultyBackend", s.testFaulty},
		{"Persistent", s.testPersistent},
		{"FetchBatch", s.testFetchBatch},
		{"FetchBatchMalformed", s.testFetchBatchMalformed},
		{"AckMany", s.testAckMany},
		{"BatchedConsume", s.testBatchedConsume},
		{"DeferredAcks", s.testDeferredAcks},
	}
}

func (s *suite) sweepCases() []testCase {
	return []testCase{
		{"VisibilityRestore", s.testVisibilityRestore},
		{"VisibilityRestoreByConsumer", s.testVisibilityRestoreByConsumer},
		{"AckRemovesRecord", s.testAckRemovesRecord},
		{"RejectDrops", s.testRejectDrops},
		{"MalformedLeftUnacked", s.testMalformedLeftUnacked},
		{"ContentDisallowedLeftUnacked", s.testContentDisallowedLeftUnacked},
	}
}
