package main

// Tests against real Python Kombu (the interop harness's peer.py) and a
// real Celery worker (celery/testdata/tasks.py).

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// rawList returns queue's step-0 list as stored in Redis (newest first).
func rawList(t *testing.T, k *kt, queue string) []string {
	t.Helper()
	opts, err := redis.ParseURL(k.url)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opts)
	defer rc.Close()
	vs, err := rc.LRange(context.Background(), k.prefix+queue, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func zlibInflate(t *testing.T, b []byte) string {
	t.Helper()
	r, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// peer runs the interop harness's Python Kombu peer with a JSON spec on
// stdin and returns its JSON event lines.
func (k *kt) peer(command string, spec map[string]any) []map[string]any {
	k.t.Helper()
	py := testenv.RequirePython(k.t, "kombu", "redis")
	script, err := filepath.Abs(filepath.Join("..", "..", "interop", "testdata", "peer.py"))
	if err != nil {
		k.t.Fatal(err)
	}
	spec["url"] = k.url
	spec["options"] = map[string]any{"global_keyprefix": k.prefix}
	in, err := json.Marshal(spec)
	if err != nil {
		k.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = py
	cmd := testenv.PythonCommand(ctx, script, command)
	cmd.Stdin = bytes.NewReader(append(in, '\n'))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		k.t.Fatalf("peer.py %s: %v\nstdout: %s\nstderr: %s", command, err, stdout.String(), stderr.String())
	}
	var events []map[string]any
	for _, l := range lines(stdout.String()) {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			k.t.Fatalf("peer.py line %q: %v", l, err)
		}
		events = append(events, e)
	}
	return events
}

// pythonDies has a Python Kombu consumer take one message of queue and
// die (os._exit) without acking it, as a crashed worker would: the
// message stays unacked in Redis. It returns the message's body.
func (k *kt) pythonDies(queue string) string {
	k.t.Helper()
	events := k.peer("consume", map[string]any{
		"queues": []any{map[string]any{"name": queue}}, "count": 1, "action": "die", "prefetch": 1,
	})
	if len(events) != 2 || events[1]["event"] != "message" {
		k.t.Fatalf("python consumer: %v", events)
	}
	return events[1]["payload"].(map[string]any)["text"].(string)
}

// TestUnackedAndRestore proves inspect counts the unacked messages a
// Python consumer left when it died and shows the age of the oldest;
// restore leaves them alone before their visibility timeout, puts them
// back once it has passed (--opt visibility_timeout=1, after 1.1 s) and
// prints the count per queue; restore --all puts back every unacked
// message at once; restored messages come first again, redelivered.
func TestUnackedAndRestore(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	k.runIn("m1\nm2\nm3\n", "publish", "--exchange", "", "--routing-key", "q", "-")
	k.publish("--exchange", "", "--routing-key", "r", "r1")
	equal(t, "python took", k.pythonDies("q"), "m1")
	equal(t, "python took", k.pythonDies("r"), "r1")
	time.Sleep(1100 * time.Millisecond)

	v := k.inspect("--queue", "q")
	if v.Unacked.Count != 2 || v.Unacked.OldestAgeSeconds < 1 || v.Unacked.OldestAgeSeconds > 60 || v.Queues[0].Total != 2 {
		t.Fatalf("inspect after the python consumer died: %+v", v)
	}
	text := k.ok("inspect", "--queue", "q")
	if !regexp.MustCompile(`\nunacked: 2, oldest [1-9][0-9]*s ago\n$`).MatchString(text) {
		t.Fatalf("inspect text:\n%s", text)
	}

	// The default visibility timeout (an hour) has not passed.
	equal(t, "restore before the timeout", k.ok("restore"), "restored 0\n")
	equal(t, "unacked", k.inspect().Unacked.Count, int64(2))
	// With a 1 s visibility timeout, both have expired.
	equal(t, "restore expired", k.ok("restore", "--opt", "visibility_timeout=1"), "q\t1\nr\t1\nrestored 2\n")
	v = k.inspect("--queue", "q", "--queue", "r")
	if v.Unacked.Count != 0 || v.Queues[0].Total != 3 || v.Queues[1].Total != 1 {
		t.Fatalf("after restore: %+v", v)
	}
	ms := messages(t, k.ok("peek", "--queue", "q"))
	equal(t, "order after restore", bodies(ms), []any{"m1", "m2", "m3"})
	if ms[0]["redelivered"] != true || ms[1]["redelivered"] != false {
		t.Fatalf("redelivered flags: %v", ms)
	}

	// --all: no waiting for the timeout.
	equal(t, "python took", k.pythonDies("q"), "m1")
	equal(t, "restore --all", k.ok("restore", "--all"), "q\t1\nrestored 1\n")
	equal(t, "unacked", k.inspect().Unacked.Count, int64(0))
	equal(t, "order after restore --all", bodies(messages(t, k.ok("peek", "--queue", "q"))), []any{"m1", "m2", "m3"})
	equal(t, "restore with nothing unacked", k.ok("restore", "--all"), "restored 0\n")
}

// TestPythonKombuMessages proves that messages written by real Python
// Kombu (JSON, text and bytes bodies, application headers, priorities,
// zlib compression, reply_to and correlation_id) are printed correctly by
// kombu peek and kombu consume, and counted per priority list by inspect
// as Kombu's steps place them.
func TestPythonKombuMessages(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	ex := map[string]any{"name": "pyex", "type": "direct"}
	k.peer("publish", map[string]any{
		"declare_queues": []any{map[string]any{"name": "q", "bindings": []any{map[string]any{"exchange": ex, "routing_key": "rk"}}}},
		"messages": []any{
			map[string]any{"exchange": ex, "routing_key": "rk", "body": map[string]any{"json": map[string]any{"n": 1, "s": "é", "l": []any{1.5, true, nil}}},
				"headers": map[string]any{"x-trace": "abc", "attempt": 2}, "priority": 5, "compression": "zlib",
				"properties": map[string]any{"reply_to": "replies", "correlation_id": "cid-7"}},
			map[string]any{"exchange": ex, "routing_key": "rk", "body": map[string]any{"text": "plain text"}, "priority": 0},
			map[string]any{"exchange": ex, "routing_key": "rk", "body": map[string]any{"bytes": base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0x01})}, "priority": 9},
		},
	})
	v := k.inspect()
	if len(v.Queues) != 1 || v.Queues[0].Name != "q" {
		t.Fatalf("inspect: %+v", v)
	}
	equal(t, "priority lists", v.Queues[0].Priorities, map[string]int{"0": 1, "3": 1, "6": 0, "9": 1}) // Kombu puts 5 in the 3 list
	equal(t, "bindings", len(v.Exchanges["pyex"]), 1)

	check := func(what, out string) {
		t.Helper()
		ms := messages(t, out)
		if len(ms) != 3 {
			t.Fatalf("%s: %s", what, out)
		}
		text, js, bin := ms[0], ms[1], ms[2]
		equal(t, what+" text body", text["body"], "plain text")
		equal(t, what+" text type", []any{text["content_type"], text["content_encoding"], text["priority"]}, []any{"text/plain", "utf-8", json.Number("0")})

		equal(t, what+" json body", js["body"], map[string]any{"n": json.Number("1"), "s": "é", "l": []any{json.Number("1.5"), true, nil}})
		equal(t, what+" json type", []any{js["content_type"], js["content_encoding"], js["priority"]}, []any{"application/json", "utf-8", json.Number("5")})
		equal(t, what+" json headers", js["headers"], map[string]any{"x-trace": "abc", "attempt": json.Number("2"), "compression": "application/x-gzip"})
		props := js["properties"].(map[string]any)
		equal(t, what+" json properties", []any{props["reply_to"], props["correlation_id"], props["priority"]}, []any{"replies", "cid-7", json.Number("5")})
		raw, _ := base64.StdEncoding.DecodeString(js["body_base64"].(string))
		var decoded map[string]any
		if err := json.Unmarshal(raw, &decoded); err != nil || decoded["s"] != "é" {
			t.Fatalf("%s: body_base64 %q is not the decompressed JSON: %v", what, raw, err)
		}
		equal(t, what+" exchange", []any{js["exchange"], js["routing_key"], js["redelivered"]}, []any{"pyex", "rk", false})

		// Bytes that are not UTF-8: no "body", the bytes in body_base64.
		equal(t, what+" bytes body", []any{bin["body"], bin["body_base64"], bin["content_type"], bin["content_encoding"]},
			[]any{nil, "/wAB", "application/data", "binary"})
		for _, m := range ms {
			if tag, _ := m["delivery_tag"].(string); uuid.Validate(tag) != nil {
				t.Fatalf("%s: delivery tag %q", what, tag)
			}
		}
	}
	peeked := k.ok("peek", "--queue", "q")
	check("peek", peeked)
	consumed := k.ok("consume", "--queue", "q", "--count", "3", "--timeout", "30s")
	check("consume", consumed)
	equal(t, "peek = consume", messages(t, peeked), messages(t, consumed))
}

