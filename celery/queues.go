package celery

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
)

// Queues added at run time by add_consumer (celery/worker/control.py
// add_consumer and cancel_consumer). Each added queue is consumed on a
// channel of its own, into the same dispatcher, prefetch gate and pool as
// the queues given at Start. Cancelling it stops taking messages from it;
// its channel stays open until the worker stops, so the messages already
// taken are still acknowledged (or restored) as usual. Cancelling a queue
// given at Start pauses it on the main channel (the consumer leaves it out
// of its fetches, as Kombu's basic_cancel does); add_consumer resumes it.

type queueSet struct {
	life       context.Context // the worker's life (dispatch)
	consumeCtx context.Context // outlives life: consumers stop after the pool drains
	extra      map[string]*extraConsumer
	closing    []*extraConsumer // cancelled, closed at shutdown
	paused     map[string]bool  // start queues cancelled by cancel_consumer
}

// queuePaused reports whether a start queue was cancelled
// (transport.ConsumeOptions.Paused of the main channel).
func (w *Worker) queuePaused(queue string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queues != nil && w.queues.paused[queue]
}

type extraConsumer struct {
	ch     *transport.Channel
	cancel context.CancelFunc
	done   chan error
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
			qs = append(qs, q)
		}
	}
	slices.Sort(qs[start:])
	return qs
}

// addConsumer starts consuming queue (declared as Celery declares a queue).
func (w *Worker) addConsumer(ctx context.Context, queue string) error {
	if queue == "" {
		return errors.New("no queue given")
	}
	if slices.Contains(w.activeQueues(), queue) {
		return nil // Celery logs and answers ok for a queue already consumed
	}
	w.mu.Lock()
	qs := w.queues
	if qs != nil && qs.paused[queue] {
		delete(qs.paused, queue) // a start queue cancelled earlier: resume it
		w.mu.Unlock()
		w.log.Info("celery: started consuming", "queue", queue)
		return nil
	}
	w.mu.Unlock()
	if qs == nil {
		return errors.New("the worker is not running")
	}
	if _, err := w.conn.DeclareQueue(ctx, CeleryQueue(queue)); err != nil {
		return err
	}
	ch, err := w.conn.Transport().Channel()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(qs.consumeCtx)
	ec := &extraConsumer{ch: ch, cancel: cancel, done: make(chan error, 1)}
	w.mu.Lock()
	qs.extra[queue] = ec
	w.mu.Unlock()
	go func() {
		ec.done <- ch.Consume(cctx, transport.ConsumeOptions{
			Queues: []string{queue}, Concurrency: 1, ConsumerTag: w.opts.hostname, Accept: w.opts.accept,
			ShutdownTimeout: 5 * time.Second,
			OnError: func(err error) {
				w.log.Error("celery: consumer", "queue", queue, "error", err)
				w.onError(err)
			},
		}, func(_ context.Context, m *entity.Message) { w.dispatch(qs.life, m) })
	}()
	w.log.Info("celery: started consuming", "queue", queue)
	return nil
}

// cancelConsumer stops consuming a queue added by add_consumer.
func (w *Worker) cancelConsumer(queue string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.queues == nil {
		return errors.New("the worker is not running")
	}
	ec, ok := w.queues.extra[queue]
	if !ok {
		if slices.Contains(w.opts.queues, queue) && !w.queues.paused[queue] {
			w.queues.paused[queue] = true
			w.log.Info("celery: stopped consuming", "queue", queue)
		}
		return nil // not consumed: nothing to do, as in Celery
	}
	delete(w.queues.extra, queue)
	ec.cancel()
	w.queues.closing = append(w.queues.closing, ec)
	w.log.Info("celery: stopped consuming", "queue", queue)
	return nil
}

// stopExtraConsumers stops the added consumers and closes their channels
// (after the pool has drained, as for the main channel).
func (w *Worker) stopExtraConsumers(ctx context.Context) {
	w.mu.Lock()
	var all []*extraConsumer
	if w.queues != nil {
		for _, ec := range w.queues.extra {
			all = append(all, ec)
		}
		all = append(all, w.queues.closing...)
		w.queues.extra, w.queues.closing = map[string]*extraConsumer{}, nil
	}
	w.mu.Unlock()
	for _, ec := range all {
		ec.cancel()
		<-ec.done
		if err := ec.ch.Close(ctx); err != nil && !errors.Is(err, transport.ErrClosed) {
			w.log.Warn("celery: close consumer channel", "error", err)
		}
	}
}
