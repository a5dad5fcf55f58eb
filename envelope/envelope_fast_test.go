package envelope

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// envelopeShapes are envelopes that exercise every branch of
// ParseEnvelope's walk: Kombu's and Celery's shapes, restored shapes,
// repeated keys (the last one wins, as in a Python dict), odd types,
// escapes, and malformed texts.
var envelopeShapes = []string{
	`{"body": "eyJoZWxsbyI6ICJ3b3JsZCJ9", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex", "routing_key": "rk"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`,
	`{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9", "shadow": null, "eta": null, "timelimit": [null, null], "retries": 0, "ignore_result": false}, "properties": {"correlation_id": "7677e5d9", "reply_to": "d5383031", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776"}}`,
	`{"body": "e30=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1, "redelivered": true}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "e", "routing_key": "r", "redelivered": true}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`,
	`{"body": "eyJ6IjogMX0=", "properties": {"delivery_tag": "t", "body_encoding": "base64"}, "content-type": "application/json", "content-encoding": "utf-8", "headers": {"h": 1}, "redelivered": true}`,
	`{"body": "plain \"text\" \u00e9\ud83d\ude00", "properties": {"delivery_tag": "t", "body_encoding": null}}`,
	`{"body": "x", "properties": {"delivery_tag": "t", "body_encoding": "utf-8", "priority": "7"}, "headers": null, "redelivered": true}`,
	`{"body": "", "properties": {"delivery_tag": "t", "body_encoding": "utf-8"}}`,
	`{"body": "", "properties": {"delivery_tag": "t", "body_encoding": "base64"}}`,
	`{"body": "e30", "properties": {"delivery_tag": 5, "priority": 1e400, "delivery_info": {"exchange": null, "routing_key": 3}}}`,
	`{"body": {"a": [1, NaN]}, "properties": {"delivery_tag": "t"}}`,
	`{"body": null, "properties": {"delivery_tag": "t"}}`,
	`{"properties": {"delivery_tag": "t"}}`,
	`{"body": "e30=", "body": "eyJ6IjogMX0=", "properties": {"priority": 5, "delivery_tag": "a"}, "properties": {"delivery_tag": "b"}}`,
	`{"body": "e30=", "properties": {"delivery_info": {"exchange": "a", "routing_key": "b", "redelivered": true}, "delivery_info": 3, "delivery_tag": "t", "delivery_tag": "u"}}`,
	`{"body": "e30=", "headers": {"compression": "application/x-gzip", "redelivered": true}, "headers": {"x": 1}, "properties": {"delivery_tag": "t", "body_encoding": "base64"}}`,
	`{"body": "e30=", "content-type": 5, "content-encoding": null, "properties": {"delivery_tag": "t", "message_id": "m", "type": {"k": [1, 2.5, true]}, "expiration": 10000, "delivery_mode": true, "priority": -3.7}}`,
	`{"b\u006fdy": "e30=", "properties": {"delivery_tag": "t", "pr\u0069ority": 4, "body_encoding": "base64"}, "redelivered": 1}`,
	`{"body": "e30=", "properties": {"delivery_tag": "t", "body_encoding": "rot13"}}`,
	`{"body": "!!!", "properties": {"delivery_tag": "t", "body_encoding": "base64"}}`,
	`{"body": "e30=", "properties": {"delivery_tag": ""}}`,
	`{"body": "e30=", "properties": null}`,
	`{"body": "e30=", "properties": []}`,
	` {"body" : "e30=" , "properties" : {"delivery_tag" : "t"} } `,
	`{"body": "e30=", "properties": {"delivery_tag": "t"}} x`,
	`{"body": "e30=", "properties": {"delivery_tag": "t"}`,
	`{"body": "e30=", "properties": {"delivery_tag": "t",}}`,
	`{"body": "e30=", "extra": [1, {"a": "\x"}], "properties": {"delivery_tag": "t"}}`,
	`{"body": "bad ` + "\x01" + ` control", "properties": {"delivery_tag": "t"}}`,
	`{}`, `[1]`, `"text"`, `null`, ``, `{"body": "\xff\xfe", "properties": {"delivery_tag": "\xc3"}}`,
}

