package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestCeleryCanvasInspectControlEvents proves the operator commands
// against a real Celery worker (both version sets): kombu celery canvas
// runs a chain and a group and prints their results; inspect ping and
// registered get the worker's replies (--json shaped as celery's);
// control rate_limit and revoke are answered; events --dump prints the
// worker's events as JSON lines; bad usage exits 2 with one line.
func TestCeleryCanvasInspectControlEvents(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	queue := "cliops-" + uuid.NewString()[:8]
	k.celeryWorkerEvents(queue, true)

	chain := `{"chain": [{"task": "tasks.add", "args": [1, 2], "queue": "` + queue + `"}, {"task": "tasks.add", "args": [10], "queue": "` + queue + `"}]}`
	var res map[string]any
	if err := json.Unmarshal([]byte(k.ok("celery", "canvas", "--spec", chain, "--wait", "60s")), &res); err != nil || res["result"] != 13.0 {
		t.Fatalf("canvas chain: %v %v", res, err)
	}
	group := `{"group": [{"task": "tasks.add", "args": [1, 1], "queue": "` + queue + `"}, {"task": "tasks.add", "args": [2, 2], "queue": "` + queue + `"}]}`
	if err := json.Unmarshal([]byte(k.ok("celery", "canvas", "--spec", group, "--wait", "60s")), &res); err != nil ||
		len(res["result"].([]any)) != 2 || res["result"].([]any)[1] != 4.0 {
		t.Fatalf("canvas group: %v %v", res, err)
	}

	var replies map[string]any
	if err := json.Unmarshal([]byte(k.ok("celery", "inspect", "ping", "--json", "--timeout", "3s")), &replies); err != nil {
		t.Fatal(err)
	}
	node := ""
	for host, r := range replies {
		if strings.HasPrefix(host, "cli-") && r.(map[string]any)["ok"] == "pong" {
			node = host
		}
	}
	if node == "" {
		t.Fatalf("inspect ping: %v", replies)
	}
	out := k.ok("celery", "inspect", "registered", "--destination", node)
	if !strings.Contains(out, "-> "+node+": OK") || !strings.Contains(out, "tasks.add") || !strings.Contains(out, "1 node(s) replied") {
		t.Fatalf("inspect registered: %s", out)
	}
	out = k.ok("celery", "control", "rate_limit", "tasks.add", "100/m", "--destination", node, "--json")
	if !strings.Contains(out, "new rate limit set successfully") {
		t.Fatalf("control rate_limit: %s", out)
	}
	id := uuid.NewString()
	out = k.ok("celery", "control", "revoke", id, "--destination", node, "--json")
	if !strings.Contains(out, "flagged as revoked") {
		t.Fatalf("control revoke: %s", out)
	}

	dump := k.ok("celery", "events", "--dump", "--duration", "3s")
	seen := map[string]bool{}
	for _, l := range lines(dump) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("events --dump line %q: %v", l, err)
		}
		seen[ev["type"].(string)] = true
	}
	if !seen["worker-heartbeat"] {
		t.Fatalf("events --dump saw %v", seen)
	}

	if r := k.run("celery", "inspect"); r.code != 2 || !strings.Contains(r.stderr, "missing COMMAND") {
		t.Fatalf("inspect without a command: exit %d %q", r.code, r.stderr)
	}
	if r := k.run("celery", "canvas", "--spec", `{"chain": 3}`); r.code != 2 {
		t.Fatalf("canvas with a bad spec: exit %d %q", r.code, r.stderr)
	}
}

// Proves the positional arguments of `kombu celery control` become the
// arguments Celery's command line sends for each command that takes some,
// and that bad ones are usage errors (exit 2), not a broadcast.
func TestCommandArgs(t *testing.T) {
	cases := []struct {
		cmd  string
		pos  []string
		want string
	}{
		{"revoke", []string{"a", "b"}, `{"task_id":["a","b"]}`},
		{"terminate", []string{"KILL", "a"}, `{"signal":"KILL","task_id":["a"]}`},
		{"revoke_by_stamped_headers", []string{"mtask_id=1"}, `{"headers":["mtask_id=1"]}`},
		{"rate_limit", []string{"tasks.add", "10/s"}, `{"rate_limit":"10/s","task_name":"tasks.add"}`},
		{"time_limit", []string{"tasks.add", "5", "10"}, `{"hard":10,"soft":5,"task_name":"tasks.add"}`},
		{"add_consumer", []string{"q"}, `{"queue":"q"}`},
		{"pool_grow", nil, `{"n":1}`},
		{"autoscale", []string{"4", "1"}, `{"max":4,"min":1}`},
		{"query_task", []string{"a"}, `{"ids":["a"]}`},
	}
	for _, c := range cases {
		args, err := commandArgs(c.cmd, c.pos, "", false, "")
		if err != nil {
			t.Errorf("%s %v: %v", c.cmd, c.pos, err)
			continue
		}
		if b, _ := json.Marshal(args); string(b) != c.want {
			t.Errorf("%s %v: %s, want %s", c.cmd, c.pos, b, c.want)
		}
	}
	for _, bad := range []struct {
		cmd string
		pos []string
	}{{"revoke", nil}, {"revoke_by_stamped_headers", []string{"novalue"}}, {"autoscale", []string{"x", "1"}}, {"ping", []string{"extra"}}, {"time_limit", []string{"t", "soon"}}} {
		var ue usageError
		if _, err := commandArgs(bad.cmd, bad.pos, "", false, ""); !errors.As(err, &ue) {
			t.Errorf("%s %v: %v, want a usage error", bad.cmd, bad.pos, err)
		}
	}
}
