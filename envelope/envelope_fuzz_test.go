package envelope

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParseEnvelope: on any input, ParseEnvelope never panics and fails
// only with an error matching ErrMalformed; an envelope it accepts has a
// delivery tag that ExtractTag and EnvelopeRoute agree on, marshals back
// to an envelope that parses to the same fields, and can be marked
// redelivered (the result parses again with the same tag) or refused with
// ErrMalformed.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"body": "eyJoZWxsbyI6ICJ3b3JsZCJ9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex", "routing_key": "rk"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`))
	f.Add([]byte(`{"body": "plain", "properties": {"delivery_tag": "t", "body_encoding": null}}`))
	f.Add([]byte(`{"body": "x", "properties": {"delivery_tag": "t", "body_encoding": "utf-8", "priority": "7"}, "headers": null, "redelivered": true}`))
	f.Add([]byte(`{"body": "e30", "properties": {"delivery_tag": 5, "priority": 1e400, "delivery_info": {"exchange": null, "routing_key": 3}}}`))
	f.Add([]byte(`{"body": {"a": [1, NaN]}, "properties": {"delivery_tag": "t"}}`))
	f.Add([]byte(`{"properties": {`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := Parse(raw)
		tag, ok := ExtractTag(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not match ErrMalformed: %v", err)
			}
			return
		}
		if !ok || tag != e.DeliveryTag {
			// ExtractTag reads only string tags; ParseEnvelope also takes
			// numbers and other JSON values as Kombu's str() would.
			if ok {
				t.Fatalf("ExtractTag %q, ParseEnvelope %q", tag, e.DeliveryTag)
			}
		}
		rtag, ex, rk, err := Route(raw)
		if err != nil || rtag != e.DeliveryTag || ex != e.Exchange || rk != e.RoutingKey {
			t.Fatalf("EnvelopeRoute %q %q %q %v disagrees with %+v", rtag, ex, rk, err, e)
		}
		out, err := e.Marshal()
		if err != nil {
			return // a header value Python's json.dumps could not write either
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", out, err)
		}
		textBody := e.BodyEncoding != "" && e.BodyEncoding != "base64"
		if back.DeliveryTag != e.DeliveryTag || back.Exchange != e.Exchange || back.RoutingKey != e.RoutingKey ||
			back.ContentType != e.ContentType || back.ContentEncoding != e.ContentEncoding ||
			back.Properties.Priority != e.Properties.Priority || back.Compression != e.Compression ||
			back.Redelivered != e.Redelivered && !back.Redelivered {
			t.Fatalf("fields changed through Marshal:\n %+v\n %+v", e, back)
		}
		if (!textBody || utf8.Valid(e.Body)) && !bytes.Equal(back.Body, e.Body) {
			t.Fatalf("body changed through Marshal: %q -> %q", e.Body, back.Body)
		}
		marked, err := MarkRedelivered(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("MarkRedelivered error does not match ErrMalformed: %v", err)
			}
			return
		}
		m, err := Parse(marked)
		if err != nil || m.DeliveryTag != e.DeliveryTag {
			t.Fatalf("marked envelope %q: %v", marked, err)
		}
	})
}
