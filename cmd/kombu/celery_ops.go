package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu/celery"
)

// broadcastFlags are the flags of inspect and control.
type broadcastFlags struct {
	dest    string
	timeout time.Duration
	json    bool
	args    string
}

func (b *broadcastFlags) register(fsSet interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}) {
	fsSet.StringVar(&b.dest, "destination", "", "comma-separated node names (default: every worker)")
	fsSet.DurationVar(&b.timeout, "timeout", time.Second, "how long to collect replies")
	fsSet.BoolVar(&b.json, "json", false, "print the replies as one JSON object {node: reply}")
	fsSet.StringVar(&b.args, "args", "", "the command's arguments as a JSON object (for commands not listed)")
}

func (b *broadcastFlags) options() []celery.BroadcastOption {
	opts := []celery.BroadcastOption{celery.WithReplyTimeout(b.timeout)}
	if b.dest != "" {
		opts = append(opts, celery.WithDestination(strings.Split(b.dest, ",")...))
	}
	return opts
}

// commandArgs turns positional arguments into a command's arguments, as
// Celery's command line does for the commands it knows.
func commandArgs(cmd string, pos []string, raw string, terminate bool, signal string) (map[string]any, error) {
	args := map[string]any{}
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			return nil, usageError{fmt.Sprintf("--args: %v", err)}
		}
	}
	need := func(n int, what string) error {
		if len(pos) < n {
			return usageError{fmt.Sprintf("%s needs %s", cmd, what)}
		}
		return nil
	}
	switch cmd {
	case "query_task":
		args["ids"] = toAny(pos)
	case "revoke":
		if err := need(1, "task ids"); err != nil {
			return nil, err
		}
		args["task_id"] = toAny(pos)
		if terminate {
			args["terminate"] = true
		}
		if signal != "" {
			args["signal"] = signal
		}
	case "revoke_by_stamped_headers":
		if err := need(1, "name=value stamps"); err != nil {
			return nil, err
		}
		for _, p := range pos {
			if !strings.Contains(p, "=") {
				return nil, usageError{fmt.Sprintf("revoke_by_stamped_headers: %q is not name=value", p)}
			}
		}
		args["headers"] = toAny(pos)
		if terminate {
			args["terminate"] = true
		}
		if signal != "" {
			args["signal"] = signal
		}
	case "autoscale":
		if err := need(2, "max and min"); err != nil {
			return nil, err
		}
		for i, k := range []string{"max", "min"} {
			v, err := strconv.Atoi(pos[i])
			if err != nil {
				return nil, usageError{"autoscale " + k + ": " + err.Error()}
			}
			args[k] = v
		}
	case "terminate":
		if err := need(2, "a signal and task ids"); err != nil {
			return nil, err
		}
		args["signal"], args["task_id"] = pos[0], toAny(pos[1:])
	case "rate_limit":
		if err := need(2, "a task name and a rate (10/s, 100/m, 0 to remove)"); err != nil {
			return nil, err
		}
		args["task_name"], args["rate_limit"] = pos[0], pos[1]
	case "time_limit":
		if err := need(2, "a task name, a soft and optionally a hard limit in seconds"); err != nil {
			return nil, err
		}
		args["task_name"] = pos[0]
		soft, err := strconv.ParseFloat(pos[1], 64)
		if err != nil {
			return nil, usageError{"time_limit: soft limit: " + err.Error()}
		}
		args["soft"] = soft
		if len(pos) > 2 {
			hard, err := strconv.ParseFloat(pos[2], 64)
			if err != nil {
				return nil, usageError{"time_limit: hard limit: " + err.Error()}
			}
			args["hard"] = hard
		}
	case "add_consumer", "cancel_consumer":
		if err := need(1, "a queue"); err != nil {
			return nil, err
		}
		args["queue"] = pos[0]
	case "pool_grow", "pool_shrink":
		n := 1
		if len(pos) > 0 {
			v, err := strconv.Atoi(pos[0])
			if err != nil {
				return nil, usageError{cmd + ": " + err.Error()}
			}
			n = v
		}
		args["n"] = n
	default:
		if len(pos) > 0 {
			return nil, usageError{fmt.Sprintf("%s takes no positional arguments (use --args JSON)", cmd)}
		}
	}
	return args, nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func runCeleryInspect(ctx context.Context, e *env, args []string) error {
	return runBroadcast(ctx, e, "inspect", args,
		"Asks workers (Python or Go) what `celery inspect` asks: ping, stats, registered, active, reserved, scheduled, revoked, active_queues, query_task ID..., clock, conf, report.")
}

