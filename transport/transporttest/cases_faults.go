package transporttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// Envelopes whose delivery tag cannot be read; ID makes each unique.
var untagged = []string{
	`not json at all ID`,
	`{"body": "", "properties": {}, "id": "ID"}`,
	`["ID", 1, 2]`,
	`{"body": "eA==", "properties": {"delivery_tag": "ID"`, // truncated JSON, tag only findable by the backend's fallback
}

// taggedUnparseable is an envelope published to queue through the default
// exchange, with a readable tag, whose body cannot be decoded (bad base64).
func taggedUnparseable(tag, queue string) []byte {
	return []byte(`{"body": "!!not base64!!", "content-type": "application/json", "content-encoding": "utf-8", "headers": {"id": "bad"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "` + queue + `"}, "body_encoding": "base64", "delivery_tag": "` + tag + `"}}`)
}

func malformedWith(errs *errLog, raw []byte) bool {
	return errs.any(func(err error) bool {
		var mal *transport.MalformedError
		return errors.As(err, &mal) && errors.Is(err, transport.ErrMalformed) && bytes.Equal(mal.Raw, raw)
	})
}

// testMalformed proves envelopes that are not Kombu envelopes are never
// lost and never reach the handler: consumed with acks, an envelope
// without a readable tag ends in the backend's dead-letter storage
// (Features.DeadLetterQueue); consumed without acks, malformed envelopes
// go to the consumer's DeadLetterQueue or DefaultBadMessageQueue. Each is
// reported to OnError as a *MalformedError carrying the raw bytes, and the
// consumer goes on to deliver the next good message.
func (s *suite) testMalformed(t *testing.T) {
	t.Run("AckUntagged", func(t *testing.T) {
		t.Parallel()
		e := s.parallelEnv(t)
		q := name("q")
		var raws [][]byte
		for _, u := range untagged[:3] {
			raw := []byte(stringsReplace(u, "ID", uuid.NewString()))
			raws = append(raws, raw)
			if err := e.backend.Put(e.ctx, q, 0, raw); err != nil {
				t.Fatal(err)
			}
		}
		e.send(q, "good")
		c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}}, nil)
		m := c.next()
		if idOf(m) != "good" {
			t.Fatalf("handler got %q (%s), want only the good message", idOf(m), m.Raw)
		}
		e.ack(m)
		for _, raw := range raws {
			e.waitFor(fmt.Sprintf("a *MalformedError for %q", raw), func() bool { return malformedWith(c.errs, raw) })
		}
		c.quiet("malformed messages")
		for _, err := range c.errs.all() {
			var mal *transport.MalformedError
			if errors.As(err, &mal) && mal.Where == "" {
				t.Errorf("backend's MalformedError does not say where the message is kept: %v", err)
			}
		}
		if n := e.size(q); n != 0 {
			t.Errorf("queue holds %d messages", n)
		}
		for _, raw := range raws {
			e.kept(c.errs, raw) // only where the backend says
		}
	})
	for _, dlq := range []string{"", name("dlq")} {
		t.Run("NoAck/DeadLetterQueue="+fmt.Sprint(dlq != ""), func(t *testing.T) {
			t.Parallel()
			e := s.parallelEnv(t)
			q := name("q")
			var raws [][]byte
			for _, u := range append(slices.Clone(untagged), string(taggedUnparseable("ID", q))) {
				raw := []byte(stringsReplace(u, "ID", uuid.NewString()))
				raws = append(raws, raw)
				if err := e.backend.Put(e.ctx, q, 0, raw); err != nil {
					t.Fatal(err)
				}
			}
			e.send(q, "good")
			c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, NoAck: true, DeadLetterQueue: dlq}, nil)
			if m := c.next(); idOf(m) != "good" {
				t.Fatalf("handler got %q (%s), want only the good message", idOf(m), m.Raw)
			}
			for _, raw := range raws {
				e.waitFor(fmt.Sprintf("a *MalformedError for %q", raw), func() bool { return malformedWith(c.errs, raw) })
			}
			if err := c.stop(); err != nil {
				t.Errorf("Consume: %v", err)
			}
			where := dlq
			if where == "" {
				where = virtual.DefaultBadMessageQueue
			}
			for _, raw := range raws {
				e.kept(c.errs, raw, where)
			}
		})
	}
	t.Run("AckTaggedToDeadLetterQueue", func(t *testing.T) {
		t.Parallel()
		e := s.parallelEnv(t)
		q, dlq := name("q"), name("dlq")
		raw := taggedUnparseable(uuid.NewString(), q)
		if err := e.backend.Put(e.ctx, q, 0, raw); err != nil {
			t.Fatal(err)
		}
		e.send(q, "good")
		c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, DeadLetterQueue: dlq}, nil)
		if m := c.next(); idOf(m) != "good" {
			t.Fatalf("handler got %q", idOf(m))
		} else {
			e.ack(m)
		}
		e.waitFor("the malformed error", func() bool { return malformedWith(c.errs, raw) })
		if err := c.stop(); err != nil {
			t.Errorf("Consume: %v", err)
		}
		e.kept(c.errs, raw, dlq)
	})
}

