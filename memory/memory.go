// Package memory is an in-process transport backend with the semantics of
// Kombu's Redis transport: FIFO lists per queue and priority step served
// step-major, binding tables, fanout broadcast, and ack records with
// requeue, restore and visibility timeouts. It is safe for concurrent use.
//
// Importing the package registers the "memory" URL scheme. All
// connections to the same URL share one broker, so a producer and a
// consumer in one process see the same queues: "memory://" is the default
// broker, "memory://name" (or "memory:///name") a separate one.
package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// DeadLetterKey is the list that receives messages whose delivery tag
// cannot be read.
const DeadLetterKey = "kombu-go.malformed"

func init() {
	transport.Register("memory", transport.OpenerFunc(func(ctx context.Context, u *transport.URL) (transport.Backend, error) {
		for k := range u.Options {
			return nil, fmt.Errorf("%w: memory transport has no option %q", transport.ErrBadURL, k)
		}
		// "memory://name" and "memory:///name" name the same broker.
		name := u.VirtualHost
		if len(u.Hosts) > 0 {
			name = strings.TrimSuffix(u.Hosts[0].Host+"/"+name, "/")
		}
		return Shared(name), nil
	}))
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*Broker{}
)

// Shared returns the process-wide broker with the given name, creating it.
// The backends it returns share its state; closing one does not clear it.
func Shared(name string) *Backend {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	b := shared[name]
	if b == nil {
		b = NewBroker()
		shared[name] = b
	}
	return &Backend{Broker: b}
}

// Option configures a Broker.
type Option func(*Broker)

// WithClock sets the clock used for unacked records (tests use a fake one).
func WithClock(c transport.Clock) Option { return func(b *Broker) { b.clock = c } }

// WithPrioritySteps sets the priority steps (Kombu's priority_steps).
func WithPrioritySteps(steps []int) Option {
	return func(b *Broker) { b.steps = append([]int(nil), steps...) }
}

// Broker is the shared state: queues, bindings, unacked records and fanout
// subscribers.
type Broker struct {
	mu       sync.Mutex
	clock    transport.Clock
	steps    []int
	lists    map[string]*deque // key: queue + "\x00" + step
	bindings map[string][]transport.BindingRow
	unacked  map[string]unackedRec
	wake     chan struct{}
	subs     map[*subscription]struct{}
}

type unackedRec struct {
	envelope     []byte
	exchange, rk string
	at           time.Time
}

