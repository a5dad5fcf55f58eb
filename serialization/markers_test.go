package serialization

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Proves the type-marker round trip in Go: with EnableTypeMarkers, every
// Go type is written as Kombu 5.5 writes it (byte for byte what
// kombu.utils.json.dumps gives for the same Python values, checked against
// Python in the interop suite) and decoding gives back the same values;
// without it, json is unchanged; an unknown marker type is a DecodeError
// wrapping ErrUnknownTypeMarker.
func TestTypeMarkersRoundTrip(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.FixedZone("", 2*3600))
	id := uuid.MustParse("0123456789abcdef0123456789abcdef")
	in := map[string]any{"a": when, "b": Date("2024-05-06"), "c": TimeOfDay("07:08:09"), "d": Decimal("1.50"),
		"e": id, "f": []byte("hi"), "g": []byte{0xff}, "h": []any{when}}
	r := NewRegistry()
	r.EnableTypeMarkers()
	enc, err := r.Encode(in, "json")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a": {"__type__": "datetime", "__value__": "2024-05-06T07:08:09.123456+02:00"}, "b": {"__type__": "date", "__value__": "2024-05-06"}, "c": {"__type__": "time", "__value__": "07:08:09"}, "d": {"__type__": "decimal", "__value__": "1.50"}, "e": {"__type__": "uuid", "__value__": {"hex": "0123456789abcdef0123456789abcdef"}}, "f": {"__type__": "bytes", "__value__": "hi"}, "g": {"__type__": "base64", "__value__": "/w=="}, "h": [{"__type__": "datetime", "__value__": "2024-05-06T07:08:09.123456+02:00"}]}`
	if string(enc.Body) != want {
		t.Errorf("encoded\n got %s\nwant %s", enc.Body, want)
	}
	back, err := r.Decode(enc.Body, enc.ContentType, enc.ContentEncoding, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := back.(map[string]any)
	if a, ok := m["a"].(time.Time); !ok || !a.Equal(when) {
		t.Errorf("datetime back: %#v", m["a"])
	}
	if m["b"] != Date("2024-05-06") || m["c"] != TimeOfDay("07:08:09") || m["d"] != Decimal("1.50") || m["e"] != id ||
		string(m["f"].([]byte)) != "hi" || m["g"].([]byte)[0] != 0xff {
		t.Errorf("decoded %#v", m)
	}
	plain, err := NewRegistry().Encode(map[string]any{"d": "1.50"}, "json")
	if err != nil || string(plain.Body) != `{"d": "1.50"}` {
		t.Errorf("json without markers: %s %v", plain.Body, err)
	}
	_, err = r.Decode([]byte(`[{"__type__": "pickle", "__value__": "x"}]`), ContentTypeJSON, "utf-8", nil)
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnknownTypeMarker) {
		t.Errorf("unknown marker: %v", err)
	}
}
