package kombu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Handler processes one message. Its ctx stays valid while the consumer
// shuts down, until the shutdown timeout; see Stopping. Unless the consumer was made with
// WithManualAck or WithNoAck, the message is settled when the handler
// returns, if the handler did not settle it itself: nil acks it, an error
// wrapping ErrReject rejects (drops) it, a *serialization.DecodeError (from
// m.Decode or m.Payload: the body can never be decoded) moves it to the
// dead-letter queue (see WithDeadLetterQueue) and goes to the error
// handler, any other error requeues it (to the back of its queue,
// redelivered) and goes to the error handler.
//
// An ack returns once Redis has deleted the unacked record (unless
// WithDeferredAcks). When the consumer is not fetching at that moment, the
// acking goroutine fetches the next messages for the free prefetch slots in
// the same round trip, so a steady consumer makes one round trip per
// message.
type Handler func(ctx context.Context, m *Message) error

// ConsumerOption configures a Consumer.
type ConsumerOption func(*consumerOptions)

type consumerOptions struct {
	virtual.ConsumeOptions
	manualAck bool
	noDeclare bool
}

// WithPrefetch sets how many messages may be delivered and not yet settled
// (Kombu's prefetch_count). The default is 4 × concurrency, Celery's
// multiplier; a negative n means no limit (Kombu's prefetch_count 0), with
// at most concurrency messages waiting for a free handler.
func WithPrefetch(n int) ConsumerOption { return func(o *consumerOptions) { o.Prefetch = n } }

// WithQoS makes the consumer count its unsettled messages against q, a
// prefetch limit it shares with every other consumer given q (as the
// consumers of one Kombu channel share its QoS), instead of a limit of its
// own: WithPrefetch is then ignored. q's limit may change while they run
// (QoS.Increment, QoS.Decrement): Celery's worker raises it by one for each
// task it holds for an eta, so that held tasks do not stop it taking
// others.
func WithQoS(q *QoS) ConsumerOption { return func(o *consumerOptions) { o.QoS = q } }

// NewQoS returns a prefetch limit of n messages for WithQoS; n < 1 means no
// limit.
func NewQoS(n int) *QoS { return virtual.NewQoS(n) }

// WithConcurrency sets the number of handler goroutines (default 1).
func WithConcurrency(n int) ConsumerOption { return func(o *consumerOptions) { o.Concurrency = n } }

// WithNoAck consumes without acknowledgements (Kombu's no_ack): messages are
// not recorded as unacked, so a crash loses what was taken.
func WithNoAck() ConsumerOption { return func(o *consumerOptions) { o.NoAck = true } }

// WithManualAck leaves settling entirely to the handler (Kombu's style:
// message.ack()). Messages it does not settle stay unacked, count against
// prefetch, and are restored when the consumer stops.
func WithManualAck() ConsumerOption { return func(o *consumerOptions) { o.manualAck = true } }

// WithAccept sets the accepted serializer names or content types (Kombu's
// accept). Messages of other types are not delivered: the error handler
// sees a *serialization.ContentDisallowedError and the message is kept
// (see WithDeadLetterQueue).
func WithAccept(accept ...string) ConsumerOption {
	return func(o *consumerOptions) { o.Accept = accept }
}

// WithConsumerTag names the consumer.
func WithConsumerTag(tag string) ConsumerOption {
	return func(o *consumerOptions) { o.ConsumerTag = tag }
}

// WithShutdownTimeout sets how long handlers in flight may run after the
// context is cancelled before their messages are restored (default 30 s).
func WithShutdownTimeout(d time.Duration) ConsumerOption {
	return func(o *consumerOptions) { o.ShutdownTimeout = d }
}

// WithErrorHandler receives the errors the consumer survives: handler
// errors, refused or malformed messages, backend errors it retries. Without
// it they go to the connection's logger, which discards them unless one was
// set with WithLogger: the library prints nothing by itself.
func WithErrorHandler(f func(error)) ConsumerOption {
	return func(o *consumerOptions) { o.OnError = f }
}

