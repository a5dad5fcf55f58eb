package redis

import (
	"context"
	"errors"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// How a waiting Fetch waits (see the package documentation for the guarantees):
//
// Messages are only ever taken by scripts/get.lua, which pops and records
// in one atomic step. Between attempts a waiting Fetch sleeps on a Go channel that
// a watcher signals. A watcher owns one list key and keeps one command
// blocked on it in Redis:
//
//	BLMOVE key key RIGHT RIGHT 1
//
// With the same list as source and destination and the same end, this pops
// the oldest element and pushes it straight back where it was, in one
// atomic command: it blocks until the list is non-empty and then changes
// nothing. So the wait never holds a message: if the process dies, the
// connection drops, or the reply is lost, every message is still in its
// list. Redis wakes a blocked client within microseconds of an LPUSH, so
// a waiting Fetch retries the script right after a publish.
//
// Watchers are shared by all waiting Fetch calls of a Backend (keyed by list
// name), started on demand, limited to Options.WaitConnections, and end
// about a second after nobody waits on their key. Lists beyond the limit
// are covered by polling the script with a backoff from 2 ms to 100 ms.
// Their commands run on Backend.wait, a pool of WaitConnections
// connections of its own, so they never starve the caller's pool.

const (
	// watchBlock is the timeout of one BLMOVE (go-redis sends whole
	// seconds). It bounds how long an unused watcher lingers, and how long
	// Close waits for watchers when they share a client it cannot close.
	watchBlock = time.Second
	// pollMin and pollMax bound the polling backoff for uncovered lists.
	pollMin = 2 * time.Millisecond
	pollMax = 100 * time.Millisecond
)

type waitHub struct {
	b   *Backend
	max int

	mu       sync.Mutex
	watchers map[string]*watcher
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

type watcher struct {
	key     string
	waiters map[*waiter]struct{}
	armed   bool          // a waiter found the list empty since the last wake-up
	kick    chan struct{} // cap 1: wakes the goroutine when armed
}

type waiter struct {
	ch chan struct{} // cap 1: "a watched list may have a message"
}

func newWaitHub(b *Backend, max int) *waitHub {
	return &waitHub{b: b, max: max, watchers: map[string]*watcher{}, done: make(chan struct{})}
}

// register adds w to the watchers of keys, starting watchers as needed up
// to the limit. It reports whether every key is watched.
func (h *waitHub) register(w *waiter, keys []string) (covered bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, transport.ErrClosed
	}
	covered = true
	for _, k := range keys {
		wt := h.watchers[k]
		if wt == nil {
			if len(h.watchers) >= h.max {
				covered = false
				continue
			}
			wt = &watcher{key: k, waiters: map[*waiter]struct{}{}, kick: make(chan struct{}, 1)}
			h.watchers[k] = wt
			h.wg.Add(1)
			go h.run(wt)
		}
		wt.waiters[w] = struct{}{}
	}
	return covered, nil
}

func (h *waitHub) unregister(w *waiter, keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if wt := h.watchers[k]; wt != nil {
			delete(wt.waiters, w)
		}
	}
}

// arm tells the watchers of keys that the caller is about to look at the
// lists: whatever arrives from now on must wake it.
func (h *waitHub) arm(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if wt := h.watchers[k]; wt != nil {
			wt.armed = true
			select {
			case wt.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (h *waitHub) notify(wt *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range wt.waiters {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
}

// run keeps one BLMOVE blocked on wt.key while a waiter is armed on it,
// and ends when the hub closes or nobody has waited on the key for
// watchBlock.
func (h *waitHub) run(wt *watcher) {
	defer h.wg.Done()
	ctx := context.Background()
	var errDelay time.Duration
	idle := time.NewTimer(watchBlock)
	defer idle.Stop()
	for {
		h.mu.Lock()
		if h.closed {
			delete(h.watchers, wt.key)
			h.mu.Unlock()
			return
		}
		if !wt.armed || len(wt.waiters) == 0 {
			var expire <-chan time.Time
			if len(wt.waiters) == 0 {
				idle.Reset(watchBlock)
				expire = idle.C
			}
			h.mu.Unlock()
			select {
			case <-wt.kick:
			case <-h.done:
			case <-expire:
				h.mu.Lock()
				if len(wt.waiters) == 0 {
					delete(h.watchers, wt.key)
					h.mu.Unlock()
					return
				}
				h.mu.Unlock()
			}
			continue
		}
		wt.armed = false
		h.mu.Unlock()

		_, err := h.b.wait.BLMove(ctx, wt.key, wt.key, "RIGHT", "RIGHT", watchBlock).Result()
		switch {
		case err == nil:
			errDelay = 0
			h.notify(wt)
		case errors.Is(err, goredis.Nil):
			errDelay = 0
			h.rearm(wt) // still empty: keep watching for the same waiters
		default:
			// Wake the waiters: their script run reports the error.
			h.notify(wt)
			if h.isClosed() {
				continue
			}
			h.b.log.Debug("kombu: redis: wait on list failed", "list", wt.key, "error", err)
			errDelay = min(max(2*errDelay, 50*time.Millisecond), time.Second)
			select {
			case <-time.After(errDelay):
			case <-h.done:
			}
			h.rearm(wt)
		}
	}
}

func (h *waitHub) rearm(wt *watcher) {
	h.mu.Lock()
	wt.armed = true
	h.mu.Unlock()
}

func (h *waitHub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (h *waitHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	for _, wt := range h.watchers {
		for w := range wt.waiters {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
}

func (h *waitHub) wait() { h.wg.Wait() }

// waitFetch is Fetch once every list was found empty: it waits up to timeout
// for a message and takes up to n. It returns transport.ErrEmpty when the
// time ran out, ctx.Err() at once when ctx is done, and
// transport.ErrClosed when the backend closes. It never holds a message
// outside Redis: see the package documentation.
func (b *Backend) waitFetch(ctx context.Context, queues []string, ack bool, n int, rotate bool, timeout time.Duration, dst []transport.Delivery) ([]transport.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	deadline := time.Now().Add(timeout)
	lists := b.k.consumeLists(queues)
	w := &waiter{ch: make(chan struct{}, 1)}
	covered := false
	if b.hub.max > 0 {
		var err error
		if covered, err = b.hub.register(w, lists); err != nil {
			return dst, err
		}
		defer b.hub.unregister(w, lists)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	poll := time.Duration(0)
	for {
		// Arm before looking, so that a message pushed after the script
		// ran finds a watcher that returns at once.
		b.hub.arm(lists)
		out, err := b.take(ctx, queues, ack, n, rotate, nil, dst)
		if !errors.Is(err, transport.ErrEmpty) {
			return out, err
		}
		if err := b.checkOpen(); err != nil {
			return dst, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return dst, transport.ErrEmpty
		}
		sleep := left
		if !covered {
			poll = min(max(2*poll, pollMin), pollMax)
			sleep = min(sleep, poll)
		}
		timer.Reset(sleep)
		select {
		case <-w.ch:
		case <-timer.C:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
	}
}
