package interop

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// simpleCases are the messages the SimpleQueue test passes, in order.
func simpleCases() []msgCase {
	return []msgCase{
		{name: "simple-json", group: "body", body: jsonBody(map[string]any{"i": 1, "f": 1.5, "s": "ünï"})},
		{name: "simple-text", group: "body", body: textBody("just text ✓")},
		{name: "simple-bytes", group: "body", body: bytesBody([]byte{0, 1, 2, 0xfe, 0xff})},
	}
}

// TestSimpleQueue proves that Python's kombu.simple.SimpleQueue and Go's
// Connection.SimpleQueue of the same name are the same queue: what one puts
// the other gets, in order, with body, content type and headers intact, in
// both directions; and both declare it with the same binding (a direct
// exchange of the queue's name, routing key = name).
func TestSimpleQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	conn := e.dial()
	cs := simpleCases()
	checkBinding := func(name, who string) {
		t.Helper()
		members, err := e.rdb.SMembers(ctx, e.key("_kombu.binding."+name)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{name + sep + sep + name}; !slices.Equal(members, want) {
			t.Errorf("after %s: binding set of %s = %q, want %q", who, name, members, want)
		}
	}

	t.Run("PythonPutGoGet", func(t *testing.T) {
		name := "simple-py-" + uuid.NewString()[:8]
		var msgs []any
		for _, c := range cs {
			msgs = append(msgs, map[string]any{"body": c.body.tagged(), "headers": c.allHeaders()})
		}
		e.runPy("simple", map[string]any{"url": e.url, "options": e.pyOptions(), "name": name, "op": "put", "messages": msgs}, 30*time.Second)
		checkBinding(name, "Python put")
		sq, err := conn.SimpleQueue(ctx, name)
		if err != nil {
			t.Fatalf("SimpleQueue: %v", err)
		}
		defer sq.Close()
		checkBinding(name, "Go SimpleQueue")
		for _, c := range cs {
			gctx, cancel := contextWithTimeout(t, 10*time.Second)
			m, err := sq.Get(gctx)
			cancel()
			if err != nil {
				t.Fatalf("Get (want %s): %v", c.name, err)
			}
			c.exchange = kombu.Exchange{Name: name}
			c.routingKey = name
			c.expect = []string{name}
			p, perr := m.Payload()
			if problems := checkGoMsg(c, goMsg{m: m, payload: p, payloadErr: perr}, name); len(problems) > 0 {
				t.Errorf("%s: %v", c.name, problems)
			}
			if err := m.Ack(ctx); err != nil {
				t.Errorf("Ack: %v", err)
			}
		}
		if _, err := sq.GetNowait(ctx); !errors.Is(err, kombu.ErrEmpty) {
			t.Errorf("GetNowait after the last message: %v, want ErrEmpty", err)
		}
	})

	t.Run("GoPutPythonGet", func(t *testing.T) {
		name := "simple-go-" + uuid.NewString()[:8]
		sq, err := conn.SimpleQueue(ctx, name)
		if err != nil {
			t.Fatalf("SimpleQueue: %v", err)
		}
		defer sq.Close()
		checkBinding(name, "Go SimpleQueue")
		tags := map[string]string{}
		for _, c := range cs {
			if err := sq.Put(ctx, c.body.goValue(), kombu.WithHeaders(c.allHeaders())); err != nil {
				t.Fatalf("Put: %v", err)
			}
		}
		evs := e.runPy("simple", map[string]any{"url": e.url, "options": e.pyOptions(), "name": name, "op": "get", "count": len(cs)}, 30*time.Second)
		checkBinding(name, "Python get")
		var got []pyMsg
		for _, ev := range evs {
			if ev.kind() == "message" {
				got = append(got, parsePyMsg(t, ev))
			}
		}
		if len(got) != len(cs) {
			t.Fatalf("Python got %d messages, want %d", len(got), len(cs))
		}
		for i, c := range cs {
			c.exchange = kombu.Exchange{Name: name}
			c.routingKey = name
			m := got[i]
			if m.header("case") != c.name {
				t.Errorf("message %d is %s, want %s (FIFO)", i, m.header("case"), c.name)
				continue
			}
			tags[c.name] = m.DeliveryTag
			if problems := checkPyMsg(c, m, m.DeliveryTag); len(problems) > 0 {
				t.Errorf("%s: %v", c.name, problems)
			}
			if !uuid4Re.MatchString(m.DeliveryTag) {
				t.Errorf("%s: tag %q is not a uuid4", c.name, m.DeliveryTag)
			}
		}
		if n, err := sq.Len(ctx); err != nil || n != 0 {
			t.Errorf("Len after Python got everything: %d, %v", n, err)
		}
	})
	if h, i := e.unackedCount(); h != 0 || i != 0 {
		t.Errorf("unacked records left: hash %d, index %d", h, i)
	}
}