func runCeleryControl(ctx context.Context, e *env, args []string) error {
	return runBroadcast(ctx, e, "control", args,
		"Steers workers as `celery control` does: revoke ID... [--terminate [--signal S]], terminate SIGNAL ID..., rate_limit TASK RATE, time_limit TASK SOFT [HARD], enable_events, disable_events, heartbeat, shutdown, pool_grow/pool_shrink [N], add_consumer/cancel_consumer QUEUE.")
}

func runBroadcast(ctx context.Context, e *env, name string, args []string, summary string) error {
	fs := newFlags(e, "celery "+name, "COMMAND [ARGS...] [flags]", summary)
	var cf connFlags
	cf.register(fs)
	var bf broadcastFlags
	bf.register(fs)
	terminate := fs.Bool("terminate", false, "revoke: also stop the task if it is running")
	signal := fs.String("signal", "", "revoke --terminate: signal name for Python workers (default TERM)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"missing COMMAND"}
	}
	cmd := fs.Arg(0)
	cargs, err := commandArgs(cmd, fs.Args()[1:], bf.args, *terminate, *signal)
	if err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	replies, err := celery.NewControl(conn).Broadcast(ctx, cmd, cargs, bf.options()...)
	if err != nil {
		return err
	}
	if len(replies) == 0 {
		return fmt.Errorf("no nodes replied within %s: %w", bf.timeout, errTimeout)
	}
	sort.Slice(replies, func(i, j int) bool { return replies[i].Hostname < replies[j].Hostname })
	if bf.json {
		out := map[string]any{}
		for _, r := range replies {
			out[r.Hostname] = r.Value
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(b))
		return nil
	}
	failed := 0
	for _, r := range replies {
		status := "OK"
		if r.Err() != nil {
			status, failed = "ERROR", failed+1
		}
		b, _ := json.MarshalIndent(r.Value, "    ", "  ")
		fmt.Fprintf(e.stdout, "-> %s: %s\n    %s\n", r.Hostname, status, b)
	}
	fmt.Fprintf(e.stdout, "\n%d node(s) replied.\n", len(replies))
	if failed > 0 {
		return fmt.Errorf("%d node(s) replied with an error", failed)
	}
	return nil
}

func runCeleryEvents(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "celery events", "[flags]",
		"Watches the event stream of every worker (Python or Go): with --dump, one JSON line per event; otherwise a live view every --every: workers with heartbeat age, processed and active tasks, then task counts by state and the latest failures.")
	var cf connFlags
	cf.register(fs)
	dump := fs.Bool("dump", false, "print each event as one JSON line")
	duration := fs.Duration("duration", 0, "stop after this long (default: until interrupted)")
	every := fs.Duration("every", 2*time.Second, "refresh the live view this often")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	state := celery.NewEventState()
	handle := state.Apply
	if *dump {
		handle = func(ev celery.Event) {
			b, err := json.Marshal(ev.Fields)
			if err == nil {
				fmt.Fprintln(e.stdout, string(b))
			}
		}
	}
	done := make(chan error, 1)
	go func() {
		done <- celery.NewEventReceiver(conn).Run(ctx, handle, nil, func(err error) {
			fmt.Fprintln(e.stderr, "kombu celery events:", oneLine(err))
		})
	}()
	if *dump {
		err := <-done
		if errors.Is(err, context.DeadlineExceeded) {
			return nil
		}
		return err
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			printEventView(e, state)
			return err
		case <-t.C:
			printEventView(e, state)
		}
	}
}

