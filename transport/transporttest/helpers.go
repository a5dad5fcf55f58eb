package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// env is one case's world: a fake clock, a backend and a transport over it.
type env struct {
	t       *testing.T
	s       *suite
	ctx     context.Context
	clock   *Clock
	backend transport.Backend
	tr      *virtual.Transport
}

// env builds a fresh backend with a clock at start and a transport over it.
func (s *suite) env(t *testing.T, start time.Time, mod func(*virtual.Options)) *env {
	t.Helper()
	clock := NewClock(start)
	return s.envOn(t, clock, s.newBackend(t, clock), mod)
}

// parallelEnv is env for a case of the parallel group.
func (s *suite) parallelEnv(t *testing.T) *env {
	t.Helper()
	return s.env(t, Epoch.Add(parallelOffset), nil)
}

// envOn builds a transport over b. The transport is closed when the test ends.
func (s *suite) envOn(t *testing.T, clock *Clock, b transport.Backend, mod func(*virtual.Options)) *env {
	t.Helper()
	if b == nil {
		t.Fatal("transporttest: newBackend returned nil")
	}
	opts := virtual.Options{
		Clock:             clock,
		PollingInterval:   s.f.PollingInterval,
		VisibilityTimeout: visibility,
	}
	if mod != nil {
		mod(&opts)
	}
	tr := virtual.New(b, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
		defer cancel()
		_ = tr.Close(ctx)
	})
	return &env{t: t, s: s, ctx: t.Context(), clock: clock, backend: b, tr: tr}
}

// name returns a fresh name for a queue or exchange.
func name(kind string) string { return "tt-" + kind + "-" + uuid.NewString() }

// channel opens a channel, closed when the test ends.
func (e *env) channel() *virtual.Channel {
	e.t.Helper()
	ch, err := e.tr.Channel()
	if err != nil {
		e.t.Fatalf("Channel: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.s.f.Timeout)
		defer cancel()
		_ = ch.Close(ctx)
	})
	return ch
}

// message returns a JSON message whose headers carry id.
func message(id string, priority int) *envelope.Envelope {
	return &envelope.Envelope{
		Body:            []byte(`{"id": "` + id + `"}`),
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers:         map[string]any{"id": id},
		Properties:      entity.Properties{Priority: priority},
	}
}

// idOf returns the id header of a message.
func idOf(m *entity.Message) string {
	id, _ := m.Headers["id"].(string)
	return id
}

// publish publishes message(id, priority) and returns its delivery tag. It
// fails the test unless the message went to exactly want queues.
func (e *env) publish(exchange, routingKey, id string, priority int, want int) string {
	e.t.Helper()
	m := message(id, priority)
	n, err := e.tr.Publish(e.ctx, exchange, routingKey, m, false)
	if err != nil {
		e.t.Fatalf("Publish(%q, %q, %s): %v", exchange, routingKey, id, err)
	}
	if n != want {
		e.t.Fatalf("Publish(%q, %q, %s) went to %d queues, want %d", exchange, routingKey, id, n, want)
	}
	return m.DeliveryTag
}

// send publishes ids in order to queue through the default exchange.
func (e *env) send(queue string, ids ...string) {
	e.t.Helper()
	for _, id := range ids {
		e.publish("", queue, id, 0, 1)
	}
}

// declareExchange declares an exchange of the given type.
func (e *env) declareExchange(name string, typ entity.ExchangeType) {
	e.t.Helper()
	if err := e.tr.DeclareExchange(e.ctx, entity.Exchange{Name: name, Type: typ}); err != nil {
		e.t.Fatalf("DeclareExchange(%q, %s): %v", name, typ, err)
	}
}

// bind binds queue to exchange with key.
func (e *env) bind(queue, exchange, key string) {
	e.t.Helper()
	if err := e.tr.BindQueue(e.ctx, queue, exchange, key); err != nil {
		e.t.Fatalf("BindQueue(%q, %q, %q): %v", queue, exchange, key, err)
	}
}

// get is a Backend.Fetch of one message from queues, waiting up to wait:
// the message, or the error (ErrEmpty when none was there).
func (e *env) get(queues []string, ack bool, wait time.Duration) (transport.Delivery, error) {
	e.t.Helper()
	ds, err := e.backend.Fetch(e.ctx, transport.FetchRequest{Queues: queues, Ack: ack, Wait: wait}, nil)
	if err == nil && len(ds) != 1 {
		e.t.Fatalf("Fetch of one message returned %d and no error", len(ds))
	}
	if len(ds) > 1 {
		e.t.Fatalf("Fetch of one message returned %d", len(ds))
	}
	if len(ds) == 1 {
		return ds[0], err
	}
	return transport.Delivery{}, err
}

