package celery

// Hand-off of a pool slot when a handler returns.
//
// A pool goroutine runs a task from its start to its end: the handler,
// then what its outcome calls for (result stored, chord part returned, late
// ack, task event, log), in Celery's order (app/trace.py). The last part
// waits on round trips to Redis while the handler slot sits idle. So once
// the handler has returned, the goroutine hands its slot to a fresh pool
// goroutine, which takes the next task at once, and ends after finishing
// its own task. At most concurrency handlers still run at once (Celery's
// concurrency), each task's steps keep their order, and the stores of
// tasks finishing together share round trips (Backend.Store's group
// commit). Finishing tasks stay active (inspect active) until they are
// done, and a shutdown waits for them as for running ones.
//
// Hand-offs in progress are bounded (finishingPerSlot per pool slot): past
// that, a goroutine finishes its task before taking another, as without
// hand-offs, so a slow backend holds back new tasks rather than piling up
// finishing ones.

// finishingPerSlot bounds the tasks finishing after a hand-off, per pool
// slot.
const finishingPerSlot = 8

// poolLoop is one pool goroutine: it takes due requests and executes them
// until the pool shrinks or the ready queue closes. After handing its slot
// over it finishes its task, then waits (idle) until a later hand-off gives
// it a slot again: goroutines are reused, so their grown stacks are too.
func (w *Worker) poolLoop(p *poolState) {
	defer p.wg.Done()
	var wake chan struct{} // made on the first hand-off
	var handed bool
	handoff := func() {
		if handed || !w.finishing(1) {
			return
		}
		handed = true
		w.mu.Lock()
		if n := len(p.idle); n > 0 {
			next := p.idle[n-1]
			p.idle = p.idle[:n-1]
			w.mu.Unlock()
			next <- struct{}{}
			return
		}
		p.wg.Add(1)
		w.mu.Unlock()
		go w.poolLoop(p)
	}
	for {
		if w.leavePool() {
			return
		}
		req, ok := w.ready.pop()
		if !ok {
			return
		}
		if req == nil {
			continue // nudged: check for a shrink
		}
		handed = false
		req.handoff = handoff
		w.execute(p.ctx, req)
		if !handed {
			continue
		}
		// Another goroutine holds the slot: wait for one to come back.
		if wake == nil {
			wake = make(chan struct{}, 1)
		}
		w.mu.Lock()
		p.idle = append(p.idle, wake)
		w.mu.Unlock()
		w.finishing(-1)
		select {
		case <-wake:
		case <-w.ready.done:
			return
		}
	}
}

// finishing takes (d = 1, reporting whether one was free) or returns (d =
// -1) a finishing place.
func (w *Worker) finishing(d int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d > 0 && w.pool.finishing >= finishingPerSlot*max(1, w.pool.size-w.pool.shrink) {
		return false
	}
	w.pool.finishing += d
	return true
}

// hungry is the consumers' Hungry: the pool has run out of due tasks, so
// the consumer fetches as soon as a prefetch slot is free. While tasks
// wait in the ready queue it fetches a batch's worth at once instead (the
// dispatcher hands messages on at once, so the consumer's own buffer is
// always empty and cannot tell).
func (w *Worker) hungry() bool {
	q := w.ready
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) == 0
}
