package virtual

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
)

// Channel is Kombu's virtual channel: it takes messages from the backend,
// remembers the ones it delivered and that are not settled yet (Kombu's
// QoS), settles them, and restores the unsettled ones when it closes. It is
// safe for concurrent use. It implements entity.Acknowledger for the
// messages it delivers.
type Channel struct {
	t *Transport

	mu        sync.Mutex
	seq       uint64
	delivered map[*entity.Message]*pending
	closed    bool
	done      chan struct{} // closed by Close

	acks ackBatcher // coalesces concurrent acks (see acks.go)

	// restoreMu is held for a whole restoreAll, so that a second caller
	// (Close while the consumer restores as it stops) returns only once
	// the messages the first one took are back in their queues.
	restoreMu sync.Mutex
	// claims counts settlements under way (a message claimed by Ack or
	// Reject, its round trip not ended); claimsIdle is closed while there
	// are none. restoreAll waits for them, so that a settlement that fails
	// puts its message back in time to be restored, and one that succeeds
	// is finished when Close or Consume returns (a cut-off handler's
	// requeue is then not left in flight on a connection its caller is
	// about to close). Guarded by mu.
	claims     int
	claimsIdle chan struct{}
}

type pending struct {
	seq     uint64
	tag     string
	queue   string // delivered from (for the Observer)
	release func()
	// deferred, if set, queues the ack instead of sending it (a consumer
	// with DeferredAcks delivered the message).
	deferred *deferredAcks
	// fetcher, if set, is the consumer loop's: an awaited ack can fetch
	// the next messages with it (fetcher.ackFetch).
	fetcher *fetcher
}

// ackRoute says how a consumer's messages are acked: queued (deferred),
// riding a fetch (fetcher), or on their own.
type ackRoute struct {
	deferred *deferredAcks
	fetcher  *fetcher
}

// Channel opens a channel on the transport.
func (t *Transport) Channel() (*Channel, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, transport.ErrClosed
	}
	c := &Channel{t: t, delivered: map[*entity.Message]*pending{}, done: make(chan struct{})}
	t.channels[c] = struct{}{}
	return c, nil
}

// Transport returns the channel's transport.
func (c *Channel) Transport() *Transport { return c.t }

// Unacked returns how many messages the channel delivered with acks and has
// not seen settled.
func (c *Channel) Unacked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.delivered)
}

// Close restores every message delivered and not settled to the front of
// its queue, in delivery order (the first delivered is consumed first
// again), then closes the channel. Kombu does the same on close
// (restore_at_shutdown) but reverses the order within the batch.
func (c *Channel) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	err := c.restoreAll(ctx)
	c.t.mu.Lock()
	delete(c.t.channels, c)
	c.t.mu.Unlock()
	return err
}

// Recover restores every delivered, unsettled message (Kombu's
// basic_recover(requeue=True)).
func (c *Channel) Recover(ctx context.Context) error { return c.restoreAll(ctx) }

func (c *Channel) restoreAll(ctx context.Context) error {
	c.restoreMu.Lock()
	defer c.restoreMu.Unlock()
	c.mu.Lock()
	for c.claims > 0 {
		idle := c.claimsIdle
		c.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			// Restore what is not claimed; a settlement still under way
			// restores its message itself if it fails (unclaim).
		}
		c.mu.Lock()
		if ctx.Err() != nil {
			break
		}
	}
	list := make([]*pending, 0, len(c.delivered))
	for m, p := range c.delivered {
		list = append(list, p)
		delete(c.delivered, m)
	}
	c.mu.Unlock()
	if len(list) == 0 {
		return nil
	}
	// RPUSH puts each at the front; restoring the newest first leaves the
	// oldest at the very front, so the original order is kept.
	sort.Slice(list, func(i, j int) bool { return list[i].seq > list[j].seq })
	c.t.opts.Logger.Info("kombu: restoring unacknowledged messages", "count", len(list))
	var errs []error
	for _, p := range list {
		if err := c.t.backend.Restore(ctx, p.tag, false, c.t.routeFunc()); err != nil {
			errs = append(errs, fmt.Errorf("kombu: restore %s: %w", p.tag, err))
		} else {
			c.t.opts.Observer.Settled(p.queue, Restored)
		}
		p.settled()
	}
	return errors.Join(errs...)
}

// Ack acknowledges a message this channel delivered (entity.Acknowledger).
func (c *Channel) Ack(ctx context.Context, m *entity.Message) error {
	p, err := c.claim(m)
	if err != nil {
		return err
	}
	defer c.claimEnded()
	if p.deferred != nil {
		p.deferred.add(p.tag)
		p.settled()
		c.t.opts.Observer.Settled(p.queue, Acked)
		return nil
	}
	if err := c.ackClaimed(ctx, p); err != nil {
		c.unclaim(ctx, m, p)
		return err
	}
	p.settled()
	c.t.opts.Observer.Settled(p.queue, Acked)
	return nil
}

