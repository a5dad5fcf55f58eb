package envelope_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/redis"
	"github.com/kombu-go/kombu/serialization"
	"github.com/kombu-go/kombu/transport"
)

// plainCaptured is the plain Kombu envelope of wire spec §3.1, as captured.
const plainCaptured = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex_direct", "routing_key": "rk.direct"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`

// plainRestored is plainCaptured after Kombu's restore (§3.3, §9.5): both
// redelivered flags appended, nothing else changed.
const plainRestored = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1, "redelivered": true}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex_direct", "routing_key": "rk.direct", "redelivered": true}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`

// celeryCaptured is the Celery 5.2.6 task message of wire spec §3.1.
const celeryCaptured = `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen8300@vm", "ignore_result": false}, "properties": {"correlation_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "reply_to": "d5383031-2891-32bb-af8f-30b85c08aa1b", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776-9637-4984-9ad5-2979fc98b1e4"}}`

// TestMarshalPlainKombuCapture builds the §3.1 plain Kombu message the way
// a producer does (serialize the body, then the envelope) and compares the
// result byte for byte with the capture.
func TestMarshalPlainKombuCapture(t *testing.T) {
	enc, err := serialization.Encode(map[string]any{"hello": "world", "n": 1, "u": "é"}, "json")
	if err != nil {
		t.Fatal(err)
	}
	if string(enc.Body) != `{"hello": "world", "n": 1, "u": "\u00e9"}` {
		t.Fatalf("json body = %s", enc.Body)
	}
	e := &envelope.Envelope{
		Body:            enc.Body,
		ContentType:     enc.ContentType,
		ContentEncoding: enc.ContentEncoding,
		Headers:         map[string]any{"x": 1},
		Properties:      entity.Properties{CorrelationID: "cid-1", ReplyTo: "rq", Priority: 5},
		Exchange:        "ex_direct",
		RoutingKey:      "rk.direct",
		DeliveryTag:     "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed",
	}
	got, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != plainCaptured {
		t.Errorf("Marshal:\n got %s\nwant %s", got, plainCaptured)
	}
	// AppendMarshal appends the same bytes.
	if got2, err := e.AppendMarshal([]byte("prefix")); err != nil || string(got2) != "prefix"+plainCaptured {
		t.Errorf("AppendMarshal = %s, %v", got2, err)
	}
	// Parsing it back gives every field.
	back, err := envelope.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Body) != string(enc.Body) || back.ContentType != "application/json" || back.ContentEncoding != "utf-8" ||
		back.Exchange != "ex_direct" || back.RoutingKey != "rk.direct" || back.DeliveryTag != e.DeliveryTag ||
		back.BodyEncoding != "base64" || back.Redelivered || back.Compression != "" ||
		back.Properties.CorrelationID != "cid-1" || back.Properties.ReplyTo != "rq" || back.Properties.Priority != 5 ||
		back.Properties.DeliveryMode != entity.Persistent || back.Properties.Extra != nil ||
		!reflect.DeepEqual(back.Headers, map[string]any{"x": json.Number("1")}) {
		t.Errorf("ParseEnvelope(Marshal) = %+v", back)
	}
}

