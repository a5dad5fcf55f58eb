package kombu

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// Operator methods: what `celery inspect`-style tools, the kombu command and
// the celery package need from the broker beyond publish and consume, as
// public methods so nothing reaches behind the Connection. Backends that
// cannot be inspected (Inspector) return an error wrapping ErrUnsupported.

type (
	// BindingRow is one row of an exchange's binding table (Kombu's
	// _kombu.binding.<exchange> set): the routing key, the topic pattern
	// ("" unless bound to a topic exchange) and the queue.
	BindingRow = transport.BindingRow
	// QueueLength is the length of one of a queue's priority lists (Step
	// 0 is consumed first).
	QueueLength = transport.StepLength
	// UnackedEntry is one message delivered and not yet settled, as the
	// broker records it (its delivery tag, where it was published, its
	// envelope and when it was recorded).
	UnackedEntry = transport.UnackedEntry
)

// ErrUnsupported: the backend cannot do what was asked (inspection, ...).
var ErrUnsupported = transport.ErrUnsupported

func (c *Connection) inspector() (transport.Inspector, error) {
	in, ok := c.t.Backend().(transport.Inspector)
	if !ok {
		return nil, fmt.Errorf("kombu: this transport cannot be inspected: %w", ErrUnsupported)
	}
	return in, nil
}

// Bindings returns an exchange's binding table.
func (c *Connection) Bindings(ctx context.Context, exchange string) ([]BindingRow, error) {
	return c.t.Backend().Bindings(ctx, exchange)
}

// RemoveBinding removes one row of an exchange's binding table, whatever
// the exchange's type (Unbind removes the row its Exchange's type makes).
func (c *Connection) RemoveBinding(ctx context.Context, exchange string, row BindingRow) error {
	return c.t.Backend().Unbind(ctx, exchange, row)
}

// ExchangeType returns the type an exchange was declared with in this
// process (Kombu keeps exchange types per process, not on the broker), or
// Direct if it was not declared here.
func (c *Connection) ExchangeType(name string) ExchangeType { return c.t.ExchangeType(name) }

// Exchanges lists the exchanges that have a binding table.
func (c *Connection) Exchanges(ctx context.Context) ([]string, error) {
	in, err := c.inspector()
	if err != nil {
		return nil, err
	}
	return in.Exchanges(ctx)
}

// QueueLengths returns the length of each of a queue's priority lists.
func (c *Connection) QueueLengths(ctx context.Context, queue string) ([]QueueLength, error) {
	in, err := c.inspector()
	if err != nil {
		return nil, err
	}
	return in.QueueLengths(ctx, queue)
}

// Unacked returns up to limit messages delivered and not settled, oldest
// first (limit <= 0: all).
func (c *Connection) Unacked(ctx context.Context, limit int) ([]UnackedEntry, error) {
	in, err := c.inspector()
	if err != nil {
		return nil, err
	}
	return in.UnackedEntries(ctx, limit)
}

// UnackedCount returns how many messages are delivered and not settled,
// and when the oldest was recorded (zero if none).
func (c *Connection) UnackedCount(ctx context.Context) (int64, time.Time, error) {
	in, err := c.inspector()
	if err != nil {
		return 0, time.Time{}, err
	}
	return in.Unacked(ctx)
}

// Peek returns up to n messages of a queue in delivery order without
// removing them, bodies decompressed, as a consumer would see them (no
// accept check: Decode still applies the registry's default). A message
// that is not a valid envelope is skipped; then the messages returned are
// still valid and err joins one error (wrapping ErrMalformed) per message
// skipped.
func (c *Connection) Peek(ctx context.Context, queue string, n int) ([]*Message, error) {
	in, err := c.inspector()
	if err != nil {
		return nil, err
	}
	ds, err := in.Peek(ctx, queue, n)
	if err != nil {
		return nil, err
	}
	var out []*Message
	var bad []error
	for _, d := range ds {
		m, err := c.t.MessageFromDelivery(d)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, m)
	}
	return out, errors.Join(bad...)
}

// RestoreUnacked puts unacked messages back at the front of the queues
// their exchange and routing key route to, as Kombu's
// restore_visible does: those whose visibility timeout has passed, or
// with all every one (only safe when no consumer holds them). It returns
// how many went to each queue.
func (c *Connection) RestoreUnacked(ctx context.Context, all bool) (map[string]int, error) {
	in, err := c.inspector()
	if err != nil {
		return nil, err
	}
	entries, err := in.UnackedEntries(ctx, 0)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Since.Before(entries[j].Since) })
	deadline := time.Now().Add(-c.t.Options().VisibilityTimeout)
	perQueue := map[string]int{}
	// Newest first, each to the front: the oldest is consumed first again.
	for i := len(entries) - 1; i >= 0; i-- {
		u := entries[i]
		if !all && u.Since.After(deadline) {
			continue
		}
		var routed []string
		route := func(ctx context.Context, ex, rk string) ([]string, error) {
			qs, err := c.t.Route(ctx, ex, rk)
			routed = qs
			return qs, err
		}
		if err := c.t.Backend().Restore(ctx, u.Tag, false, route); err != nil {
			return perQueue, err
		}
		for _, q := range routed {
			perQueue[q]++
		}
	}
	return perQueue, nil
}

// PublishRaw publishes an envelope already encoded as Kombu writes it
// (for example celery.TaskMessage.MarshalEnvelope's), routed through the
// exchange (the default exchange "" sends it to the queue named
// routingKey) with its priority, and returns how many queues it reached.
// The connection's publish middleware does not see it: the envelope is
// sent byte for byte.
func (c *Connection) PublishRaw(ctx context.Context, exchange, routingKey string, priority int, envelope []byte) (int, error) {
	return c.t.PublishRaw(ctx, exchange, routingKey, priority, envelope, false)
}