func checkSameAsMaps(t *testing.T, raw []byte) {
	t.Helper()
	fast, ferr := Parse(raw)
	slow, serr := parseEnvelopeMaps(raw)
	if (ferr == nil) != (serr == nil) {
		t.Fatalf("%q:\n walk error %v\n maps error %v", raw, ferr, serr)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q:\n walk %+v\n maps %+v", raw, fast, slow)
	}
}

// TestParseEnvelopeWalkMatchesMaps proves the walking ParseEnvelope
// returns what parsing the whole text into maps returns, on every shape.
func TestParseEnvelopeWalkMatchesMaps(t *testing.T) {
	for _, s := range envelopeShapes {
		checkSameAsMaps(t, []byte(s))
	}
}

// FuzzParseEnvelopeFast: on any input, the walking ParseEnvelope and the
// map-based reference agree (same envelope, or both refuse it).
func FuzzParseEnvelopeFast(f *testing.F) {
	for _, s := range envelopeShapes {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkSameAsMaps(t, raw) })
}

// parseEnvelopeMaps is Parse by way of pyjson.Unmarshal: the reference
// Parse's single walk must agree with (FuzzParseEnvelopeFast,
// BenchmarkParseEnvelope).
func parseEnvelopeMaps(raw []byte) (*Envelope, error) {
	v, err := pyjson.Unmarshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: envelope is not a JSON object", ErrMalformed)
	}
	e := &Envelope{}
	e.ContentType, _ = top["content-type"].(string)
	e.ContentEncoding, _ = top["content-encoding"].(string)
	if h, ok := top["headers"].(map[string]any); ok {
		e.Headers = h
		if c, ok := h["compression"].(string); ok {
			e.Compression = c
		}
		if r, ok := h["redelivered"].(bool); ok && r {
			e.Redelivered = true
		}
	}
	if r, ok := top["redelivered"].(bool); ok && r {
		// Kombu's restore with ack_emulation off marks the top level (§3.3).
		e.Redelivered = true
	}
	props, _ := top["properties"].(map[string]any)
	for k, pv := range props {
		switch k {
		case "correlation_id":
			e.Properties.CorrelationID = anyString(pv)
		case "reply_to":
			e.Properties.ReplyTo = anyString(pv)
		case "delivery_mode":
			e.Properties.DeliveryMode = entity.DeliveryMode(anyInt(pv))
		case "expiration":
			e.Properties.Expiration = anyString(pv)
		case "priority":
			e.Properties.Priority = anyInt(pv)
		case "body_encoding":
			e.BodyEncoding, _ = pv.(string)
		case "delivery_tag":
			e.DeliveryTag = anyString(pv)
		case "delivery_info":
			if di, ok := pv.(map[string]any); ok {
				e.Exchange = anyString(di["exchange"])
				e.RoutingKey = anyString(di["routing_key"])
				if r, ok := di["redelivered"].(bool); ok && r {
					e.Redelivered = true
				}
			}
		default:
			if e.Properties.Extra == nil {
				e.Properties.Extra = map[string]any{}
			}
			e.Properties.Extra[k] = pv
		}
	}
	body, hasBody := top["body"]
	switch b := body.(type) {
	case string:
		switch e.BodyEncoding {
		case "base64":
			if e.Body, err = decodeBase64(b); err != nil {
				return nil, fmt.Errorf("%w: body_encoding base64: %w", ErrMalformed, err)
			}
		case "", "utf-8", "utf8":
			e.Body = []byte(b)
		default:
			return nil, fmt.Errorf("%w: unknown body_encoding %q", ErrMalformed, e.BodyEncoding)
		}
	case nil:
		if !hasBody {
			return nil, fmt.Errorf("%w: envelope has no body", ErrMalformed)
		}
	default:
		// A JSON value where Kombu writes a string: keep its JSON text.
		if e.Body, err = pyjson.Marshal(b); err != nil {
			return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
		}
	}
	if e.DeliveryTag == "" {
		return nil, fmt.Errorf("%w: envelope has no properties.delivery_tag", ErrMalformed)
	}
	return e, nil
}