// NewBroker returns an empty broker.
func NewBroker(opts ...Option) *Broker {
	b := &Broker{
		clock:    transport.SystemClock{},
		steps:    transport.DefaultPrioritySteps,
		lists:    map[string]*deque{},
		bindings: map[string][]transport.BindingRow{},
		unacked:  map[string]unackedRec{},
		wake:     make(chan struct{}),
		subs:     map[*subscription]struct{}{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// New returns a backend over a fresh, private broker.
func New(opts ...Option) *Backend { return &Backend{Broker: NewBroker(opts...)} }

// Backend is a transport.Backend over a Broker.
type Backend struct {
	*Broker
}

var (
	_ transport.Backend     = (*Backend)(nil)
	_ transport.Fanout      = (*Backend)(nil)
	_ transport.BatchPutter = (*Backend)(nil)
)

type deque struct {
	items [][]byte
	head  int
}

func (d *deque) len() int          { return len(d.items) - d.head }
func (d *deque) pushBack(v []byte) { d.items = append(d.items, v) }
func (d *deque) pushFront(v []byte) {
	if d.head > 0 {
		d.head--
		d.items[d.head] = v
		return
	}
	d.items = append([][]byte{v}, d.items...)
}
func (d *deque) popFront() []byte {
	v := d.items[d.head]
	d.items[d.head] = nil
	d.head++
	if d.head > 64 && d.head*2 > len(d.items) {
		d.items = append([][]byte(nil), d.items[d.head:]...)
		d.head = 0
	}
	return v
}

func listKey(queue string, step int) string { return fmt.Sprintf("%s\x00%d", queue, step) }

func (b *Broker) list(queue string, step int, create bool) *deque {
	k := listKey(queue, step)
	d := b.lists[k]
	if d == nil && create {
		d = &deque{}
		b.lists[k] = d
	}
	return d
}

// notify wakes blocked getters; b.mu must be held.
func (b *Broker) notify() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Put appends to the back of queue's list for priority.
func (b *Backend) Put(ctx context.Context, queue string, priority int, envelope []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list(queue, transport.PriorityStep(priority, b.steps), true).pushBack(slices.Clone(envelope))
	b.notify()
	return nil
}

// PutBatch appends many messages at once.
func (b *Backend) PutBatch(ctx context.Context, items []transport.PutItem) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, it := range items {
		b.list(it.Queue, transport.PriorityStep(it.Priority, b.steps), true).pushBack(slices.Clone(it.Envelope))
	}
	b.notify()
	return nil
}

func (b *Broker) getLocked(queues []string, ack bool) (transport.Delivery, error) {
	for _, step := range b.steps {
		for _, q := range queues {
			d := b.list(q, step, false)
			if d == nil || d.len() == 0 {
				continue
			}
			raw := d.popFront()
			del := transport.Delivery{Queue: q, Envelope: raw}
			if !ack {
				return del, nil
			}
			tag, ex, rk, err := envelope.Route(raw)
			if err != nil {
				t, ok := envelope.ExtractTag(raw)
				if !ok {
					b.list(DeadLetterKey, 0, true).pushBack(raw)
					return transport.Delivery{}, &transport.MalformedError{Queue: q, Raw: raw, Where: DeadLetterKey, Err: err}
				}
				// Unparseable but tagged: a restore must bring it back
				// to the queue it came from, not to the queue "".
				tag, ex, rk = t, "", q
			}
			b.unacked[tag] = unackedRec{envelope: raw, exchange: ex, rk: rk, at: b.clock.Now()}
			return del, nil
		}
	}
	return transport.Delivery{}, transport.ErrEmpty
}

// Fetch deletes the unacked records of req.Settle, then takes up to
// req.Max messages as that many successive one-message takes would, in one
// critical section, waiting up to req.Wait for the first (see
// transport.Backend). With req.Rotate, a queue moves to the end of the
// order after each take.
func (b *Backend) Fetch(ctx context.Context, req transport.FetchRequest, dst []transport.Delivery) ([]transport.Delivery, error) {
	order := req.Queues
	if req.Rotate && req.Max > 1 {
		order = slices.Clone(req.Queues)
	}
	if err := ctx.Err(); err != nil {
		return dst, err // a done ctx takes nothing
	}
	settle := req.Settle
	var timer *time.Timer
	for {
		b.mu.Lock()
		for _, t := range settle {
			delete(b.unacked, t)
		}
		settle = nil
		n := len(dst)
		var err error
		for len(dst)-n < max(req.Max, 1) {
			var d transport.Delivery
			d, err = b.getLocked(order, req.Ack)
			if err != nil {
				break
			}
			dst = append(dst, d)
			if req.Rotate && req.Max > 1 {
				if i := slices.Index(order, d.Queue); i >= 0 {
					copy(order[i:], order[i+1:])
					order[len(order)-1] = d.Queue
				}
			}
		}
		wake := b.wake
		b.mu.Unlock()
		if len(dst) > n {
			if errors.Is(err, transport.ErrEmpty) {
				err = nil
			}
			return dst, err
		}
		if !errors.Is(err, transport.ErrEmpty) || req.Wait <= 0 {
			return dst, err
		}
		if timer == nil {
			timer = time.NewTimer(req.Wait)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return dst, transport.ErrEmpty
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}

// Size counts the messages waiting in all of queue's lists.
func (b *Backend) Size(ctx context.Context, queue string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, s := range b.steps {
		if d := b.list(queue, s, false); d != nil {
			n += int64(d.len())
		}
	}
	return n, nil
}

// Purge empties queue's lists and returns how many messages they held.
func (b *Backend) Purge(ctx context.Context, queue string) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, s := range b.steps {
		if d := b.list(queue, s, false); d != nil {
			n += int64(d.len())
			delete(b.lists, listKey(queue, s))
		}
	}
	return n, nil
}

// DeleteQueue removes queue's lists.
func (b *Backend) DeleteQueue(ctx context.Context, queue string) error {
	_, err := b.Purge(ctx, queue)
	return err
}

// QueueExists reports whether queue has messages waiting.
func (b *Backend) QueueExists(ctx context.Context, queue string) (bool, error) {
	n, err := b.Size(ctx, queue)
	return n > 0, err
}

// Bindings returns a copy of the exchange's binding table.
func (b *Backend) Bindings(ctx context.Context, exchange string) ([]transport.BindingRow, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bindings[exchange]), nil
}

// Bind adds a row to the exchange's table (a set: duplicates are ignored).
func (b *Backend) Bind(ctx context.Context, exchange string, row transport.BindingRow) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Contains(b.bindings[exchange], row) {
		b.bindings[exchange] = append(b.bindings[exchange], row)
	}
	return nil
}

// Unbind removes a row from the exchange's table.
func (b *Backend) Unbind(ctx context.Context, exchange string, row transport.BindingRow) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	rows := slices.DeleteFunc(b.bindings[exchange], func(r transport.BindingRow) bool { return r == row })
	if len(rows) == 0 {
		delete(b.bindings, exchange)
	} else {
		b.bindings[exchange] = rows
	}
	return nil
}

// Ack deletes the unacked records of tags.
func (b *Backend) Ack(ctx context.Context, tags ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range tags {
		delete(b.unacked, t)
	}
	return nil
}

