package celery

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/kombu-go/kombu"
)

// Queues added at run time by add_consumer (celery/worker/control.py
// add_consumer and cancel_consumer). Each added queue is consumed by a
// consumer of its own, into the same dispatcher, prefetch gate and pool as
// the queues given at Start. cancel_consumer pauses a queue, whether given
// at Start or added (its consumer leaves it out of its fetches, as Kombu's
// basic_cancel does); the consumers stay until the worker stops, so the
// messages already taken are still acknowledged (or restored) as usual;
// add_consumer resumes a paused queue.

type queueSet struct {
	life       context.Context // the worker's life (dispatch)
	consumeCtx context.Context // outlives life: consumers stop after the pool drains
	extra      map[string]*extraConsumer
	paused     map[string]bool // queues cancelled by cancel_consumer
}

// queuePaused reports whether a queue was cancelled (the consumers'
// WithPaused).
func (w *Worker) queuePaused(queue string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queues != nil && w.queues.paused[queue]
}

type extraConsumer struct {
	cancel context.CancelFunc
	done   chan error
}

// consumer returns the consumer of queues: settled by the worker
// (manual acks), no prefetch limit of its own (the worker's gate is the
// prefetch window), one dispatcher goroutine that only decodes and routes.
func (w *Worker) consumer(queues ...string) *kombu.Consumer {
	qs := make([]kombu.Queue, len(queues))
	for i, q := range queues {
		qs[i] = CeleryQueue(q)
	}
	return w.conn.Consumer(qs, kombu.WithManualAck(), kombu.WithoutDeclare(), kombu.WithQoS(w.qos),
		kombu.WithConcurrency(1), kombu.WithConsumerTag(w.opts.hostname), kombu.WithAccept(w.opts.accept...),
		kombu.WithPaused(w.queuePaused), kombu.WithHungry(w.hungry),
		// Handlers in flight are the dispatcher only; the pool is drained
		// before the consumer is cancelled.
		kombu.WithShutdownTimeout(5*time.Second),
		kombu.WithErrorHandler(func(err error) {
			w.log.Error("celery: consumer", "queues", queues, "error", err)
			w.onError(err)
		}))
}

// activeQueues returns the queues the worker consumes.
func (w *Worker) activeQueues() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var qs []string
	for _, q := range w.opts.queues {
		if w.queues == nil || !w.queues.paused[q] {
			qs = append(qs, q)
		}
	}
	start := len(qs)
	if w.queues != nil {
		for q := range w.queues.extra {
			if !w.queues.paused[q] {
				qs = append(qs, q)
			}
		}
	}
	slices.Sort(qs[start:])
	return qs
}

// addConsumer starts consuming queue (declared as Celery declares a queue),
// or resumes it if it was cancelled.
func (w *Worker) addConsumer(ctx context.Context, queue string) error {
	if queue == "" {
		return errors.New("no queue given")
	}
	w.mu.Lock()
	qs := w.queues
	if qs == nil {
		w.mu.Unlock()
		return errors.New("the worker is not running")
	}
	if qs.paused[queue] {
		delete(qs.paused, queue)
		w.mu.Unlock()
		w.log.Info("celery: started consuming", "queue", queue)
		return nil
	}
	_, added := qs.extra[queue]
	w.mu.Unlock()
	if added || slices.Contains(w.opts.queues, queue) {
		return nil // Celery logs and answers ok for a queue already consumed
	}
	if _, err := w.conn.DeclareQueue(ctx, CeleryQueue(queue)); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(qs.consumeCtx)
	ec := &extraConsumer{cancel: cancel, done: make(chan error, 1)}
	w.mu.Lock()
	qs.extra[queue] = ec
	w.mu.Unlock()
	go func() {
		ec.done <- w.consumer(queue).Consume(cctx, func(_ context.Context, m *kombu.Message) error {
			w.dispatch(qs.life, m)
			return nil
		})
	}()
	w.log.Info("celery: started consuming", "queue", queue)
	return nil
}

// cancelConsumer stops taking messages from a queue (pauses it).
func (w *Worker) cancelConsumer(queue string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queues == nil {
		return errors.New("the worker is not running")
	}
	if _, added := w.queues.extra[queue]; !added && !slices.Contains(w.opts.queues, queue) {
		return nil // not consumed: nothing to do, as in Celery
	}
	if !w.queues.paused[queue] {
		w.queues.paused[queue] = true
		w.log.Info("celery: stopped consuming", "queue", queue)
	}
	return nil
}

// stopExtraConsumers stops the added consumers, which restore what they
// hold unsettled (after the pool has drained, as for the main consumer).
func (w *Worker) stopExtraConsumers() {
	w.mu.Lock()
	var all []*extraConsumer
	if w.queues != nil {
		for _, ec := range w.queues.extra {
			all = append(all, ec)
		}
		w.queues.extra = map[string]*extraConsumer{}
	}
	w.mu.Unlock()
	for _, ec := range all {
		ec.cancel()
		if err := <-ec.done; err != nil && !errors.Is(err, kombu.ErrClosed) {
			w.log.Warn("celery: added consumer", "error", err)
		}
	}
}
