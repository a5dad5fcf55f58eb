// Package kombu is a Go peer of Python's Kombu messaging library on Redis:
// Go services and Python Kombu or Celery programs share the same queues,
// exchanges and messages, byte for byte.
//
// Open a connection from a Kombu URL, declare exchanges and queues, publish
// with a Producer and consume with a Consumer:
//
//	conn, err := kombu.Dial(ctx, "redis://localhost:6379/0")
//	...
//	defer conn.Close()
//	tasks := kombu.Queue{Name: "tasks", Exchange: kombu.Exchange{Name: "tasks"}, RoutingKey: "tasks"}
//	p := conn.Producer(kombu.WithExchange(tasks.Exchange), kombu.WithDeclare(tasks))
//	_, err = p.Publish(ctx, map[string]any{"n": 1}, kombu.WithRoutingKey("tasks"))
//	c := conn.Consumer([]kombu.Queue{tasks})
//	err = c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
//		var v map[string]any
//		return m.Decode(&v) // nil: acked; error: requeued
//	})
//
// Backends register per URL scheme, as database/sql drivers do: import
// github.com/kombu-go/kombu/redis for redis://, rediss://, sentinel:// and
// rediscluster://, and github.com/kombu-go/kombu/memory for memory://.
//
// Beyond publish and consume, a Connection offers the operator's reads and
// fixes (Peek, QueueLengths, Unacked, RestoreUnacked, Bindings,
// RemoveBinding, PublishRaw), and hooks for instrumentation:
// WithPublishMiddleware and WithHandlerMiddleware (package otelkombu traces
// through them) and WithObserver (package kombuprom counts through it).
// The layers under this package, and where new code goes, are described in
// the README's Architecture section.
//
// Not implemented: Kombu transports other than Redis (AMQP, SQS and the
// rest), and Kombu's connection and producer pools (share one Connection
// instead: it is safe for concurrent use and pools its Redis connections).
package kombu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Aliases for the entity types, so most programs need only this package.
type (
	// Exchange is a routing point (see entity.Exchange).
	Exchange = entity.Exchange
	// Queue is a queue with its bindings (see entity.Queue).
	Queue = entity.Queue
	// Binding binds a queue to an exchange (see entity.Binding).
	Binding = entity.Binding
	// Message is a received message (see entity.Message).
	Message = entity.Message
	// Properties are a message's properties (see entity.Properties).
	Properties = entity.Properties
	// ExchangeType is direct, topic or fanout (see entity.ExchangeType).
	ExchangeType = entity.ExchangeType
	// Observer receives message events for metrics (see WithObserver and
	// virtual.Observer).
	Observer = virtual.Observer
	// QoS is a prefetch limit that consumers share and that can change
	// while they run (Kombu's channel QoS, with increment_eventually and
	// decrement_eventually); see NewQoS and WithQoS.
	QoS = virtual.QoS
	// Settlement is how a delivered message ended: Acked, Requeued,
	// Rejected, DeadLettered or Restored.
	Settlement = virtual.Settlement
)

// The settlements an Observer is told of.
const (
	Acked        = virtual.Acked
	Requeued     = virtual.Requeued
	Rejected     = virtual.Rejected
	DeadLettered = virtual.DeadLettered
	Restored     = virtual.Restored
)

// The exchange types.
const (
	Direct = entity.Direct
	Topic  = entity.Topic
	Fanout = entity.Fanout
)

// Sentinel errors, re-exported so callers need only this package.
var (
	// ErrEmpty: a non-blocking get found no message.
	ErrEmpty = transport.ErrEmpty
	// ErrClosed: the connection, channel or consumer is closed.
	ErrClosed = transport.ErrClosed
	// ErrNoRoute: a mandatory publish matched no queue.
	ErrNoRoute = transport.ErrNoRoute
	// ErrNotReplicated: a publish was written but fewer replicas than the
	// URL's publish_wait_replicas confirmed it in time; it is published
	// (on the master only) and not retried.
	ErrNotReplicated = transport.ErrNotReplicated
	// ErrMalformed: a message is not a valid Kombu envelope.
	ErrMalformed = transport.ErrMalformed
	// ErrContentDisallowed: a message's content type is not accepted.
	ErrContentDisallowed = serialization.ErrContentDisallowed
	// ErrNotFound: a passive declare found nothing.
	ErrNotFound = transport.ErrNotFound
	// ErrBadURL: a URL could not be parsed or has unknown options.
	ErrBadURL = transport.ErrBadURL
	// ErrUnknownScheme: no backend registered for a URL scheme.
	ErrUnknownScheme = transport.ErrUnknownScheme
	// ErrReject, returned (or wrapped) by a Handler, rejects the message
	// without requeueing it.
	ErrReject = errors.New("kombu: reject message")
)