// ackClaimed deletes a claimed message's unacked record: riding a fetch
// of the next messages if it can (fetcher.ackFetch), else with its own
// round trip, shared with concurrent acks.
func (c *Channel) ackClaimed(ctx context.Context, p *pending) error {
	if p.fetcher != nil && p.release != nil {
		if done, err := p.fetcher.ackFetch(ctx, p); done {
			return err
		}
	}
	return c.acks.ack(ctx, c.t.backend, p.tag)
}

// Reject drops the message, or with requeue puts it at the back of its
// queue with the redelivered flags set (entity.Acknowledger). Unlike Kombu
// up to 5.3.2 it sends no second ack after the requeue, which could delete
// another consumer's fresh unacked record (Kombu issue #1800).
func (c *Channel) Reject(ctx context.Context, m *entity.Message, requeue bool) error {
	p, err := c.claim(m)
	if err != nil {
		return err
	}
	defer c.claimEnded()
	s := Rejected
	if requeue {
		s = Requeued
		err = c.t.backend.Restore(ctx, p.tag, true, c.t.routeFunc())
	} else {
		err = c.ackClaimed(ctx, p)
	}
	if err != nil {
		c.unclaim(ctx, m, p)
		return err
	}
	p.settled()
	c.t.opts.Observer.Settled(p.queue, s)
	return nil
}

// claim takes m out of the unsettled set before it is settled, so that a
// restore running meanwhile (Close, Recover) leaves it to the settlement:
// otherwise the message could be restored, taken by another consumer, and
// its new unacked record deleted by this settlement.
func (c *Channel) claim(m *entity.Message) (*pending, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.delivered[m]
	if !ok {
		if c.closed {
			return nil, fmt.Errorf("%w: message %s was restored when the channel closed", transport.ErrClosed, m.DeliveryTag)
		}
		return nil, fmt.Errorf("%w: message %s is not pending on this channel (restored at shutdown?)", transport.ErrClosed, m.DeliveryTag)
	}
	delete(c.delivered, m)
	if c.claims == 0 {
		c.claimsIdle = make(chan struct{})
	}
	c.claims++
	return p, nil
}

// claimEnded ends a settlement begun by claim (whatever its outcome).
func (c *Channel) claimEnded() {
	c.mu.Lock()
	c.claims--
	if c.claims == 0 {
		close(c.claimsIdle)
	}
	c.mu.Unlock()
}

// unclaim returns a message whose settlement failed to the unsettled set.
// If the channel closed meanwhile, its restore missed the message, so it
// is restored now (or, if that fails too, by the visibility timeout).
func (c *Channel) unclaim(ctx context.Context, m *entity.Message, p *pending) {
	c.mu.Lock()
	if !c.closed {
		c.delivered[m] = p
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if err := c.t.backend.Restore(context.WithoutCancel(ctx), p.tag, false, c.t.routeFunc()); err != nil {
		c.t.opts.Logger.Error("kombu: cannot restore a message whose settlement failed while the channel closed; left unacked", "queue", p.queue, "delivery_tag", p.tag, "error", err)
	}
	p.settled()
}

// settled frees the message's prefetch slot, once.
func (p *pending) settled() {
	if r := p.release; r != nil {
		p.release = nil
		r()
	}
}

// track records a message delivered with acks; deferred, if not nil, is
// where its ack is queued.
func (c *Channel) track(m *entity.Message, release func(), via ackRoute) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return transport.ErrClosed
	}
	c.seq++
	c.delivered[m] = &pending{seq: c.seq, tag: m.DeliveryTag, queue: m.DeliveryInfo.Queue, release: release, deferred: via.deferred, fetcher: via.fetcher}
	m.Acknowledger = c
	return nil
}

// Get takes one message from queue without waiting (Kombu's basic_get). It
// returns ErrEmpty if there is none. Unless noAck, the message is recorded
// as unacked and must be settled.
func (c *Channel) Get(ctx context.Context, queue string, noAck bool, accept []string) (*entity.Message, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, transport.ErrClosed
	}
	var one [1]transport.Delivery
	got, err := c.t.backend.Fetch(ctx, transport.FetchRequest{Queues: []string{queue}, Ack: !noAck}, one[:0])
	if err == nil && len(got) == 0 {
		err = transport.ErrEmpty
	}
	if err != nil {
		return nil, err
	}
	return c.receive(ctx, got[0], noAck, accept)
}

// receive turns a delivery from Channel.Get or Channel.GetWait into a tracked message, or
// keeps it as a bad message (see badMessage) and returns the error.
func (c *Channel) receive(ctx context.Context, d transport.Delivery, noAck bool, accept []string) (*entity.Message, error) {
	m, err := c.buildMessage(d, accept, 0)
	if err != nil {
		c.badMessage(ctx, d, m, !noAck, "", err)
		return nil, err
	}
	if !noAck {
		if err := c.track(m, nil, ackRoute{}); err != nil {
			return nil, err
		}
	}
	c.t.opts.Observer.Delivered(d.Queue)
	return m, nil
}

