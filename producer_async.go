package kombu

import (
	"context"
	"fmt"
	"sync"

	"github.com/kombu-go/kombu/envelope"
)

// AsyncWindow is the most PublishAsync calls of one Producer in flight at
// once; PublishAsync blocks while the window is full.
const AsyncWindow = 1024

// PublishFuture is the outcome of a PublishAsync, known once Done is
// closed.
type PublishFuture struct {
	done chan struct{}
	res  PublishResult
	err  error
}

// Done is closed once the backend has answered for the message.
func (f *PublishFuture) Done() <-chan struct{} { return f.done }

// Wait waits until the message was published (or failed) and returns what
// Publish would have returned, or ctx's error if ctx ends first (the
// message may still be published then).
func (f *PublishFuture) Wait(ctx context.Context) (PublishResult, error) {
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return f.res, ctx.Err()
	}
}

// asyncState is a Producer's PublishAsync window and failure record; its
// zero value is ready.
type asyncState struct {
	once   sync.Once
	window chan struct{}

	mu       sync.Mutex
	inFlight int
	idle     chan struct{} // closed when inFlight drops to 0; nil while 0
	failed   int
	first    error
}

func (a *asyncState) init() { a.once.Do(func() { a.window = make(chan struct{}, AsyncWindow) }) }

// PublishAsync serializes body and starts publishing it, as Publish would
// (same options, same retries), and returns without waiting for the
// backend: many messages from one goroutine then share round trips (on
// Redis, auto-pipelining sends those in flight together). The body is
// serialized before PublishAsync returns, so the caller may reuse it. At
// most AsyncWindow publishes of a producer are in flight; PublishAsync
// blocks while the window is full, and returns ctx's error if ctx ends
// first. ctx also bounds the publish itself.
//
// Each message's result is in its PublishFuture; Flush waits for all of
// them. An error returned here (serialization, a declaration that failed,
// ctx) means nothing was started.
func (p *Producer) PublishAsync(ctx context.Context, body any, opts ...PublishOption) (*PublishFuture, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a := &p.async
	a.init()
	o := p.options(opts)
	t := p.conn.t
	if err := p.conn.declareOnce(ctx, o.declare); err != nil {
		return nil, err
	}
	if o.exchange.Name != "" && !o.noAutoDeclare {
		if err := t.DeclareExchange(ctx, o.exchange); err != nil {
			return nil, err
		}
	}
	env := new(envelope.Envelope)
	if err := p.fillEnvelope(env, body, &o); err != nil {
		return nil, err
	}
	if env.DeliveryTag == "" {
		env.DeliveryTag = envelope.NewDeliveryTag()
	}
	select {
	case a.window <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	a.mu.Lock()
	if a.inFlight == 0 {
		a.idle = make(chan struct{})
	}
	a.inFlight++
	a.mu.Unlock()

	f := &PublishFuture{done: make(chan struct{}), res: PublishResult{DeliveryTag: env.DeliveryTag}}
	exchange, routingKey, mandatory, policy := o.exchange.Name, o.routingKey, o.mandatory, o.retry
	go func() {
		err := retry(ctx, policy, t.Logger(), func() error {
			var err error
			f.res.Routed, err = t.Publish(ctx, exchange, routingKey, env, mandatory)
			return err
		})
		f.err = err
		close(f.done)
		<-a.window
		a.mu.Lock()
		if err != nil {
			if a.failed == 0 {
				a.first = err
			}
			a.failed++
		}
		a.inFlight--
		if a.inFlight == 0 {
			close(a.idle)
			a.idle = nil
		}
		a.mu.Unlock()
	}()
	return f, nil
}

// Flush waits until no PublishAsync of p is in flight, then reports the
// failures among those that ended since the previous Flush: nil if none,
// else an error that counts them and wraps the first (each PublishFuture
// holds its own). It returns ctx's error if ctx ends first.
func (p *Producer) Flush(ctx context.Context) error {
	a := &p.async
	a.mu.Lock()
	idle := a.idle
	a.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	failed, first := a.failed, a.first
	a.failed, a.first = 0, nil
	if failed == 0 {
		return nil
	}
	return fmt.Errorf("kombu: %d asynchronous publishes failed, the first with: %w", failed, first)
}