// WithDeadLetterQueue names the list that receives messages that cannot be
// delivered (malformed, refused content type, too large). Without it they
// stay unacked and come back after the visibility timeout. Messages whose
// body a handler could not decode (it returned the *serialization.DecodeError)
// go there too, or to virtual.DefaultBadMessageQueue without it. Envelopes
// that are not JSON or have no delivery tag never reach the consumer: the
// Redis backend moves them to its malformed list (malformed_key).
func WithDeadLetterQueue(q string) ConsumerOption {
	return func(o *consumerOptions) { o.DeadLetterQueue = q }
}

// WithMaxBodySize refuses message bodies above n bytes after decompression.
func WithMaxBodySize(n int64) ConsumerOption { return func(o *consumerOptions) { o.MaxBodySize = n } }

// WithReady calls f once the consumer has declared its queues, subscribed
// to its fanout exchanges and is about to take messages. Fanout is
// at-most-once: a broadcast published before then is not received.
func WithReady(f func()) ConsumerOption { return func(o *consumerOptions) { o.OnReady = f } }

// WithBatchSize sets the most messages one fetch takes from the broker in
// one round trip (Redis: one script call), never more than the free
// prefetch slots. The default is virtual.DefaultBatchSize (128); 1
// fetches one message at a time. Raise WithPrefetch too: a fetch takes
// only what prefetch allows.
func WithBatchSize(n int) ConsumerOption { return func(o *consumerOptions) { o.BatchSize = n } }

// WithDeferredAcks makes acks asynchronous (opt-in): Ack, and the
// automatic ack after a handler returns nil, return as soon as the ack is
// queued. Queued acks are sent together in one round trip before the
// consumer's next fetch, at least every maxDelay (10 ms if maxDelay <= 0),
// and when the consumer stops. The cost: if the process dies before a
// flush, those messages are still unacked in Redis and are delivered again
// after the visibility timeout (never lost, but handled twice).
func WithDeferredAcks(maxDelay time.Duration) ConsumerOption {
	if maxDelay <= 0 {
		maxDelay = 10 * time.Millisecond
	}
	return func(o *consumerOptions) { o.DeferredAcks = maxDelay }
}

// WithHungry tells the consumer when its handlers run out of work, for a
// handler that hands messages on to goroutines of its own: the consumer
// then fetches a batch's worth of messages in one round trip while they
// have work, and as soon as one prefetch slot is free once hungry reports
// true (ConsumeOptions.Hungry; call QoS.Wake when it turns true).
func WithHungry(hungry func() bool) ConsumerOption {
	return func(o *consumerOptions) { o.Hungry = hungry }
}

// WithPaused makes the consumer ask paused before each fetch whether to
// leave a queue out: a queue for which it returns true is not fetched from
// until it returns false again (Kombu's basic_cancel of one queue, which
// Celery's cancel_consumer uses; the messages already delivered are not
// affected). A wait in progress ends within the polling interval.
func WithPaused(paused func(queue string) bool) ConsumerOption {
	return func(o *consumerOptions) { o.Paused = paused }
}

// WithoutDeclare skips declaring the queues before consuming.
func WithoutDeclare() ConsumerOption { return func(o *consumerOptions) { o.noDeclare = true } }

// deadLetter moves a message whose body cannot be decoded to the
// dead-letter queue (virtual.DefaultBadMessageQueue without one), then
// acks it. If the move fails the message is requeued.
func (c *Consumer) deadLetter(ctx context.Context, m *Message) error {
	q := c.opts.DeadLetterQueue
	if q == "" {
		q = virtual.DefaultBadMessageQueue
	}
	// A copy on the master only (ErrNotReplicated) is moved all the same.
	if err := c.conn.t.Backend().Put(ctx, q, 0, m.Raw); err != nil && !errors.Is(err, transport.ErrNotReplicated) {
		return errors.Join(fmt.Errorf("kombu: move undecodable message %s to %q: %w", m.DeliveryTag, q, err), m.Requeue(ctx))
	}
	return m.Ack(ctx)
}

