package entity

import (
	"context"
	"errors"
	"sync"
)

// Properties are a message's AMQP-style properties as Kombu stores them in
// the envelope's "properties" object.
type Properties struct {
	// CorrelationID ties a reply to its request (RPC) or a task message to
	// its task id (Celery).
	CorrelationID string
	// ReplyTo names the queue a reply should go to.
	ReplyTo string
	// DeliveryMode is 1 (transient) or 2 (persistent). Zero on publish means
	// the exchange's default, else Persistent.
	DeliveryMode DeliveryMode
	// Expiration is the TTL in milliseconds as Kombu writes it ("10000").
	// The Redis transport never enforces it.
	Expiration string
	// Priority is 0..9. On Redis, lower numbers are consumed first.
	Priority int
	// Extra holds any other properties (message_id, type, app_id, ...),
	// written before delivery_mode in sorted key order.
	Extra map[string]any
}

// DeliveryInfo says where a message was published and how it was received.
type DeliveryInfo struct {
	// Exchange the message was published to ("" for the default exchange).
	Exchange string
	// RoutingKey the message was published with.
	RoutingKey string
	// Queue the message was taken from.
	Queue string
	// ConsumerTag of the consumer that received it, if any.
	ConsumerTag string
}

// Acknowledger settles a delivered message with the channel that received it.
// Transports implement it; users call Message.Ack, Reject and Requeue.
type Acknowledger interface {
	// Ack acknowledges the message with the given delivery tag.
	Ack(ctx context.Context, m *Message) error
	// Reject drops (requeue false) or requeues (requeue true) the message.
	Reject(ctx context.Context, m *Message, requeue bool) error
}

// Decoder turns a message body into a Go value according to its content type,
// enforcing the consumer's accept list. Transports set it on each Message.
type Decoder interface {
	// Decode returns the decoded body.
	Decode(body []byte, contentType, contentEncoding string) (any, error)
	// DecodeInto decodes the body into v.
	DecodeInto(body []byte, contentType, contentEncoding string, v any) error
}

// Message is a message as a consumer sees it, like kombu.Message.
//
// A Message must not be copied after it is delivered: it carries its own
// acknowledgement state. Ack, Reject and Requeue are safe for concurrent use,
// and exactly one of them can succeed.
type Message struct {
	// Body is the message body after base64 decoding and decompression.
	Body []byte
	// ContentType is the MIME type of Body ("application/json", ...).
	ContentType string
	// ContentEncoding is the charset of Body ("utf-8", "binary").
	ContentEncoding string
	// Headers are the application headers (Celery's task headers live here).
	Headers map[string]any
	// Properties are the message properties.
	Properties Properties
	// DeliveryInfo says where the message came from.
	DeliveryInfo DeliveryInfo
	// DeliveryTag is the tag Kombu generated at publish time (a uuid4). All
	// copies of one publish share it.
	DeliveryTag string
	// Redelivered is true when the message was restored or requeued before.
	Redelivered bool
	// Raw is the envelope exactly as it was read from the broker. It is
	// read-only (it may share memory with the broker's reply; Body too,
	// when it was not encoded): copy it before changing it.
	Raw []byte

	// Acknowledger settles the message; nil for messages received with
	// no-ack, whose Ack is then a no-op.
	Acknowledger Acknowledger
	// Decoder decodes Body; nil means Payload returns ErrNoDecoder.
	Decoder Decoder

	mu      sync.Mutex
	state   AckState
	payload any
	decoded bool
	decErr  error
}

// AckState is a message's settlement state.
type AckState int

const (
	// Pending means the message has not been settled yet.
	Pending AckState = iota
	// Acked means Ack succeeded.
	Acked
	// Rejected means Reject succeeded (the message was dropped).
	Rejected
	// Requeued means Requeue succeeded (the message went back to its queue).
	Requeued
)

// String returns the state's name.
func (s AckState) String() string {
	switch s {
	case Pending:
		return "pending"
	case Acked:
		return "acked"
	case Rejected:
		return "rejected"
	case Requeued:
		return "requeued"
	}
	return "unknown"
}

// State returns the message's settlement state.
func (m *Message) State() AckState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Acknowledged reports whether the message has been acked, rejected or requeued.
func (m *Message) Acknowledged() bool { return m.State() != Pending }

// Ack acknowledges the message: it is removed for good. It returns
// ErrAlreadyAcknowledged if the message was already settled.
func (m *Message) Ack(ctx context.Context) error {
	return m.settle(ctx, Acked, func(a Acknowledger) error { return a.Ack(ctx, m) })
}

// Reject drops the message without requeueing it (Kombu's reject()).
func (m *Message) Reject(ctx context.Context) error {
	return m.settle(ctx, Rejected, func(a Acknowledger) error { return a.Reject(ctx, m, false) })
}

// Requeue puts the message back at the back of its queue (Kombu's
// requeue(), LPUSH on Redis) with the redelivered flag set.
func (m *Message) Requeue(ctx context.Context) error {
	return m.settle(ctx, Requeued, func(a Acknowledger) error { return a.Reject(ctx, m, true) })
}

func (m *Message) settle(ctx context.Context, to AckState, do func(Acknowledger) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != Pending {
		return &AlreadyAcknowledgedError{DeliveryTag: m.DeliveryTag, State: m.state}
	}
	if m.Acknowledger != nil {
		if err := do(m.Acknowledger); err != nil {
			return err
		}
	}
	m.state = to
	return nil
}

// Payload returns the decoded body, decoding it once with the message's
// Decoder (so the consumer's accept list applies).
func (m *Message) Payload() (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.decoded {
		if m.Decoder == nil {
			return nil, ErrNoDecoder
		}
		m.payload, m.decErr = m.Decoder.Decode(m.Body, m.ContentType, m.ContentEncoding)
		m.decoded = true
	}
	return m.payload, m.decErr
}

// Decode decodes the body into v (for JSON, as encoding/json would).
func (m *Message) Decode(v any) error {
	if m.Decoder == nil {
		return ErrNoDecoder
	}
	return m.Decoder.DecodeInto(m.Body, m.ContentType, m.ContentEncoding, v)
}

// Errors of package entity.
var (
	// ErrInvalid means a declared value is not usable.
	ErrInvalid = errors.New("kombu: invalid entity")
	// ErrAlreadyAcknowledged means a message was settled twice.
	ErrAlreadyAcknowledged = errors.New("kombu: message already acknowledged")
	// ErrNoDecoder means the message has no Decoder.
	ErrNoDecoder = errors.New("kombu: message has no decoder")
)

// AlreadyAcknowledgedError is returned when Ack, Reject or Requeue is called on
// a settled message. It matches ErrAlreadyAcknowledged with errors.Is.
type AlreadyAcknowledgedError struct {
	DeliveryTag string
	State       AckState
}

func (e *AlreadyAcknowledgedError) Error() string {
	return "kombu: message " + e.DeliveryTag + " already " + e.State.String()
}

// Unwrap returns ErrAlreadyAcknowledged.
func (e *AlreadyAcknowledgedError) Unwrap() error { return ErrAlreadyAcknowledged }