// TestMarshalFieldOrder checks the rest of §3.2's layout: user properties
// before delivery_mode, expiration after it, compression last in the
// headers, the redelivered flag at the end of delivery_info, null content
// type, plain-text body encoding, ensure_ascii and no HTML escaping.
func TestMarshalFieldOrder(t *testing.T) {
	e := &envelope.Envelope{
		Body:        []byte("caf\u00e9 <&>"),
		Headers:     map[string]any{"b": "\U0001f600", "a": []any{1.5, nil, true}, "compression": "ignored"},
		Compression: "application/x-gzip",
		Properties: entity.Properties{
			CorrelationID: "c", ReplyTo: "r", DeliveryMode: entity.Transient, Expiration: "10000", Priority: 0,
			Extra: map[string]any{"z_user": 1, "message_id": "m", "priority": 99, "delivery_tag": "nope"},
		},
		Exchange: "ex", RoutingKey: "rk", Redelivered: true, BodyEncoding: "utf-8", DeliveryTag: "tag",
	}
	got, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"body": "caf\u00e9 <&>", "content-encoding": null, "content-type": null, "headers": {"a": [1.5, null, true], "b": "\ud83d\ude00", "compression": "application/x-gzip"}, "properties": {"correlation_id": "c", "reply_to": "r", "message_id": "m", "z_user": 1, "delivery_mode": 1, "expiration": "10000", "delivery_info": {"exchange": "ex", "routing_key": "rk", "redelivered": true}, "priority": 0, "body_encoding": "utf-8", "delivery_tag": "tag"}}`
	if string(got) != want {
		t.Errorf("Marshal:\n got %s\nwant %s", got, want)
	}
	if _, err := (&envelope.Envelope{Headers: map[string]any{"bad": make(chan int)}, DeliveryTag: "t"}).Marshal(); err == nil {
		t.Errorf("Marshal of an unencodable header succeeded")
	}
}

// TestParseCeleryCapture parses the §3.1 Celery task message and checks
// every field.
func TestParseCeleryCapture(t *testing.T) {
	e, err := envelope.Parse([]byte(celeryCaptured))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Body) != `[[2, 3], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]` {
		t.Errorf("Body = %s", e.Body)
	}
	const id = "7677e5d9-750f-4830-9a65-bfd803dbaf47"
	wantHeaders := map[string]any{
		"lang": "py", "task": "tasks.add", "id": id, "shadow": nil, "eta": nil, "expires": nil,
		"group": nil, "group_index": nil, "retries": json.Number("0"), "timelimit": []any{nil, nil},
		"root_id": id, "parent_id": nil, "argsrepr": "(2, 3)", "kwargsrepr": "{}",
		"origin": "gen8300@vm", "ignore_result": false,
	}
	if !reflect.DeepEqual(e.Headers, wantHeaders) {
		t.Errorf("Headers = %#v\nwant %#v", e.Headers, wantHeaders)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"content-type", e.ContentType, "application/json"},
		{"content-encoding", e.ContentEncoding, "utf-8"},
		{"correlation_id", e.Properties.CorrelationID, id},
		{"reply_to", e.Properties.ReplyTo, "d5383031-2891-32bb-af8f-30b85c08aa1b"},
		{"delivery_mode", e.Properties.DeliveryMode, entity.Persistent},
		{"expiration", e.Properties.Expiration, ""},
		{"exchange", e.Exchange, ""},
		{"routing_key", e.RoutingKey, "celery"},
		{"priority", e.Properties.Priority, 7},
		{"Priority()", e.Priority(), 7},
		{"body_encoding", e.BodyEncoding, "base64"},
		{"delivery_tag", e.DeliveryTag, "94d8b776-9637-4984-9ad5-2979fc98b1e4"},
		{"redelivered", e.Redelivered, false},
		{"compression", e.Compression, ""},
		{"extra", len(e.Properties.Extra), 0},
		{"list", redis.PriorityKey("celery", e.Priority(), transport.DefaultPrioritySteps, redis.DefaultSep), "celery\x06\x166"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestParseEnvelopeTolerance is the reading side of wire spec §3.4 and §13:
// what Kombu's producers and restores write must parse.
func TestParseEnvelopeTolerance(t *testing.T) {
	const tag = `"delivery_tag": "t-1"`
	const di = `"delivery_info": {"exchange": "ex", "routing_key": "rk"}`
	type want struct {
		body        string
		headers     map[string]any
		priority    int // Properties.Priority as parsed
		clamped     int // Priority()
		exchange    string
		redelivered bool
		contentType string
	}
	base := want{body: `{"a": 1}`, exchange: "ex"}
	with := func(f func(*want)) want { w := base; f(&w); return w }
	cases := []struct {
		name string
		raw  string
		want want
	}{
		{"no body_encoding: plain text body", `{"body": "{\"a\": 1}", "properties": {` + di + `, ` + tag + `}}`, base},
		{"body_encoding null", `{"body": "{\"a\": 1}", "properties": {"body_encoding": null, ` + di + `, ` + tag + `}}`, base},
		{"body_encoding utf-8", `{"body": "{\"a\": 1}", "properties": {"body_encoding": "utf-8", ` + di + `, ` + tag + `}}`, base},
		{"padded base64", `{"body": "eyJhIjogMX0=", "properties": {"body_encoding": "base64", ` + di + `, ` + tag + `}}`, base},
		{"unpadded base64", `{"body": "eyJhIjogMX0", "properties": {"body_encoding": "base64", ` + di + `, ` + tag + `}}`, base},
		{"base64 with line breaks", `{"body": "eyJhIjog\nMX0=", "properties": {"body_encoding": "base64", ` + di + `, ` + tag + `}}`, base},
		{"headers missing", `{"body": "{\"a\": 1}", "properties": {` + di + `, ` + tag + `}}`, base},
		{"headers null", `{"body": "{\"a\": 1}", "headers": null, "properties": {` + di + `, ` + tag + `}}`, base},
		{"headers object", `{"body": "{\"a\": 1}", "headers": {"h": "v", "nan": NaN}, "properties": {` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.headers = map[string]any{"h": "v", "nan": json.Number("NaN")} })},
		{"extra top-level keys", `{"zzz": [1, {"x": null}], "body": "{\"a\": 1}", "x-extra": 1, "properties": {` + di + `, ` + tag + `}}`, base},
		{"ack_emulation=False restore (serializable() shape)",
			`{"body": "eyJhIjogMX0=", "properties": {"delivery_mode": 2, ` + di + `, "priority": 0, "body_encoding": "base64", ` + tag + `}, "content-type": "application/json", "content-encoding": "utf-8", "headers": {"h": 1}, "redelivered": true}`,
			with(func(w *want) {
				w.headers = map[string]any{"h": json.Number("1")}
				w.redelivered = true
				w.contentType = "application/json"
			})},
		{"restored with ack emulation", `{"body": "{\"a\": 1}", "headers": {"redelivered": true}, "properties": {"delivery_info": {"exchange": "ex", "routing_key": "rk", "redelivered": true}, ` + tag + `}}`,
			with(func(w *want) { w.headers = map[string]any{"redelivered": true}; w.redelivered = true })},
		{"delivery_info missing", `{"body": "{\"a\": 1}", "properties": {` + tag + `}}`, with(func(w *want) { w.exchange = "" })},
		{"delivery_info empty", `{"body": "{\"a\": 1}", "properties": {"delivery_info": {}, ` + tag + `}}`, with(func(w *want) { w.exchange = "" })},
		{"content-type null", `{"body": "{\"a\": 1}", "content-type": null, "properties": {` + di + `, ` + tag + `}}`, base},
		{"body null", `{"body": null, "properties": {` + di + `, ` + tag + `}}`, with(func(w *want) { w.body = "" })},
		{"priority null", `{"body": "{\"a\": 1}", "properties": {"priority": null, ` + di + `, ` + tag + `}}`, base},
		{"priority digit string", `{"body": "{\"a\": 1}", "properties": {"priority": " 7 ", ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = 7, 7 })},
		{"priority other string", `{"body": "{\"a\": 1}", "properties": {"priority": "high", ` + di + `, ` + tag + `}}`, base},
		{"priority float", `{"body": "{\"a\": 1}", "properties": {"priority": 7.9, ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = 7, 7 })},
		{"priority true", `{"body": "{\"a\": 1}", "properties": {"priority": true, ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = 1, 1 })},
		{"priority 12", `{"body": "{\"a\": 1}", "properties": {"priority": 12, ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = 12, 9 })},
		{"priority -1", `{"body": "{\"a\": 1}", "properties": {"priority": -1, ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = -1, 0 })},
		{"priority huge", `{"body": "{\"a\": 1}", "properties": {"priority": 100000000000000000000, ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = 2147483647, 9 })},
		{"priority huge string", `{"body": "{\"a\": 1}", "properties": {"priority": "-100000000000000000000", ` + di + `, ` + tag + `}}`,
			with(func(w *want) { w.priority, w.clamped = -2147483648, 0 })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := envelope.Parse([]byte(c.raw))
			if err != nil {
				t.Fatalf("ParseEnvelope: %v", err)
			}
			w := c.want
			if string(e.Body) != w.body || e.DeliveryTag != "t-1" || e.Exchange != w.exchange ||
				e.Redelivered != w.redelivered || e.ContentType != w.contentType ||
				e.Properties.Priority != w.priority || e.Priority() != w.clamped {
				t.Errorf("got body %q tag %q exchange %q redelivered %v content-type %q priority %d/%d; want %+v",
					e.Body, e.DeliveryTag, e.Exchange, e.Redelivered, e.ContentType, e.Properties.Priority, e.Priority(), w)
			}
			if w.exchange != "" && e.RoutingKey != "rk" {
				t.Errorf("routing key %q", e.RoutingKey)
			}
			if w.headers != nil && !reflect.DeepEqual(e.Headers, w.headers) {
				t.Errorf("headers = %#v, want %#v", e.Headers, w.headers)
			}
		})
	}
}

// TestParseEnvelopeErrors checks that what cannot be a Kombu envelope is an
// error wrapping ErrMalformed.
func TestParseEnvelopeErrors(t *testing.T) {
	for _, raw := range []string{
		``, `not json`, `{"body": "x", "properties": {"delivery_tag": "t"}`, // truncated
		`[]`, `"string"`, `null`, `42`,
		`{}`, `{"body": "x"}`, `{"body": "x", "properties": {}}`, `{"body": "x", "properties": null}`,
		`{"body": "x", "properties": {"delivery_tag": ""}}`,
		`{"body": "!!!", "properties": {"body_encoding": "base64", "delivery_tag": "t"}}`,
		`{"body": "eA==", "properties": {"body_encoding": "rot13", "delivery_tag": "t"}}`,
		`{"properties": {"delivery_tag": "t"}}`,
	} {
		if e, err := envelope.Parse([]byte(raw)); !errors.Is(err, transport.ErrMalformed) {
			t.Errorf("ParseEnvelope(%q) = %+v, %v; want ErrMalformed", raw, e, err)
		}
	}
}

// TestMarkRedelivered checks Kombu's restore marking (§3.3, §9.5): the two
// flags are added (or set in place), every other byte is what Python's
// json.dumps(json.loads(x)) writes, and Kombu's edge cases are kept.
func TestMarkRedelivered(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"captured plain message", plainCaptured, plainRestored},
		{"idempotent", plainRestored, plainRestored},
		{"flags already present but false",
			`{"body": "", "headers": {"redelivered": false, "x": 1}, "properties": {"delivery_info": {"redelivered": false, "exchange": ""}, "delivery_tag": "t"}}`,
			`{"body": "", "headers": {"redelivered": true, "x": 1}, "properties": {"delivery_info": {"redelivered": true, "exchange": ""}, "delivery_tag": "t"}}`},
		{"headers missing: nothing marked (Kombu's KeyError)",
			`{"body": "", "properties": {"delivery_info": {"exchange": ""}, "delivery_tag": "t"}}`,
			`{"body": "", "properties": {"delivery_info": {"exchange": ""}, "delivery_tag": "t"}}`},
		{"headers null: a fresh object (Kombu would lose the message)",
			`{"body": "", "headers": null, "properties": {"delivery_info": {"exchange": ""}, "delivery_tag": "t"}}`,
			`{"body": "", "headers": {"redelivered": true}, "properties": {"delivery_info": {"exchange": "", "redelivered": true}, "delivery_tag": "t"}}`},
		{"delivery_info missing: only the header flag",
			`{"body": "", "headers": {}, "properties": {"delivery_tag": "t"}}`,
			`{"body": "", "headers": {"redelivered": true}, "properties": {"delivery_tag": "t"}}`},
		{"compact Go JSON becomes Python's layout, key order kept",
			`{"properties":{"delivery_tag":"t","delivery_info":{"routing_key":"q","exchange":""}},"headers":{"z":1,"a":[1,2]},"body":"eA=="}`,
			`{"properties": {"delivery_tag": "t", "delivery_info": {"routing_key": "q", "exchange": "", "redelivered": true}}, "headers": {"z": 1, "a": [1, 2], "redelivered": true}, "body": "eA=="}`},
		{"numbers, escapes and non-JSON tokens kept",
			`{"body": "", "headers": {"big": 123456789012345678901234567890, "f": 1795550496.3968723, "e": 1e+16, "nan": NaN, "inf": -Infinity, "u": "\u00e9\ud83d\ude00<&>"}, "properties": {"delivery_info": {}, "delivery_tag": "t"}}`,
			`{"body": "", "headers": {"big": 123456789012345678901234567890, "f": 1795550496.3968723, "e": 1e+16, "nan": NaN, "inf": -Infinity, "u": "\u00e9\ud83d\ude00<&>", "redelivered": true}, "properties": {"delivery_info": {"redelivered": true}, "delivery_tag": "t"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := envelope.MarkRedelivered([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
	for _, raw := range []string{`not json`, `[1]`, `{"headers": {}}`, `{"headers": {}, "properties": 1}`} {
		if _, err := envelope.MarkRedelivered([]byte(raw)); !errors.Is(err, transport.ErrMalformed) {
			t.Errorf("MarkRedelivered(%q) = %v, want ErrMalformed", raw, err)
		}
	}
	if e, err := envelope.Parse([]byte(plainRestored)); err != nil || !e.Redelivered || e.Headers["redelivered"] != true {
		t.Errorf("restored envelope parses as %+v, %v", e, err)
	}
}

// TestUnackedValue checks the unacked hash value ([envelope, exchange,
// routing_key], §9.1) both ways.
func TestUnackedValue(t *testing.T) {
	v := redis.UnackedValue([]byte(plainCaptured), "ex_direct", "rk.\u00e9")
	want := `[` + plainCaptured + `, "ex_direct", "rk.\u00e9"]`
	if string(v) != want {
		t.Errorf("UnackedValue:\n got %s\nwant %s", v, want)
	}
	env, ex, rk, err := redis.ParseUnackedValue(v)
	if err != nil || string(env) != plainCaptured || ex != "ex_direct" || rk != "rk.é" {
		t.Errorf("ParseUnackedValue = %s, %q, %q, %v", env, ex, rk, err)
	}
	for _, bad := range []string{`{}`, `[1, 2]`, `nope`} {
		if _, _, _, err := redis.ParseUnackedValue([]byte(bad)); !errors.Is(err, transport.ErrMalformed) {
			t.Errorf("ParseUnackedValue(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	tag, ex, rk, err := envelope.Route([]byte(celeryCaptured))
	if err != nil || tag != "94d8b776-9637-4984-9ad5-2979fc98b1e4" || ex != "" || rk != "celery" {
		t.Errorf("EnvelopeRoute = %q, %q, %q, %v", tag, ex, rk, err)
	}
}

// TestExtractTag checks the tag is found in envelopes that do not parse
// as a whole, so malformed messages can still be settled.
func TestExtractTag(t *testing.T) {
	cases := []struct {
		raw, tag string
	}{
		{plainCaptured, "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"},
		{`{"body": "!!!", "properties": {"body_encoding": "base64", "delivery_tag": "abc"}}`, "abc"},
		{`{"body": "x", "properties": {"delivery_tag": "trunc-1"`, "trunc-1"},
		{`garbage "delivery_tag" : "g-2" garbage`, "g-2"},
		{`{"body": "x", "properties": {}}`, ""},
		{`{"delivery_tag": "top-level-is-not-it"}`, ""},
		{`not json`, ""},
	}
	for _, c := range cases {
		tag, ok := envelope.ExtractTag([]byte(c.raw))
		if tag != c.tag || ok != (c.tag != "") {
			t.Errorf("ExtractTag(%q) = %q, %v; want %q", c.raw, tag, ok, c.tag)
		}
	}
	if !strings.Contains(plainCaptured, `"delivery_tag"`) {
		t.Fatal("fixture")
	}
}
