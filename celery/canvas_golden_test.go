package celery

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
)

// capturedMessage is a task message reduced to what both sides must agree
// on: the headers Celery's protocol gives meaning to, the body, the
// properties. reply_to, origin and the header group of a chord (Celery
// makes up a new id for it) are left out; Go's own values for them are
// checked elsewhere.
func reduceMessage(headers map[string]any, body any, props map[string]any, chordHeader bool) map[string]any {
	h := map[string]any{}
	for _, k := range []string{"lang", "task", "id", "root_id", "parent_id", "group", "group_index", "retries", "eta", "expires",
		"timelimit", "shadow", "argsrepr", "kwargsrepr", "ignore_result"} {
		h[k] = headers[k]
	}
	if chordHeader {
		h["group"] = "<chord group>"
	}
	p := map[string]any{}
	for _, k := range []string{"correlation_id", "priority", "delivery_mode"} {
		p[k] = props[k]
	}
	return map[string]any{"headers": h, "body": dropReplyTo(body), "properties": p}
}

// dropReplyTo removes "reply_to" from signature options: Celery puts its
// client's oid there, Go its own.
func dropReplyTo(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "reply_to" {
				continue
			}
			out[k] = dropReplyTo(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = dropReplyTo(e)
		}
		return out
	}
	return v
}

// jsonRoundTrip returns v as decoded JSON, with the queue name q written
// "<queue>" (each side wrote to a queue of its own).
func jsonRoundTrip(v any, q string) any {
	b, _ := json.Marshal(v)
	b = []byte(strings.ReplaceAll(string(b), `"`+q+`"`, `"<queue>"`))
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// Proves (golden messages, both version sets): the task messages Go's
// Client.Apply writes for a chain, a group and a chord are those Celery's
// apply_async writes for the same canvas with the same task ids: the
// headers (task, id, root_id, parent_id, group, group_index, retries, eta,
// expires, timelimit, argsrepr, kwargsrepr...), the body [args, kwargs,
// {callbacks, errbacks, chain, chord}] with the embedded signatures, and
// the properties. Differences between Celery versions: 5.5 numbers the
// members of a plain group (group_index 0, 1, ...) where 5.2 writes null,
// and adds the headers replaced_task_nesting, stamped_headers and stamps;
// Go writes 5.5's group_index and 5.2's header set.
func TestCanvasGoldenMessages(t *testing.T) {
	ix := newInterop(t)
	celery55 := testenv.PythonVersionAtLeast(t, "celery", "5.5")
	ctx := context.Background()
	type canvas struct {
		name  string
		spec  func(q string, ids []string) any
		build func(q string, ids []string) Signature
		chord bool
	}
	task := func(q, id, name string, args ...any) map[string]any {
		return map[string]any{"task": name, "args": args, "queue": q, "id": id}
	}
	sig := func(q, id, name string, args ...any) Signature {
		return NewSignature(name, args, nil).Set("queue", q).Set("task_id", id)
	}
	cases := []canvas{
		{name: "chain",
			spec: func(q string, id []string) any {
				return chainOf(task(q, id[0], "tasks.add", 1, 2), task(q, id[1], "tasks.add", 10), task(q, id[2], "tasks.add", 100))
			},
			build: func(q string, id []string) Signature {
				return Chain(sig(q, id[0], "tasks.add", 1, 2), sig(q, id[1], "tasks.add", 10), sig(q, id[2], "tasks.add", 100))
			}},
		{name: "group",
			spec: func(q string, id []string) any {
				g := groupOf(task(q, id[0], "tasks.add", 1, 1), task(q, id[1], "tasks.add", 2, 2))
				g["id"] = id[2]
				return g
			},
			build: func(q string, id []string) Signature {
				return Group(sig(q, id[0], "tasks.add", 1, 1), sig(q, id[1], "tasks.add", 2, 2)).Set("task_id", id[2])
			}},
		{name: "chord", chord: true,
			spec: func(q string, id []string) any {
				return chordOf(task(q, id[2], "tasks.echo"), task(q, id[0], "tasks.add", 1, 1), task(q, id[1], "tasks.add", 2, 2))
			},
			build: func(q string, id []string) Signature {
				return Chord(Group(sig(q, id[0], "tasks.add", 1, 1), sig(q, id[1], "tasks.add", 2, 2)), sig(q, id[2], "tasks.echo"))
			}},
	}
	for _, c := range cases {
		ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
		pyQ, goQ := "golden-py-"+uuid.NewString()[:8], "golden-go-"+uuid.NewString()[:8]
		var py []struct {
			Headers    map[string]any
			Body       any
			Properties map[string]any
		}
		ix.python(&py, "capture", map[string]any{"canvas": c.spec(pyQ, ids), "queue": pyQ})
		if _, err := ix.client.Apply(ctx, c.build(goQ, ids)); err != nil {
			t.Fatalf("%s: Apply: %v", c.name, err)
		}
		var goMsgs []map[string]any
		for {
			m, err := ix.conn.Get(ctx, goQ, kombu.GetWait(time.Second))
			if err != nil {
				break
			}
			var body any
			if err := json.Unmarshal(m.Body, &body); err != nil {
				t.Fatal(err)
			}
			props := map[string]any{"correlation_id": m.Properties.CorrelationID, "priority": m.Properties.Priority,
				"delivery_mode": int(m.Properties.DeliveryMode)}
			goMsgs = append(goMsgs, reduceMessage(m.Headers, body, props, c.chord))
			_ = m.Ack(ctx)
		}
		if len(goMsgs) != len(py) || len(py) == 0 {
			t.Errorf("%s: Go wrote %d messages, Celery %d", c.name, len(goMsgs), len(py))
			continue
		}
		for i := range py {
			want := reduceMessage(py[i].Headers, py[i].Body, py[i].Properties, c.chord)
			if c.name == "group" && !celery55 {
				want["headers"].(map[string]any)["group_index"] = i // 5.2 writes null
			}
			w, g := jsonRoundTrip(want, pyQ), jsonRoundTrip(goMsgs[i], goQ)
			if !reflect.DeepEqual(w, g) {
				t.Errorf("%s message %d:\n celery %v\n     go %v", c.name, i, w, g)
			}
		}
	}

}