// DefaultBadMessageQueue is where a no-ack consumer puts messages it cannot
// parse or may not decode when no dead-letter queue is configured.
const DefaultBadMessageQueue = "kombu-go.bad-messages"

// badMessage keeps a message that cannot be delivered: it goes to dlq if
// set; otherwise, if it was recorded as unacked, it is left there (the
// visibility timeout brings it back); otherwise it goes to
// DefaultBadMessageQueue. Nothing is dropped.
func (c *Channel) badMessage(ctx context.Context, d transport.Delivery, m *entity.Message, recorded bool, dlq string, cause error) {
	log := c.t.opts.Logger
	tag := ""
	if m != nil {
		tag = m.DeliveryTag
	}
	if dlq == "" && recorded && tag != "" {
		log.Warn("kombu: message cannot be delivered; left unacked", "queue", d.Queue, "delivery_tag", tag, "error", cause)
		return
	}
	if dlq == "" {
		dlq = DefaultBadMessageQueue
	}
	// A copy on the master only (ErrNotReplicated) is a copy: as safe as
	// any write without publish_wait_replicas.
	if err := c.t.backend.Put(ctx, dlq, 0, d.Envelope); err != nil && !errors.Is(err, transport.ErrNotReplicated) {
		log.Error("kombu: cannot move bad message to dead-letter queue; left unacked", "queue", d.Queue, "dead_letter_queue", dlq, "error", err)
		return
	}
	if recorded && tag != "" {
		if err := c.t.backend.Ack(ctx, tag); err != nil {
			log.Error("kombu: bad message copied to dead-letter queue but its unacked record remains", "queue", d.Queue, "delivery_tag", tag, "error", err)
		}
	}
	c.t.opts.Observer.Settled(d.Queue, DeadLettered)
	log.Warn("kombu: message cannot be delivered; moved to dead-letter queue", "queue", d.Queue, "dead_letter_queue", dlq, "error", cause)
}

// decoder implements entity.Decoder with a registry and an accept list.
type decoder struct {
	reg    *serialization.Registry
	accept []string
}

func (d decoder) Decode(body []byte, ct, ce string) (any, error) {
	return d.reg.Decode(body, ct, ce, d.accept)
}

func (d decoder) DecodeInto(body []byte, ct, ce string, v any) error {
	return d.reg.DecodeInto(body, ct, ce, d.accept, v)
}

// buildMessage parses a delivery into a Message: the envelope is parsed,
// the body decompressed, and the content type checked against accept (the
// body itself is decoded lazily by Message.Payload or Decode). On error the
// returned message, if not nil, carries what could be read.
// MessageFromDelivery builds the message a consumer would receive from a
// delivery (body decompressed), without an acknowledger and without an
// accept check; a delivery that is not a valid envelope returns a
// *MalformedError.
func (t *Transport) MessageFromDelivery(d transport.Delivery) (*entity.Message, error) {
	m, err := (&Channel{t: t}).buildMessage(d, nil, 0)
	var mal *transport.MalformedError
	if errors.As(err, &mal) || err == nil {
		return m, err
	}
	if errors.Is(err, serialization.ErrContentDisallowed) {
		return m, nil // no accept check here
	}
	return nil, err
}

func (c *Channel) buildMessage(d transport.Delivery, accept []string, maxBody int64) (*entity.Message, error) {
	env, err := envelope.Parse(d.Envelope)
	if err != nil {
		m := &entity.Message{Raw: d.Envelope}
		if tag, ok := envelope.ExtractTag(d.Envelope); ok {
			m.DeliveryTag = tag
		}
		return m, &transport.MalformedError{Queue: d.Queue, Raw: d.Envelope, Err: err}
	}
	reg := c.t.opts.Serializers
	m := &entity.Message{
		Body:            env.Body,
		ContentType:     env.ContentType,
		ContentEncoding: env.ContentEncoding,
		Headers:         env.Headers,
		Properties:      env.Properties,
		DeliveryInfo:    entity.DeliveryInfo{Exchange: env.Exchange, RoutingKey: env.RoutingKey, Queue: d.Queue},
		DeliveryTag:     env.DeliveryTag,
		Redelivered:     env.Redelivered,
		Raw:             d.Envelope,
		Decoder:         decoder{reg: reg, accept: accept},
	}
	if env.Compression != "" {
		body, err := reg.DecompressLimit(env.Compression, env.Body, maxBody)
		if err != nil {
			return m, err
		}
		m.Body = body
	} else if maxBody > 0 && int64(len(m.Body)) > maxBody {
		return m, fmt.Errorf("%w: body of %d bytes exceeds the limit of %d", serialization.ErrTooLarge, len(m.Body), maxBody)
	}
	if err := reg.Check(m.ContentType, accept); err != nil {
		return m, err
	}
	return m, nil
}

// Handler processes one delivered message. It settles the message with
// m.Ack, m.Reject or m.Requeue (now or later, from any goroutine).
type Handler func(ctx context.Context, m *entity.Message)

