package celery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/testenv"
	_ "github.com/kombu-go/kombu/memory"
)

// spec31 is the canonical Celery 5.2.6 message of the wire spec §3.1:
// add.apply_async((2, 3), priority=7), as LPUSHed to celery\x06\x166.
const spec31 = `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen8300@vm", "ignore_result": false}, "properties": {"correlation_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "reply_to": "d5383031-2891-32bb-af8f-30b85c08aa1b", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776-9637-4984-9ad5-2979fc98b1e4"}}`

func captured(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "captured", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memConn opens a private in-memory broker.
func memConn(t *testing.T) *kombu.Connection {
	t.Helper()
	conn, err := kombu.Dial(context.Background(), "memory://"+uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// receive puts a raw envelope on a queue and takes it back as a consumer
// sees it, with Celery's accept list.
func receive(t *testing.T, raw []byte) *entity.Message {
	t.Helper()
	ctx := context.Background()
	conn := memConn(t)
	var env struct {
		Properties struct {
			Priority     int `json:"priority"`
			DeliveryInfo struct {
				RoutingKey string `json:"routing_key"`
			} `json:"delivery_info"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	q := env.Properties.DeliveryInfo.RoutingKey
	if _, err := conn.Transport().PublishRaw(ctx, "", q, env.Properties.Priority, raw, false); err != nil {
		t.Fatal(err)
	}
	m, err := conn.Get(ctx, q, kombu.GetAccept("json"), kombu.GetNoAck())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func deliveryTag(t *testing.T, raw []byte) string {
	var env struct {
		Properties struct {
			DeliveryTag string `json:"delivery_tag"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	return env.Properties.DeliveryTag
}

// Proves: a message built field by field is byte-identical to the one
// Celery 5.2.6 wrote (wire spec §3.1): header order, null fields, argsrepr,
// body [args, kwargs, embed], properties order.
func TestEnvelopeByteIdenticalToSpec(t *testing.T) {
	m := &TaskMessage{
		ID: "7677e5d9-750f-4830-9a65-bfd803dbaf47", Task: "tasks.add",
		Args: []any{2, 3}, Kwargs: map[string]any{},
		Origin: "gen8300@vm", ReplyTo: "d5383031-2891-32bb-af8f-30b85c08aa1b", Priority: 7,
	}
	got, err := m.MarshalEnvelope("", "celery", "94d8b776-9637-4984-9ad5-2979fc98b1e4")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != spec31 {
		t.Fatalf("envelope differs from Celery's\n got: %s\nwant: %s", got, spec31)
	}
}

// Proves: decoding each captured Celery message and encoding it again gives
// the same bytes (eta and expires as isoformat, the expiration property,
// link/link_error signatures, ('boom',) argsrepr), so nothing is lost or
// reordered in either direction.
func TestCapturedEnvelopesRoundTrip(t *testing.T) {
	for _, name := range []string{"v2_priority.json", "v2_countdown_expires.json", "v2_link.json", "v2_fail.json", "v2_expired.json"} {
		t.Run(name, func(t *testing.T) {
			raw := captured(t, name)
			tm, err := DecodeMessage(receive(t, raw))
			if err != nil {
				t.Fatal(err)
			}
			if tm.Protocol != 2 {
				t.Fatalf("protocol %d", tm.Protocol)
			}
			got, err := tm.MarshalEnvelope("", "celery", deliveryTag(t, raw))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(raw) {
				t.Fatalf("re-encoded envelope differs\n got: %s\nwant: %s", got, raw)
			}
		})
	}
}

// Proves: the client builds what Celery's apply_async((2, 3), countdown=10,
// expires=60) builds at the same instant: eta and expires from the clock,
// the expiration property 60000, the same headers.
func TestClientMessageLikeApplyAsync(t *testing.T) {
	raw := captured(t, "v2_countdown_expires.json")
	now := time.Date(2026, 11, 24, 20, 47, 36, 801444000, time.UTC)
	c := NewClient(memConn(t), nil, withClientClock(func() time.Time { return now }),
		WithOrigin("gen19697@vm"), WithReplyTo("8062c4cb-d5df-364b-abec-e6d32d8827bb"))
	m, err := c.NewMessage("tasks.add", []any{2, 3}, map[string]any{},
		WithTaskID("a02cbacd-fad8-4543-843f-c47fa2c9e6a6"), WithCountdown(10*time.Second), WithExpiresIn(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.MarshalEnvelope("", "celery", deliveryTag(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(raw) {
		t.Fatalf("client message differs from Celery's\n got: %s\nwant: %s", got, raw)
	}
}

// Proves: SendTask puts the message on the queue's list for its priority
// through the transport, with a fresh delivery tag, and Celery's queue
// declaration (binding celery -> celery).
func TestSendTaskPublishes(t *testing.T) {
	ctx := context.Background()
	conn := memConn(t)
	c := NewClient(conn, nil)
	res, err := c.SendTask(ctx, "tasks.add", []any{1, 2}, nil, WithQueue("q1"), WithPriority(5))
	if err != nil {
		t.Fatal(err)
	}
	m, err := conn.Get(ctx, "q1", kombu.GetNoAck())
	if err != nil {
		t.Fatal(err)
	}
	if m.Headers["id"] != res.ID || m.Properties.CorrelationID != res.ID || m.Properties.Priority != 5 {
		t.Fatalf("headers %v props %+v", m.Headers, m.Properties)
	}
	if m.DeliveryInfo.Exchange != "" || m.DeliveryInfo.RoutingKey != "q1" {
		t.Fatalf("delivery info %+v", m.DeliveryInfo)
	}
	if _, err := uuid.Parse(m.DeliveryTag); err != nil {
		t.Fatalf("delivery tag %q: %v", m.DeliveryTag, err)
	}
	if string(m.Body) != `[[1, 2], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]` {
		t.Fatalf("body %s", m.Body)
	}
}

// Proves: a protocol 1 message (Celery with task_protocol=1: everything in
// the body, no headers) is read into the same fields, eta included.
func TestDecodeProtocol1(t *testing.T) {
	tm, err := DecodeMessage(receive(t, captured(t, "v1_countdown.json")))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 24, 20, 48, 6, 546056000, time.UTC)
	if tm.Protocol != 1 || tm.Task != "tasks.add" || tm.ID != "a7ddf057-20b4-4a20-9ad2-e7a5b76319e1" ||
		!tm.ETA.Equal(want) || len(tm.Args) != 2 || tm.Args[0] != json.Number("7") || tm.Retries != 0 || !tm.UTC {
		t.Fatalf("decoded %+v", tm)
	}
}

// Proves: the hybrid form Celery accepts (protocol 2 headers, protocol 1
// body dict with args) decodes, headers winning over body fields.
func TestDecodeHybrid(t *testing.T) {
	body := `{"task": "tasks.add", "id": "body-id", "args": [1], "kwargs": {"y": 2}, "retries": 1}`
	env := `{"body": "` + b64(body) + `", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"task": "tasks.add", "id": "hdr-id", "retries": 2, "custom": "x"}, "properties": {"delivery_info": {"exchange": "", "routing_key": "h"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t1"}}`
	tm, err := DecodeMessage(receive(t, []byte(env)))
	if err != nil {
		t.Fatal(err)
	}
	if tm.ID != "hdr-id" || tm.Retries != 2 || tm.Kwargs["y"] != json.Number("2") || tm.Headers["custom"] != "x" {
		t.Fatalf("decoded %+v", tm)
	}
}

// Proves: messages that are not runnable task messages fail with
// ErrInvalidMessage instead of panicking.
func TestDecodeInvalid(t *testing.T) {
	for name, c := range map[string]struct{ headers, body string }{
		"no id":          {`{"task": "t"}`, `[[], {}, {}]`},
		"args not list":  {`{"task": "t", "id": "i"}`, `[{"a": 1}, {}, {}]`},
		"body not list":  {`{"task": "t", "id": "i"}`, `"x"`},
		"kwargs list":    {`{"task": "t", "id": "i"}`, `[[], [], {}]`},
		"v1 no task":     {`{}`, `{"id": "i", "args": []}`},
		"not a dict":     {`{}`, `[1]`},
		"bad eta":        {`{"task": "t", "id": "i", "eta": "tomorrow"}`, `[[], {}, {}]`},
		"bad callbacks":  {`{"task": "t", "id": "i"}`, `[[], {}, {"callbacks": [1]}]`},
		"embed not dict": {`{"task": "t", "id": "i"}`, `[[], {}, 3]`},
	} {
		env := `{"body": "` + b64(c.body) + `", "content-encoding": "utf-8", "content-type": "application/json", "headers": ` + c.headers + `, "properties": {"delivery_info": {"exchange": "", "routing_key": "bad"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "t"}}`
		if _, err := DecodeMessage(receive(t, []byte(env))); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%s: err %v, want ErrInvalidMessage", name, err)
		}
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// Proves: eta/expires are written as Python's isoformat writes aware
// datetimes (microseconds only when non-zero, +HH:MM) and read back from
// every form Python writes.
func TestISOTime(t *testing.T) {
	cases := map[string]time.Time{
		"2026-11-24T20:47:46.801444+00:00": time.Date(2026, 11, 24, 20, 47, 46, 801444000, time.UTC),
		"2026-11-24T20:47:46+00:00":        time.Date(2026, 11, 24, 20, 47, 46, 0, time.UTC),
		"2026-11-24T20:47:46.000100+05:30": time.Date(2026, 11, 24, 20, 47, 46, 100000, time.FixedZone("", 5*3600+1800)),
	}
	for want, tm := range cases {
		if got := formatISO(tm); got != want {
			t.Errorf("formatISO = %s, want %s", got, want)
		}
		back, err := parseISO(want, true)
		if err != nil || !back.Equal(tm) {
			t.Errorf("parseISO(%s) = %v, %v", want, back, err)
		}
	}
	for _, s := range []string{"2026-11-24T20:47:46Z", "2026-11-24T20:47:46.8", "2026-11-24 20:47:46+0000"} {
		if _, err := parseISO(s, true); err != nil {
			t.Errorf("parseISO(%s): %v", s, err)
		}
	}
	if got := formatNaiveUTC(time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)); got != "2026-01-02T03:04:05.600000" {
		t.Errorf("formatNaiveUTC = %s", got)
	}
}

// Proves: argsrepr/kwargsrepr follow Celery's saferepr: tuples with the
// one-element comma, single-quoted strings with only ' escaped, Python
// literals, and the depth limit [...].
func TestSafeRepr(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{pyTuple{}, "()"},
		{pyTuple{json.Number("1")}, "(1,)"},
		{pyTuple(normalizeSlice([]any{2, 3})), "(2, 3)"},
		{pyTuple(normalizeSlice([]any{"it's", nil, true, false, 1.5, 1.0, "é\n"})), `('it\'s', None, True, False, 1.5, 1.0, 'é` + "\n" + `')`},
		{normalize(map[string]any{"b": []any{1, map[string]any{"x": []any{[]any{1}}}}, "a": "s"}), `{'a': 's', 'b': [1, {'x': [...]}]}`},
		{normalize(map[string]any{}), "{}"},
	}
	for i, c := range cases {
		if got := safeRepr(c.v, reprMaxSize); got != c.want {
			t.Errorf("case %d: got %q, want %q", i, got, c.want)
		}
	}
}

// Proves: for a spread of arguments, including ones past the 1024-character
// limit, argsrepr and kwargsrepr are exactly what Celery 5.2.6's saferepr
// returns (checked against the real Python code).
func TestSafeReprMatchesPython(t *testing.T) {
	py := testenv.RequirePython(t, "celery")
	long := strings.Repeat("word ", 300)
	many := make([]any, 400)
	for i := range many {
		many[i] = i
	}
	type call struct {
		Args   []any          `json:"args"`
		Kwargs map[string]any `json:"kwargs"`
	}
	calls := []call{
		{[]any{2, 3}, map[string]any{}},
		{[]any{"boom"}, map[string]any{"a": 1.0, "b": nil, "c": true}},
		{[]any{"it's \"q\"", "tab\there", "é€😀"}, map[string]any{"k'ey": "v"}},
		{[]any{[]any{1, []any{2, []any{3, []any{4}}}}}, map[string]any{"d": map[string]any{"e": map[string]any{"f": map[string]any{}}}}},
		{[]any{long}, map[string]any{"long": long}},
		{[]any{many}, map[string]any{"many": many}},
		{[]any{1e16, 1.5e-05, -0.0, 123456789012345678}, map[string]any{}},
		{[]any{}, map[string]any{}},
	}
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	script := `
import json, sys
from celery.utils.saferepr import saferepr
out = []
for c in json.loads(sys.stdin.read()):
    out.append([saferepr(tuple(c["args"]), 1024), saferepr(c["kwargs"], 1024)])
print(json.dumps(out))
`
	_ = py
	cmd := testenv.PythonCommand(context.Background(), "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	outb, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var want [][2]string
	if err := json.Unmarshal(outb, &want); err != nil {
		t.Fatal(err)
	}
	// Go decodes what it sends: compare on the values as Python sees them.
	var back []call
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	if err := dec.Decode(&back); err != nil {
		t.Fatal(err)
	}
	for i, c := range back {
		if got := argsRepr(c.Args); got != want[i][0] {
			t.Errorf("call %d argsrepr:\n got %q\nwant %q", i, got, want[i][0])
		}
		if got := kwargsRepr(c.Kwargs); got != want[i][1] {
			t.Errorf("call %d kwargsrepr:\n got %q\nwant %q", i, got, want[i][1])
		}
	}
}
