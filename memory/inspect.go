package memory

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/kombu-go/kombu/transport"
)

var _ transport.Inspector = (*Backend)(nil)

// QueueLengths returns the length of each of queue's priority lists.
func (b *Backend) QueueLengths(ctx context.Context, queue string) ([]transport.StepLength, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]transport.StepLength, 0, len(b.steps))
	for _, s := range b.steps {
		var n int64
		if d := b.list(queue, s, false); d != nil {
			n = int64(d.len())
		}
		out = append(out, transport.StepLength{Step: s, Length: n})
	}
	return out, nil
}

// Exchanges lists the exchanges that have bindings, sorted.
func (b *Backend) Exchanges(ctx context.Context) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.bindings))
	for ex := range b.bindings {
		out = append(out, ex)
	}
	sort.Strings(out)
	return out, nil
}

// Unacked returns the number of unacked records and the oldest's time.
func (b *Backend) Unacked(ctx context.Context) (int64, time.Time, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var oldest time.Time
	for _, r := range b.unacked {
		if oldest.IsZero() || r.at.Before(oldest) {
			oldest = r.at
		}
	}
	return int64(len(b.unacked)), oldest, nil
}

// UnackedEntries returns unacked records, oldest first.
func (b *Backend) UnackedEntries(ctx context.Context, limit int) ([]transport.UnackedEntry, error) {
	b.mu.Lock()
	out := make([]transport.UnackedEntry, 0, len(b.unacked))
	for tag, r := range b.unacked {
		out = append(out, transport.UnackedEntry{Tag: tag, Exchange: r.exchange, RoutingKey: r.rk, Envelope: slices.Clone(r.envelope), Since: r.at})
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Peek returns up to n messages of queue in delivery order.
func (b *Backend) Peek(ctx context.Context, queue string, n int) ([]transport.Delivery, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []transport.Delivery
	for _, s := range b.steps {
		d := b.list(queue, s, false)
		if d == nil {
			continue
		}
		for _, v := range d.items[d.head:] {
			if len(out) >= n {
				return out, nil
			}
			out = append(out, transport.Delivery{Queue: queue, Envelope: slices.Clone(v)})
		}
	}
	return out, nil
}
