// Package virtual is kombu-go's virtual transport engine: the logic Kombu's
// kombu.transport.virtual shares between backends, written once, on top of
// the backend contract of package transport.
//
// It owns queue and exchange declaration, routing through the binding
// tables (direct, topic with Kombu's regex translation, fanout), prefetch
// (QoS), the consumer loop (one loop per consumer; a backend's batch and
// blocking capabilities choose which call one fetch makes), ack emulation,
// and restore on close. The root package kombu is
// its user API; package transporttest drives it to check backends.
package virtual

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
)

// QueueOrder is Kombu's queue_order_strategy: how a consumer of several
// queues orders them within one priority step.
type QueueOrder string

const (
	// RoundRobin moves a queue to the end of the order after a message is
	// taken from it (Kombu's default).
	RoundRobin QueueOrder = "round_robin"
	// PriorityOrder keeps the order fixed: the first queue starves the rest.
	PriorityOrder QueueOrder = "priority"
	// SortedOrder orders the queues alphabetically.
	SortedOrder QueueOrder = "sorted"
)

// Options configure a Transport. The zero value works: every field has a
// Kombu default, filled in by New.
type Options struct {
	// Serializers is the codec registry; nil means serialization.Default.
	Serializers *serialization.Registry
	// Clock tells the time for unacked records and visibility timeouts.
	Clock transport.Clock
	// Logger receives the transport's logs; nil discards them.
	Logger *slog.Logger
	// Observer receives message events for metrics; nil means none.
	Observer Observer
	// VisibilityTimeout is how long an unacked message may stay unacked
	// before any consumer restores it (Kombu: visibility_timeout, 3600 s).
	VisibilityTimeout time.Duration
	// RestoreInterval is how often a consumer looks for expired unacked
	// messages (Kombu scans about every 10 s in a plain drain loop).
	RestoreInterval time.Duration
	// PollingInterval is how long one Fetch waits for a message
	// (FetchRequest.Wait) before the consumer loop looks again (Kombu: 1 s
	// BRPOP timeout; polling_interval in 5.6+).
	PollingInterval time.Duration
	// DeadLetterQueue receives messages published to a direct or fanout
	// exchange that match no binding (Kombu: deadletter_queue). Empty means
	// such messages are dropped, as in Kombu.
	DeadLetterQueue string
	// QueueOrder is Kombu's queue_order_strategy; zero means RoundRobin.
	QueueOrder QueueOrder
	// InferExchangeTypes routes through an exchange this process did not
	// declare as a topic exchange when its binding table holds topic
	// patterns. Kombu (and the default here) routes undeclared exchanges as
	// direct; tools that restore or publish without knowing the exchanges,
	// such as the kombu command, turn this on.
	InferExchangeTypes bool
}

// ApplyURLOptions sets o's fields from the Kombu transport options in m that
// this package owns (see CoreOptionNames), and deletes them from m.
func (o *Options) ApplyURLOptions(m map[string]string) error {
	for _, name := range transport.CoreOptionNames {
		v, ok := m[name]
		if !ok {
			continue
		}
		delete(m, name)
		switch name {
		case "visibility_timeout", "polling_interval", "unacked_restore_interval":
			d, err := transport.ParseSeconds(v)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", transport.ErrBadURL, name, err)
			}
			switch name {
			case "visibility_timeout":
				o.VisibilityTimeout = d
			case "polling_interval":
				o.PollingInterval = d
			default:
				o.RestoreInterval = d
			}
		case "deadletter_queue":
			o.DeadLetterQueue = v
		case "queue_order_strategy":
			switch QueueOrder(v) {
			case RoundRobin, PriorityOrder, SortedOrder:
				o.QueueOrder = QueueOrder(v)
			default:
				return fmt.Errorf("%w: queue_order_strategy %q (want round_robin, priority or sorted)", transport.ErrBadURL, v)
			}
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.Serializers == nil {
		o.Serializers = serialization.Default
	}
	if o.Clock == nil {
		o.Clock = transport.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler) // disabled: records are not even built
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = time.Hour
	}
	if o.RestoreInterval == 0 {
		o.RestoreInterval = 10 * time.Second
	}
	if o.PollingInterval == 0 {
		o.PollingInterval = time.Second
	}
	if o.QueueOrder == "" {
		o.QueueOrder = RoundRobin
	}
}