// take takes one waiting message from the backend without an unacked
// record, or returns nil if the queues are empty.
func (e *env) take(queues ...string) *transport.Delivery {
	e.t.Helper()
	d, err := e.get(queues, false, 0)
	if errors.Is(err, transport.ErrEmpty) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("backend Fetch(%q): %v", queues, err)
	}
	return &d
}

// drain takes every waiting message of the queues (step-major, as the
// backend serves them) and returns their ids, "redelivered" ones suffixed
// with "*".
func (e *env) drain(queues ...string) []string {
	e.t.Helper()
	var ids []string
	for {
		d := e.take(queues...)
		if d == nil {
			return ids
		}
		env, err := envelope.Parse(d.Envelope)
		if err != nil {
			e.t.Fatalf("queue %s holds a message that does not parse: %v: %q", d.Queue, err, d.Envelope)
		}
		id, _ := env.Headers["id"].(string)
		if env.Redelivered {
			id += "*"
		}
		ids = append(ids, id)
	}
}

// size returns the number of waiting messages of queue.
func (e *env) size(queue string) int64 {
	e.t.Helper()
	n, err := e.backend.Size(e.ctx, queue)
	if err != nil {
		e.t.Fatalf("Size(%q): %v", queue, err)
	}
	return n
}

// sweep restores every unacked record older than the clock's time minus
// the visibility timeout, as a consumer's periodic restore does.
func (e *env) sweep() int {
	e.t.Helper()
	n, err := e.backend.RestoreExpired(e.ctx, e.clock.Now().Add(-e.tr.Options().VisibilityTimeout), e.tr.Route)
	if err != nil {
		e.t.Fatalf("RestoreExpired: %v", err)
	}
	return n
}

// findRaw looks through queue for raw (or, with marked, for raw with the
// redelivered flags set) and reports whether it is there. It takes messages
// and puts back those that are not raw, at most once each: queues such as a
// backend's dead-letter list may be shared with other cases. A backend may
// refuse to return a malformed item, reporting it in a *MalformedError and
// keeping it; such an item counts as found.
func (e *env) findRaw(queue string, raw []byte, marked bool) bool {
	e.t.Helper()
	// Another case scanning a shared queue holds what it took for a moment:
	// look again until the deadline.
	deadline := time.Now().Add(e.s.f.Timeout)
	for {
		if e.findRawOnce(queue, raw, marked) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) findRawOnce(queue string, raw []byte, marked bool) bool {
	e.t.Helper()
	want := [][]byte{raw}
	if marked {
		if m, err := envelope.MarkRedelivered(raw); err == nil {
			want = append(want, m)
		}
	}
	match := func(b []byte) bool {
		return slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, b) })
	}
	n := e.size(queue)
	var others [][]byte
	found := false
	for i := int64(0); i < n && !found; i++ {
		d, err := e.get([]string{queue}, false, 0)
		var mal *transport.MalformedError
		switch {
		case errors.Is(err, transport.ErrEmpty):
			i = n
		case errors.As(err, &mal):
			found = match(mal.Raw) // read from queue, and kept by the backend
		case err != nil:
			e.t.Fatalf("Get from %s: %v", queue, err)
		case match(d.Envelope):
			found = true
		default:
			others = append(others, d.Envelope)
		}
	}
	for _, o := range others {
		if err := e.backend.Put(context.WithoutCancel(e.ctx), queue, 0, o); err != nil {
			e.t.Errorf("put back into %s: %v", queue, err)
		}
	}
	return found
}

// kept checks a malformed or refused message was not lost: if the backend
// reported it in a *MalformedError saying it keeps it, it must be in
// Features.DeadLetterQueue; otherwise it must be in one of queues (raw, or
// raw marked redelivered).
func (e *env) kept(errs *errLog, raw []byte, queues ...string) {
	e.t.Helper()
	for _, err := range errs.all() {
		var mal *transport.MalformedError
		if errors.As(err, &mal) && bytes.Equal(mal.Raw, raw) && mal.Where != "" {
			// The backend kept it: Where names its storage (a key, maybe
			// with a prefix); Features.DeadLetterQueue names it as a queue.
			if dlq := e.s.f.DeadLetterQueue; dlq == "" {
				e.t.Logf("backend keeps %q in %q; set Features.DeadLetterQueue to have the suite look there", raw, mal.Where)
			} else if !e.findRaw(dlq, raw, false) {
				e.t.Errorf("backend said it kept %q in %q, but it is not in Features.DeadLetterQueue %q", raw, mal.Where, dlq)
			}
			return
		}
	}
	for _, q := range queues {
		if e.findRaw(q, raw, true) {
			return
		}
	}
	e.t.Errorf("%q is lost: in none of %q", raw, queues)
}

// errLog collects the errors a consumer reports.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *errLog) any(pred func(error) bool) bool {
	for _, err := range l.all() {
		if pred(err) {
			return true
		}
	}
	return false
}

