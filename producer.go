package kombu

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// PublishOption sets a publish argument. Given to Connection.Producer it
// sets the producer's default; given to Producer.Publish it applies to that
// message only.
type PublishOption func(*publishOptions)

type publishOptions struct {
	exchange      entity.Exchange
	routingKey    string
	serializer    string
	contentType   string
	contentEnc    string
	compression   string
	headers       map[string]any
	props         entity.Properties
	priority      int
	expiration    time.Duration
	declare       []entity.Queue
	mandatory     bool
	noAutoDeclare bool
	retry         *RetryPolicy
	tag           string
}

// WithExchange sets the exchange to publish to ("" or the zero Exchange is
// the default exchange: the routing key names the queue).
func WithExchange(ex Exchange) PublishOption { return func(o *publishOptions) { o.exchange = ex } }

// WithRoutingKey sets the routing key.
func WithRoutingKey(rk string) PublishOption { return func(o *publishOptions) { o.routingKey = rk } }

// WithSerializer sets the serializer by name ("json", "raw", "msgpack").
// Without one, a []byte body is sent as application/data, a string as
// text/plain, anything else as JSON, as in Kombu.
func WithSerializer(name string) PublishOption {
	return func(o *publishOptions) { o.serializer = name }
}

// WithContentType sends an already serialized body ([]byte or string) with
// this content type and encoding (encoding "" means utf-8 for a string,
// binary for bytes).
func WithContentType(contentType, contentEncoding string) PublishOption {
	return func(o *publishOptions) { o.contentType, o.contentEnc = contentType, contentEncoding }
}

// WithCompression compresses the body ("zlib"/"gzip" mean Kombu's
// application/x-gzip, a zlib stream).
func WithCompression(name string) PublishOption {
	return func(o *publishOptions) { o.compression = name }
}

// WithHeaders adds application headers (merged over the producer's).
func WithHeaders(h map[string]any) PublishOption {
	return func(o *publishOptions) {
		if o.headers == nil {
			o.headers = map[string]any{}
		}
		maps.Copy(o.headers, h)
	}
}

// WithHeader adds one application header.
func WithHeader(k string, v any) PublishOption { return WithHeaders(map[string]any{k: v}) }

// WithPriority sets the priority, 0..9. On Redis a lower number is consumed
// first.
func WithPriority(p int) PublishOption { return func(o *publishOptions) { o.priority = p } }

// WithCorrelationID sets the correlation id (RPC replies, Celery task ids).
func WithCorrelationID(id string) PublishOption {
	return func(o *publishOptions) { o.props.CorrelationID = id }
}

// WithReplyTo sets the queue replies should go to.
func WithReplyTo(q string) PublishOption { return func(o *publishOptions) { o.props.ReplyTo = q } }

// WithDeliveryMode sets the delivery mode (1 transient, 2 persistent).
func WithDeliveryMode(m entity.DeliveryMode) PublishOption {
	return func(o *publishOptions) { o.props.DeliveryMode = m }
}

// WithExpiration sets the message TTL property. Kombu's Redis transport
// stores it but never enforces it.
func WithExpiration(d time.Duration) PublishOption {
	return func(o *publishOptions) { o.expiration = d }
}

// WithProperty sets another message property by its Kombu name.
func WithProperty(name string, v any) PublishOption {
	return func(o *publishOptions) {
		if o.props.Extra == nil {
			o.props.Extra = map[string]any{}
		}
		o.props.Extra[name] = v
	}
}

// WithDeclare declares these queues (and their exchanges and bindings)
// before publishing, once per connection, like Kombu's declare=[...].
func WithDeclare(qs ...Queue) PublishOption {
	return func(o *publishOptions) { o.declare = append(o.declare, qs...) }
}

// WithMandatory makes a publish that matches no queue fail with a
// *transport.NoRouteError (errors.Is ErrNoRoute) instead of being dropped
// silently as Kombu does.
func WithMandatory() PublishOption { return func(o *publishOptions) { o.mandatory = true } }

// WithoutAutoDeclare stops the producer from declaring its exchange.
func WithoutAutoDeclare() PublishOption { return func(o *publishOptions) { o.noAutoDeclare = true } }

// WithDeliveryTag publishes with this delivery tag instead of a fresh uuid4.
func WithDeliveryTag(tag string) PublishOption { return func(o *publishOptions) { o.tag = tag } }

// RetryPolicy retries a publish that failed on a connection error, with
// Kombu's ensure() parameters. A retried publish whose first attempt
// reached the broker but whose reply was lost is delivered twice: delivery
// is at-least-once.
type RetryPolicy struct {
	// MaxRetries is the number of retries after the first attempt; zero
	// means 3.
	MaxRetries int
	// IntervalStart is the wait before the first retry.
	IntervalStart time.Duration
	// IntervalStep is added to the wait after each retry; zero means 200 ms.
	IntervalStep time.Duration
	// IntervalMax caps the wait; zero means 1 s.
	IntervalMax time.Duration
}