// Transport is one connection's virtual transport: a Backend plus the
// in-process broker state Kombu keeps in memory (declared exchanges and
// their types, bindings made by this process). It is safe for concurrent
// use. Create channels with Channel.
type Transport struct {
	backend transport.Backend
	opts    Options

	mu        sync.RWMutex
	exchanges map[string]entity.Exchange
	bound     map[bindKey]transport.BindingRow // bindings this process made
	fanoutQ   map[string]fanoutBinding
	closed    bool
	channels  map[*Channel]struct{}
	// observed: an Observer was given, so publishes and fetches are timed
	// for it (no clock reads on those paths otherwise).
	observed bool
}

type bindKey struct{ queue, exchange, routingKey string }

type fanoutBinding struct{ exchange, routingKey string }

// New returns a Transport over backend. The Transport owns the backend:
// Close closes it.
func New(backend transport.Backend, opts Options) *Transport {
	observed := opts.Observer != nil
	opts.setDefaults()
	return &Transport{
		observed:  observed,
		backend:   backend,
		opts:      opts,
		exchanges: map[string]entity.Exchange{},
		bound:     map[bindKey]transport.BindingRow{},
		fanoutQ:   map[string]fanoutBinding{},
		channels:  map[*Channel]struct{}{},
	}
}

// Backend returns the backend the transport runs on.
func (t *Transport) Backend() transport.Backend { return t.backend }

// Options returns the transport's options with defaults filled in.
func (t *Transport) Options() Options { return t.opts }

// Logger returns the transport's logger.
func (t *Transport) Logger() *slog.Logger { return t.opts.Logger }

// Close closes every open channel (restoring what they had not acked) and
// then the backend.
func (t *Transport) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	chans := make([]*Channel, 0, len(t.channels))
	for c := range t.channels {
		chans = append(chans, c)
	}
	t.mu.Unlock()
	var errs []error
	for _, c := range chans {
		errs = append(errs, c.Close(ctx))
	}
	errs = append(errs, t.backend.Close())
	return errors.Join(errs...)
}

