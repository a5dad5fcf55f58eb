package virtual

import (
	"context"
	"sync"
)

// QoS is a prefetch limit that consumers share: Kombu's QoS of a channel
// (basic_qos's prefetch_count), with its increment_eventually and
// decrement_eventually. Every consumer given the same QoS
// (ConsumeOptions.QoS) counts the messages it has delivered and not
// settled against the one limit, as the consumers of one Kombu channel do.
//
// Celery's worker raises the limit by one for each task it holds for its
// eta (so held tasks do not stop the worker from taking others) and lowers
// it when the task falls due; its pool_grow, pool_shrink and autoscale
// change it by the multiplier. A QoS is safe for concurrent use.
type QoS struct{ g *gate }

// NewQoS returns a QoS with the given prefetch count. A count below 1
// means no limit; Increment and Decrement then do nothing.
func NewQoS(prefetch int) *QoS { return &QoS{g: newGate(prefetch)} }

// Increment raises the prefetch count by n (Kombu's
// QoS.increment_eventually): up to n more messages may be taken now.
func (q *QoS) Increment(n int) { q.g.addLimit(n) }

// Decrement lowers the prefetch count by n, never below 1 (Kombu's
// QoS.decrement_eventually). Messages already delivered stay delivered;
// no more are taken until enough of them are settled.
func (q *QoS) Decrement(n int) { q.g.addLimit(-n) }

// Wake makes the consumers sharing q look again whether to fetch: their
// ConsumeOptions.Hungry may have turned true.
func (q *QoS) Wake() { q.g.poke() }

// Prefetch returns the prefetch count, 0 for no limit.
func (q *QoS) Prefetch() int {
	q.g.mu.Lock()
	defer q.g.mu.Unlock()
	return q.g.limit
}

// Unsettled returns how many messages the consumers sharing q have
// delivered (or are about to deliver) and not settled. Without a limit it
// is always 0: nothing is counted.
func (q *QoS) Unsettled() int {
	q.g.mu.Lock()
	defer q.g.mu.Unlock()
	return q.g.held
}

// gate bounds the messages consumers have delivered and not settled
// (Kombu's prefetch_count) and decides when a fetch loop fetches. Several
// consumers may share one (QoS).
//
// With batching, a loop does not fetch for every slot that frees: it
// waits until a batch worth of slots is free (half the prefetch count, at
// most the batch size), unless its handlers are about to run out of work,
// so one round trip brings many messages instead of one per ack.
type gate struct {
	unlimited bool // fixed at creation

	mu    sync.Mutex
	limit int
	held  int
	wakes []chan struct{} // one per waiting loop, cap 1
}

func newGate(limit int) *gate {
	if limit <= 0 {
		return &gate{unlimited: true}
	}
	return &gate{limit: limit}
}

// limited reports whether the gate has a limit.
func (g *gate) limited() bool { return !g.unlimited }

// waiter registers a fetch loop's wake channel; done unregisters it.
func (g *gate) waiter() (wake chan struct{}, done func()) {
	wake = make(chan struct{}, 1)
	g.mu.Lock()
	g.wakes = append(g.wakes, wake)
	g.mu.Unlock()
	return wake, func() {
		g.mu.Lock()
		for i, w := range g.wakes {
			if w == wake {
				g.wakes = append(g.wakes[:i], g.wakes[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
	}
}

// release frees one slot.
func (g *gate) release() {
	if g.unlimited {
		return
	}
	g.mu.Lock()
	g.held--
	g.pokeLocked()
	g.mu.Unlock()
}

// poke wakes every loop that waits.
func (g *gate) poke() {
	if g.unlimited {
		return
	}
	g.mu.Lock()
	g.pokeLocked()
	g.mu.Unlock()
}

func (g *gate) pokeLocked() {
	for _, w := range g.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// addLimit changes the limit by d, never below 1.
func (g *gate) addLimit(d int) {
	if g.unlimited {
		return
	}
	g.mu.Lock()
	g.limit = max(1, g.limit+d)
	g.pokeLocked()
	g.mu.Unlock()
}

// acquire waits until at least want slots are free, or at least one is
// free and hungry reports that the handlers have nothing left to do; it
// then takes up to max free slots and returns how many it took. Without
// a limit it returns max at once. wake is the caller's channel from
// waiter.
func (g *gate) acquire(ctx context.Context, wake chan struct{}, want, max int, hungry func() bool) (int, error) {
	if g.unlimited {
		return max, nil
	}
	for {
		g.mu.Lock()
		free := g.limit - g.held
		if free >= min(want, max, g.limit) || (free > 0 && hungry()) {
			n := min(free, max)
			g.held += n
			g.mu.Unlock()
			return n, nil
		}
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// giveBack returns n slots taken by acquire and not used.
func (g *gate) giveBack(n int) {
	if g.unlimited || n <= 0 {
		return
	}
	g.mu.Lock()
	g.held -= n
	g.pokeLocked()
	g.mu.Unlock()
}

// swap frees the caller's slot and takes it back with every other free
// one, up to most, without waking the loop: a handler that acks fetches
// into them (fetcher.ackFetch). When the limit was lowered below what is
// held, so that even the caller's slot is not free once given back, it
// changes nothing and returns 0: the caller settles the ordinary way.
func (g *gate) swap(most int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	free := g.limit - g.held + 1
	if free < 1 {
		return 0
	}
	n := min(free, most)
	g.held += n - 1
	return n
}
