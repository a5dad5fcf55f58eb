package redis

import (
	"context"
	"sync"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
)

// Auto-pipelining: concurrent Publish and Put calls on one Backend share
// round trips, as rueidis and nats.go's flusher do, by group commit. A
// call made while no batch is in flight is sent at once, alone, on the
// usual path (one goroutine publishing one message at a time pays nothing
// more than a mutex). Calls made while maxPipeInFlight batches are in
// flight queue up; when a batch's reply arrives, the first queued caller
// becomes the leader and sends everything queued by then (up to
// maxPipeBatch messages) in one pipeline through PublishBatch, which routes
// consecutive messages to one exchange in one script call. Every caller
// returns its own message's result, after Redis's reply for it.
//
// A caller whose context ends while its message is still queued takes it
// out and returns the context's error: nothing was sent. Once the message
// is in a batch on the wire the caller waits for the reply (bounded by the
// client's read and write timeouts), so an error never hides a message
// that was in fact published. A batch of other callers' messages is sent
// under its leader's context without its cancellation: one caller's
// cancelled context does not fail the others' messages.

const (
	// maxPipeInFlight is how many batches may be on the wire at once: two
	// let the client fill one batch while Redis runs the other (one, four
	// and eight measured slower with 64 publishing goroutines on 2 cores).
	maxPipeInFlight = 2
	// maxPipeBatch caps the messages of one batch.
	maxPipeBatch = 512
)

// autoPipe is a Backend's group-commit queue.
type autoPipe struct {
	b *Backend

	mu       sync.Mutex
	inFlight int         // lone sends and leaders (appointed or sending): at most maxPipeInFlight
	queue    []*pipeCall // waiting; calls in state callQueued wait only while inFlight == maxPipeInFlight
	spare    []*pipeCall // a batch slice kept for reuse by the next leader
}

// pipeCall states, changed under autoPipe.mu.
const (
	callQueued = iota // in queue
	callLeader        // made the leader: must take the queue and send it
	callTaken         // in a batch on the wire
)

// pipeCall is one queued Publish or Put.
type pipeCall struct {
	item  transport.PublishItem
	state int
	n     int
	err   error
	wake  chan struct{} // one send: made leader, or settled
}

var pipeCalls = sync.Pool{New: func() any { return &pipeCall{wake: make(chan struct{}, 1)} }}

func newAutoPipe(b *Backend) *autoPipe { return &autoPipe{b: b} }

// publish is Publish through the queue (Exchange "" is a Put).
func (p *autoPipe) publish(ctx context.Context, item transport.PublishItem) (int, error) {
	p.mu.Lock()
	if p.inFlight < maxPipeInFlight {
		// Nothing waits (the queue is empty whenever a slot is free):
		// send this one alone, on the usual path.
		p.inFlight++
		p.mu.Unlock()
		n, err := p.b.sendOne(ctx, item)
		p.handOff()
		return n, err
	}
	c := pipeCalls.Get().(*pipeCall)
	c.item, c.state, c.n, c.err = item, callQueued, 0, nil
	p.queue = append(p.queue, c)
	p.mu.Unlock()

	select {
	case <-c.wake:
	case <-ctx.Done():
		p.mu.Lock()
		if c.state == callQueued {
			p.remove(c)
			p.mu.Unlock()
			c.item = transport.PublishItem{}
			pipeCalls.Put(c)
			return 0, ctx.Err()
		}
		p.mu.Unlock()
		<-c.wake // leader or taken: the message is ours to see through
	}
	p.mu.Lock()
	leader := c.state == callLeader
	p.mu.Unlock()
	if leader {
		p.lead(ctx, c)
	}
	n, err := c.n, c.err
	c.item = transport.PublishItem{}
	pipeCalls.Put(c)
	return n, err
}

// remove takes c out of the queue (p.mu held).
func (p *autoPipe) remove(c *pipeCall) {
	for i, q := range p.queue {
		if q == c {
			p.queue = append(p.queue[:i], p.queue[i+1:]...)
			return
		}
	}
}

// lead sends one batch (self was made leader) and settles every call in
// it but self, whose caller reads its result from self.
func (p *autoPipe) lead(ctx context.Context, self *pipeCall) {
	p.mu.Lock()
	// The batch: this call, then every queued call no other leader was
	// appointed for, in arrival order, up to maxPipeBatch. Appointed
	// leaders stay queued (each sends a batch of its own), as does any
	// overflow.
	batch := append(p.spare[:0], self)
	p.spare = nil
	self.state = callTaken
	kept := p.queue[:0]
	for _, c := range p.queue {
		switch {
		case c == self:
		case c.state == callQueued && len(batch) < maxPipeBatch:
			c.state = callTaken
			batch = append(batch, c)
		default:
			kept = append(kept, c)
		}
	}
	clear(p.queue[len(kept):])
	p.queue = kept
	p.mu.Unlock()

	if len(batch) == 1 {
		self.n, self.err = p.b.sendOne(ctx, self.item)
	} else {
		items := make([]transport.PublishItem, len(batch))
		for i, c := range batch {
			items[i] = c.item
		}
		ns, errs := p.b.PublishBatch(context.WithoutCancel(ctx), items)
		for i, c := range batch {
			c.n, c.err = ns[i], errs[i]
		}
	}
	p.handOff()
	for _, c := range batch[1:] {
		c.wake <- struct{}{}
	}
	clear(batch)
	p.mu.Lock()
	if p.spare == nil {
		p.spare = batch[:0]
	}
	p.mu.Unlock()
}

// handOff ends a batch: the first queued call becomes the next leader, or
// the in-flight slot is freed.
func (p *autoPipe) handOff() {
	p.mu.Lock()
	for _, next := range p.queue {
		if next.state == callQueued {
			next.state = callLeader // keeps this batch's in-flight slot
			p.mu.Unlock()
			next.wake <- struct{}{}
			return
		}
	}
	// Every queued call is an appointed leader, each with a slot of its own.
	p.inFlight--
	p.mu.Unlock()
}

// sendOne publishes one message on the usual path: Put for the default
// exchange, publish.lua otherwise.
func (b *Backend) sendOne(ctx context.Context, it transport.PublishItem) (int, error) {
	if it.Exchange == "" {
		return 1, b.putNow(ctx, it.RoutingKey, it.Priority, it.Envelope)
	}
	return b.publishNow(ctx, it.Exchange, it.Type, it.RoutingKey, it.Priority, it.Envelope)
}

// pipePublish is Publish's entry into the queue.
func (b *Backend) pipePublish(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (int, error) {
	if err := b.checkOpen(); err != nil {
		return 0, err
	}
	return b.pipe.publish(ctx, transport.PublishItem{Exchange: exchange, Type: typ, RoutingKey: routingKey, Priority: priority, Envelope: envelope})
}

// pipePut is Put's entry into the queue.
func (b *Backend) pipePut(ctx context.Context, queue string, priority int, envelope []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	_, err := b.pipe.publish(ctx, transport.PublishItem{RoutingKey: queue, Priority: priority, Envelope: envelope})
	return err
}
