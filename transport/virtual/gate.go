package virtual

import (
	"context"
	"sync"
)

// gate bounds the messages a consumer has delivered and not settled
// (Kombu's prefetch_count) and decides when the fetch loop fetches.
//
// With batching, the loop does not fetch for every slot that frees: it
// waits until a batch worth of slots is free (half the prefetch count, at
// most the batch size), unless the handlers are about to run out of work,
// so one round trip brings many messages instead of one per ack.
type gate struct {
	limit int // 0: no limit

	mu   sync.Mutex
	held int
	wake chan struct{} // cap 1: a slot was freed or the buffer drained
}

func newGate(limit int) *gate { return &gate{limit: limit, wake: make(chan struct{}, 1)} }

// release frees one slot.
func (g *gate) release() {
	if g.limit == 0 {
		return
	}
	g.mu.Lock()
	g.held--
	g.mu.Unlock()
	g.poke()
}

// poke wakes an acquire that waits.
func (g *gate) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// acquire waits until at least want slots are free, or at least one is
// free and hungry reports that the handlers have nothing left to do; it
// then takes up to max free slots and returns how many it took. Without
// a limit it returns max at once.
func (g *gate) acquire(ctx context.Context, want, max int, hungry func() bool) (int, error) {
	if g.limit == 0 {
		return max, nil
	}
	want = min(want, max, g.limit)
	for {
		g.mu.Lock()
		free := g.limit - g.held
		if free >= want || (free > 0 && hungry()) {
			n := min(free, max)
			g.held += n
			g.mu.Unlock()
			return n, nil
		}
		g.mu.Unlock()
		select {
		case <-g.wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// giveBack returns n slots taken by acquire and not used.
func (g *gate) giveBack(n int) {
	if g.limit == 0 || n <= 0 {
		return
	}
	g.mu.Lock()
	g.held -= n
	g.mu.Unlock()
	g.poke()
}

// swap frees the caller's slot and takes it back with every other free
// one, up to max (at least the caller's), without waking the loop: a
// handler that acks fetches into them (fetcher.ackFetch).
func (g *gate) swap(most int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	free := g.limit - g.held + 1
	n := max(1, min(free, most))
	g.held += n - 1
	return n
}
