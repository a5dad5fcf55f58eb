package interop

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// markerBody holds Kombu 5.3+ JSON type envelopes ({"__type__", "__value__"},
// wire spec §4) at the top level of a value, nested, in a list, and one with
// an unknown type. Kombu 5.2.4 passes them through as plain dicts.
func markerBody() any {
	dt := map[string]any{"__type__": "datetime", "__value__": "2024-05-06T07:08:09.123456+00:00"}
	return map[string]any{
		"when":    dt,
		"list":    []any{map[string]any{"__type__": "decimal", "__value__": "1.50"}, map[string]any{"__type__": "uuid", "__value__": map[string]any{"hex": "0123456789abcdef0123456789abcdef"}}},
		"unknown": map[string]any{"__type__": "no-such-type", "__value__": 1},
		"extra":   map[string]any{"__type__": "date", "__value__": "2024-05-06", "other": true},
	}
}

// TestKombu53TypeMarkers proves that bodies holding Kombu 5.3+ type
// envelopes do not break either side: a Go consumer reads a Python-written
// {"__type__": "datetime", "__value__": ...} body (top level and nested) as a
// plain map, with no decode error and nothing lost; and Python 5.2.4
// consuming the same value written by Go gets it back unchanged.
func TestKombu53TypeMarkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := e.dial()
	top := map[string]any{"__type__": "datetime", "__value__": "2024-05-06T07:08:09.123456"}
	bodies := []any{top, markerBody()}

	t.Run("PythonToGo", func(t *testing.T) {
		q := "markers-py-" + uuid.NewString()[:8]
		var msgs []any
		for i, b := range bodies {
			msgs = append(msgs, pyjson.Object{
				{Key: "routing_key", Value: q},
				{Key: "body", Value: map[string]any{"json": b}},
				{Key: "headers", Value: map[string]any{"i": i, "marker": top}},
			})
		}
		e.runPy("publish", map[string]any{"url": e.url, "options": e.pyOptions(), "messages": msgs}, 30*time.Second)
		gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil, kombu.WithPrefetch(1))
		gc.waitFor(len(bodies), 20*time.Second)
		gc.stop()
		gc.checkNoErrors()
		for i, g := range gc.messages() {
			if g.payloadErr != nil {
				t.Errorf("message %d: Payload(): %v", i, g.payloadErr)
				continue
			}
			if _, ok := g.payload.(map[string]any); !ok {
				t.Errorf("message %d: Payload() is %T, want a plain map", i, g.payload)
			}
			if d := sameJSON("payload", g.payload, bodies[i]); d != "" {
				t.Errorf("message %d: %s", i, d)
			}
			if d := sameJSON("headers", g.m.Headers, map[string]any{"i": i, "marker": top}); d != "" {
				t.Errorf("message %d: %s", i, d)
			}
			var into map[string]any
			if err := g.m.Decode(&into); err != nil {
				t.Errorf("message %d: Decode into a map: %v", i, err)
			}
		}
	})

	t.Run("GoToPython", func(t *testing.T) {
		q := "markers-go-" + uuid.NewString()[:8]
		for i, b := range bodies {
			goPublishOne(t, conn, q, b, kombu.WithHeaders(map[string]any{"i": i, "marker": top}))
		}
		evs := e.runPy("consume", map[string]any{
			"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
			"count": len(bodies), "timeout": 20, "prefetch": 1,
		}, 30*time.Second)
		var got []pyMsg
		for _, ev := range evs {
			if ev.kind() == "message" {
				got = append(got, parsePyMsg(t, ev))
			}
		}
		if len(got) != len(bodies) {
			t.Fatalf("Python got %d messages, want %d", len(got), len(bodies))
		}
		for i, m := range got {
			if m.DecodeError != nil {
				t.Errorf("message %d: Python decode error %v", i, m.DecodeError)
			}
			if d := sameJSON("payload", m.Payload, map[string]any{"json": bodies[i]}); d != "" {
				t.Errorf("message %d: %s", i, d)
			}
		}
	})
}