type stoppingKey struct{}

// Stopping returns a channel that is closed when the consumer running the
// handler with this ctx starts to shut down. A handler's own ctx is
// cancelled only when the shutdown timeout runs out, so that work in flight
// can finish; a long handler can select on Stopping to wrap up early. It
// returns nil (never ready) for a ctx not given to a Handler.
func Stopping(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	return ch
}

// deleteAutoDelete deletes the auto-delete queues bound to a fanout
// exchange once the consumer stops, as a Kombu channel does on close.
func (c *Consumer) deleteAutoDelete(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, q := range c.queues {
		if !q.AutoDelete || !c.conn.t.IsFanoutQueue(q.Name) {
			continue
		}
		if err := c.conn.t.DeleteQueue(dctx, q.Name, false); err != nil {
			c.conn.t.Logger().Warn("kombu: delete auto-delete queue", "queue", q.Name, "error", err)
		}
	}
}

// Consumer consumes from queues with a handler, like kombu.Consumer.
type Consumer struct {
	conn   *Connection
	queues []Queue
	opts   consumerOptions
}

// Consumer returns a consumer of the given queues.
func (c *Connection) Consumer(queues []Queue, opts ...ConsumerOption) *Consumer {
	cons := &Consumer{conn: c, queues: append([]Queue(nil), queues...)}
	for _, f := range opts {
		f(&cons.opts)
	}
	if cons.opts.Concurrency <= 0 {
		cons.opts.Concurrency = 1
	}
	switch {
	case cons.opts.Prefetch == 0:
		cons.opts.Prefetch = 4 * cons.opts.Concurrency
	case cons.opts.Prefetch < 0:
		cons.opts.Prefetch = 0 // transport: no limit
	}
	return cons
}

// Consume declares the queues and delivers their messages to h until ctx is
// cancelled. Then it stops taking messages, lets handlers in flight finish
// (up to the shutdown timeout), restores every message not settled to the
// front of its queue, and returns nil. It returns an error if declaring
// fails or the connection is closed.
func (c *Consumer) Consume(ctx context.Context, h Handler) error {
	t := c.conn.t
	names := make([]string, len(c.queues))
	for i, q := range c.queues {
		names[i] = q.Name
		if !c.opts.noDeclare {
			if _, err := t.DeclareQueue(ctx, q); err != nil {
				return err
			}
		}
	}
	ch, err := t.Channel()
	if err != nil {
		return err
	}
	defer ch.Close(context.WithoutCancel(ctx))
	opts := c.opts.ConsumeOptions
	opts.Queues = names
	onError := opts.OnError
	if onError == nil {
		log := t.Logger()
		onError = func(err error) { log.Error("kombu: consumer", append(virtual.ErrorAttrs(err), "error", err)...) }
		opts.OnError = onError
	}
	auto := !c.opts.manualAck && !c.opts.NoAck
	h = c.conn.hooks.wrapHandler(h)
	defer c.deleteAutoDelete(ctx)
	stopping := ctx.Done()
	return ch.Consume(ctx, opts, func(ctx context.Context, m *entity.Message) {
		ctx = context.WithValue(ctx, stoppingKey{}, stopping)
		err := h(ctx, m)
		if !auto || m.Acknowledged() {
			if err != nil {
				onError(err)
			}
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var serr error
		switch {
		case err == nil:
			serr = m.Ack(sctx)
		case errors.Is(err, ErrReject):
			serr = m.Reject(sctx)
		case errors.As(err, new(*serialization.DecodeError)):
			// The body cannot be decoded, so a requeue would only bring it
			// back forever: keep it in the dead-letter list instead.
			onError(err)
			serr = c.deadLetter(sctx, m)
		default:
			onError(err)
			serr = m.Requeue(sctx)
		}
		if serr != nil {
			onError(serr)
		}
	})
}