// ConsumeOptions configure Channel.Consume. The zero value works except
// for Queues.
type ConsumeOptions struct {
	// Queues to consume from. Queues bound (by this process) to a fanout
	// exchange are served through the backend's Fanout subscription.
	Queues []string
	// NoAck delivers messages without recording them as unacked (Kombu's
	// no_ack): a crash loses what was taken.
	NoAck bool
	// Prefetch is the most messages delivered and not yet settled (Kombu's
	// prefetch_count). Zero means no limit beyond Concurrency handlers plus
	// Concurrency buffered messages. Ignored when QoS is set.
	Prefetch int
	// QoS, if set, is the prefetch limit this consumer shares with the
	// other consumers given the same QoS (Kombu's channel QoS), and that
	// can change while they run (QoS.Increment, QoS.Decrement).
	QoS *QoS
	// Concurrency is the number of handler goroutines; zero means 1.
	Concurrency int
	// ConsumerTag names the consumer in DeliveryInfo.
	ConsumerTag string
	// Accept lists accepted serializer names or content types; nil means
	// the registry's default (json, raw and text; never pickle).
	Accept []string
	// ShutdownTimeout is how long handlers in flight may run after ctx is
	// cancelled before their messages are restored; zero means 30 s.
	ShutdownTimeout time.Duration
	// OnError receives errors the loop survives: backend errors (the loop
	// retries with backoff), malformed and refused messages (see
	// DeadLetterQueue), handler panics (the message is requeued).
	OnError func(error)
	// DeadLetterQueue receives messages that cannot be delivered (malformed
	// envelopes, refused content types, undecompressable or oversized
	// bodies). Empty means: left unacked when consumed with acks (the
	// visibility timeout brings them back), else DefaultBadMessageQueue.
	DeadLetterQueue string
	// MaxBodySize refuses bodies larger than this many bytes (after
	// decompression); zero means no limit.
	MaxBodySize int64
	// OnReady, if set, is called once the consumer is subscribed to its
	// fanout exchanges and about to take messages: a fanout publish made
	// after it returns reaches this consumer.
	OnReady func()
	// BatchSize is the most messages one Fetch takes (one round trip on
	// Redis); a fetch never takes more than the free prefetch slots. Zero means DefaultBatchSize; 1 turns batching
	// off. No-ack consumers always take one message per fetch.
	BatchSize int
	// DeferredAcks, if positive, makes Ack return as soon as the ack is
	// queued instead of when it reached the backend (opt-in). Queued acks
	// are sent together before the next fetch, at least every
	// DeferredAcks, and when the consumer stops. The cost: if the process
	// dies before a flush, those messages are still unacked in the
	// backend and are delivered again after the visibility timeout (never
	// lost). A failed flush is reported to OnError and retried with the
	// next one.
	DeferredAcks time.Duration
	// Hungry, if set, reports whether the consumer's handlers are running
	// out of work, for a handler that only hands messages on to goroutines
	// of its own (a dispatcher, as a Celery worker's is): with batching,
	// the loop fetches as soon as one prefetch slot is free while no
	// delivered message waits and Hungry reports true; otherwise it waits
	// until a batch's worth of slots is free, so that one round trip
	// brings several messages. Nil means the handlers are hungry whenever
	// no delivered message waits for them. Call QoS.Wake when its answer
	// turns true. It is called with the QoS's lock held: it must not call
	// the QoS.
	Hungry func() bool
	// Paused, if set, is asked before each fetch whether to leave a queue
	// out: a queue for which it returns true is not fetched from until it
	// returns false again (Kombu's basic_cancel on one queue of a running
	// consumer, which Celery's cancel_consumer uses). A wait already in
	// progress ends within the backend's polling interval; while every
	// queue is paused the consumer checks again every PollingInterval.
	// Messages already delivered are not affected.
	Paused func(queue string) bool
}

// DefaultBatchSize is the default ConsumeOptions.BatchSize.
const DefaultBatchSize = 128