func stringsReplace(s, old, new string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte(old), []byte(new)))
}

// refused publishes a msgpack message (refused by Accept ["json"]) and
// returns its raw envelope.
func (e *env) refused(q string) []byte {
	e.t.Helper()
	env := &envelope.Envelope{Body: []byte{0x81, 0xa1, 'a', 0x01}, ContentType: "application/x-msgpack", ContentEncoding: "binary", Headers: map[string]any{"id": "msgpack"}}
	if _, err := e.tr.Publish(e.ctx, "", q, env, false); err != nil {
		e.t.Fatal(err)
	}
	raw, err := env.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func disallowed(errs *errLog) bool {
	return errs.any(func(err error) bool {
		var cd *serialization.ContentDisallowedError
		return errors.Is(err, serialization.ErrContentDisallowed) && errors.As(err, &cd) && cd.ContentType == "application/x-msgpack"
	})
}

// testContentDisallowed proves a content type outside the consumer's
// accept list never reaches the handler, is reported as
// serialization.ErrContentDisallowed, and is not lost: it goes to the
// consumer's DeadLetterQueue byte for byte. application/data is always
// trusted, as in Kombu.
func (s *suite) testContentDisallowed(t *testing.T) {
	e := s.parallelEnv(t)
	q, dlq := name("q"), name("dlq")
	raw := e.refused(q)
	e.tr.Publish(e.ctx, "", q, &envelope.Envelope{Body: []byte{0, 1}, ContentType: "application/data", ContentEncoding: "binary", Headers: map[string]any{"id": "data"}}, false)
	e.send(q, "good")
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Accept: []string{"json"}, DeadLetterQueue: dlq}, nil)
	var got []string
	for _, m := range c.nextN(2) {
		got = append(got, idOf(m))
		e.ack(m)
	}
	if !slices.Equal(got, []string{"data", "good"}) {
		t.Errorf("handler got %v, want [data good]", got)
	}
	e.waitFor("ErrContentDisallowed", func() bool { return disallowed(c.errs) })
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	if !e.findRaw(dlq, raw, false) {
		t.Errorf("refused message is not in the dead-letter queue")
	}
	if n := e.size(q); n != 0 {
		t.Errorf("queue holds %d messages", n)
	}
}

var callRE = regexp.MustCompile(`\(call \d+\)`)