// celeryWorker starts a real Celery worker (solo pool) on tasks.py of
// celery/testdata, on queue, with this test's key prefix; it is stopped
// (its process group) when the test ends.
func (k *kt) celeryWorker(queue string) { k.celeryWorkerEvents(queue, false) }

// celeryWorkerEvents is celeryWorker, with -E and heartbeats when events.
func (k *kt) celeryWorkerEvents(queue string, events bool) {
	t := k.t
	t.Helper()
	py := testenv.RequirePython(t, "celery", "kombu", "redis")
	dir, err := filepath.Abs(filepath.Join("..", "..", "celery", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: py, Dir: dir, Queue: queue, Node: "cli", Events: events,
		Env: []string{"KOMBU_TEST_BROKER=" + k.url, "KOMBU_TEST_BACKEND=" + k.url,
			"KOMBU_TEST_PREFIX=" + k.prefix, "KOMBU_TEST_QUEUE=" + queue, "PYTHONDONTWRITEBYTECODE=1"}})
}

// TestCelerySend proves kombu celery send against a real Celery worker:
// without --wait it prints the task id; with --wait it prints the result
// as JSON (tasks.add, tasks.echo with kwargs and a countdown); a failing
// task exits 1 with the exception in the JSON and on stderr; and with no
// worker, --wait running out exits 3.
func TestCelerySend(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	queue := "cli-" + uuid.NewString()[:8]
	k.celeryWorker(queue)

	var res map[string]any
	decode := func(out string) {
		t.Helper()
		res = nil
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(lines(out)) != 1 {
			t.Fatalf("celery send output %q: %v", out, err)
		}
		if uuid.Validate(res["id"].(string)) != nil {
			t.Fatalf("task id %v", res["id"])
		}
	}
	decode(k.ok("celery", "send", "--task", "tasks.add", "--args", "[2, 3]", "--queue", queue, "--wait", "60s"))
	equal(t, "tasks.add", []any{res["state"], res["result"], len(res)}, []any{"SUCCESS", 5.0, 3})

	decode(k.ok("celery", "send", "--task", "tasks.echo", "--args", `["a"]`, "--kwargs", `{"k": {"n": 1}}`,
		"--queue", queue, "--countdown", "0.5", "--priority", "3", "--wait", "60s"))
	equal(t, "tasks.echo", res["result"], map[string]any{"args": []any{"a"}, "kwargs": map[string]any{"k": map[string]any{"n": 1.0}}})

	r := k.run("celery", "send", "--task", "tasks.fail", "--args", `["no luck"]`, "--queue", queue, "--wait", "60s")
	decode(r.stdout)
	if r.code != 1 || res["state"] != "FAILURE" || res["exc_type"] != "ValueError" || res["exc_message"] != "no luck" ||
		res["exc_module"] != "builtins" || !strings.Contains(res["traceback"].(string), "ValueError: no luck") {
		t.Fatalf("tasks.fail: exit %d, result %v", r.code, res)
	}
	if ls := lines(r.stderr); len(ls) != 1 || !strings.HasPrefix(ls[0], "kombu celery: task "+res["id"].(string)+" failed: ValueError: no luck") {
		t.Fatalf("tasks.fail stderr %q", r.stderr)
	}

	out := k.ok("celery", "send", "--task", "tasks.add", "--args", "[1, 1]", "--queue", queue)
	if ls := lines(out); len(ls) != 1 || uuid.Validate(ls[0]) != nil {
		t.Fatalf("celery send without --wait printed %q, want the task id", out)
	}

	r = k.run("celery", "send", "--task", "tasks.add", "--args", "[1, 1]", "--queue", "nobody-"+queue, "--wait", "300ms")
	if r.code != 3 || r.stdout != "" || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "no result within 300ms") {
		t.Fatalf("no worker: exit %d, stdout %q, stderr %q; want 3", r.code, r.stdout, r.stderr)
	}
	// What was sent there is a Celery message, for Celery's own queue.
	ms := messages(t, k.ok("peek", "--queue", "nobody-"+queue))
	if len(ms) != 1 || ms[0]["headers"].(map[string]any)["task"] != "tasks.add" || ms[0]["routing_key"] != "nobody-"+queue {
		t.Fatalf("peek of the Celery message: %v", ms)
	}
}