// Consume delivers messages from opts.Queues to handler until ctx is
// cancelled or the channel closes. On cancellation it stops taking
// messages, gives handlers in flight opts.ShutdownTimeout, then restores
// every message it delivered that is not settled (to the front of its
// queue, in order). It returns nil after a cancellation and ErrClosed if the
// channel was closed.
func (c *Channel) Consume(ctx context.Context, opts ConsumeOptions, handler Handler) error {
	if len(opts.Queues) == 0 {
		return fmt.Errorf("%w: Consume needs at least one queue", entity.ErrInvalid)
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) { c.t.opts.Logger.Error("kombu: consumer", append(ErrorAttrs(err), "error", err)...) }
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return transport.ErrClosed
	}
	c.mu.Unlock()
	parent := ctx
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-c.done: // Close stops the consumer too
			stop()
		case <-ctx.Done():
		}
	}()

	// The gate bounds the messages delivered and not settled (prefetch).
	var g *gate
	if opts.QoS != nil {
		g = opts.QoS.g
		opts.Prefetch = opts.QoS.Prefetch()
	} else {
		g = newGate(opts.Prefetch)
	}
	// With acks, messages wait in a buffer up to the prefetch count: they
	// are tracked, so a shutdown restores them. Without acks nothing could
	// restore a buffered message, so the hand-off is unbuffered: a message
	// is taken from the broker only for a worker that is ready for it.
	bufSize := opts.Prefetch
	if bufSize <= 0 {
		bufSize = opts.Concurrency
	}
	if opts.NoAck {
		bufSize = 0
	}
	work := make(chan *entity.Message, bufSize)
	// Fanout messages take no prefetch slot, so they have a buffer of
	// their own: work never holds more list messages than slots, which
	// lets a handler that acks deliver into it without blocking
	// (fetcher.ackFetch).
	fanWork := make(chan *entity.Message, bufSize)
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	var workers sync.WaitGroup
	for i := 0; i < opts.Concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for ctx.Err() == nil {
				var m *entity.Message
				select {
				case <-ctx.Done():
					return
				case m = <-fanWork:
				case m = <-work:
					if len(work) == 0 {
						g.poke() // the fetch loop may be waiting for this
					}
				}
				if ctx.Err() != nil {
					// Shutting down: not handled. Tracked messages are
					// restored below; a no-ack one is put back.
					c.giveBack(m, opts)
					return
				}
				c.runHandler(handlerCtx, handler, m, opts)
			}
		}()
	}

	var deferred *deferredAcks
	if opts.DeferredAcks > 0 && !opts.NoAck {
		deferred = newDeferredAcks(c.t.backend, opts.DeferredAcks, opts.OnError)
		flusher := make(chan struct{})
		go func() {
			defer close(flusher)
			deferred.run(ctx)
		}()
		defer func() { <-flusher }()
	}

	subs, listQueues := c.t.fanoutSubs(opts.Queues)
	var fetchers sync.WaitGroup
	if len(subs) > 0 {
		f, ok := c.t.backend.(transport.Fanout)
		if !ok {
			return fmt.Errorf("kombu: fanout queues: %w", transport.ErrUnsupported)
		}
		sub, err := f.SubscribeFanout(ctx, subs)
		if err != nil {
			return err
		}
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			defer sub.Close()
			c.fanoutLoop(ctx, sub, subs, fanWork, opts, deferred)
		}()
	}
	if len(listQueues) > 0 {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			c.fetchLoop(ctx, listQueues, g, work, opts, deferred)
		}()
	}
	if opts.OnReady != nil {
		opts.OnReady()
	}
	fetchers.Wait()

	// Give handlers in flight their grace period, then cut them off.
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(opts.ShutdownTimeout):
		cancelHandlers()
		c.t.opts.Logger.Warn("kombu: handlers still running after the shutdown timeout; restoring their messages")
	}
	// Messages still buffered were never handled: tracked ones are restored
	// below with everything else that is unsettled.
	for drained := false; !drained; {
		select {
		case m := <-work:
			c.giveBack(m, opts)
		case m := <-fanWork:
			c.giveBack(m, opts)
		default:
			drained = true
		}
	}
	restoreCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if deferred != nil {
		// Acks handlers made: sent before anything is restored.
		if err := deferred.flush(restoreCtx); err != nil {
			opts.OnError(fmt.Errorf("kombu: deferred acks not sent (those messages will be redelivered after the visibility timeout): %w", err))
		}
	}
	if err := c.restoreAll(restoreCtx); err != nil {
		opts.OnError(err)
	}
	if parent.Err() != nil {
		return nil
	}
	return transport.ErrClosed
}

func (c *Channel) runHandler(ctx context.Context, h Handler, m *entity.Message, opts ConsumeOptions) {
	defer func() {
		if r := recover(); r != nil {
			err := fmt.Errorf("kombu: handler panic on message %s: %v\n%s", m.DeliveryTag, r, debug.Stack())
			opts.OnError(err)
			if !opts.NoAck && !m.Acknowledged() {
				if rerr := m.Requeue(context.WithoutCancel(ctx)); rerr != nil {
					opts.OnError(rerr)
				}
			}
		}
	}()
	h(ctx, m)
}