// Options configure a Connection. The zero value works.
type Options struct {
	// Logger receives the library's logs; nil discards them.
	Logger *slog.Logger
	// Serializers is the codec registry; nil means serialization.Default.
	Serializers *serialization.Registry
	// Clock is the time source for unacked records (tests inject one).
	Clock transport.Clock
	// TransportOptions are Kombu transport options by their Kombu names
	// (visibility_timeout, polling_interval, deadletter_queue,
	// queue_order_strategy, and the backend's own), merged over the URL's.
	TransportOptions map[string]string
	// InferExchangeTypes: see virtual.Options.InferExchangeTypes.
	InferExchangeTypes bool
	// PublishMiddleware and HandlerMiddleware: see WithPublishMiddleware
	// and WithHandlerMiddleware.
	PublishMiddleware []PublishMiddleware
	HandlerMiddleware []HandlerMiddleware
	// Observer receives message events for metrics; nil means none (see
	// WithObserver).
	Observer Observer
}

// Option changes Options.
type Option func(*Options) error

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) error { o.Logger = l; return nil } }

// WithObserver sets the Observer that receives the connection's message
// events (publishes, fetches, deliveries, settlements, restores), for
// metrics: package kombuprom implements it for Prometheus.
func WithObserver(obs Observer) Option {
	return func(o *Options) error { o.Observer = obs; return nil }
}

// WithSerializers sets the codec registry.
func WithSerializers(r *serialization.Registry) Option {
	return func(o *Options) error { o.Serializers = r; return nil }
}

// WithClock sets the clock (for tests).
func WithClock(c transport.Clock) Option { return func(o *Options) error { o.Clock = c; return nil } }

// WithInferExchangeTypes routes restores through exchanges this process did
// not declare by what their binding tables hold (topic patterns mean a topic
// exchange) instead of as direct, as Kombu would.
func WithInferExchangeTypes() Option {
	return func(o *Options) error { o.InferExchangeTypes = true; return nil }
}

// WithTransportOption sets one Kombu transport option by name, as
// Connection(transport_options={...}) does in Python.
func WithTransportOption(name, value string) Option {
	return func(o *Options) error {
		if o.TransportOptions == nil {
			o.TransportOptions = map[string]string{}
		}
		o.TransportOptions[name] = value
		return nil
	}
}

func (o *Options) transportOptions() virtual.Options {
	return virtual.Options{Serializers: o.Serializers, Clock: o.Clock, Logger: o.Logger, InferExchangeTypes: o.InferExchangeTypes, Observer: o.Observer}
}

// Connection is a connection to a broker: a transport over one backend. It
// is safe for concurrent use; create it once and share it.
type Connection struct {
	t     *virtual.Transport
	url   string
	hooks hooks

	mu       sync.Mutex
	getChan  *virtual.Channel
	declared sync.Map // queues declared through WithDeclare
}

// Dial opens a connection from a Kombu URL ("redis://host:6379/0",
// "memory://"). Transport options may be given in the URL query by their
// Kombu names or with WithTransportOption.
func Dial(ctx context.Context, rawURL string, opts ...Option) (*Connection, error) {
	var o Options
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	u, err := transport.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	maps.Copy(u.Options, o.TransportOptions)
	topts := o.transportOptions()
	if err := topts.ApplyURLOptions(u.Options); err != nil {
		return nil, err
	}
	b, err := transport.Open(ctx, u)
	if err != nil {
		return nil, err // the backend's error names the (redacted) URL
	}
	return &Connection{t: virtual.New(b, topts), url: u.String(), hooks: newHooks(&o)}, nil
}

// NewConnection returns a connection over a backend built by the caller
// (database/sql's OpenDB): for example redis.New(client) with a client the
// caller owns.
func NewConnection(b transport.Backend, opts ...Option) (*Connection, error) {
	var o Options
	for _, f := range opts {
		if err := f(&o); err != nil {
			return nil, err
		}
	}
	topts := o.transportOptions()
	m := maps.Clone(o.TransportOptions)
	if m == nil {
		m = map[string]string{}
	}
	if err := topts.ApplyURLOptions(m); err != nil {
		return nil, err
	}
	for k := range m {
		return nil, fmt.Errorf("%w: transport option %q must be given to the backend", transport.ErrBadURL, k)
	}
	return &Connection{t: virtual.New(b, topts), hooks: newHooks(&o)}, nil
}