// WithRetry retries failed publishes under policy.
func WithRetry(policy RetryPolicy) PublishOption {
	return func(o *publishOptions) { o.retry = &policy }
}

// Producer publishes messages with default arguments, like kombu.Producer.
// It is safe for concurrent use.
type Producer struct {
	conn     *Connection
	defaults publishOptions
	async    asyncState // PublishAsync's window (producer_async.go)
}

// Producer returns a producer with the given defaults.
func (c *Connection) Producer(opts ...PublishOption) *Producer {
	p := &Producer{conn: c}
	for _, f := range opts {
		f(&p.defaults)
	}
	return p
}

// PublishResult describes a published message.
type PublishResult struct {
	// DeliveryTag is the tag the message carries (a uuid4).
	DeliveryTag string
	// Routed is the number of queues it was put on (1 for fanout and the
	// default exchange).
	Routed int
}

// Publish serializes body and publishes it. Without a routing key option
// the producer's default applies; without an exchange, the default exchange.
func (p *Producer) Publish(ctx context.Context, body any, opts ...PublishOption) (PublishResult, error) {
	var o publishOptions
	if len(opts) == 0 {
		o = p.defaults
		o.headers = maps.Clone(p.defaults.headers)
		o.props.Extra = maps.Clone(p.defaults.props.Extra)
		o.declare = append([]entity.Queue(nil), p.defaults.declare...)
	} else {
		o = p.options(opts)
	}
	t := p.conn.t
	if err := p.conn.declareOnce(ctx, o.declare); err != nil {
		return PublishResult{}, err
	}
	if o.exchange.Name != "" && !o.noAutoDeclare {
		if err := t.DeclareExchange(ctx, o.exchange); err != nil {
			return PublishResult{}, err
		}
	}
	// env and o stay on the stack: the closure below takes copies of the
	// fields it needs.
	var env envelope.Envelope
	if err := p.fillEnvelope(&env, body, &o); err != nil {
		return PublishResult{}, err
	}
	exchange, routingKey, mandatory := o.exchange.Name, o.routingKey, o.mandatory
	if len(p.conn.hooks.publish) > 0 {
		return p.publishHooked(ctx, &env, exchange, routingKey, mandatory, o.retry)
	}
	var n int
	err := retry(ctx, o.retry, t.Logger(), func() error {
		var err error
		n, err = t.Publish(ctx, exchange, routingKey, &env, mandatory)
		return err
	})
	return PublishResult{DeliveryTag: env.DeliveryTag, Routed: n}, err
}

// options returns the producer's defaults with opts applied (in a
// function of its own: applying options moves the value to the heap).
func (p *Producer) options(opts []PublishOption) publishOptions {
	o := p.defaults
	o.headers = maps.Clone(p.defaults.headers)
	o.props.Extra = maps.Clone(p.defaults.props.Extra)
	o.declare = append([]entity.Queue(nil), p.defaults.declare...)
	for _, f := range opts {
		f(&o)
	}
	return o
}

// envelope serializes body and builds its envelope under options o.
func (p *Producer) envelope(body any, o *publishOptions) (*envelope.Envelope, error) {
	env := new(envelope.Envelope)
	if err := p.fillEnvelope(env, body, o); err != nil {
		return nil, err
	}
	return env, nil
}

// fillEnvelope serializes body into env under options o.
func (p *Producer) fillEnvelope(env *envelope.Envelope, body any, o *publishOptions) error {
	enc, err := p.conn.t.Options().Serializers.Prepare(body, serialization.PrepareOptions{
		Serializer: o.serializer, ContentType: o.contentType,
		ContentEncoding: o.contentEnc, Compression: o.compression,
	})
	if err != nil {
		return err
	}
	*env = envelope.Envelope{
		Body:            enc.Body,
		ContentType:     enc.ContentType,
		ContentEncoding: enc.ContentEncoding,
		Headers:         o.headers,
		Compression:     enc.Compression,
		Properties:      o.props,
		DeliveryTag:     o.tag,
	}
	env.Properties.Priority = o.priority
	if env.Properties.DeliveryMode == 0 {
		env.Properties.DeliveryMode = o.exchange.DeliveryMode
	}
	if o.expiration > 0 {
		env.Properties.Expiration = strconv.FormatInt(o.expiration.Milliseconds(), 10)
	}
	return nil
}

// Outgoing is one message of Producer.PublishBatch: its body and the
// publish options that apply to it alone.
type Outgoing struct {
	Body    any
	Options []PublishOption
}

// BatchError reports the messages of a PublishBatch that failed: Errs[i]
// is message i's error, nil if it was published. errors.Is and errors.As
// see every error it holds.
type BatchError = virtual.BatchError