// fetchLoop takes messages from the list queues while prefetch allows: as
// many as there are free prefetch slots (up to BatchSize) in one Fetch,
// once half the prefetch count is free or the handlers run out of work,
// with the deferred acks riding along. When nothing is waiting it gives
// back all slots but one and waits in Fetch for the next message. Handlers
// that ack may fetch too (fetcher.ackFetch).
func (c *Channel) fetchLoop(ctx context.Context, queues []string, g *gate, work chan *entity.Message, opts ConsumeOptions, deferred *deferredAcks) {
	order := append([]string(nil), queues...)
	if c.t.opts.QueueOrder == SortedOrder {
		sort.Strings(order)
	}
	rr := c.t.opts.QueueOrder == RoundRobin
	batchSize := opts.BatchSize
	if batchSize <= 0 {
		batchSize = DefaultBatchSize
	}
	if opts.NoAck {
		// A no-ack message is taken only for a worker that is ready for
		// it: one at a time.
		batchSize = 1
	}
	batching := batchSize > 1
	want := 1
	if batching {
		want = max(1, min(batchSize, opts.Prefetch/2))
	}
	f := &fetcher{c: c, ctx: ctx, g: g, work: work, opts: opts, order: order, rr: rr, batchSize: batchSize}
	f.via = ackRoute{deferred: deferred}
	if batching && deferred == nil && g.limited() {
		f.via.fetcher = f
	}
	defer f.stop()
	hungry := func() bool { return len(work) == 0 && (opts.Hungry == nil || opts.Hungry()) }
	wake, unwait := g.waiter()
	defer unwait()
	poll := c.t.opts.PollingInterval
	var lastRestore time.Time
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if now := c.t.opts.Clock.Now(); now.Sub(lastRestore) >= c.t.opts.RestoreInterval || now.Before(lastRestore) {
			lastRestore = now
			c.restoreExpired(ctx, opts)
		}
		limit := batchSize
		if !g.limited() && batching {
			// No prefetch limit: fill the hand-off buffer.
			limit = min(batchSize, max(1, cap(work)-len(work)))
		}
		n, err := g.acquire(ctx, wake, want, limit, hungry)
		if err != nil {
			return
		}
		f.mu.Lock()
		select {
		case <-c.done:
			// Close is restoring (which frees slots): take nothing more,
			// or a message it just put back would be taken again.
			f.mu.Unlock()
			g.giveBack(n)
			return
		default:
		}
		var settle []string
		if deferred != nil {
			if batching {
				settle = deferred.take()
			} else if deferred.queued() > 0 {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackFlushTimeout)
				if err := deferred.flush(fctx); err != nil {
					opts.OnError(fmt.Errorf("kombu: deferred acks: %w", err))
				}
				cancel()
			}
		}
		queues := f.active()
		if len(queues) == 0 {
			// Every queue is paused: settle deferred acks, wait, look again.
			if len(settle) > 0 {
				deferred.putBack(settle)
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackFlushTimeout)
				if err := deferred.flush(fctx); err != nil {
					opts.OnError(fmt.Errorf("kombu: deferred acks: %w", err))
				}
				cancel()
			}
			g.giveBack(n)
			f.mu.Unlock()
			sleepCtx(ctx, poll)
			continue
		}
		var fetchStart time.Time
		if c.t.observed {
			fetchStart = time.Now()
		}
		req := transport.FetchRequest{Queues: queues, Ack: !opts.NoAck, Max: n, Rotate: rr, Settle: settle}
		if n == 1 && len(settle) == 0 {
			req.Wait = poll // nothing else to do meanwhile
		}
		f.batch, err = c.t.backend.Fetch(ctx, req, f.batch[:0])
		if len(settle) > 0 && err != nil && !errors.Is(err, transport.ErrEmpty) && !isMalformed(err) {
			deferred.putBack(settle) // sent again with the next fetch or flush
			if ctx.Err() == nil {
				opts.OnError(fmt.Errorf("kombu: deferred acks: %w", err))
			}
		}
		if req.Wait == 0 && errors.Is(err, transport.ErrEmpty) {
			// Nothing waiting: give back the slots a batch would have
			// filled and wait for one message. Handlers ack on their own
			// meanwhile (they find f.mu held).
			g.giveBack(n - 1)
			n = 1
			f.batch, err = c.t.backend.Fetch(ctx, transport.FetchRequest{Queues: queues, Ack: !opts.NoAck, Max: 1, Rotate: rr, Wait: poll}, f.batch[:0])
		}
		if err != nil && !errors.Is(err, transport.ErrEmpty) && !isMalformed(err) && ctx.Err() == nil {
			// Formatted now: the loop's queue order changes once f.mu is
			// released.
			err = fmt.Errorf("kombu: get from %v: %w", queues, err)
		}
		g.giveBack(n - len(f.batch))
		if len(f.batch) > 0 && c.t.observed {
			c.t.opts.Observer.Fetched(len(f.batch), time.Since(fetchStart))
		}
		f.deliverBatch()
		f.mu.Unlock()
		if err != nil {
			var mal *transport.MalformedError
			switch {
			case errors.Is(err, transport.ErrEmpty):
				backoff = 0
			case errors.As(err, &mal):
				c.t.opts.Observer.Settled(mal.Queue, DeadLettered) // kept by the backend (mal.Where)
				opts.OnError(err)
			case ctx.Err() != nil:
				return
			default:
				opts.OnError(err)
				backoff = nextBackoff(backoff)
				sleepCtx(ctx, backoff)
			}
			continue
		}
		backoff = 0
	}
}

func isMalformed(err error) bool {
	var mal *transport.MalformedError
	return errors.As(err, &mal)
}

