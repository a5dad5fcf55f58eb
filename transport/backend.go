package transport

import (
	"context"
	"time"

	"github.com/kombu-go/kombu/entity"
)

// Backend is the storage and I/O a virtual transport runs on: Kombu's
// virtual.Channel methods _put, _get, _size, _purge, _delete, _queue_bind,
// get_table, plus the ack records of Kombu's Redis QoS.
//
// Everything else (routing, exchange types, prefetch, the consumer loop,
// restore on close) lives once in the engine, package transport/virtual,
// and the envelope in package envelope. A Backend is shared by all
// channels of a virtual.Transport and must be safe for concurrent use.
//
// Queue and priority: a backend keeps one FIFO list per queue and priority
// step, and Fetch serves lists step-major (every queue's lowest step first),
// so a lower priority number is consumed first, as on Kombu's Redis.
type Backend interface {
	// Put appends an envelope to the back of queue's list for priority
	// (Redis: LPUSH).
	Put(ctx context.Context, queue string, priority int, envelope []byte) error

	// Fetch takes up to req.Max messages (at least one) from the lists of
	// req.Queues, step-major, as that many successive single takes would
	// (with req.Rotate, moving a queue to the end of the order after each
	// message taken from it), and appends them to dst in the order taken.
	// With req.Ack each message is recorded as unacked (see Ack and
	// Restore) atomically with its take, so no crash can lose it. Before
	// taking anything it deletes the unacked records of req.Settle, as Ack
	// would (acks riding the fetch).
	//
	// When every list is empty and req.Wait > 0, Fetch waits up to req.Wait
	// for a message (Redis: a blocking wait; a backend that cannot block
	// polls) and then takes what it finds, up to req.Max. It returns
	// ErrEmpty when nothing was taken (the Settle records are deleted all
	// the same), and must return promptly after ctx is cancelled without
	// losing a message it already took; with ctx already done it takes
	// nothing and returns ctx.Err(). On any other error the Settle
	// records may or may not have been deleted.
	//
	// A backend that cannot read the delivery tag of an envelope must not
	// drop it: it keeps the raw bytes (dead-letter storage) and returns the
	// messages taken before it plus a *MalformedError.
	Fetch(ctx context.Context, req FetchRequest, dst []Delivery) ([]Delivery, error)

	// Size returns the number of messages waiting in all of queue's lists.
	Size(ctx context.Context, queue string) (int64, error)
	// Purge removes every waiting message of queue and returns how many.
	Purge(ctx context.Context, queue string) (int64, error)
	// DeleteQueue removes all of queue's lists.
	DeleteQueue(ctx context.Context, queue string) error
	// QueueExists reports whether any of queue's lists is non-empty (Kombu:
	// an empty queue does not exist).
	QueueExists(ctx context.Context, queue string) (bool, error)

	// Bindings returns the binding table of an exchange (Kombu's get_table).
	// A missing table is empty, not an error.
	Bindings(ctx context.Context, exchange string) ([]BindingRow, error)
	// Bind adds a row to the exchange's table (Redis: SADD).
	Bind(ctx context.Context, exchange string, row BindingRow) error
	// Unbind removes a row from the exchange's table (Redis: SREM).
	Unbind(ctx context.Context, exchange string, row BindingRow) error

	// Ack deletes the unacked records of tags (Redis: ZREM + HDEL, one
	// round trip however many tags). It returns nil only when every record
	// is gone; a record already gone is not an error.
	Ack(ctx context.Context, tags ...string) error
	// Restore moves the unacked message of tag back to the queues route
	// names, front (leftmost false, RPUSH: consumed next) or back (leftmost
	// true, LPUSH), with the redelivered flags set (see MarkRedelivered),
	// deleting the record in the same atomic step. A missing record is not
	// an error: someone else restored or acked it.
	Restore(ctx context.Context, tag string, leftmost bool, route RouteFunc) error
	// RestoreExpired restores, front of queue, every unacked message
	// recorded before deadline (Kombu's restore_visible), whoever owns it,
	// and returns how many it restored.
	RestoreExpired(ctx context.Context, deadline time.Time, route RouteFunc) (int, error)

	// Close releases the backend's resources.
	Close() error
}

// RouteFunc names the queues a message published to exchange with routingKey
// goes to now. Restores re-route through it, as Kombu does.
type RouteFunc func(ctx context.Context, exchange, routingKey string) ([]string, error)

// BindingRow is one member of an exchange's binding table: Kombu's
// (routing_key, pattern, queue) triple. Pattern is the stored topic regex,
// empty for direct and fanout bindings.
type BindingRow struct {
	RoutingKey string
	Pattern    string
	Queue      string
}

// Delivery is a message taken from a backend.
type Delivery struct {
	// Queue the message was taken from.
	Queue string
	// Envelope is the raw envelope. It is read-only: a backend may hand
	// out memory it shares with the reply it read (redis does).
	Envelope []byte
	// Exchange is set for fanout deliveries: the exchange the message was
	// published to.
	Exchange string
}