func printEventView(e *env, s *celery.EventState) {
	now := time.Now()
	workers := s.Workers()
	sort.Slice(workers, func(i, j int) bool { return workers[i].Hostname < workers[j].Hostname })
	fmt.Fprintf(e.stdout, "== %s: %d worker(s)\n", now.Format("15:04:05"), len(workers))
	for _, w := range workers {
		status := "offline"
		if w.Alive(now) {
			status = "alive"
		}
		age := "-"
		if !w.LastHeartbeat.IsZero() {
			age = now.Sub(w.LastHeartbeat).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(e.stdout, "  %-40s %-7s heartbeat %-8s processed %-6d active %-4d %s %s\n",
			w.Hostname, status, age, w.Processed, w.Active, w.SwIdent, w.SwVer)
	}
	byState := map[string]int{}
	var failures []celery.TaskInfo
	for _, t := range s.Tasks() {
		byState[t.State]++
		if t.State == "FAILURE" {
			failures = append(failures, t)
		}
	}
	var parts []string
	for _, k := range sortedKeys(byState) {
		parts = append(parts, fmt.Sprintf("%s %d", k, byState[k]))
	}
	fmt.Fprintf(e.stdout, "  tasks: %s\n", strings.Join(parts, ", "))
	sort.Slice(failures, func(i, j int) bool { return failures[i].Done.After(failures[j].Done) })
	for i, f := range failures {
		if i == 5 {
			break
		}
		fmt.Fprintf(e.stdout, "  failed %s[%s] on %s: %s\n", f.Name, f.UUID, f.Worker, f.Exception)
	}
}

func runCeleryCanvas(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "celery canvas", "--spec JSON [flags]",
		`Sends a canvas and prints its id, or with --wait its result as JSON. The spec is a tree: {"task": NAME, "args": [...], "kwargs": {...}, "queue": Q, "immutable": true}, {"chain": [...]}, {"group": [...]}, {"chord": {"header": [...], "body": ...}}.`)
	var cf connFlags
	cf.register(fs)
	spec := fs.String("spec", "", "the canvas as JSON (required)")
	wait := fs.Duration("wait", 0, "wait this long for the result and print it as JSON")
	backendURL := fs.String("result-backend", "", "result backend URL (default: the broker URL)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	var tree any
	if err := json.Unmarshal([]byte(*spec), &tree); err != nil || *spec == "" {
		return usageError{fmt.Sprintf("--spec: want a JSON canvas (%v)", err)}
	}
	sig, err := canvasFromSpec(tree)
	if err != nil {
		return usageError{"--spec: " + err.Error()}
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	u := *backendURL
	if u == "" {
		u = cf.url
	}
	backend, err := celery.OpenBackend(u)
	if err != nil {
		return err
	}
	defer backend.Close()
	res, err := celery.NewClient(conn, backend).Apply(ctx, sig)
	if err != nil {
		return err
	}
	id := ""
	switch r := res.(type) {
	case *celery.AsyncResult:
		id = r.ID
	case *celery.GroupResult:
		id = r.ID
		if err := r.Save(ctx); err != nil {
			return err
		}
	}
	if *wait <= 0 {
		fmt.Fprintln(e.stdout, id)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	v, err := res.Get(wctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("canvas %s: no result within %s: %w", id, *wait, errTimeout)
	}
	if err != nil {
		return fmt.Errorf("canvas %s failed: %w", id, err)
	}
	b, err := json.Marshal(map[string]any{"id": id, "result": v})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

// canvasFromSpec builds a signature from the --spec tree.
func canvasFromSpec(v any) (celery.Signature, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return celery.Signature{}, fmt.Errorf("a canvas node is %T, not an object", v)
	}
	list := func(key string) ([]celery.Signature, error) {
		items, ok := m[key].([]any)
		if !ok {
			return nil, fmt.Errorf("%q wants a list", key)
		}
		out := make([]celery.Signature, len(items))
		for i, it := range items {
			s, err := canvasFromSpec(it)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	switch {
	case m["chain"] != nil:
		sigs, err := list("chain")
		return celery.Chain(sigs...), err
	case m["group"] != nil:
		sigs, err := list("group")
		return celery.Group(sigs...), err
	case m["chord"] != nil:
		c, ok := m["chord"].(map[string]any)
		if !ok {
			return celery.Signature{}, errors.New(`"chord" wants {"header": [...], "body": ...}`)
		}
		sub := map[string]any{"group": c["header"]}
		header, err := canvasFromSpec(sub)
		if err != nil {
			return header, err
		}
		body, err := canvasFromSpec(c["body"])
		return celery.Chord(header, body), err
	}
	name, _ := m["task"].(string)
	if name == "" {
		return celery.Signature{}, errors.New(`a task node needs "task"`)
	}
	args, _ := m["args"].([]any)
	kwargs, _ := m["kwargs"].(map[string]any)
	s := celery.NewSignature(name, args, kwargs)
	if q, _ := m["queue"].(string); q != "" {
		s = s.Set("queue", q)
	}
	if im, _ := m["immutable"].(bool); im {
		s = s.AsImmutable()
	}
	return s, nil
}
