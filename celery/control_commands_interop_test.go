package celery

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu/internal/testenv"
)

// cliReply runs `celery <kind> <args...> -d node --json` and returns
// node's reply (inspect prints {node: reply}, control [{node: reply}]).
func (ix *interop) cliReply(node, kind string, args ...string) any {
	ix.t.Helper()
	out := ix.celeryCLI(append(append([]string{kind}, args...), "-d", node, "--json", "-t", "3")...)
	line := lastLine(out)
	var replies []map[string]any
	if err := json.Unmarshal(line, &replies); err != nil {
		var one map[string]any
		if err := json.Unmarshal(line, &one); err != nil {
			ix.t.Fatalf("celery %s %v: output %q", kind, args, out)
		}
		replies = append(replies, one)
	}
	for _, r := range replies {
		if v, ok := r[node]; ok {
			return v
		}
	}
	ix.t.Fatalf("celery %s %v: no reply from %s in %s", kind, args, node, out)
	return nil
}

// replyShape is what two workers' replies to one command must share: the
// JSON type, and for a dict the "ok"/"error" key it answers with.
func replyShape(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		for _, k := range []string{"ok", "error"} {
			if _, has := v[k]; has {
				return "dict:" + k
			}
		}
		return "dict"
	case []any:
		return "list"
	case string:
		return "string"
	}
	return fmt.Sprintf("%T", v)
}