// URL returns the connection's URL with the password masked.
func (c *Connection) URL() string { return c.url }

// Logger returns the connection's logger (WithLogger; by default one that
// discards), for the layers built on the connection to log through.
func (c *Connection) Logger() *slog.Logger { return c.t.Logger() }

// Transport returns the virtual transport, for tools that need the lower
// layer.
func (c *Connection) Transport() *virtual.Transport { return c.t }

// Close restores every message received and not settled, then closes the
// backend. It waits at most 30 seconds for the restores.
func (c *Connection) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.t.Close(ctx)
}

// Ping checks the connection, if the backend can.
func (c *Connection) Ping(ctx context.Context) error {
	if p, ok := c.t.Backend().(transport.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// DeclareExchange declares an exchange in this process (Kombu keeps no
// record of exchanges on Redis; its type lives in each process).
func (c *Connection) DeclareExchange(ctx context.Context, ex Exchange) error {
	return c.t.DeclareExchange(ctx, ex)
}

// DeclareQueue declares a queue, its exchanges and its bindings, and returns
// its message count.
func (c *Connection) DeclareQueue(ctx context.Context, q Queue) (virtual.QueueInfo, error) {
	return c.t.DeclareQueue(ctx, q)
}

// Bind binds a queue to an exchange with a routing key.
func (c *Connection) Bind(ctx context.Context, queue string, ex Exchange, routingKey string) error {
	if err := c.t.DeclareExchange(ctx, ex); err != nil {
		return err
	}
	return c.t.BindQueue(ctx, queue, ex.Name, routingKey)
}

// Unbind removes a binding.
func (c *Connection) Unbind(ctx context.Context, queue string, ex Exchange, routingKey string) error {
	if err := c.t.DeclareExchange(ctx, ex); err != nil {
		return err
	}
	return c.t.UnbindQueue(ctx, queue, ex.Name, routingKey)
}

// DeleteQueue deletes a queue's messages and the bindings this process made.
func (c *Connection) DeleteQueue(ctx context.Context, queue string) error {
	return c.t.DeleteQueue(ctx, queue, false)
}

// Purge removes a queue's waiting messages and returns how many.
func (c *Connection) Purge(ctx context.Context, queue string) (int64, error) {
	return c.t.PurgeQueue(ctx, queue)
}

// Len returns the number of messages waiting in a queue (all priorities;
// unacked messages are not counted).
func (c *Connection) Len(ctx context.Context, queue string) (int64, error) {
	return c.t.QueueSize(ctx, queue)
}

// GetOption configures Get.
type GetOption func(*getOptions)

type getOptions struct {
	noAck  bool
	accept []string
	wait   time.Duration
}

// GetNoAck takes the message without recording it as unacked.
func GetNoAck() GetOption { return func(o *getOptions) { o.noAck = true } }

// GetAccept sets the accepted serializers or content types.
func GetAccept(accept ...string) GetOption { return func(o *getOptions) { o.accept = accept } }

// GetWait waits up to d for a message instead of returning ErrEmpty at once.
func GetWait(d time.Duration) GetOption { return func(o *getOptions) { o.wait = d } }

// GetBlock waits for a message until ctx is done (then Get returns
// ctx.Err()).
func GetBlock() GetOption { return func(o *getOptions) { o.wait = -1 } }

// Get takes one message from a queue (Kombu's Queue.get), or returns
// ErrEmpty. Unless GetNoAck is given the message must be settled with Ack,
// Reject or Requeue; messages not settled when the connection closes are
// restored.
func (c *Connection) Get(ctx context.Context, queue string, opts ...GetOption) (*Message, error) {
	var o getOptions
	for _, f := range opts {
		f(&o)
	}
	ch, err := c.sharedChannel()
	if err != nil {
		return nil, err
	}
	if o.wait < 0 {
		for {
			m, err := ch.GetWait(ctx, queue, o.noAck, o.accept, time.Minute)
			if errors.Is(err, ErrEmpty) && ctx.Err() == nil {
				continue
			}
			if err != nil && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return m, err
		}
	}
	if o.wait > 0 {
		return ch.GetWait(ctx, queue, o.noAck, o.accept, o.wait)
	}
	return ch.Get(ctx, queue, o.noAck, o.accept)
}

func (c *Connection) sharedChannel() (*virtual.Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getChan == nil {
		ch, err := c.t.Channel()
		if err != nil {
			return nil, err
		}
		c.getChan = ch
	}
	return c.getChan, nil
}