// Restore moves the unacked message of tag back to its queues (see
// transport.Backend). Routing runs outside the lock; the record is taken
// only if it is still there, so a message is never restored twice.
func (b *Backend) Restore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) error {
	b.mu.Lock()
	rec, ok := b.unacked[tag]
	b.mu.Unlock()
	if !ok {
		return nil
	}
	queues, err := route(ctx, rec.exchange, rec.rk)
	if err != nil {
		return err
	}
	env, err := envelope.MarkRedelivered(rec.envelope)
	if err != nil {
		env = rec.envelope // keep the message even if it cannot be marked
	}
	pri := 0
	if e, err := envelope.Parse(env); err == nil {
		pri = e.Priority()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, still := b.unacked[tag]
	if !still || cur.at != rec.at {
		return nil
	}
	delete(b.unacked, tag)
	step := transport.PriorityStep(pri, b.steps)
	for _, q := range queues {
		d := b.list(q, step, true)
		if leftmost {
			d.pushBack(env)
		} else {
			d.pushFront(env)
		}
	}
	b.notify()
	return nil
}

// RestoreExpired restores every unacked message recorded at or before
// deadline, front of queue, oldest ending first in line.
func (b *Backend) RestoreExpired(ctx context.Context, deadline time.Time, route transport.RouteFunc) (int, error) {
	b.mu.Lock()
	type item struct {
		tag string
		at  time.Time
	}
	var due []item
	for tag, r := range b.unacked {
		if !r.at.After(deadline) {
			due = append(due, item{tag, r.at})
		}
	}
	b.mu.Unlock()
	// Newest first, each pushed to the front: the oldest ends up first.
	sort.Slice(due, func(i, j int) bool { return due[i].at.After(due[j].at) })
	n := 0
	for _, it := range due {
		if err := b.Restore(ctx, it.tag, false, route); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// UnackedCount returns the number of unacked records (for tests and tools).
func (b *Backend) UnackedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.unacked)
}

// RecordUnacked writes the unacked record of a fanout delivery.
func (b *Backend) RecordUnacked(ctx context.Context, tag string, envelope []byte, exchange, routingKey string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unacked[tag] = unackedRec{envelope: slices.Clone(envelope), exchange: exchange, rk: routingKey, at: b.clock.Now()}
	return nil
}

type subscription struct {
	b    *Broker
	subs []transport.FanoutSub
	c    chan transport.Delivery
	once sync.Once
}

func (s *subscription) C() <-chan transport.Delivery { return s.c }

func (s *subscription) Close() error {
	s.once.Do(func() {
		s.b.mu.Lock()
		delete(s.b.subs, s)
		close(s.c)
		s.b.mu.Unlock()
	})
	return nil
}

// SubscribeFanout starts receiving broadcasts for subs.
func (b *Backend) SubscribeFanout(ctx context.Context, subs []transport.FanoutSub) (transport.Subscription, error) {
	s := &subscription{b: b.Broker, subs: slices.Clone(subs), c: make(chan transport.Delivery, 1024)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

// PublishFanout delivers envelope to every subscription with a matching
// binding, once per matching binding, as Redis PSUBSCRIBE does: a binding
// key "" matches only an empty routing key; otherwise the binding key, with
// "#" replaced by "*", is a glob over the routing key. A full subscriber
// buffer drops the message (fanout is at-most-once, as on Redis).
func (b *Backend) PublishFanout(ctx context.Context, exchange, routingKey string, envelope []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, sub := range s.subs {
			if sub.Exchange != exchange || !FanoutMatch(sub.RoutingKey, routingKey) {
				continue
			}
			select {
			case s.c <- transport.Delivery{Exchange: exchange, Envelope: slices.Clone(envelope)}:
			default:
			}
		}
	}
	return nil
}

// FanoutMatch reports whether a fanout binding key hears a publish with
// routingKey, following Kombu's channel naming over Redis pub/sub.
func FanoutMatch(bindingKey, routingKey string) bool {
	if bindingKey == "" || routingKey == "" {
		return bindingKey == "" && routingKey == ""
	}
	return globMatch(strings.ReplaceAll(bindingKey, "#", "*"), routingKey)
}

// globMatch is Redis's stringmatch: * any run, ? one char, [set], \ escape.
func globMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(p[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			p, s = p[1:], s[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			end := strings.IndexByte(p[1:], ']')
			if end < 0 {
				if s[0] != '[' {
					return false
				}
				p, s = p[1:], s[1:]
				continue
			}
			set := p[1 : 1+end]
			neg := strings.HasPrefix(set, "^")
			if neg {
				set = set[1:]
			}
			hit := false
			for i := 0; i < len(set); i++ {
				if i+2 < len(set) && set[i+1] == '-' {
					if set[i] <= s[0] && s[0] <= set[i+2] {
						hit = true
					}
					i += 2
				} else if set[i] == s[0] {
					hit = true
				}
			}
			if hit == neg {
				return false
			}
			p, s = p[2+end:], s[1:]
		case '\\':
			if len(p) > 1 {
				p = p[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || p[0] != s[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

// Ping always succeeds.
func (b *Backend) Ping(ctx context.Context) error { return nil }

// Close does nothing: the broker's state outlives its backends.
func (b *Backend) Close() error { return nil }

// Stats describes a queue for tools: messages per priority step.
func (b *Backend) Stats(queue string) map[int]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[int]int{}
	for _, s := range b.steps {
		if d := b.list(queue, s, false); d != nil {
			out[s] = d.len()
		}
	}
	return out
}