// fetcher is one consumer loop's way of taking messages, shared by the
// loop and by the handlers that ack: mu is held for a fetch and the
// deliveries it makes, so messages reach the handlers in the order they
// were taken, and the round-robin queue order is kept in one place.
//
// An awaited ack (one that returns once the record is gone) made by a
// handler while the loop is not fetching does not send a round trip of its
// own: the handler fetches, with its ack riding the fetch (FetchRequest.Settle),
// as many messages as there are free slots, its own included, and hands
// them to the handlers (ackFetch). One round trip per message instead of
// an ack and a share of a fetch, and no hand-off between goroutines: the
// loop stays parked while handlers keep the buffer filled. While the loop
// fetches or waits for a message to arrive, acks go on their own as before.
type fetcher struct {
	c         *Channel
	ctx       context.Context // the consumer's
	g         *gate
	work      chan *entity.Message
	opts      ConsumeOptions
	via       ackRoute
	rr        bool
	batchSize int

	mu      sync.Mutex
	order   []string
	scratch []string // active's result when some queues are paused
	batch   []transport.Delivery
	stopped bool
}

// active returns the queues to fetch from now, in fetch order: f.order
// without those opts.Paused leaves out; f.mu is held.
func (f *fetcher) active() []string {
	if f.opts.Paused == nil {
		return f.order
	}
	f.scratch = f.scratch[:0]
	for _, q := range f.order {
		if !f.opts.Paused(q) {
			f.scratch = append(f.scratch, q)
		}
	}
	return f.scratch
}

// deliverBatch hands f.batch to the handlers; f.mu is held.
func (f *fetcher) deliverBatch() {
	for i := range f.batch {
		if f.rr {
			rotate(f.order, f.batch[i].Queue)
		}
		f.c.deliver(f.ctx, f.batch[i], f.work, f.g.release, f.opts, f.via)
		f.batch[i] = transport.Delivery{}
	}
}

// stop ends handler fetches: after it returns, none runs or starts.
func (f *fetcher) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
}

// ackFetch acks p (claimed, holding its prefetch slot) by fetching the
// next messages with the ack riding along, if no fetch is running and the
// consumer is not stopping. It reports whether it did; if not, the caller
// acks on its own. On success p's slot has gone to the fetched messages.
func (f *fetcher) ackFetch(ctx context.Context, p *pending) (bool, error) {
	if !f.mu.TryLock() {
		return false, nil
	}
	defer f.mu.Unlock()
	if f.stopped || f.ctx.Err() != nil || ctx.Err() != nil {
		return false, nil
	}
	select {
	case <-f.c.done:
		return false, nil
	default:
	}
	// Only fetchers (holding f.mu) put list messages in work, so its room
	// only grows meanwhile: the deliveries below never block. (Slots
	// normally guarantee the room; after a Recover, restored messages
	// may still sit in the buffer.)
	room := cap(f.work) - len(f.work)
	if room < 1 {
		return false, nil
	}
	queues := f.active()
	if len(queues) == 0 {
		return false, nil
	}
	// p's slot and the free ones, taken without waking the loop.
	n := f.g.swap(min(f.batchSize, room))
	if n == 0 {
		return false, nil // over the (lowered) limit: no fetch now
	}
	p.release = nil
	var fetchStart time.Time
	if f.c.t.observed {
		fetchStart = time.Now()
	}
	var err error
	f.batch, err = f.c.t.backend.Fetch(ctx, transport.FetchRequest{Queues: queues, Ack: true, Max: n, Rotate: f.rr, Settle: []string{p.tag}}, f.batch[:0])
	f.g.giveBack(n - len(f.batch))
	if len(f.batch) > 0 && f.c.t.observed {
		f.c.t.opts.Observer.Fetched(len(f.batch), time.Since(fetchStart))
	}
	f.deliverBatch()
	var mal *transport.MalformedError
	switch {
	case err == nil || errors.Is(err, transport.ErrEmpty):
		return true, nil
	case errors.As(err, &mal):
		f.c.t.opts.Observer.Settled(mal.Queue, DeadLettered) // kept by the backend (mal.Where)
		f.opts.OnError(err)                                  // the ack was made; the message is kept
		return true, nil
	default:
		return true, fmt.Errorf("kombu: ack with fetch: %w", err)
	}
}

// deliver builds and hands one message to the workers. The message is
// tracked before the hand-off so that a shutdown restores it even if no
// worker ever takes it.
func (c *Channel) deliver(ctx context.Context, d transport.Delivery, work chan<- *entity.Message, release func(), opts ConsumeOptions, via ackRoute) {
	m, err := c.buildMessage(d, opts.Accept, opts.MaxBodySize)
	if err != nil {
		release()
		opts.OnError(err)
		c.badMessage(context.WithoutCancel(ctx), d, m, !opts.NoAck, opts.DeadLetterQueue, err)
		return
	}
	m.DeliveryInfo.ConsumerTag = opts.ConsumerTag
	if opts.NoAck {
		// A no-ack message frees its slot when a worker takes it; it has no
		// acknowledger, so settling it is a no-op.
		select {
		case work <- m:
			release()
			c.t.opts.Observer.Delivered(d.Queue)
		case <-ctx.Done():
			release()
			c.giveBack(m, opts)
		}
		return
	}
	if err := c.track(m, release, via); err != nil {
		release()
		// The channel closed after the message was taken, so its restore
		// at close missed it: put it back at the front now rather than
		// leave it unacked until the visibility timeout.
		if rerr := c.t.backend.Restore(context.WithoutCancel(ctx), m.DeliveryTag, false, c.t.routeFunc()); rerr != nil {
			opts.OnError(fmt.Errorf("kombu: message %s taken while the channel closed: %w; restore: %w", m.DeliveryTag, err, rerr))
		}
		return
	}
	c.t.opts.Observer.Delivered(d.Queue)
	select {
	case work <- m:
	case <-ctx.Done():
		// Tracked: restored at shutdown.
	}
}

