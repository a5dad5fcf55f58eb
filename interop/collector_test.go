package interop

// goCollector runs a Go kombu.Consumer in the background and keeps what it
// delivers, so tests can wait for N messages and then look at them.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// goMsg is one delivery to a Go handler.
type goMsg struct {
	m          *kombu.Message
	payload    any
	payloadErr error
}

// header returns a string header.
func (g goMsg) header(k string) string { s, _ := g.m.Headers[k].(string); return s }

// taggedPayload is the decoded body as peer.py tags it.
func (g goMsg) taggedPayload() any {
	switch v := g.payload.(type) {
	case []byte:
		return map[string]any{"bytes": base64.StdEncoding.EncodeToString(v)}
	case string:
		if g.m.ContentType != "application/json" {
			return map[string]any{"text": v}
		}
	}
	return map[string]any{"json": g.payload}
}

type goCollector struct {
	t       *testing.T
	cancel  context.CancelFunc
	done    chan error
	arrived chan struct{}

	mu     sync.Mutex
	msgs   []goMsg
	errs   []error
	stopMu sync.Once
}

// handleFunc decides what the handler does with a message after it was
// recorded; nil means return nil (the consumer acks it).
type handleFunc func(ctx context.Context, m *kombu.Message) error

// startGoConsumer starts conn.Consumer(queues, opts...).Consume in the
// background. The consumer is stopped when the test ends if stop was not
// called.
func startGoConsumer(t *testing.T, conn *kombu.Connection, queues []kombu.Queue, h handleFunc, opts ...kombu.ConsumerOption) *goCollector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	gc := &goCollector{t: t, cancel: cancel, done: make(chan error, 1), arrived: make(chan struct{}, 4096)}
	opts = append([]kombu.ConsumerOption{kombu.WithErrorHandler(func(err error) {
		gc.mu.Lock()
		gc.errs = append(gc.errs, err)
		gc.mu.Unlock()
	}), kombu.WithShutdownTimeout(5 * time.Second)}, opts...)
	c := conn.Consumer(queues, opts...)
	go func() {
		gc.done <- c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
			p, err := m.Payload()
			gc.mu.Lock()
			gc.msgs = append(gc.msgs, goMsg{m: m, payload: p, payloadErr: err})
			gc.mu.Unlock()
			gc.arrived <- struct{}{}
			if h != nil {
				return h(ctx, m)
			}
			return nil
		})
	}()
	t.Cleanup(func() { gc.stop() })
	return gc
}

// waitFor waits until n messages arrived in total, or fails after timeout.
func (gc *goCollector) waitFor(n int, timeout time.Duration) {
	gc.t.Helper()
	deadline := time.After(timeout)
	for {
		gc.mu.Lock()
		have := len(gc.msgs)
		gc.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-gc.arrived:
		case err := <-gc.done:
			gc.done <- err
			gc.t.Fatalf("Go consumer ended after %d of %d messages: %v (errors: %v)", have, n, err, gc.errors())
		case <-deadline:
			gc.t.Fatalf("Go consumer got %d of %d messages within %v (errors: %v)", have, n, timeout, gc.errors())
		}
	}
}

// stop cancels the consumer and waits for Consume to return.
func (gc *goCollector) stop() {
	gc.stopMu.Do(func() {
		gc.cancel()
		select {
		case err := <-gc.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				gc.t.Errorf("Consume returned %v", err)
			}
		case <-time.After(30 * time.Second):
			gc.t.Errorf("Consume did not return within 30s of cancel")
		}
	})
}

// messages returns what arrived so far.
func (gc *goCollector) messages() []goMsg {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	return append([]goMsg(nil), gc.msgs...)
}

// errors returns what the consumer's error handler received.
func (gc *goCollector) errors() []error {
	gc.mu.Lock()
	defer gc.mu.Unlock()
	return append([]error(nil), gc.errs...)
}

// checkNoErrors fails the test if the consumer reported errors.
func (gc *goCollector) checkNoErrors() {
	gc.t.Helper()
	for _, err := range gc.errors() {
		gc.t.Errorf("Go consumer error handler: %v", err)
	}
}

func (g goMsg) String() string {
	return fmt.Sprintf("%s from %q tag %s", g.header("case"), g.m.DeliveryInfo.Queue, g.m.DeliveryTag)
}
