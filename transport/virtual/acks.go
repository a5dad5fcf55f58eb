package virtual

import (
	"context"
	"sync"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// How acks reach the backend.
//
// By default an Ack returns only once the unacked record is gone from the
// backend. A consumer's handler that acks while the consumer's loop is not
// fetching fetches the next messages itself, the ack riding that call
// (fetcher.ackFetch in channel.go): one round trip for both. Otherwise,
// acks that arrive while another is in flight are coalesced: the
// first caller sends its own tag at once; whoever comes while that round
// trip is running waits, and the next round trip carries all of them
// (one Backend.Ack of them all, one round trip however many). With one handler
// this is one ack per round trip, exactly as before; with many handlers
// the round trips are shared (a database's group commit).
//
// With deferred acks (ConsumeOptions.DeferredAcks, opt-in) an Ack returns
// as soon as the tag is queued; the queued tags ride the consumer loop's
// next fetch (FetchRequest.Settle: one round trip for the acks and the next
// messages), and are otherwise flushed at least every DeferredAcks
// interval and when the consumer stops. A crash before the flush leaves the record in the
// backend, so the message comes back after the visibility timeout: it is
// delivered again, never lost.

// ackFlushTimeout bounds one coalesced ack round trip.
const ackFlushTimeout = 30 * time.Second

// ackBatcher coalesces concurrent synchronous acks.
type ackBatcher struct {
	mu      sync.Mutex
	running bool
	pending []string  // tags waiting for the next round trip
	next    *ackFlush // the round trip pending will ride
}

type ackFlush struct {
	done chan struct{}
	err  error
}

// ack deletes tag's record, sharing the round trip with concurrent calls.
func (a *ackBatcher) ack(ctx context.Context, b transport.Backend, tag string) error {
	a.mu.Lock()
	if a.running {
		if a.next == nil {
			a.next = &ackFlush{done: make(chan struct{})}
		}
		f := a.next
		a.pending = append(a.pending, tag)
		a.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			// The tag still rides the round trip; like a lost reply, the
			// ack may or may not have happened.
			return ctx.Err()
		}
	}
	a.running = true
	a.mu.Unlock()
	err := b.Ack(ctx, tag)
	// Whoever queued meanwhile is sent now, by this goroutine if there is
	// one batch, else by a helper, so this caller is not held up for long.
	a.mu.Lock()
	if len(a.pending) == 0 {
		a.running = false
		a.mu.Unlock()
		return err
	}
	a.mu.Unlock()
	go a.drain(b)
	return err
}

// drain sends queued acks until none are left.
func (a *ackBatcher) drain(b transport.Backend) {
	for {
		a.mu.Lock()
		if len(a.pending) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		tags, f := a.pending, a.next
		a.pending, a.next = nil, nil
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), ackFlushTimeout)
		f.err = b.Ack(ctx, tags...)
		cancel()
		close(f.done)
	}
}

// deferredAcks is the queue of acks a consumer with DeferredAcks has
// promised and not yet sent.
type deferredAcks struct {
	b        transport.Backend
	interval time.Duration
	onError  func(error)

	mu    sync.Mutex
	tags  []string
	spare []string
	kick  chan struct{} // cap 1: the queue is long, flush now

	flushMu sync.Mutex // one flush at a time, in order
}

// maxDeferredAcks is the queue length that triggers a flush before the
// interval is up.
const maxDeferredAcks = 1024

func newDeferredAcks(b transport.Backend, interval time.Duration, onError func(error)) *deferredAcks {
	return &deferredAcks{b: b, interval: interval, onError: onError, kick: make(chan struct{}, 1)}
}

// add queues tag.
func (d *deferredAcks) add(tag string) {
	d.mu.Lock()
	d.tags = append(d.tags, tag)
	long := len(d.tags) >= maxDeferredAcks
	d.mu.Unlock()
	if long {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// flush sends every queued ack. On failure the tags are queued again for
// the next flush, and the error is reported.
func (d *deferredAcks) flush(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	tags := d.tags
	d.tags, d.spare = d.spare[:0], nil
	d.mu.Unlock()
	if len(tags) == 0 {
		d.mu.Lock()
		d.spare = tags
		d.mu.Unlock()
		return nil
	}
	err := d.b.Ack(ctx, tags...)
	d.mu.Lock()
	if err != nil {
		d.tags = append(d.tags, tags...)
	} else {
		d.spare = tags[:0]
	}
	d.mu.Unlock()
	return err
}

// run flushes every interval (or sooner when the queue is long) until ctx
// is done.
func (d *deferredAcks) run(ctx context.Context) {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackFlushTimeout)
		if err := d.flush(fctx); err != nil {
			d.onError(err)
		}
		cancel()
	}
}

// take removes and returns the queued tags, for a fetch to carry
// (FetchRequest.Settle).
func (d *deferredAcks) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.tags) == 0 {
		return nil
	}
	tags := d.tags
	d.tags = nil
	return tags
}

// putBack queues tags again after the fetch that carried them failed.
func (d *deferredAcks) putBack(tags []string) {
	d.mu.Lock()
	d.tags = append(d.tags, tags...)
	d.mu.Unlock()
}

// queued returns how many acks wait to be sent.
func (d *deferredAcks) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.tags)
}