// giveBack returns a message that was taken but will not be handled. A
// tracked message needs nothing: it is restored with the channel's other
// unsettled messages. A no-ack message has no unacked record, so it is put
// back on its queue (at the back: Backend has no front put without a
// record) rather than lost.
func (c *Channel) giveBack(m *entity.Message, opts ConsumeOptions) {
	queue := m.DeliveryInfo.Queue
	if !opts.NoAck || c.t.IsFanoutQueue(queue) {
		return // fanout is at-most-once: nothing reads its lists
	}
	if err := c.t.backend.Put(context.Background(), queue, m.Properties.Priority, m.Raw); err != nil && !errors.Is(err, transport.ErrNotReplicated) {
		opts.OnError(fmt.Errorf("kombu: no-ack message %s taken during shutdown could not be put back on %q: %w", m.DeliveryTag, queue, err))
	}
}

// fanoutLoop delivers broadcast messages. Like Kombu, fanout deliveries are
// not held back by prefetch.
func (c *Channel) fanoutLoop(ctx context.Context, sub transport.Subscription, subs []transport.FanoutSub, work chan<- *entity.Message, opts ConsumeOptions, deferred *deferredAcks) {
	queueOf := map[string]string{}
	for _, s := range subs {
		queueOf[s.Exchange] = s.Queue // Kombu: the last queue registered wins
	}
	f := c.t.backend.(transport.Fanout)
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-sub.C():
			if !ok {
				return
			}
			q, known := queueOf[d.Exchange]
			if !known {
				continue
			}
			d.Queue = q
			if !opts.NoAck {
				tag, ex, rk, err := envelope.Route(d.Envelope)
				if err != nil {
					opts.OnError(&transport.MalformedError{Queue: q, Raw: d.Envelope, Err: err})
					c.badMessage(context.WithoutCancel(ctx), d, nil, false, opts.DeadLetterQueue, err)
					continue
				}
				if err := f.RecordUnacked(ctx, tag, d.Envelope, ex, rk); err != nil {
					opts.OnError(fmt.Errorf("kombu: fanout message %s: unacked record: %w", tag, err))
					continue
				}
			}
			c.deliver(ctx, d, work, func() {}, opts, ackRoute{deferred: deferred})
		}
	}
}

func (c *Channel) restoreExpired(ctx context.Context, opts ConsumeOptions) {
	deadline := c.t.opts.Clock.Now().Add(-c.t.opts.VisibilityTimeout)
	n, err := c.t.backend.RestoreExpired(ctx, deadline, c.t.routeFunc())
	if err != nil && ctx.Err() == nil {
		opts.OnError(fmt.Errorf("kombu: restore of expired unacked messages: %w", err))
	}
	if n > 0 {
		c.t.opts.Observer.RestoredExpired(n)
		c.t.opts.Logger.Info("kombu: restored messages whose visibility timeout expired", "count", n)
	}
}

// rotate moves q to the end of order (Kombu's round_robin cycle).
func rotate(order []string, q string) {
	for i, x := range order {
		if x == q {
			copy(order[i:], order[i+1:])
			order[len(order)-1] = q
			return
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 100 * time.Millisecond
	}
	d *= 2
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// GetWait is Get, waiting up to timeout for a message. It returns ErrEmpty
// when the time runs out.
func (c *Channel) GetWait(ctx context.Context, queue string, noAck bool, accept []string, timeout time.Duration) (*entity.Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return nil, transport.ErrClosed
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, transport.ErrEmpty
		}
		var one [1]transport.Delivery
		got, err := c.t.backend.Fetch(ctx, transport.FetchRequest{Queues: []string{queue}, Ack: !noAck, Wait: min(left, c.t.opts.PollingInterval)}, one[:0])
		if err == nil && len(got) == 0 {
			err = transport.ErrEmpty
		}
		if errors.Is(err, transport.ErrEmpty) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return c.receive(ctx, got[0], noAck, accept)
	}
}

// ErrorAttrs returns slog attributes (queue, delivery_tag) that an error
// from the engine or a backend carries, so that a log record of it joins
// the message's other records.
func ErrorAttrs(err error) []any {
	var mal *transport.MalformedError
	if errors.As(err, &mal) {
		attrs := []any{"queue", mal.Queue}
		if tag, ok := envelope.ExtractTag(mal.Raw); ok {
			attrs = append(attrs, "delivery_tag", tag)
		}
		return attrs
	}
	return nil
}
