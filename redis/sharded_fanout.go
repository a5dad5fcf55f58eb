package redis

import (
	"context"
	"errors"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// Fanout in the sharded layout. A fanout exchange has one channel,
// P+"{"+exchange+"}"+keyprefix_fanout+exchange, so it hashes to one slot,
// and broadcasts go over sharded pub/sub (SPUBLISH, SSUBSCRIBE: Redis 7.0
// and later) on that slot's master, with one subscription per exchange.
// Sharded pub/sub has no pattern form, so Kombu's fanout_patterns
// (binding keys as PSUBSCRIBE patterns over "exchange/routing_key") is
// applied in Go: the message on the channel is the routing key, sep, and
// the envelope, and each subscription keeps the messages whose
// "exchange/routing_key" topic matches one of its bindings' patterns
// (Redis's glob rules). On a server without SPUBLISH (before 7.0) the
// same channel is used with PUBLISH on the slot's master and SUBSCRIBE.
// Fanout stays at-most-once, as Kombu's.

// shardFanoutChannel is the channel of exchange.
func (k *keys) shardFanoutChannel(exchange string) string {
	return k.prefix + "{" + exchange + "}" + k.fanoutPrefix + exchange
}

// isUnknownCommand reports whether err says the server lacks the command.
func isUnknownCommand(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown command")
}

// shardPublishFanout broadcasts env to exchange's subscribers.
func (b *Backend) shardPublishFanout(ctx context.Context, exchange, routingKey string, env []byte) error {
	ch := b.k.shardFanoutChannel(exchange)
	payload := make([]byte, 0, len(routingKey)+len(b.k.sep)+len(env))
	payload = append(append(append(payload, routingKey...), b.k.sep...), env...)
	if !b.shard.plainPubSub.Load() {
		err := b.client.SPublish(ctx, ch, payload).Err()
		if !isUnknownCommand(err) {
			return wrap("publish fanout", err)
		}
		b.shard.plainPubSub.Store(true)
		b.log.Info("kombu: redis: the server has no SPUBLISH (Redis < 7.0); fanout uses PUBLISH on the channel's master")
	}
	if c, ok := b.client.(*goredis.ClusterClient); ok {
		return wrap("publish fanout", clusterPublish(ctx, c, ch, payload))
	}
	return wrap("publish fanout", b.client.Publish(ctx, ch, payload).Err())
}

// shardSubscribeFanout subscribes to the channel of each exchange of subs
// (one connection per exchange, on the master of its slot) and merges
// what they receive.
func (b *Backend) shardSubscribeFanout(ctx context.Context, subs []transport.FanoutSub) (transport.Subscription, error) {
	byEx := map[string][]string{} // exchange -> unprefixed subscribe topics
	var order []string
	for _, s := range subs {
		if _, ok := byEx[s.Exchange]; !ok {
			order = append(order, s.Exchange)
		}
		pat := strings.TrimPrefix(b.k.fanoutPattern(s.Exchange, s.RoutingKey), b.k.prefix)
		byEx[s.Exchange] = append(byEx[s.Exchange], pat)
	}
	m := &multiSub{c: make(chan transport.Delivery), done: make(chan struct{})}
	for _, ex := range order {
		sub, err := b.shardSubscribeOne(ctx, ex, byEx[ex])
		if err != nil {
			_ = m.Close()
			return nil, err
		}
		m.subs = append(m.subs, sub)
	}
	for _, s := range m.subs {
		m.wg.Add(1)
		go m.forward(s)
	}
	return m, nil
}

func (b *Backend) shardSubscribeOne(ctx context.Context, exchange string, patterns []string) (*subscription, error) {
	ch := b.k.shardFanoutChannel(exchange)
	open := func(ctx context.Context) *goredis.PubSub {
		if b.shard.plainPubSub.Load() {
			return b.client.Subscribe(ctx, ch)
		}
		return b.client.SSubscribe(ctx, ch)
	}
	sharded := !b.shard.plainPubSub.Load()
	ps := open(ctx)
	_, err := ps.Receive(ctx)
	if isUnknownCommand(err) && sharded {
		_ = ps.Close()
		b.shard.plainPubSub.Store(true)
		ps = open(ctx)
		_, err = ps.Receive(ctx)
	}
	if err != nil {
		_ = ps.Close()
		return nil, wrap("subscribe fanout", err)
	}
	sep := b.k.sep
	accept := func(msg *goredis.Message) (transport.Delivery, bool) {
		rk, env, ok := strings.Cut(msg.Payload, sep)
		if !ok || env == "" {
			return transport.Delivery{}, false
		}
		topic := strings.TrimPrefix(b.k.fanoutChannel(exchange, rk), b.k.prefix)
		for _, p := range patterns {
			if globMatch(p, topic) {
				return transport.Delivery{Exchange: exchange, Envelope: []byte(env)}, true
			}
		}
		return transport.Delivery{}, false
	}
	s := &subscription{
		ps:       ps,
		patterns: []string{ch},
		open:     open,
		accept:   accept,
		c:        make(chan transport.Delivery),
		done:     make(chan struct{}),
	}
	s.wg.Add(1)
	go s.run(b)
	return s, nil
}

// multiSub merges the subscriptions of several exchanges.
type multiSub struct {
	subs []*subscription
	c    chan transport.Delivery
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (m *multiSub) C() <-chan transport.Delivery { return m.c }

func (m *multiSub) forward(s *subscription) {
	defer m.wg.Done()
	for d := range s.C() {
		select {
		case m.c <- d:
		case <-m.done:
			return
		}
	}
}

// Close ends every subscription; C is closed after the last delivery.
func (m *multiSub) Close() error {
	m.once.Do(func() {
		close(m.done)
		var errs []error
		for _, s := range m.subs {
			errs = append(errs, s.Close())
		}
		m.wg.Wait()
		close(m.c)
		m.err = errors.Join(errs...)
	})
	return m.err
}

// globMatch is Redis's stringmatchlen (the rules of PSUBSCRIBE patterns):
// "*" any run of bytes, "?" any byte, "[...]" a class ("^" negates, "a-z"
// ranges), "\" escapes the next byte.
func globMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if globMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			p := pattern[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for len(p) > 0 && p[0] != ']' {
				switch {
				case p[0] == '\\' && len(p) >= 2:
					if p[1] == s[0] {
						match = true
					}
					p = p[2:]
				case len(p) >= 3 && p[1] == '-':
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					if s[0] >= lo && s[0] <= hi {
						match = true
					}
					p = p[3:]
				default:
					if p[0] == s[0] {
						match = true
					}
					p = p[1:]
				}
			}
			if len(p) > 0 {
				p = p[1:] // the closing ]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
			pattern = p
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || pattern[0] != s[0] {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		}
	}
	return len(s) == 0
}
