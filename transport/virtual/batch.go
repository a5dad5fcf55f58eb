package virtual

import (
	"context"
	"fmt"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// BatchMessage is one message of Transport.PublishBatch.
type BatchMessage struct {
	Exchange   string
	RoutingKey string
	Envelope   *envelope.Envelope
	// Mandatory turns "matched no queue" into a *NoRouteError.
	Mandatory bool
}

// BatchError reports the messages of a batch that failed: Errs[i] is the
// error of message i, nil if it was published. It matches (errors.Is,
// errors.As) every error it holds.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	n, first := 0, -1
	for i, err := range e.Errs {
		if err != nil {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	if n == 0 {
		return "kombu: batch: no errors"
	}
	return fmt.Sprintf("kombu: %d of %d messages failed; message %d: %v", n, len(e.Errs), first, e.Errs[first])
}

// Unwrap returns the errors of the failed messages.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Failed reports whether message i failed.
func (e *BatchError) Failed(i int) bool { return i < len(e.Errs) && e.Errs[i] != nil }

// batchErr returns a *BatchError for errs, or nil if every entry is nil.
func batchErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// PublishBatch publishes many messages, each as Publish would (delivery
// tag, delivery_info, Kombu's routing), in as few round trips as the
// backend allows: one with BatchPublisher (Redis: one pipeline), else one
// binding-table read per exchange and one PutBatch. Messages that land in
// the same queue are consumed in the order given. The batch is not
// atomic: it returns, for each message, the number of queues it went to,
// and a *BatchError naming the messages that failed (a failed round trip
// fails every message it carried; they may or may not have been put).
func (t *Transport) PublishBatch(ctx context.Context, msgs []BatchMessage) ([]int, error) {
	start := time.Now()
	routed := make([]int, len(msgs))
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return routed, nil
	}
	if t.isClosed() {
		for i := range errs {
			errs[i] = transport.ErrClosed
		}
		return routed, &BatchError{Errs: errs}
	}
	// One buffer for every envelope: fewer allocations.
	size := 0
	for _, m := range msgs {
		size += 320 + len(m.Envelope.Body)*4/3
	}
	buf := make([]byte, 0, size)
	ends := make([]int, len(msgs))
	for i, m := range msgs {
		env := m.Envelope
		env.Exchange, env.RoutingKey = m.Exchange, m.RoutingKey
		if env.DeliveryTag == "" {
			env.DeliveryTag = envelope.NewDeliveryTag()
		}
		var err error
		start := len(buf)
		if buf, err = env.AppendMarshal(buf); err != nil {
			errs[i] = err
			buf = buf[:start]
		}
		ends[i] = len(buf)
	}
	raw := func(i int) []byte {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		return buf[start:ends[i]:ends[i]]
	}

	typ := make([]entity.ExchangeType, len(msgs))
	var items []transport.PublishItem
	var idx []int // items[k] is message idx[k]
	for i, m := range msgs {
		if errs[i] != nil {
			continue
		}
		if m.Exchange != "" {
			typ[i] = t.ExchangeType(m.Exchange)
		}
		if typ[i] == entity.Fanout {
			f, ok := t.backend.(transport.Fanout)
			if !ok {
				errs[i] = fmt.Errorf("kombu: fanout publish: %w", transport.ErrUnsupported)
				continue
			}
			if errs[i] = f.PublishFanout(ctx, m.Exchange, m.RoutingKey, raw(i)); errs[i] == nil {
				routed[i] = 1
			}
			continue
		}
		items = append(items, transport.PublishItem{Exchange: m.Exchange, Type: typ[i], RoutingKey: m.RoutingKey,
			Priority: m.Envelope.Priority(), Envelope: raw(i)})
		idx = append(idx, i)
	}
	if len(items) > 0 {
		var ns []int
		var ierrs []error
		if bp, ok := t.backend.(transport.BatchPublisher); ok && t.opts.DeadLetterQueue == "" {
			ns, ierrs = bp.PublishBatch(ctx, items)
		} else {
			ns, ierrs = t.publishBatchFallback(ctx, items)
		}
		for k, i := range idx {
			routed[i], errs[i] = ns[k], ierrs[k]
		}
	}
	for i, m := range msgs {
		if errs[i] == nil && routed[i] == 0 && m.Mandatory {
			errs[i] = &transport.NoRouteError{Exchange: m.Exchange, RoutingKey: m.RoutingKey}
		}
	}
	if t.observed {
		d := time.Since(start)
		for i, m := range msgs {
			t.opts.Observer.Published(m.Exchange, m.RoutingKey, routed[i], d, errs[i])
		}
	}
	return routed, batchErr(errs)
}

// publishBatchFallback routes every item in Go (one binding-table read per
// exchange for the whole batch) and puts them all with one PutBatch, or
// one Put each without BatchPutter.
func (t *Transport) publishBatchFallback(ctx context.Context, items []transport.PublishItem) ([]int, []error) {
	ns := make([]int, len(items))
	errs := make([]error, len(items))
	type route struct{ exchange, rk string }
	routes := map[route][]string{}
	tables := map[string][]transport.BindingRow{}
	var puts []transport.PutItem
	var owner []int // puts[k] belongs to items[owner[k]]
	for i, it := range items {
		var qs []string
		if it.Exchange == "" {
			qs = []string{it.RoutingKey}
		} else if r, ok := routes[route{it.Exchange, it.RoutingKey}]; ok {
			qs = r
		} else {
			table, ok := tables[it.Exchange]
			if !ok {
				var err error
				if table, err = t.backend.Bindings(ctx, it.Exchange); err != nil {
					errs[i] = err
					continue
				}
				tables[it.Exchange] = table
			}
			var err error
			if qs, err = t.lookup(it.Exchange, table, it.RoutingKey); err != nil {
				errs[i] = err
				continue
			}
			routes[route{it.Exchange, it.RoutingKey}] = qs
		}
		ns[i] = len(qs)
		for _, q := range qs {
			puts = append(puts, transport.PutItem{Queue: q, Priority: it.Priority, Envelope: it.Envelope})
			owner = append(owner, i)
		}
	}
	if len(puts) == 0 {
		return ns, errs
	}
	if bp, ok := t.backend.(transport.BatchPutter); ok {
		if err := bp.PutBatch(ctx, puts); err != nil {
			for _, i := range owner {
				errs[i] = err
			}
		}
		return ns, errs
	}
	for k, p := range puts {
		i := owner[k]
		if errs[i] != nil {
			continue
		}
		if err := t.backend.Put(ctx, p.Queue, p.Priority, p.Envelope); err != nil {
			errs[i] = err
		}
	}
	return ns, errs
}