// Proves every remote-control command Celery's worker answers, both ways
// and on both version sets:
//   - Celery's own `celery inspect` / `celery control` against the Go
//     worker gets, for each command, a reply of the same shape as a real
//     Python worker's (the same "ok"/"error" form, list or dict), with
//     the same text where Celery's is fixed (rate_limit, time_limit,
//     add_consumer, cancel_consumer, pool_grow, pool_shrink, autoscale,
//     pool_restart, revoke (5.2's text), terminate, ping, query_task,
//     active, reserved, scheduled, and on Celery 5.3+
//     revoke_by_stamped_headers), and
//     the command takes effect (rate and time limits set, a queue consumed
//     and cancelled, the pool grown and shrunk, events on and off);
//   - the Go Control API sends the same commands to the Python worker (a
//     prefork worker, so the pool commands work there) and gets its replies;
//   - the aliases (dump_conf, dump_tasks, ...), election, objgraph and an
//     unknown command are answered in Python's shape; memsample and memdump
//     tell the Go worker's memory (Python's need psutil); conf answers only
//     with Celery setting names; heartbeat makes the Go worker send a
//     worker-heartbeat event at once;
//   - shutdown stops the Go worker (from `celery control shutdown`) and
//     the Python worker (from Go Control), neither replying.
func TestControlEveryCommandInterop(t *testing.T) {
	ix := newInterop(t)
	ctx := context.Background()
	testenv.StartCeleryWorker(t, testenv.CeleryWorker{Python: ix.py, Dir: testdataDir(t), Queue: ix.pyQueue, Node: "pyall",
		Pool: "prefork", Events: true, Env: ix.env(), LogAfter: 30 * time.Second})
	goNode := "go-" + uuid.NewString()[:8] + "@testhost"
	var g goHandlers
	w := ix.goWorker(g.register(ix), WithHostname(goNode), WithConcurrency(2), WithEvents(), WithoutHeartbeat())
	if v, err := ix.get(ix.send("tasks.add", []any{1, 1}, nil)); err != nil || fmt.Sprint(v) != "2" {
		t.Fatalf("python worker: %v %v", v, err)
	}
	ctl := NewControl(ix.conn)
	pings, err := ctl.Ping(ctx, WithPattern("pyall-*", "glob"), WithReplyTimeout(2*time.Second))
	if err != nil || len(pings) != 1 {
		t.Fatalf("ping the Python worker: %+v %v", pings, err)
	}
	pyNode := pings[0].Hostname
	toPython := func(method string, args map[string]any) any {
		t.Helper()
		r, err := ctl.Broadcast(ctx, method, args, WithDestination(pyNode), WithReplyTimeout(3*time.Second))
		if err != nil || len(r) != 1 {
			t.Fatalf("%s to the Python worker: %+v %v", method, r, err)
		}
		return r[0].Value
	}
	toGo := func(method string, args map[string]any) any {
		t.Helper()
		r, err := ctl.Broadcast(ctx, method, args, WithDestination(goNode), WithReplyTimeout(3*time.Second))
		if err != nil || len(r) != 1 {
			t.Fatalf("%s to the Go worker: %+v %v", method, r, err)
		}
		return r[0].Value
	}

	extra := "extra-" + ix.goQueue
	unknownID := uuid.NewString()
	cases := []struct {
		kind   string   // inspect or control: the Celery command line
		cli    []string // the command and its arguments there
		args   map[string]any
		exact  bool                                     // Go's reply equals Python's
		since  string                                   // the Celery version that has the command
		effect func(t *testing.T, goReply, pyReply any) // what the command did
	}{
		{kind: "control", cli: []string{"rate_limit", "tasks.add", "100/m"}, args: map[string]any{"task_name": "tasks.add", "rate_limit": "100/m"}, exact: true,
			effect: func(t *testing.T, _, _ any) {
				if l := w.limiter("tasks.add"); l == nil {
					t.Error("rate_limit: the Go worker has no limiter for tasks.add")
				}
			}},
		{kind: "control", cli: []string{"rate_limit", "tasks.add", "0"}, args: map[string]any{"task_name": "tasks.add", "rate_limit": "0"}, exact: true},
		{kind: "control", cli: []string{"rate_limit", "tasks.nope", "1/s"}, args: map[string]any{"task_name": "tasks.nope", "rate_limit": "1/s"}, exact: true},
		{kind: "control", cli: []string{"time_limit", "tasks.add", "30", "60"}, args: map[string]any{"task_name": "tasks.add", "soft": 30, "hard": 60}, exact: true},
		{kind: "control", cli: []string{"add_consumer", extra}, args: map[string]any{"queue": extra}, exact: true,
			effect: func(t *testing.T, _, _ any) {
				if !slices.Contains(w.activeQueues(), extra) {
					t.Errorf("add_consumer: the Go worker consumes %v", w.activeQueues())
				}
			}},
		{kind: "inspect", cli: []string{"active_queues"}},
		{kind: "control", cli: []string{"cancel_consumer", extra}, args: map[string]any{"queue": extra}, exact: true,
			effect: func(t *testing.T, _, _ any) {
				if slices.Contains(w.activeQueues(), extra) {
					t.Errorf("cancel_consumer: the Go worker still consumes %v", w.activeQueues())
				}
			}},
		{kind: "control", cli: []string{"pool_grow", "1"}, args: map[string]any{"n": 1}, exact: true,
			effect: func(t *testing.T, _, _ any) {
				if n := w.poolSize(); n != 3 {
					t.Errorf("pool_grow: pool size %d, want 3", n)
				}
			}},
		{kind: "control", cli: []string{"pool_shrink", "1"}, args: map[string]any{"n": 1}, exact: true,
			effect: func(t *testing.T, _, _ any) {
				if n := w.poolSize(); n != 2 {
					t.Errorf("pool_shrink: pool size %d, want 2", n)
				}
			}},
		{kind: "control", cli: []string{"autoscale", "4", "1"}, args: map[string]any{"max": 4, "min": 1}, exact: true},
		{kind: "control", cli: []string{"pool_restart"}, exact: true},
		// Both workers run with task events (-E, WithEvents). A Python
		// worker started with -E has an empty event group filter (all
		// groups), which its disable_events does not change: it answers
		// "already disabled" and keeps sending. The Go worker does what
		// the command says, so only the reply's shape is compared.
		{kind: "control", cli: []string{"disable_events"},
			effect: func(t *testing.T, _, _ any) {
				if w.taskEventsOn() {
					t.Error("disable_events: task events are on")
				}
			}},
		{kind: "control", cli: []string{"enable_events"},
			effect: func(t *testing.T, _, _ any) {
				if !w.taskEventsOn() {
					t.Error("enable_events: task events are off")
				}
			}},
		{kind: "control", cli: []string{"revoke", unknownID}, args: map[string]any{"task_id": []any{unknownID}}, exact: true},
		{kind: "control", cli: []string{"terminate", "KILL", unknownID}, args: map[string]any{"task_id": []any{unknownID}, "signal": "KILL", "terminate": true}, exact: true},
		{kind: "inspect", cli: []string{"query_task", unknownID}, args: map[string]any{"ids": []any{unknownID}}, exact: true},
		{kind: "inspect", cli: []string{"revoked"}},
		{kind: "inspect", cli: []string{"clock"}},
		{kind: "inspect", cli: []string{"memsample"}},
		{kind: "inspect", cli: []string{"memdump"}},
		{kind: "inspect", cli: []string{"report"}},
		{kind: "inspect", cli: []string{"conf"},
			effect: func(t *testing.T, goReply, _ any) {
				py, _ := toPython("conf", map[string]any{"with_defaults": true}).(map[string]any)
				for k := range goReply.(map[string]any) {
					if _, ok := py[k]; !ok {
						t.Errorf("conf: the Go worker answers with %q, not a Celery setting name", k)
					}
				}
			}},
		{kind: "inspect", cli: []string{"stats"},
			effect: func(t *testing.T, goReply, pyReply any) {
				for _, k := range []string{"broker", "clock", "pid", "pool", "prefetch_count", "rusage", "total", "uptime"} {
					if _, ok := goReply.(map[string]any)[k]; !ok {
						t.Errorf("stats: the Go worker's reply lacks %q", k)
					}
					if _, ok := pyReply.(map[string]any)[k]; !ok {
						t.Errorf("stats: the Python worker's reply lacks %q (the test's list is wrong)", k)
					}
				}
			}},
		{kind: "inspect", cli: []string{"ping"}, exact: true},
		{kind: "control", cli: []string{"revoke_by_stamped_headers", "mtask_id=" + unknownID}, args: map[string]any{"headers": []any{"mtask_id=" + unknownID}},
			exact: true, since: "5.3"},
		{kind: "inspect", cli: []string{"registered"}},
		{kind: "inspect", cli: []string{"active"}, exact: true},
		{kind: "inspect", cli: []string{"reserved"}, exact: true},
		{kind: "inspect", cli: []string{"scheduled"}, exact: true},
	}
	for _, c := range cases {
		if c.since != "" && !testenv.PythonVersionAtLeast(t, "celery", c.since) {
			continue
		}
		method := c.cli[0]
		if method == "revoke" && testenv.PythonVersionAtLeast(t, "celery", "5.3") {
			// Celery 5.3+ writes the ids as a set's repr ("tasks {'id'}
			// flagged as revoked"); the Go worker writes 5.2's text.
			c.exact = false
		}
		goReply := ix.cliReply(goNode, c.kind, c.cli...)
		pyReply := toPython(method, c.args)
		if gs, ps := replyShape(goReply), replyShape(pyReply); (method == "memsample" || method == "memdump") && noPsutil(pyReply) {
			// Without psutil (not a Celery dependency) a Python worker
			// cannot tell its memory; a Go worker always can.
			if gs != "string" {
				t.Errorf("%s: the Go worker replied %s %v", method, gs, goReply)
			}
		} else if gs != ps {
			t.Errorf("%s: the Go worker replied %s %v, the Python worker %s %v", method, gs, goReply, ps, pyReply)
		} else if c.exact && !reflect.DeepEqual(normalizeReply(goReply, goNode, pyNode), normalizeReply(pyReply, pyNode, pyNode)) {
			t.Errorf("%s: the Go worker replied %v, the Python worker %v", method, goReply, pyReply)
		}
		if c.effect != nil {
			c.effect(t, goReply, pyReply)
		}
	}

	// Aliases and the commands the CLI does not offer, through Go Control
	// to both workers.
	for _, method := range []string{"dump_conf", "dump_tasks", "dump_active", "dump_reserved", "dump_schedule", "dump_revoked", "election", "objgraph", "no_such_command"} {
		args := map[string]any{}
		if method == "election" {
			args = map[string]any{"id": "e1", "topic": "t", "action": nil}
		}
		gr, pr := toGo(method, args), toPython(method, args)
		if gs, ps := replyShape(gr), replyShape(pr); gs != ps {
			t.Errorf("%s: the Go worker replied %s %v, the Python worker %s %v", method, gs, gr, ps, pr)
		}
	}

	// heartbeat: the Go worker (started without periodic heartbeats) sends
	// one at once.
	rctx, stopRecv := context.WithCancel(ctx)
	beats := make(chan string, 16)
	ready := make(chan struct{})
	go func() {
		_ = NewEventReceiver(ix.conn).Run(rctx, func(ev Event) {
			if ev.Type == "worker-heartbeat" && ev.Hostname == goNode { // the Python worker beats too
				beats <- ev.Hostname
			}
		}, func() { close(ready) }, nil)
	}()
	<-ready
	if r := ix.cliReply(goNode, "control", "heartbeat"); r != nil {
		t.Errorf("heartbeat replied %v, want null as Celery", r)
	}
	select {
	case h := <-beats:
		if h != goNode {
			t.Errorf("heartbeat from %s, want %s", h, goNode)
		}
	case <-time.After(5 * time.Second):
		t.Error("the heartbeat command sent no worker-heartbeat event")
	}
	stopRecv()
	if r := toPython("heartbeat", nil); r != nil {
		t.Errorf("heartbeat to Python replied %v", r)
	}

	// shutdown, both ways.
	// The command line exits 69 (EX_UNAVAILABLE) when no node replied, as
	// for a Python worker, which does not reply to shutdown either.
	out, _, _ := ix.celeryCLIStatus("control", "shutdown", "-d", goNode, "--json", "-t", "2")
	if strings.Contains(string(out), goNode) {
		t.Errorf("the Go worker replied to shutdown: %s", out)
	}
	select {
	case <-w.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("celery control shutdown did not stop the Go worker")
	}
	if _, err := ctl.Broadcast(ctx, "shutdown", nil, WithDestination(pyNode), WithoutReply()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := ctl.Ping(ctx, WithDestination(pyNode), WithReplyTimeout(time.Second))
		if err == nil && len(r) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Python worker still answers after shutdown from Go: %+v %v", r, err)
		}
	}
}

// noPsutil reports a memsample or memdump reply of a Python worker
// without psutil.
func noPsutil(v any) bool { return v == nil || strings.Contains(fmt.Sprint(v), "psutil not installed") }

// normalizeReply replaces the node's own name in a reply by the other's
// (add_consumer and friends do not name it; some errors might).
func normalizeReply(v any, node, as string) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal([]byte(strings.ReplaceAll(string(b), node, as)), &out)
	if l, ok := out.([]any); ok {
		sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
	}
	return out
}
