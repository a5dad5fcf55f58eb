// Package entity holds the values a user declares and receives, as Kombu's
// kombu.entity and kombu.message modules do: exchanges, queues, bindings and
// the message a consumer sees.
//
// The values are plain data. Declaring them on a broker is the job of the
// transport (package transport) and of the user-facing API in the root package.
package entity

import (
	"fmt"
	"strings"
)

// ExchangeType is the routing algorithm of an exchange.
type ExchangeType string

// The exchange types Kombu's virtual transports implement. The zero value
// means Direct.
const (
	// Direct routes a message to every queue bound with a routing key equal
	// to the message's routing key.
	Direct ExchangeType = "direct"
	// Topic routes by Kombu's regex translation of the binding key: "*"
	// matches one or more characters ending in a non-dot, "#" matches
	// anything (see transport.KeyToPattern). This is not AMQP word matching.
	Topic ExchangeType = "topic"
	// Fanout delivers a copy to every bound queue; on Redis it rides on
	// PUBLISH/PSUBSCRIBE and is at-most-once.
	Fanout ExchangeType = "fanout"
)

// Normalize returns the type with the zero value mapped to Direct.
func (t ExchangeType) Normalize() ExchangeType {
	if t == "" {
		return Direct
	}
	return t
}

// Valid reports whether t (after Normalize) is one of Direct, Topic, Fanout.
func (t ExchangeType) Valid() bool {
	switch t.Normalize() {
	case Direct, Topic, Fanout:
		return true
	}
	return false
}

// DeliveryMode is AMQP's delivery mode. On Redis it is informational only:
// both modes are stored the same way.
type DeliveryMode int

const (
	// Transient is delivery mode 1 (Celery events and pidbox replies use it).
	Transient DeliveryMode = 1
	// Persistent is delivery mode 2, Kombu's default.
	Persistent DeliveryMode = 2
)

// Exchange is a named routing point, like kombu.Exchange.
//
// The anonymous default exchange has the empty name: publishing to it puts
// the message straight on the queue named by the routing key.
type Exchange struct {
	// Name of the exchange; "" is the default exchange.
	Name string
	// Type is the routing algorithm; the zero value is Direct.
	Type ExchangeType
	// Durable is kept for Kombu parity; the Redis transport ignores it.
	Durable bool
	// AutoDelete is kept for Kombu parity; the Redis transport ignores it.
	AutoDelete bool
	// DeliveryMode is the default delivery mode of messages published to
	// this exchange; zero means Persistent.
	DeliveryMode DeliveryMode
	// Arguments are extra declaration arguments, kept for Kombu parity.
	Arguments map[string]any
}

// Validate reports whether the exchange can be declared.
func (e Exchange) Validate() error {
	if !e.Type.Valid() {
		return fmt.Errorf("%w: exchange %q has type %q (want direct, topic or fanout)", ErrInvalid, e.Name, e.Type)
	}
	return nil
}

// Binding binds a queue to an exchange with a routing key, like kombu.binding.
type Binding struct {
	// Exchange is the exchange the queue is bound to.
	Exchange Exchange
	// RoutingKey is the binding key: compared exactly on direct exchanges,
	// translated to a pattern on topic exchanges, used as a channel suffix on
	// fanout exchanges.
	RoutingKey string
	// Arguments are extra binding arguments, kept for Kombu parity.
	Arguments map[string]any
}

// Queue is a named queue with its bindings, like kombu.Queue.
type Queue struct {
	// Name of the queue; it must not be empty.
	Name string
	// Exchange, if it has a name, is bound with RoutingKey when the queue is
	// declared.
	Exchange Exchange
	// RoutingKey is the binding key for Exchange.
	RoutingKey string
	// Bindings are further bindings, to this or other exchanges (Kombu's
	// Queue(bindings=[...])).
	Bindings []Binding
	// Durable, Exclusive and AutoDelete are kept for Kombu parity. Only
	// AutoDelete has an effect, as on Kombu's Redis: an auto-delete queue
	// bound to a fanout exchange is deleted (its binding and lists) when the
	// consumer that consumed it stops.
	Durable, Exclusive, AutoDelete bool
	// MaxPriority is kept for Kombu parity; Redis priorities are set by the
	// transport's priority steps.
	MaxPriority int
	// Arguments are the queue arguments (Kombu's queue_arguments).
	Arguments map[string]any
}

// AllBindings returns the queue's bindings: the one given by Exchange and
// RoutingKey (if the exchange has a name) followed by Bindings.
func (q Queue) AllBindings() []Binding {
	out := make([]Binding, 0, len(q.Bindings)+1)
	if q.Exchange.Name != "" {
		out = append(out, Binding{Exchange: q.Exchange, RoutingKey: q.RoutingKey})
	}
	return append(out, q.Bindings...)
}

// Validate reports whether the queue can be declared.
func (q Queue) Validate() error {
	if q.Name == "" {
		return fmt.Errorf("%w: queue has no name", ErrInvalid)
	}
	for _, b := range q.AllBindings() {
		if b.Exchange.Name == "" {
			return fmt.Errorf("%w: queue %q has a binding to the default exchange", ErrInvalid, q.Name)
		}
		if err := b.Exchange.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// CheckName reports an error if name contains sep: Kombu splits binding
// members and priority keys on the separator, so such a name cannot round-trip.
func CheckName(kind, name, sep string) error {
	if sep != "" && strings.Contains(name, sep) {
		return fmt.Errorf("%w: %s name %q contains the separator %q", ErrInvalid, kind, name, sep)
	}
	return nil
}
