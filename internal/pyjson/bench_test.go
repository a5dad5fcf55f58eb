package pyjson

import (
	"encoding/json"
	"testing"
)

// envelope is a Kombu message envelope as Python Kombu's Redis transport
// writes it with json.dumps.
const envelope = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex_direct", "routing_key": "rk.direct"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`

// envelopeObject builds the envelope the way a publisher would.
func envelopeObject() Object {
	return Object{
		{"body", "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0="},
		{"content-encoding", "utf-8"},
		{"content-type", "application/json"},
		{"headers", Object{{"x", 1}}},
		{"properties", Object{
			{"correlation_id", "cid-1"},
			{"reply_to", "rq"},
			{"delivery_mode", 2},
			{"delivery_info", Object{{"exchange", "ex_direct"}, {"routing_key", "rk.direct"}}},
			{"priority", 5},
			{"body_encoding", "base64"},
			{"delivery_tag", "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"},
		}},
	}
}

// TestEnvelopeRoundTrip proves a Python-written Kombu envelope survives
// UnmarshalOrdered then Marshal byte for byte, that a publisher-built Object
// encodes to the same bytes, and that Unmarshal reads its fields.
func TestEnvelopeRoundTrip(t *testing.T) {
	v, err := UnmarshalOrdered([]byte(envelope))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Marshal(v)
	if err != nil || string(got) != envelope {
		t.Fatalf("round trip:\n got %s (%v)\nwant %s", got, err, envelope)
	}
	got, err = Marshal(envelopeObject())
	if err != nil || string(got) != envelope {
		t.Fatalf("built envelope:\n got %s (%v)\nwant %s", got, err, envelope)
	}
	m, err := Unmarshal([]byte(envelope))
	if err != nil {
		t.Fatal(err)
	}
	props := m.(map[string]any)["properties"].(map[string]any)
	if props["delivery_mode"] != json.Number("2") || props["delivery_info"].(map[string]any)["routing_key"] != "rk.direct" {
		t.Fatalf("unexpected properties %v", props)
	}
}

// BenchmarkMarshalEnvelope measures encoding a publisher-built envelope.
func BenchmarkMarshalEnvelope(b *testing.B) {
	var v any = envelopeObject()
	b.ReportAllocs()
	b.SetBytes(int64(len(envelope)))
	for b.Loop() {
		if _, err := Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendEnvelope measures encoding into a reused buffer.
func BenchmarkAppendEnvelope(b *testing.B) {
	var v any = envelopeObject()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(envelope)))
	for b.Loop() {
		var err error
		if buf, err = Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalEnvelope measures decoding an envelope, keeping order.
func BenchmarkUnmarshalEnvelope(b *testing.B) {
	data := []byte(envelope)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := UnmarshalOrdered(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalEnvelopeMap measures decoding an envelope into maps.
func BenchmarkUnmarshalEnvelopeMap(b *testing.B) {
	data := []byte(envelope)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodingJSONUnmarshalEnvelope is the encoding/json baseline for
// BenchmarkUnmarshalEnvelopeMap.
func BenchmarkEncodingJSONUnmarshalEnvelope(b *testing.B) {
	data := []byte(envelope)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTranscodeEnvelope measures re-encoding a RawMessage envelope.
func BenchmarkTranscodeEnvelope(b *testing.B) {
	var v any = json.RawMessage(envelope)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
