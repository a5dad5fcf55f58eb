package transporttest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport/virtual"
)

// The cases below move their clock past the visibility timeout and sweep
// (restore every expired unacked record). They run one after another from
// Epoch; see Epoch.

func (s *suite) sweepEnv(t *testing.T, mod func(*virtual.Options)) *env {
	t.Helper()
	return s.env(t, Epoch, mod)
}

// expire moves the clock just past the visibility timeout of everything
// recorded so far.
func (e *env) expire() { e.clock.Advance(e.tr.Options().VisibilityTimeout + time.Second) }

// testVisibilityRestore proves visibility-timeout restore under the
// injected clock: records younger than the timeout stay; once the clock
// passes it, RestoreExpired puts the messages back at the FRONT of their
// queue in their original order with the redelivered flags set (and every
// other byte kept), exactly once, even when the channel that held them
// closes afterwards.
func (s *suite) testVisibilityRestore(t *testing.T) {
	e := s.sweepEnv(t, nil)
	q := name("q")
	e.send(q, "a", "b", "c", "d")
	ch := e.channel()
	var raws [][]byte
	for _, want := range []string{"a", "b", "c"} {
		m, err := ch.Get(e.ctx, q, false, nil)
		if err != nil || idOf(m) != want {
			t.Fatalf("Get = %v, %v; want %s", m, err, want)
		}
		raws = append(raws, m.Raw)
		e.clock.Advance(time.Millisecond) // distinct record times, as real time gives
	}
	e.clock.Advance(visibility - time.Second)
	e.sweep()
	if got := e.size(q); got != 1 {
		t.Fatalf("a sweep before the timeout restored messages: queue size %d, want 1", got)
	}
	e.clock.Advance(2 * time.Second)
	if n := e.sweep(); n < 3 {
		t.Errorf("RestoreExpired restored %d, want at least 3", n)
	}
	for i, want := range []string{"a", "b", "c"} {
		d := e.take(q)
		marked, err := envelope.MarkRedelivered(raws[i])
		if err != nil {
			t.Fatal(err)
		}
		if d == nil || !bytes.Equal(d.Envelope, marked) {
			t.Fatalf("restored message %d (%s):\n got %s\nwant %s", i, want, envelopeOf(d), marked)
		}
	}
	if got := e.drain(q); !slices.Equal(got, []string{"d"}) {
		t.Errorf("after the restored messages the queue holds %v, want [d]", got)
	}
	if n := e.sweep(); n != 0 {
		t.Errorf("a second sweep restored %d more", n)
	}
	if err := ch.Close(e.ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := e.drain(q); len(got) != 0 {
		t.Errorf("closing the channel restored %v again", got)
	}
}

// testVisibilityRestoreByConsumer proves a running consumer sweeps on its
// own: a message held unacked by a dead channel comes back to the consumer,
// redelivered, once the clock passes the visibility timeout.
func (s *suite) testVisibilityRestoreByConsumer(t *testing.T) {
	e := s.sweepEnv(t, nil)
	q := name("q")
	e.send(q, "held")
	dead := e.channel()
	if m, err := dead.Get(e.ctx, q, false, nil); err != nil || idOf(m) != "held" {
		t.Fatalf("Get = %v, %v", m, err)
	}
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}}, nil)
	e.send(q, "fresh")
	if m := c.next(); idOf(m) != "fresh" || m.Redelivered {
		t.Fatalf("got %v, want fresh", ids([]*entity.Message{m}))
	} else {
		e.ack(m)
	}
	c.quiet("before the visibility timeout")
	e.expire()
	m := c.next()
	if idOf(m) != "held" || !m.Redelivered || m.Headers["redelivered"] != true {
		t.Fatalf("got %v, want held, redelivered", ids([]*entity.Message{m}))
	}
	e.ack(m)
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if err := dead.Close(e.ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := e.drain(q); len(got) != 0 {
		t.Errorf("queue holds %v; the message was acked", got)
	}
}

