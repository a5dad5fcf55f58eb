package reliability

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// envelope builds a Kombu envelope with the given parts; empty strings
// leave a field out where noted.
func envelope(tag, body, bodyEncoding, contentType, headers string) string {
	return fmt.Sprintf(`{"body": %s, "content-encoding": "utf-8", "content-type": %q, "headers": %s, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "bq"}, "priority": 0, "body_encoding": %q, "delivery_tag": %q}}`,
		body, contentType, headers, bodyEncoding, tag)
}

func b64(s string) string { return `"` + base64.StdEncoding.EncodeToString([]byte(s)) + `"` }

func zlibBody(data []byte) string {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(data)
	w.Close()
	return `"` + base64.StdEncoding.EncodeToString(buf.Bytes()) + `"`
}

type badInput struct {
	name string
	raw  string
	tag  string
	// check classifies the error the error handler saw.
	check func(error) (string, bool)
}

func isMalformed(err error) (string, bool) {
	var m *transport.MalformedError
	return "*transport.MalformedError (errors.Is ErrMalformed)", errors.As(err, &m) && errors.Is(err, kombu.ErrMalformed)
}

func isDisallowed(reason string) func(error) (string, bool) {
	return func(err error) (string, bool) {
		var d *serialization.ContentDisallowedError
		return "*serialization.ContentDisallowedError (" + reason + ")", errors.As(err, &d) && d.Reason == reason && errors.Is(err, kombu.ErrContentDisallowed)
	}
}

func isTooLarge(err error) (string, bool) {
	return "serialization.ErrTooLarge", errors.Is(err, serialization.ErrTooLarge)
}

func isUnknownCompression(err error) (string, bool) {
	var u *serialization.UnknownCompressionError
	return "*serialization.UnknownCompressionError", errors.As(err, &u) && errors.Is(err, serialization.ErrUnknownCompression)
}

func isDecodeError(err error) (string, bool) {
	var d *serialization.DecodeError
	return "*serialization.DecodeError", errors.As(err, &d)
}

func badInputs() []badInput {
	const big = 4096 // the consumer's WithMaxBodySize
	return []badInput{
		{"invalid JSON envelope", `{"body": "eyJ4IjogMX0=", "properties": {`, "", isMalformed},
		{"envelope is a JSON array", `["body", 1]`, "", isMalformed},
		{"envelope without properties.delivery_tag", `{"body": "e30=", "content-type": "application/json", "headers": {}, "properties": {"body_encoding": "base64"}}`, "", isMalformed},
		{"envelope without body", `{"content-type": "application/json", "headers": {}, "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": "bq"}, "delivery_tag": "bad-nobody"}}`, "bad-nobody", isMalformed},
		{"bad base64 body", envelope("bad-b64", `"!!!not base64!!!"`, "base64", "application/json", "{}"), "bad-b64", isMalformed},
		{"unknown body_encoding", envelope("bad-enc", `"x"`, "rot13", "application/json", "{}"), "bad-enc", isMalformed},
		{"pickle content type", envelope("bad-pickle", b64("\x80\x04K\x01."), "base64", "application/x-python-serialize", "{}"), "bad-pickle", isDisallowed(serialization.ReasonUnsafe)},
		{"msgpack, not in accept", envelope("bad-msgpack", b64("\x81\xa1x\x01"), "base64", "application/x-msgpack", "{}"), "bad-msgpack", isDisallowed(serialization.ReasonUntrusted)},
		{"unknown content type", envelope("bad-ct", b64("x"), "base64", "application/x-unknown", "{}"), "bad-ct", isDisallowed(serialization.ReasonUntrusted)},
		{fmt.Sprintf("body above WithMaxBodySize(%d)", big), envelope("bad-big", b64(strings.Repeat("x", big+1)), "base64", "application/json", "{}"), "bad-big", isTooLarge},
		{"zlib bomb above WithMaxBodySize", envelope("bad-bomb", zlibBody(make([]byte, 1<<20)), "base64", "application/json", `{"compression": "application/x-gzip"}`), "bad-bomb", isTooLarge},
		{"unknown compression", envelope("bad-comp", b64("x"), "base64", "application/json", `{"compression": "application/x-foo"}`), "bad-comp", isUnknownCompression},
		{"corrupt zlib data", envelope("bad-zlib", b64("not zlib"), "base64", "application/json", `{"compression": "application/x-gzip"}`), "bad-zlib", func(err error) (string, bool) {
			return "zlib error (kombu: application/x-gzip decompress: ...)", err != nil && strings.Contains(err.Error(), "decompress")
		}},
		{"invalid JSON body (handler's Decode)", envelope("bad-body", b64("{not json"), "base64", "application/json", "{}"), "bad-body", isDecodeError},
	}
}