// consumer is a running Channel.Consume.
type consumer struct {
	e      *env
	ch     *virtual.Channel
	msgs   chan *entity.Message
	buf    []*entity.Message // see heard
	errs   *errLog
	done   chan error
	cancel context.CancelFunc
}

// consume starts Consume on ch. A nil handler hands every message to
// c.msgs without settling it. OnError is collected in c.errs unless set.
func (e *env) consume(ch *virtual.Channel, opts virtual.ConsumeOptions, h virtual.Handler) *consumer {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	c := &consumer{e: e, ch: ch, msgs: make(chan *entity.Message, 10000), errs: &errLog{}, done: make(chan error, 1), cancel: cancel}
	if opts.OnError == nil {
		opts.OnError = c.errs.add
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = e.s.f.Timeout
	}
	if h == nil {
		h = func(_ context.Context, m *entity.Message) { c.msgs <- m }
	}
	go func() { c.done <- ch.Consume(ctx, opts, h) }()
	e.t.Cleanup(func() { c.stop() })
	return c
}

// stop cancels the consumer and returns Consume's result; the test fails if
// Consume does not return in time.
func (c *consumer) stop() error {
	c.cancel()
	return c.wait()
}

// wait waits for Consume to return.
func (c *consumer) wait() error {
	select {
	case err, ok := <-c.done:
		if ok {
			close(c.done)
		}
		return err
	case <-time.After(c.e.s.f.Timeout):
		c.e.t.Errorf("Consume did not return within %v", c.e.s.f.Timeout)
		return errors.New("consume did not return")
	}
}

// next returns the next delivered message, failing the test after Timeout.
func (c *consumer) next() *entity.Message {
	c.e.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(c.e.s.f.Timeout):
		c.e.t.Fatalf("no message delivered within %v (consumer errors: %v)", c.e.s.f.Timeout, c.errs.all())
		return nil
	}
}

// nextN returns the next n messages.
func (c *consumer) nextN(n int) []*entity.Message {
	c.e.t.Helper()
	out := make([]*entity.Message, 0, n)
	for range n {
		out = append(out, c.next())
	}
	return out
}

// quiet fails the test if a message is delivered within the Quiet period.
func (c *consumer) quiet(what string) {
	c.e.t.Helper()
	select {
	case m := <-c.msgs:
		c.e.t.Fatalf("%s: unexpected delivery of %s", what, idOf(m))
	case <-time.After(c.e.s.f.Quiet):
	}
}

// ids returns the ids of messages, "redelivered" ones suffixed with "*".
func ids(ms []*entity.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = idOf(m)
		if m.Redelivered {
			out[i] += "*"
		}
	}
	return out
}

// ack acks m, failing the test on error.
func (e *env) ack(m *entity.Message) {
	e.t.Helper()
	if err := m.Ack(e.ctx); err != nil {
		e.t.Fatalf("Ack(%s): %v", idOf(m), err)
	}
}

// waitFor polls cond until it holds, failing the test after Timeout.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(e.s.f.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", e.s.f.Timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seq returns prefix-1 ... prefix-n.
func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i+1)
	}
	return out
}

func star(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id + "*"
	}
	return out
}

// heard moves the messages delivered so far into c's buffer and reports
// whether one of them has the given id.
func (c *consumer) heard(id string) bool {
	for {
		select {
		case m := <-c.msgs:
			c.buf = append(c.buf, m)
			continue
		default:
		}
		break
	}
	for _, m := range c.buf {
		if idOf(m) == id {
			return true
		}
	}
	return false
}

// nextUntil returns the buffered and newly delivered messages up to and
// including the first one whose id is end, leaving out probes.
func (c *consumer) nextUntil(t *testing.T, end string) []*entity.Message {
	t.Helper()
	var out []*entity.Message
	for {
		var m *entity.Message
		if len(c.buf) > 0 {
			m, c.buf = c.buf[0], c.buf[1:]
		} else {
			m = c.next()
		}
		if idOf(m) == "probe" {
			continue
		}
		out = append(out, m)
		if idOf(m) == end {
			return out
		}
	}
}

// FetchOne is Backend.Fetch of one message from queues, waiting up to
// wait (zero: not at all): the message, or the error (transport.ErrEmpty
// when there was none). A test helper for backends' own tests.
func FetchOne(ctx context.Context, b transport.Backend, queues []string, ack bool, wait time.Duration) (transport.Delivery, error) {
	ds, err := b.Fetch(ctx, transport.FetchRequest{Queues: queues, Ack: ack, Wait: wait}, nil)
	switch {
	case len(ds) == 1:
		return ds[0], err
	case len(ds) > 1:
		return ds[0], fmt.Errorf("transporttest: Fetch of one message returned %d", len(ds))
	case err == nil:
		return transport.Delivery{}, errors.New("transporttest: Fetch returned no message and no error")
	}
	return transport.Delivery{}, err
}