// FetchRequest is what Backend.Fetch takes.
type FetchRequest struct {
	// Queues to take from, step-major: every queue's lowest priority step
	// before any queue's next step, queues in the order given within a
	// step.
	Queues []string
	// Ack records each message taken as unacked.
	Ack bool
	// Max is the most messages to take; less than 1 means 1.
	Max int
	// Rotate moves a queue to the end of the order after each message
	// taken from it (round robin), as the consumer loop does between
	// fetches.
	Rotate bool
	// Settle are delivery tags whose unacked records are deleted before
	// anything is taken.
	Settle []string
	// Wait is how long to wait for a message when every list is empty;
	// zero returns ErrEmpty at once.
	Wait time.Duration
}

// Publisher is an optional Backend capability: route and put in one atomic,
// ideally one-round-trip, step. Its routing must be Kombu's (see Route).
// It returns the number of queues the message was put on. Without it the
// core reads Bindings and calls Put for each queue.
type Publisher interface {
	Publish(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (int, error)
}

// BatchPutter is an optional Backend capability: many puts in one round trip.
type BatchPutter interface {
	PutBatch(ctx context.Context, items []PutItem) error
}

// BatchPublisher is an optional Backend capability: route and put many
// messages in one round trip, each exactly as Publisher.Publish (or Put,
// for the default exchange) would, and in order: two messages that land in
// the same list are consumed in the order they were given. Items never
// have a fanout type (the core broadcasts those itself).
//
// It returns, for each item, the number of queues it went to and its
// error (nil on success); a failed round trip fails every item it carried,
// and those items may or may not have been put.
type BatchPublisher interface {
	PublishBatch(ctx context.Context, items []PublishItem) ([]int, []error)
}

// PublishItem is one message of a batch publish. Exchange "" is the
// default exchange: the envelope goes to the queue named by RoutingKey.
type PublishItem struct {
	Exchange   string
	Type       entity.ExchangeType
	RoutingKey string
	Priority   int
	Envelope   []byte
}

// PutItem is one message of a batch put.
type PutItem struct {
	Queue    string
	Priority int
	Envelope []byte
}

// Fanout is an optional Backend capability: broadcast delivery for fanout
// exchanges (Redis: PUBLISH and PSUBSCRIBE). Without it, declaring a fanout
// exchange fails with ErrUnsupported.
type Fanout interface {
	// PublishFanout broadcasts envelope to every subscriber of exchange
	// whose binding key matches routingKey.
	PublishFanout(ctx context.Context, exchange, routingKey string, envelope []byte) error
	// SubscribeFanout starts receiving broadcasts for subs. Deliveries carry
	// the exchange in Delivery.Exchange.
	SubscribeFanout(ctx context.Context, subs []FanoutSub) (Subscription, error)
	// RecordUnacked writes the unacked record of a fanout delivery consumed
	// with acks (Kombu does this too; restoring it re-routes it into lists).
	RecordUnacked(ctx context.Context, tag string, envelope []byte, exchange, routingKey string) error
}

// FanoutSub is one fanout binding a consumer listens to.
type FanoutSub struct {
	Exchange   string
	RoutingKey string
	Queue      string
}

// Subscription is a live fanout subscription.
type Subscription interface {
	// C delivers broadcast messages; it is closed after Close.
	C() <-chan Delivery
	// Close ends the subscription.
	Close() error
}

// Pinger is an optional Backend capability: check the connection.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Opener opens a Backend from a parsed URL. Backends register one per URL
// scheme with Register.
type Opener interface {
	Open(ctx context.Context, u *URL) (Backend, error)
}

// OpenerFunc adapts a function to Opener.
type OpenerFunc func(ctx context.Context, u *URL) (Backend, error)

// Open calls f.
func (f OpenerFunc) Open(ctx context.Context, u *URL) (Backend, error) { return f(ctx, u) }

// Inspector is an optional Backend capability for operators' tools (the
// kombu command): what is in the queues, which bindings exist, what is
// unacked. None of its methods changes anything.
type Inspector interface {
	// QueueLengths returns the length of each of queue's priority lists,
	// by step, every step present.
	QueueLengths(ctx context.Context, queue string) ([]StepLength, error)
	// Exchanges lists the exchanges that have a binding table.
	Exchanges(ctx context.Context) ([]string, error)
	// Unacked returns the number of unacked records and the time the
	// oldest was recorded (zero if none).
	Unacked(ctx context.Context) (count int64, oldest time.Time, err error)
	// UnackedEntries returns up to limit unacked records, oldest first
	// (limit <= 0: all).
	UnackedEntries(ctx context.Context, limit int) ([]UnackedEntry, error)
	// Peek returns up to n envelopes of queue in delivery order (every
	// step-0 message first), without removing them.
	Peek(ctx context.Context, queue string, n int) ([]Delivery, error)
}

// StepLength is the length of one priority list.
type StepLength struct {
	Step   int
	Length int64
}

// UnackedEntry is one unacked record.
type UnackedEntry struct {
	Tag        string
	Exchange   string
	RoutingKey string
	Envelope   []byte
	Since      time.Time
}
