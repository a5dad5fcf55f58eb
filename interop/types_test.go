package interop

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/serialization"
)

// pyTyped is how peer.py reports (and builds) a typed Python value:
// {"__py__": type, "value": text}.
func pyTyped(typ, v string) map[string]any { return map[string]any{"__py__": typ, "value": v} }

// TestKombu53TypeMarkers proves Kombu 5.3+ JSON type markers
// ({"__type__", "__value__"}, kombu/utils/json.py) in both directions:
//
//   - Python to Go: a body holding real datetime, Decimal and UUID values
//     published by Python Kombu. Kombu 5.5 writes them as type markers and
//     Go decodes time.Time, serialization.Decimal and uuid.UUID (the same
//     instant, the exact text, the same id); Kombu 5.2 writes plain strings
//     (isoformat with Z for UTC, str) and Go reads those strings.
//   - Go to Python: with Registry.EnableTypeMarkers, Go writes time.Time,
//     Date, TimeOfDay, Decimal, uuid.UUID and []byte (UTF-8 and binary) as
//     Kombu 5.5 does; Python 5.5 loads datetime, date, time, Decimal, UUID
//     and bytes with the exact values; Python 5.2 gets the marker dicts,
//     unchanged.
//   - An object of exactly {"__type__", "__value__"} with a type Kombu does
//     not know is a decode error in Go, as it is in Kombu 5.5.
func TestKombu53TypeMarkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	kombu55 := testenv.PythonVersionAtLeast(t, "kombu", "5.3")
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	id := uuid.MustParse("0123456789abcdef0123456789abcdef")

	t.Run("PythonToGo", func(t *testing.T) {
		conn := e.dial()
		q := "markers-py-" + uuid.NewString()[:8]
		body := map[string]any{
			"when": pyTyped("datetime", "2024-05-06T07:08:09.123456+00:00"),
			"list": []any{pyTyped("Decimal", "1.50"), pyTyped("UUID", "0123456789abcdef0123456789abcdef")},
		}
		e.runPy("publish", map[string]any{"url": e.url, "options": e.pyOptions(), "messages": []any{
			map[string]any{"routing_key": q, "body": map[string]any{"py": body}},
		}}, 30*time.Second)
		gc := startGoConsumer(t, conn, []kombu.Queue{{Name: q}}, nil, kombu.WithPrefetch(1))
		gc.waitFor(1, 20*time.Second)
		gc.stop()
		gc.checkNoErrors()
		g := gc.messages()[0]
		if g.payloadErr != nil {
			t.Fatalf("Payload(): %v", g.payloadErr)
		}
		m, _ := g.payload.(map[string]any)
		list, _ := m["list"].([]any)
		if len(list) != 2 {
			t.Fatalf("payload %#v", g.payload)
		}
		if kombu55 {
			if w, ok := m["when"].(time.Time); !ok || !w.Equal(when) {
				t.Errorf("when: %#v, want time.Time %v", m["when"], when)
			}
			if d, ok := list[0].(serialization.Decimal); !ok || d != "1.50" {
				t.Errorf("decimal: %#v", list[0])
			}
			if u, ok := list[1].(uuid.UUID); !ok || u != id {
				t.Errorf("uuid: %#v", list[1])
			}
		} else if m["when"] != "2024-05-06T07:08:09.123456Z" || fmt.Sprint(list) != "[1.50 01234567-89ab-cdef-0123-456789abcdef]" {
			t.Errorf("Kombu 5.2's plain strings: %#v", g.payload)
		}
	})

	t.Run("GoToPython", func(t *testing.T) {
		reg := serialization.NewRegistry()
		reg.EnableTypeMarkers()
		mconn, err := kombu.Dial(t.Context(), e.goURL(), kombu.WithSerializers(reg))
		if err != nil {
			t.Fatal(err)
		}
		defer mconn.Close()
		q := "markers-go-" + uuid.NewString()[:8]
		body := map[string]any{
			"when": when, "day": serialization.Date("2024-05-06"), "at": serialization.TimeOfDay("07:08:09.123456"),
			"price": serialization.Decimal("1.50"), "id": id, "text": []byte("héllo"), "bin": []byte{0xff, 0x00, 0x01},
		}
		goPublishOne(t, mconn, q, body)
		evs := e.runPy("consume", map[string]any{
			"url": e.url, "options": e.pyOptions(), "queues": []any{map[string]any{"name": q}},
			"count": 1, "timeout": 20, "prefetch": 1,
		}, 30*time.Second)
		var got []pyMsg
		for _, ev := range evs {
			if ev.kind() == "message" {
				got = append(got, parsePyMsg(t, ev))
			}
		}
		if len(got) != 1 || got[0].DecodeError != nil {
			t.Fatalf("Python got %+v", got)
		}
		var want map[string]any
		if kombu55 {
			want = map[string]any{
				"when": pyTyped("datetime", "2024-05-06T07:08:09.123456+00:00"), "day": pyTyped("date", "2024-05-06"),
				"at": pyTyped("time", "07:08:09.123456"), "price": pyTyped("Decimal", "1.50"),
				"id": pyTyped("UUID", "0123456789abcdef0123456789abcdef"), "text": pyTyped("bytes", "aMOpbGxv"),
				"bin": pyTyped("bytes", "/wAB"),
			}
		} else {
			marker := func(t string, v any) map[string]any { return map[string]any{"__type__": t, "__value__": v} }
			want = map[string]any{
				"when": marker("datetime", "2024-05-06T07:08:09.123456+00:00"), "day": marker("date", "2024-05-06"),
				"at": marker("time", "07:08:09.123456"), "price": marker("decimal", "1.50"),
				"id": marker("uuid", map[string]any{"hex": "0123456789abcdef0123456789abcdef"}), "text": marker("bytes", "héllo"),
				"bin": marker("base64", "/wAB"),
			}
		}
		if d := sameJSON("payload", got[0].Payload, map[string]any{"json": want}); d != "" {
			t.Error(d)
		}
	})

	t.Run("UnknownMarker", func(t *testing.T) {
		_, err := serialization.Decode([]byte(`{"x": {"__type__": "no-such-type", "__value__": 1}}`), "application/json", "utf-8", nil)
		if err == nil {
			t.Fatal("an unknown type marker decoded")
		}
		v, err := serialization.Decode([]byte(`{"__type__": "date", "__value__": "2024-05-06", "other": true}`), "application/json", "utf-8", nil)
		if b, _ := json.Marshal(v); err != nil || string(b) != `{"__type__":"date","__value__":"2024-05-06","other":true}` {
			t.Errorf("an object with a third key is not a marker: %s %v", b, err)
		}
	})
}
