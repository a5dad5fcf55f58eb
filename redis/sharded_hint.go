package redis

import (
	"sync"
	"time"
)

// Which queues are worth a take script call, in the sharded layout.
//
// One instance takes from many queues with one script call that RPOPs
// every list; on a cluster each queue is its own call, so a consumer of
// many mostly-empty queues would pay a call per empty queue per take. The
// backend therefore remembers, per queue, that it found the queue empty,
// and leaves it out of takes until the queue's watchers (wait.go: one
// single-key BLMOVE per list, on the list's own master) signal that a
// list may have a message. The hint is exact, not a guess: it is set
// after a take found the queue drained, and the watchers are armed after
// that, so their next BLMOVE starts after the take; a BLMOVE on a
// non-empty list returns at once, so a message pushed at any time after
// the take signals. A local Put or Publish clears the hint at once, and
// one that returned while the take was on the wire keeps the take from
// setting it (each hint counts the local pushes: mark and drained), so a
// Fetch after a Put of this backend returned always looks at the queue.
//
// Queues the watchers do not cover (Options.WaitConnections reached, or
// 0) are looked at again after a backoff from 2 ms to 100 ms instead. A
// hint nobody asked about for a while is dropped with its watchers.

type hints struct {
	b *Backend

	mu        sync.Mutex
	q         map[string]*qhint
	lastSweep time.Time
}

type qhint struct {
	lists   []string
	w       *waiter // registered with the hub; nil if not
	covered bool    // every list of the queue has a watcher
	empty   bool
	pushes  uint64    // calls of busy so far (local pushes, full takes): see mark
	retryAt time.Time // not covered: look again from then
	backoff time.Duration
	used    time.Time
}

// hintIdle is how long a hint lives without a take asking about it.
const hintIdle = 10 * time.Second

func newHints(b *Backend) *hints { return &hints{b: b, q: map[string]*qhint{}} }

// sync makes the watchers' signals sent so far visible to skip: the hub
// sends them under its lock, so taking it once is a barrier. It also
// drops hints nobody has asked about for hintIdle.
func (h *hints) sync() {
	h.b.hub.mu.Lock()
	//nolint:staticcheck // an empty critical section: a barrier
	h.b.hub.mu.Unlock()
	now := time.Now()
	h.mu.Lock()
	if now.Sub(h.lastSweep) < hintIdle/2 {
		h.mu.Unlock()
		return
	}
	h.lastSweep = now
	var drop []*qhint
	for q, qh := range h.q {
		if now.Sub(qh.used) > hintIdle {
			delete(h.q, q)
			drop = append(drop, qh)
		}
	}
	h.mu.Unlock()
	for _, qh := range drop {
		if qh.w != nil {
			h.b.hub.unregister(qh.w, qh.lists)
		}
	}
}

// skip reports whether queue is known to be empty.
func (h *hints) skip(queue string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	qh := h.q[queue]
	if qh == nil {
		return false
	}
	now := time.Now()
	qh.used = now
	if qh.w != nil {
		select {
		case <-qh.w.ch:
			qh.empty = false
		default:
		}
	}
	if !qh.empty {
		return false
	}
	return qh.covered || now.Before(qh.retryAt)
}

// mark is called before a take of queue is sent; what it returns goes to
// drained, which then knows whether this backend pushed to queue while
// the take was on the wire.
func (h *hints) mark(queue string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	qh := h.q[queue]
	if qh == nil {
		qh = &qhint{lists: h.b.k.queueKeys(queue), used: time.Now()}
		h.q[queue] = qh
	}
	return qh.pushes
}

// drained records that a take found queue empty (it returned fewer
// messages than asked for), and arms the queue's watchers. mark is what
// mark returned before the take was sent: if this backend pushed to the
// queue since, the push may have landed after the take ran, and the
// queue is not marked empty (the push's own busy came first and must
// not be undone).
func (h *hints) drained(queue string, mark uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	qh := h.q[queue]
	now := time.Now()
	if qh == nil {
		qh = &qhint{lists: h.b.k.queueKeys(queue)}
		h.q[queue] = qh
	}
	qh.used = now
	if qh.w == nil && h.b.hub.max > 0 {
		w := &waiter{ch: make(chan struct{}, 1)}
		if covered, err := h.b.hub.register(w, qh.lists); err == nil {
			qh.w, qh.covered = w, covered
		}
	}
	if qh.w != nil {
		// Signals from before the take are stale; arming below makes the
		// watchers start a BLMOVE after it, which returns at once if a
		// list has a message by then.
		select {
		case <-qh.w.ch:
		default:
		}
		h.b.hub.arm(qh.lists)
	}
	if qh.pushes != mark {
		return
	}
	qh.empty = true
	if !qh.covered {
		qh.backoff = min(max(2*qh.backoff, pollMin), pollMax)
		qh.retryAt = now.Add(qh.backoff)
	}
}

// busy records that a take found a message in queue (or that this
// backend pushed one there): it is tried again by the next take.
func (h *hints) busy(queue string) {
	h.mu.Lock()
	if qh := h.q[queue]; qh != nil {
		qh.empty, qh.backoff = false, 0
		qh.pushes++
	}
	h.mu.Unlock()
}