// testFaulty proves the core survives a backend that fails every few
// calls: publishes that fail are retried by the caller, the consumer loop
// reports its failures to OnError and backs off, acks that fail (with the
// fetch they ride, when a handler fetches) are retried, every message is
// acked exactly once, and every failure injected before the shutdown
// reached someone: the publisher, the acking handler or OnError, none
// swallowed.
func (s *suite) testFaulty(t *testing.T) {
	clock := NewClock(Epoch.Add(parallelOffset))
	inner := s.newBackend(t, clock)
	faulty := &Faulty{Backend: inner, FailEvery: 4}
	e := s.envOn(t, clock, faulty, nil)
	q := name("q")
	const total = 40
	// Each injected failure names its call ("(call N)"): the set of those
	// seen by someone must be every one injected.
	var seenMu sync.Mutex
	seen := map[string]bool{}
	see := func(err error) {
		seenMu.Lock()
		defer seenMu.Unlock()
		seen[callRE.FindString(err.Error())] = true
	}
	for i := range total {
		for {
			_, err := e.tr.Publish(e.ctx, "", q, message(fmt.Sprint(i), i%10), false)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrInjected) {
				t.Fatalf("Publish: %v", err)
			}
			see(err)
		}
	}
	var mu sync.Mutex
	count := map[string]int{}
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 5, Concurrency: 2}, func(ctx context.Context, m *entity.Message) {
		for {
			err := m.Ack(ctx)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrInjected) {
				t.Errorf("Ack: %v", err)
				return
			}
			see(err) // a coalesced ack's failure reaches every caller it carried
		}
		mu.Lock()
		count[idOf(m)]++
		mu.Unlock()
	})
	e.waitFor(fmt.Sprint(total, " acks"), func() bool { mu.Lock(); defer mu.Unlock(); return len(count) == total })
	// Every call failed by now has had time to be reported; a call failing
	// during the shutdown below may be dropped (the consumer is stopping,
	// and a failed call did not happen), so only these must be seen.
	time.Sleep(2 * s.f.PollingInterval)
	callsBefore := faulty.Calls()
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range count {
		if n != 1 {
			t.Errorf("%s acked %d times", id, n)
		}
	}
	if faulty.Failures() == 0 {
		t.Fatalf("no failure was injected in %d calls", faulty.Calls())
	}
	for _, err := range c.errs.all() {
		if errors.Is(err, ErrInjected) {
			see(err)
		}
	}
	seenMu.Lock()
	for call := int64(faulty.FailEvery); call <= callsBefore; call += int64(faulty.FailEvery) {
		if !seen[fmt.Sprintf("(call %d)", call)] {
			t.Errorf("the injected failure of call %d (of %d before the shutdown) reached neither the publisher, a handler's Ack nor OnError", call, callsBefore)
		}
	}
	seenMu.Unlock()
	if n, err := inner.Size(e.ctx, q); err != nil || n != 0 {
		t.Errorf("queue holds %d messages (%v)", n, err)
	}
}

// testPersistent proves a persistent backend keeps messages for the next
// backend value: what one stored, a fresh one returns byte for byte.
func (s *suite) testPersistent(t *testing.T) {
	if !s.f.Persistent {
		t.Skip("Features.Persistent is off")
	}
	clock := NewClock(Epoch.Add(parallelOffset))
	q := name("q")
	raw := fill(capturedPlain, "", uuid.NewString())
	b1 := s.newBackend(t, clock)
	if err := b1.Put(t.Context(), q, 5, raw); err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	e := s.envOn(t, clock, s.newBackend(t, clock), nil)
	if d := e.take(q); d == nil || !bytes.Equal(d.Envelope, raw) {
		t.Errorf("a new backend returned %s, want %s", envelopeOf(d), raw)
	}
}

// testRestartBroker proves a consumer survives the server restarting
// mid-stream: the loop reports errors and retries, and every message is
// acked; a message may come twice only as a redelivery.
func (s *suite) testRestartBroker(t *testing.T) {
	if s.f.RestartBroker == nil {
		t.Skip("Features.RestartBroker is not set")
	}
	e := s.parallelEnv(t)
	q := name("q")
	const total = 200
	for i := range total {
		e.publish("", q, fmt.Sprint(i), 0, 1)
	}
	var mu sync.Mutex
	count := map[string]int{}
	var dupes []string
	c := e.consume(e.channel(), virtual.ConsumeOptions{Queues: []string{q}, Prefetch: 10, Concurrency: 4}, func(ctx context.Context, m *entity.Message) {
		for ctx.Err() == nil && m.Ack(ctx) != nil {
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		count[idOf(m)]++
		if count[idOf(m)] > 1 && !m.Redelivered {
			dupes = append(dupes, idOf(m))
		}
		mu.Unlock()
	})
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(count) }
	e.waitFor("50 acks", func() bool { return acked() >= 50 })
	s.f.RestartBroker(t)
	deadline := time.Now().Add(s.f.Timeout)
	for acked() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if acked() < total {
		// A fetch whose reply the restart cut off may leave its messages
		// recorded as unacked: at-least-once promises them back after the
		// visibility timeout, not at once. Move the clock past it and sweep.
		t.Logf("%d of %d acked after the restart; sweeping expired unacked records", acked(), total)
		e.clock.Advance(e.tr.Options().VisibilityTimeout + time.Second)
		e.sweep()
		deadline = time.Now().Add(3 * s.f.Timeout)
		for acked() < total && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := c.stop(); err != nil {
		t.Errorf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(count) != total {
		t.Errorf("%d of %d messages acked after a restart (errors: %v)", len(count), total, c.errs.all())
	}
	if len(dupes) > 0 {
		t.Errorf("delivered twice without the redelivered flag: %v", dupes)
	}
}