// settleThenSweep gets three messages (two with Channel.Get, one through a
// consumer), settles each with settle, and proves that no record is left:
// closing the channels and sweeping after the visibility timeout restore
// nothing.
func (s *suite) settleThenSweep(t *testing.T, settle func(context.Context, *entity.Message) error) {
	e := s.sweepEnv(t, nil)
	q := name("q")
	e.send(q, "a", "b", "c")
	ch := e.channel()
	for range 2 {
		m, err := ch.Get(e.ctx, q, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := settle(e.ctx, m); err != nil {
			t.Fatalf("settle: %v", err)
		}
		if err := settle(e.ctx, m); !errors.Is(err, entity.ErrAlreadyAcknowledged) {
			t.Errorf("second settlement = %v, want ErrAlreadyAcknowledged", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}}, func(ctx context.Context, m *entity.Message) {
		defer wg.Done()
		if err := settle(ctx, m); err != nil {
			t.Errorf("settle: %v", err)
		}
	})
	wg.Wait()
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if ch.Unacked() != 0 {
		t.Errorf("channel still tracks %d messages", ch.Unacked())
	}
	if err := ch.Close(e.ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	e.expire()
	e.sweep()
	if got := e.drain(q); len(got) != 0 {
		t.Errorf("settled messages came back: %v", got)
	}
}

// testAckRemovesRecord proves Ack removes the unacked record: nothing is
// restored afterwards, neither on close nor by a sweep.
func (s *suite) testAckRemovesRecord(t *testing.T) {
	s.settleThenSweep(t, func(ctx context.Context, m *entity.Message) error { return m.Ack(ctx) })
}

// testRejectDrops proves Reject without requeue drops the message for good.
func (s *suite) testRejectDrops(t *testing.T) {
	s.settleThenSweep(t, func(ctx context.Context, m *entity.Message) error { return m.Reject(ctx) })
}

// testMalformedLeftUnacked proves an envelope whose tag is readable but
// which does not parse, consumed with acks and no dead-letter queue, is
// left unacked rather than lost: after the visibility timeout a sweep puts
// it back on the queue it came from. With a dead-letter queue it goes
// there instead and leaves no record behind.
func (s *suite) testMalformedLeftUnacked(t *testing.T) {
	e := s.sweepEnv(t, nil)
	q, dlq := name("q"), name("dlq")
	raw := taggedUnparseable(uuid.NewString(), q)
	truncated := []byte(stringsReplace(untagged[3], "ID", uuid.NewString()))
	for _, r := range [][]byte{raw, truncated} {
		if err := e.backend.Put(e.ctx, q, 0, r); err != nil {
			t.Fatal(err)
		}
	}
	e.send(q, "good")
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}}, nil)
	if m := c.next(); idOf(m) != "good" {
		t.Fatalf("handler got %q", idOf(m))
	} else {
		e.ack(m)
	}
	e.waitFor("the malformed errors", func() bool { return malformedWith(c.errs, raw) && malformedWith(c.errs, truncated) })
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if n := e.size(q); n != 0 {
		t.Fatalf("queue holds %d messages before the sweep", n)
	}
	e.expire()
	e.sweep()
	// Back on their queue; or, where the backend said it kept one itself,
	// there.
	e.kept(c.errs, raw, q)
	e.kept(c.errs, truncated, q)

	// With a dead-letter queue: moved there, no record left.
	e2 := s.sweepEnv(t, nil)
	raw2 := taggedUnparseable(uuid.NewString(), q)
	if err := e2.backend.Put(e2.ctx, q, 0, raw2); err != nil {
		t.Fatal(err)
	}
	c2 := e2.consume(e2.channel(), virtual.ConsumeOptions{Queues: []string{q}, DeadLetterQueue: dlq}, nil)
	e2.waitFor("the malformed error", func() bool { return malformedWith(c2.errs, raw2) })
	if err := c2.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	e2.kept(c2.errs, raw2, dlq)
	e2.expire()
	e2.sweep()
	if n := e2.size(q); n != 0 {
		t.Errorf("a message moved to the dead-letter queue was also restored (%d in the queue)", n)
	}
}

// testContentDisallowedLeftUnacked proves a refused content type,
// consumed with acks and no dead-letter queue (through a consumer or
// Channel.Get), is reported as ErrContentDisallowed, never handed over,
// and left unacked: a sweep after the visibility timeout brings it back,
// redelivered.
func (s *suite) testContentDisallowedLeftUnacked(t *testing.T) {
	e := s.sweepEnv(t, nil)
	q := name("q")
	raw := e.refused(q)
	ch := e.channel()
	m, err := ch.Get(e.ctx, q, false, []string{"json"})
	if !errors.Is(err, serialization.ErrContentDisallowed) {
		t.Fatalf("Channel.Get of msgpack with accept [json] = %v, %v; want ErrContentDisallowed", m, err)
	}
	if ch.Unacked() != 0 {
		t.Errorf("refused message is tracked by the channel")
	}
	raw2 := e.refused(q)
	e.send(q, "good")
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Accept: []string{"application/json"}}, nil)
	if m := c.next(); idOf(m) != "good" {
		t.Fatalf("handler got %q", idOf(m))
	} else {
		e.ack(m)
	}
	e.waitFor("ErrContentDisallowed", func() bool { return disallowed(c.errs) })
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if err := ch.Close(e.ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := e.size(q); n != 0 {
		t.Fatalf("queue holds %d messages before the sweep", n)
	}
	e.expire()
	e.sweep()
	for _, r := range [][]byte{raw, raw2} {
		if !e.findRaw(q, r, true) {
			t.Errorf("refused message %s did not come back after the sweep", r)
		}
	}
}