// PublishBatch publishes many messages in as few round trips as the
// backend allows (Redis: one pipeline, with consecutive messages to one
// exchange routed by one script call), each exactly as Publish would.
// Options apply in this order: the producer's defaults, opts (for every
// message), then each message's own Options. Messages that land in the
// same queue are consumed in the order given.
//
// It returns one result per message, in order. The batch is not atomic:
// if any message fails, the error is a *BatchError saying which (the
// others were published). A body that cannot be serialized fails the
// whole batch before anything is sent. With WithRetry, messages that
// failed on a connection error are sent again (at-least-once, as for
// Publish).
func (p *Producer) PublishBatch(ctx context.Context, msgs []Outgoing, opts ...PublishOption) ([]PublishResult, error) {
	base := p.options(opts)
	t := p.conn.t
	if err := p.conn.declareOnce(ctx, base.declare); err != nil {
		return nil, err
	}
	declared := map[string]bool{}
	batch := make([]virtual.BatchMessage, len(msgs))
	policies := make([]*RetryPolicy, len(msgs))
	encErrs := make([]error, len(msgs))
	failed := false
	for i, m := range msgs {
		o := &base
		if len(m.Options) > 0 {
			own := base
			own.headers = maps.Clone(base.headers)
			own.props.Extra = maps.Clone(base.props.Extra)
			own.declare = nil
			for _, f := range m.Options {
				f(&own)
			}
			if err := p.conn.declareOnce(ctx, own.declare); err != nil {
				return nil, err
			}
			o = &own
		}
		if name := o.exchange.Name; name != "" && !o.noAutoDeclare && !declared[name] {
			if err := t.DeclareExchange(ctx, o.exchange); err != nil {
				return nil, err
			}
			declared[name] = true
		}
		env, err := p.envelope(m.Body, o)
		if err != nil {
			encErrs[i], failed = err, true
			continue
		}
		batch[i] = virtual.BatchMessage{Exchange: o.exchange.Name, RoutingKey: o.routingKey, Envelope: env, Mandatory: o.mandatory}
		policies[i] = o.retry
	}
	if failed {
		return nil, &BatchError{Errs: encErrs}
	}
	results := make([]PublishResult, len(msgs))
	routed, err := t.PublishBatch(ctx, batch)
	for i := range batch {
		results[i] = PublishResult{DeliveryTag: batch[i].Envelope.DeliveryTag, Routed: routed[i]}
	}
	var be *BatchError
	if err == nil || !errors.As(err, &be) {
		return results, err
	}
	// Send again, under their policies, the messages that failed on what
	// may be a lost connection.
	for i, e := range be.Errs {
		if e == nil || policies[i] == nil || !retryable(e) {
			continue
		}
		first := true
		be.Errs[i] = retry(ctx, policies[i], t.Logger(), func() error {
			if first { // the batch was the first attempt
				first = false
				return e
			}
			n, err := t.Publish(ctx, batch[i].Exchange, batch[i].RoutingKey, batch[i].Envelope, batch[i].Mandatory)
			results[i].Routed = n
			return err
		})
	}
	for _, e := range be.Errs {
		if e != nil {
			return results, be
		}
	}
	return results, nil
}

// retry runs f, and again under policy while it fails with an error that
// may be a lost connection.
func retry(ctx context.Context, policy *RetryPolicy, log interface {
	Warn(msg string, args ...any)
}, f func() error) error {
	err := f()
	if err == nil || policy == nil {
		return err
	}
	max := policy.MaxRetries
	if max == 0 {
		max = 3
	}
	step, cap := policy.IntervalStep, policy.IntervalMax
	if step == 0 {
		step = 200 * time.Millisecond
	}
	if cap == 0 {
		cap = time.Second
	}
	wait := policy.IntervalStart
	for i := 0; i < max && retryable(err); i++ {
		log.Warn("kombu: publish failed, retrying", "attempt", i+1, "wait", wait, "error", err)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
		if err = f(); err == nil {
			return nil
		}
		wait = min(wait+step, cap)
	}
	if retryable(err) {
		return fmt.Errorf("kombu: publish gave up after %d retries: %w", max, err)
	}
	return err
}

// retryable reports whether err may be a connection problem rather than a
// mistake that a retry would repeat.
func retryable(err error) bool {
	var enc *serialization.EncodeError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, transport.ErrNoRoute), errors.Is(err, transport.ErrClosed),
		errors.Is(err, entity.ErrInvalid), errors.Is(err, transport.ErrUnsupported),
		errors.Is(err, transport.ErrExchangeType), errors.Is(err, transport.ErrNotReplicated),
		errors.As(err, &enc):
		return false
	}
	return true
}

// declareOnce declares queues not yet declared on this connection.
func (c *Connection) declareOnce(ctx context.Context, qs []entity.Queue) error {
	for _, q := range qs {
		key := declKey(q)
		if _, done := c.declared.Load(key); done {
			continue
		}
		if _, err := c.t.DeclareQueue(ctx, q); err != nil {
			return err
		}
		c.declared.Store(key, true)
	}
	return nil
}

func declKey(q entity.Queue) string {
	k := q.Name
	for _, b := range q.AllBindings() {
		k += "\x00" + b.Exchange.Name + "\x00" + string(b.Exchange.Type.Normalize()) + "\x00" + b.RoutingKey
	}
	return k
}