// DeclareExchange records the exchange and its type in this process, as
// Kombu's exchange_declare does; nothing is written to the backend. A fanout
// exchange needs the backend's Fanout capability. Redeclaring with another
// type fails with ErrExchangeType.
func (t *Transport) DeclareExchange(ctx context.Context, ex entity.Exchange) error {
	if ex.Name == "" {
		return nil
	}
	if err := ex.Validate(); err != nil {
		return err
	}
	ex.Type = ex.Type.Normalize()
	if ex.Type == entity.Fanout {
		if _, ok := t.backend.(transport.Fanout); !ok {
			return fmt.Errorf("kombu: fanout exchange %q: backend has no fanout: %w", ex.Name, transport.ErrUnsupported)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.exchanges[ex.Name]; ok && old.Type != ex.Type {
		return fmt.Errorf("%w: exchange %q declared as %s, now %s", transport.ErrExchangeType, ex.Name, old.Type, ex.Type)
	}
	t.exchanges[ex.Name] = ex
	return nil
}

// ExchangeType returns the type this process declared for the exchange;
// undeclared exchanges count as direct, as in Kombu.
func (t *Transport) ExchangeType(name string) entity.ExchangeType {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if ex, ok := t.exchanges[name]; ok {
		return ex.Type
	}
	return entity.Direct
}

// DeleteExchange deletes, for each queue bound to the exchange, the queues
// this process bound and that are empty (Kombu's exchange_delete), then
// forgets the exchange.
func (t *Transport) DeleteExchange(ctx context.Context, name string) error {
	rows, err := t.backend.Bindings(ctx, name)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := t.DeleteQueue(ctx, r.Queue, true); err != nil {
			return err
		}
	}
	t.mu.Lock()
	delete(t.exchanges, name)
	t.mu.Unlock()
	return nil
}

// QueueInfo is the result of DeclareQueue.
type QueueInfo struct {
	Name         string
	MessageCount int64
}

// DeclareQueue declares every exchange the queue is bound to, binds it, and
// returns its message count (Kombu's Queue.declare). Nothing is created in
// the backend for the queue itself: a Kombu queue exists while it has
// messages.
func (t *Transport) DeclareQueue(ctx context.Context, q entity.Queue) (QueueInfo, error) {
	if err := q.Validate(); err != nil {
		return QueueInfo{}, err
	}
	for _, b := range q.AllBindings() {
		if err := t.DeclareExchange(ctx, b.Exchange); err != nil {
			return QueueInfo{}, err
		}
	}
	n, err := t.backend.Size(ctx, q.Name)
	if err != nil {
		return QueueInfo{}, err
	}
	for _, b := range q.AllBindings() {
		if err := t.BindQueue(ctx, q.Name, b.Exchange.Name, b.RoutingKey); err != nil {
			return QueueInfo{}, err
		}
	}
	return QueueInfo{Name: q.Name, MessageCount: n}, nil
}

// DeclareQueuePassive returns the queue's message count, or ErrNotFound if
// it has no messages (Kombu's passive declare: an empty queue does not exist).
func (t *Transport) DeclareQueuePassive(ctx context.Context, name string) (QueueInfo, error) {
	ok, err := t.backend.QueueExists(ctx, name)
	if err != nil {
		return QueueInfo{}, err
	}
	if !ok {
		return QueueInfo{}, fmt.Errorf("%w: queue %q", transport.ErrNotFound, name)
	}
	n, err := t.backend.Size(ctx, name)
	return QueueInfo{Name: name, MessageCount: n}, err
}

// BindQueue binds queue to exchange with routingKey: one row added to the
// exchange's table, the first time this process makes that binding. The row
// carries Kombu's topic pattern if this process declared the exchange as
// topic.
func (t *Transport) BindQueue(ctx context.Context, queue, exchange, routingKey string) error {
	if exchange == "" {
		return fmt.Errorf("%w: cannot bind queue %q to the default exchange", entity.ErrInvalid, queue)
	}
	k := bindKey{queue, exchange, routingKey}
	typ := t.ExchangeType(exchange)
	row := transport.BindingRow{RoutingKey: routingKey, Queue: queue}
	if typ == entity.Topic {
		row.Pattern = transport.KeyToPattern(routingKey)
	}
	t.mu.RLock()
	_, done := t.bound[k]
	t.mu.RUnlock()
	if !done {
		if err := t.backend.Bind(ctx, exchange, row); err != nil {
			return err
		}
	}
	t.mu.Lock()
	t.bound[k] = row
	if typ == entity.Fanout {
		t.fanoutQ[queue] = fanoutBinding{exchange, routingKey}
	}
	t.mu.Unlock()
	return nil
}

// UnbindQueue forgets the binding in this process, and removes its row from
// the exchange's table. (Kombu's queue_unbind changes only its memory and
// leaves the row in Redis, a known Kombu bug; removing it is what the user
// asked for, and Python peers read the table fresh on every publish.)
func (t *Transport) UnbindQueue(ctx context.Context, queue, exchange, routingKey string) error {
	k := bindKey{queue, exchange, routingKey}
	t.mu.Lock()
	row, ok := t.bound[k]
	delete(t.bound, k)
	if fb, isFan := t.fanoutQ[queue]; isFan && fb.exchange == exchange && fb.routingKey == routingKey {
		delete(t.fanoutQ, queue)
	}
	t.mu.Unlock()
	if !ok {
		row = transport.BindingRow{RoutingKey: routingKey, Queue: queue}
		if t.ExchangeType(exchange) == entity.Topic {
			row.Pattern = transport.KeyToPattern(routingKey)
		}
	}
	return t.backend.Unbind(ctx, exchange, row)
}

// DeleteQueue removes the bindings this process made for the queue and all
// its messages (Kombu's queue_delete). With ifEmpty it does nothing when the
// queue has messages.
func (t *Transport) DeleteQueue(ctx context.Context, queue string, ifEmpty bool) error {
	if ifEmpty {
		n, err := t.backend.Size(ctx, queue)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
	}
	t.mu.Lock()
	var rows []struct {
		exchange string
		row      transport.BindingRow
	}
	for k, r := range t.bound {
		if k.queue == queue {
			rows = append(rows, struct {
				exchange string
				row      transport.BindingRow
			}{k.exchange, r})
			delete(t.bound, k)
		}
	}
	delete(t.fanoutQ, queue)
	t.mu.Unlock()
	for _, r := range rows {
		if err := t.backend.Unbind(ctx, r.exchange, r.row); err != nil {
			return err
		}
	}
	return t.backend.DeleteQueue(ctx, queue)
}

// PurgeQueue removes the queue's waiting messages and returns how many.
func (t *Transport) PurgeQueue(ctx context.Context, queue string) (int64, error) {
	return t.backend.Purge(ctx, queue)
}

// QueueSize returns the number of waiting messages (unacked ones excluded).
func (t *Transport) QueueSize(ctx context.Context, queue string) (int64, error) {
	return t.backend.Size(ctx, queue)
}

// Route returns the queues a publish to exchange with routingKey goes to now,
// as Kombu's _lookup does: the default exchange names the queue directly;
// otherwise the backend's binding table is matched by the exchange type
// this process declared (direct when undeclared). With no match it returns
// the dead-letter queue if one is configured (never for topic exchanges),
// else nothing.
func (t *Transport) Route(ctx context.Context, exchange, routingKey string) ([]string, error) {
	if exchange == "" {
		return []string{routingKey}, nil
	}
	table, err := t.backend.Bindings(ctx, exchange)
	if err != nil {
		return nil, err
	}
	return t.lookup(exchange, table, routingKey)
}

// lookup is Route for a binding table already read.
func (t *Transport) lookup(exchange string, table []transport.BindingRow, routingKey string) ([]string, error) {
	typ := t.ExchangeType(exchange)
	if t.opts.InferExchangeTypes && typ == entity.Direct && !t.isDeclared(exchange) && hasPatterns(table) {
		typ = entity.Topic
	}
	qs, err := transport.Lookup(table, string(typ), routingKey, t.opts.DeadLetterQueue)
	if err != nil {
		return nil, err
	}
	if len(qs) == 0 && t.opts.DeadLetterQueue != "" && typ != entity.Topic {
		t.opts.Logger.Warn("kombu: message has no route, sent to the dead-letter queue",
			"exchange", exchange, "routing_key", routingKey, "queue", t.opts.DeadLetterQueue)
		qs = []string{t.opts.DeadLetterQueue}
	}
	return qs, nil
}

func (t *Transport) routeFunc() transport.RouteFunc { return t.Route }

func (t *Transport) isDeclared(exchange string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.exchanges[exchange]
	return ok
}

// hasPatterns reports whether a binding table has topic patterns: only
// topic bindings store one.
func hasPatterns(table []transport.BindingRow) bool {
	for _, r := range table {
		if r.Pattern != "" {
			return true
		}
	}
	return false
}

// Publish sends one envelope to exchange with routingKey, as Kombu's
// basic_publish does. It sets the envelope's delivery_info and a fresh
// delivery tag unless one is set. It returns the number of queues the
// message was put on (for fanout, 1 when it was broadcast); a message that
// matched nothing is dropped silently, as in Kombu, and mandatory turns
// that into a *NoRouteError.
func (t *Transport) Publish(ctx context.Context, exchange, routingKey string, env *envelope.Envelope, mandatory bool) (int, error) {
	env.Exchange, env.RoutingKey = exchange, routingKey
	if env.DeliveryTag == "" {
		env.DeliveryTag = envelope.NewDeliveryTag()
	}
	raw, err := env.Marshal()
	if err != nil {
		return 0, err
	}
	return t.PublishRaw(ctx, exchange, routingKey, env.Priority(), raw, mandatory)
}

// PublishRaw routes and puts an already encoded envelope (see Publish).
func (t *Transport) PublishRaw(ctx context.Context, exchange, routingKey string, priority int, raw []byte, mandatory bool) (n int, err error) {
	if !t.observed {
		return t.publishRaw(ctx, exchange, routingKey, priority, raw, mandatory)
	}
	start := time.Now()
	n, err = t.publishRaw(ctx, exchange, routingKey, priority, raw, mandatory)
	t.opts.Observer.Published(exchange, routingKey, n, time.Since(start), err)
	return n, err
}

func (t *Transport) publishRaw(ctx context.Context, exchange, routingKey string, priority int, raw []byte, mandatory bool) (int, error) {
	var notReplicated error
	if t.isClosed() {
		return 0, transport.ErrClosed
	}
	if exchange == "" {
		return 1, t.backend.Put(ctx, routingKey, priority, raw)
	}
	typ := t.ExchangeType(exchange)
	var n int
	switch {
	case typ == entity.Fanout:
		f, ok := t.backend.(transport.Fanout)
		if !ok {
			return 0, fmt.Errorf("kombu: fanout publish: %w", transport.ErrUnsupported)
		}
		return 1, f.PublishFanout(ctx, exchange, routingKey, raw)
	case t.opts.DeadLetterQueue == "":
		if p, ok := t.backend.(transport.Publisher); ok {
			var err error
			if n, err = p.Publish(ctx, exchange, typ, routingKey, priority, raw); err != nil {
				return n, err
			}
			break
		}
		fallthrough
	default:
		qs, err := t.Route(ctx, exchange, routingKey)
		if err != nil {
			return 0, err
		}
		// A write that fell short of the replicas asked for
		// (ErrNotReplicated) is published all the same: the rest are
		// written, and the error is returned with the count.
		if bp, ok := t.backend.(transport.BatchPutter); ok && len(qs) > 1 {
			items := make([]transport.PutItem, len(qs))
			for i, q := range qs {
				items[i] = transport.PutItem{Queue: q, Priority: priority, Envelope: raw}
			}
			if err := bp.PutBatch(ctx, items); err != nil {
				if !errors.Is(err, transport.ErrNotReplicated) {
					return 0, err
				}
				notReplicated = err
			}
		} else {
			for i, q := range qs {
				if err := t.backend.Put(ctx, q, priority, raw); err != nil {
					if !errors.Is(err, transport.ErrNotReplicated) {
						return i, err
					}
					notReplicated = cmp.Or(notReplicated, err)
				}
			}
		}
		n = len(qs)
	}
	if n == 0 && mandatory {
		return 0, &transport.NoRouteError{Exchange: exchange, RoutingKey: routingKey}
	}
	return n, notReplicated
}

func (t *Transport) isClosed() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.closed
}

// fanoutSubs returns the fanout bindings of the given queues.
func (t *Transport) fanoutSubs(queues []string) (subs []transport.FanoutSub, rest []string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, q := range queues {
		if fb, ok := t.fanoutQ[q]; ok {
			subs = append(subs, transport.FanoutSub{Exchange: fb.exchange, RoutingKey: fb.routingKey, Queue: q})
		} else {
			rest = append(rest, q)
		}
	}
	return subs, rest
}

// IsFanoutQueue reports whether this process bound the queue to a fanout
// exchange.
func (t *Transport) IsFanoutQueue(queue string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.fanoutQ[queue]
	return ok
}