// TestBadInput pushes each bad input, followed by a good message, onto a
// queue consumed by a Consumer (acks, WithMaxBodySize, json accepted), once
// with WithDeadLetterQueue and once without, and checks: the consumer
// keeps consuming (the good message after each bad one is handled), the
// error handler sees a typed error, and the raw message is kept (the
// malformed list, the dead-letter list, or its unacked record).
func TestBadInput(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	rc := client(t, srv)
	for _, dlq := range []string{"dlq", ""} {
		name := "dead-letter queue"
		if dlq == "" {
			name = "no dead-letter queue"
		}
		t.Run(name, func(t *testing.T) {
			prefix := "bad" + dlq + ":"
			const queue = "bq"
			url := srv.URL(0) + "?global_keyprefix=" + prefix
			conn, err := kombu.Dial(bg, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var mu sync.Mutex
			var errs []error
			good := map[string]bool{}
			opts := []kombu.ConsumerOption{
				kombu.WithMaxBodySize(4096),
				kombu.WithAccept("json"),
				kombu.WithErrorHandler(func(err error) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}),
			}
			if dlq != "" {
				opts = append(opts, kombu.WithDeadLetterQueue(dlq))
			}
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				done <- conn.Consumer([]kombu.Queue{{Name: queue}}, opts...).Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
					var v any
					if err := m.Decode(&v); err != nil {
						return err
					}
					mu.Lock()
					good[m.DeliveryTag] = true
					mu.Unlock()
					return nil
				})
			}()
			p := conn.Producer(kombu.WithRoutingKey(queue))
			for i, in := range badInputs() {
				mu.Lock()
				errs = nil
				mu.Unlock()
				before := map[string]int64{
					"malformed": rc.LLen(bg, prefix+"kombu-go.malformed").Val(),
					"dlq":       rc.LLen(bg, prefix+dlq).Val(),
					"bad":       rc.LLen(bg, prefix+virtual.DefaultBadMessageQueue).Val(),
				}
				if err := rc.LPush(bg, prefix+queue, in.raw).Err(); err != nil {
					t.Fatal(err)
				}
				goodTag := fmt.Sprintf("good-%d", i)
				if _, err := p.Publish(bg, map[string]any{"ok": i}, kombu.WithDeliveryTag(goodTag)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 10*time.Second, "the good message after "+in.name, func() bool {
					mu.Lock()
					defer mu.Unlock()
					return good[goodTag] && len(errs) > 0
				})
				time.Sleep(50 * time.Millisecond) // let the bad message's handling settle
				mu.Lock()
				seen := errs
				mu.Unlock()
				var kind string
				var ok bool
				for _, e := range seen {
					if kind, ok = in.check(e); ok {
						break
					}
				}
				if !ok {
					t.Errorf("%s: error handler saw %v, want %s", in.name, seen, kind)
				}
				// Where is it now?
				var where []string
				if n := rc.LLen(bg, prefix+"kombu-go.malformed").Val(); n > before["malformed"] {
					where = append(where, "malformed list "+"P+kombu-go.malformed")
				}
				if dlq != "" && rc.LLen(bg, prefix+dlq).Val() > before["dlq"] {
					where = append(where, "dead-letter list P+"+dlq)
				}
				if in.tag != "" && rc.HExists(bg, prefix+"unacked", in.tag).Val() {
					where = append(where, "left unacked (unacked record; the visibility timeout brings it back)")
				}
				if n := rc.LLen(bg, prefix+virtual.DefaultBadMessageQueue).Val(); n > before["bad"] {
					where = append(where, "bad-message list P+"+virtual.DefaultBadMessageQueue)
				}
				if n := rc.LLen(bg, prefix+queue).Val(); n > 0 {
					where = append(where, fmt.Sprintf("back on the queue (%d waiting)", n))
				}
				if len(where) == 0 {
					t.Errorf("%s: the message is nowhere: dropped", in.name)
				}
				if len(where) > 1 {
					t.Errorf("%s: the message is in several places: %v", in.name, where)
				}
				addInput(t, in.name+" ("+name+")", strings.Join(where, ", "), kind)
				// Start the next input from an empty queue.
				rc.Del(bg, prefix+queue)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUnroutable: a publish to an exchange with no matching binding is
// dropped without error, as Kombu does, unless WithMandatory asks for
// ErrNoRoute.
func TestUnroutable(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	conn, err := kombu.Dial(bg, srv.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, ex := range []kombu.Exchange{{Name: "ux", Type: kombu.Direct}, {Name: "ut", Type: kombu.Topic}} {
		p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("nobody.home"))
		res, err := p.Publish(bg, "x")
		if err != nil || res.Routed != 0 {
			t.Fatalf("%s: Kombu drops unroutable messages silently: got %+v, %v", ex.Type, res, err)
		}
		addInput(t, "unroutable publish to a "+string(ex.Type)+" exchange", "dropped, publish returns nil with Routed 0 (as Kombu)", "none")
		_, err = p.Publish(bg, "x", kombu.WithMandatory())
		var nr *transport.NoRouteError
		if !errors.Is(err, kombu.ErrNoRoute) || !errors.As(err, &nr) || nr.Exchange != ex.Name {
			t.Fatalf("%s: WithMandatory: %v", ex.Type, err)
		}
		addInput(t, "unroutable publish with WithMandatory ("+string(ex.Type)+")", "not published", "*transport.NoRouteError (errors.Is ErrNoRoute), returned by Publish")
	}
}
