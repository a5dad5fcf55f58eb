package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// PublishFanout PUBLISHes envelope on the exchange's channel (Kombu's
// _put_fanout): P + fanout prefix + exchange, then "/" + routingKey when
// it is not empty and fanout_patterns is on.
func (b *Backend) PublishFanout(ctx context.Context, exchange, routingKey string, envelope []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.shard != nil {
		return b.shardPublishFanout(ctx, exchange, routingKey, envelope) // sharded_fanout.go
	}
	ch := b.k.fanoutChannel(exchange, routingKey)
	if c, ok := b.client.(*goredis.ClusterClient); ok {
		return wrap("publish fanout", clusterPublish(ctx, c, ch, envelope)) // cluster.go
	}
	return wrap("publish fanout", b.client.Publish(ctx, ch, envelope).Err())
}

// SubscribeFanout PSUBSCRIBEs, on one pub/sub connection, to the pattern of
// every binding in subs (Kombu's _subscribe: "#" in a binding key becomes
// "*"; an empty key subscribes to the exchange's exact channel). It returns
// once Redis has confirmed the subscription. Deliveries carry the exchange
// parsed from the channel name and the raw envelope; empty payloads are
// dropped, as Kombu does.
func (b *Backend) SubscribeFanout(ctx context.Context, subs []transport.FanoutSub) (transport.Subscription, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if len(subs) == 0 {
		return nil, errors.New("kombu: redis: subscribe fanout: no bindings")
	}
	if b.shard != nil {
		return b.shardSubscribeFanout(ctx, subs) // sharded_fanout.go
	}
	seen := map[string]bool{}
	var patterns []string
	for _, s := range subs {
		p := b.k.fanoutPattern(s.Exchange, s.RoutingKey)
		if !seen[p] {
			seen[p] = true
			patterns = append(patterns, p)
		}
	}
	ps := b.client.PSubscribe(ctx, patterns...)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, wrap("subscribe fanout", err)
	}
	s := &subscription{
		ps:       ps,
		patterns: patterns,
		c:        make(chan transport.Delivery),
		done:     make(chan struct{}),
	}
	s.wg.Add(1)
	go s.run(b)
	return s, nil
}

type subscription struct {
	patterns []string
	// open, if set, makes the subscription's pub/sub connection (and
	// subscribes) instead of PSUBSCRIBE to patterns; accept, if set, turns
	// a received message into a delivery or drops it (sharded_fanout.go).
	open   func(ctx context.Context) *goredis.PubSub
	accept func(m *goredis.Message) (transport.Delivery, bool)
	c      chan transport.Delivery
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	err    error

	mu sync.Mutex
	ps *goredis.PubSub // replaced when the connection is found dead
}

func (s *subscription) C() <-chan transport.Delivery { return s.c }

func (s *subscription) current() *goredis.PubSub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ps
}

func (s *subscription) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// run reads the subscription and checks its health (Kombu's
// health_check_interval): after an interval with nothing read it sends
// PING; if another interval passes with no reply, the connection is dead
// (a peer that vanished without closing it: go-redis's own health check
// only notices a failed write) and a new subscription replaces it.
// go-redis reconnects and resubscribes by itself after read or write
// errors. Broadcasts sent while the connection is down are lost, as in
// Kombu: fanout is at-most-once.
func (s *subscription) run(b *Backend) {
	defer s.wg.Done()
	defer close(s.c)
	ctx := context.Background()
	interval := b.opts.HealthCheckInterval
	pinged := false
	for !s.stopped() {
		ps := s.current()
		msg, err := ps.ReceiveTimeout(ctx, interval)
		if err != nil {
			if s.stopped() {
				return
			}
			var nerr net.Error
			switch {
			case errors.As(err, &nerr) && nerr.Timeout() && pinged:
				b.log.Warn("kombu: redis: fanout subscription did not answer a health check; resubscribing",
					"interval", interval)
				s.resubscribe(ctx, b)
				pinged = false
			case errors.As(err, &nerr) && nerr.Timeout():
				pinged = ps.Ping(ctx, "kombu-go-health-check") == nil
			default:
				// go-redis reconnects on the next read; do not spin while
				// the server is unreachable.
				b.log.Debug("kombu: redis: fanout subscription read failed", "error", err)
				pinged = false
				select {
				case <-time.After(100 * time.Millisecond):
				case <-s.done:
				}
			}
			continue
		}
		pinged = false
		m, ok := msg.(*goredis.Message)
		if !ok || m.Payload == "" {
			continue // subscription confirmations, pongs, empty payloads (dropped, as Kombu does)
		}
		d := transport.Delivery{Exchange: b.k.fanoutExchange(m.Channel), Envelope: []byte(m.Payload)}
		if s.accept != nil {
			if d, ok = s.accept(m); !ok {
				continue
			}
		}
		select {
		case s.c <- d:
		case <-s.done:
			return
		}
	}
}

// resubscribe replaces the subscription's connection with a new one,
// retrying until it succeeds or the subscription is closed.
func (s *subscription) resubscribe(ctx context.Context, b *Backend) {
	delay := 50 * time.Millisecond
	for !s.stopped() {
		var ps *goredis.PubSub
		if s.open != nil {
			ps = s.open(ctx)
		} else {
			ps = b.client.PSubscribe(ctx, s.patterns...)
		}
		rctx, cancel := context.WithTimeout(ctx, max(b.opts.HealthCheckInterval, time.Second))
		_, err := ps.ReceiveTimeout(rctx, max(b.opts.HealthCheckInterval, time.Second))
		cancel()
		if err == nil {
			s.mu.Lock()
			old := s.ps
			s.ps = ps
			closed := s.stopped()
			s.mu.Unlock()
			_ = old.Close()
			if closed {
				_ = ps.Close()
			}
			return
		}
		_ = ps.Close()
		b.log.Debug("kombu: redis: fanout resubscribe failed", "error", err)
		select {
		case <-time.After(delay):
		case <-s.done:
			return
		}
		delay = min(2*delay, time.Second)
	}
}

// Close ends the subscription: its pub/sub connection is closed and C is
// closed after the last delivery.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		close(s.done)
		ps := s.ps
		s.mu.Unlock()
		if err := ps.Close(); err != nil {
			s.err = fmt.Errorf("kombu: redis: close subscription: %w", err)
		}
		s.wg.Wait()
	})
	return s.err
}
