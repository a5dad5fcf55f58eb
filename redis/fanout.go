package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	return wrap("publish fanout", b.client.Publish(ctx, b.k.fanoutChannel(exchange, routingKey), envelope).Err())
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
		ps:   ps,
		c:    make(chan transport.Delivery),
		done: make(chan struct{}),
	}
	in := ps.Channel(goredis.WithChannelHealthCheckInterval(b.opts.HealthCheckInterval))
	s.wg.Add(1)
	go s.run(in, b)
	return s, nil
}

type subscription struct {
	ps   *goredis.PubSub
	c    chan transport.Delivery
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	err  error
}

func (s *subscription) C() <-chan transport.Delivery { return s.c }

func (s *subscription) run(in <-chan *goredis.Message, b *Backend) {
	defer s.wg.Done()
	defer close(s.c)
	for {
		select {
		case <-s.done:
			return
		case m, ok := <-in:
			if !ok {
				return
			}
			if m.Payload == "" {
				continue
			}
			d := transport.Delivery{Exchange: b.k.fanoutExchange(m.Channel), Envelope: []byte(m.Payload)}
			select {
			case s.c <- d:
			case <-s.done:
				return
			}
		}
	}
}

// Close ends the subscription: its pub/sub connection is closed and C is
// closed after the last delivery.
func (s *subscription) Close() error {
	s.once.Do(func() {
		close(s.done)
		if err := s.ps.Close(); err != nil {
			s.err = fmt.Errorf("kombu: redis: close subscription: %w", err)
		}
		s.wg.Wait()
	})
	return s.err
}
