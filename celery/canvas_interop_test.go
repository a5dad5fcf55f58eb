package celery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/testenv"
)

// canvasOutcome is what client.py's canvas command reports: what Celery's
// own result handle returned or raised.
type canvasOutcome struct {
	ID           string          `json:"id"`
	Result       json.RawMessage `json:"result"`
	Raised       string          `json:"raised"`
	RaisedModule string          `json:"raised_module"`
	Message      string          `json:"message"`
}

// task is a canvas node for client.py: a signature of a task served on the
// Go worker's queue ("go") or the Python worker's ("py").
func task(name, on string, args ...any) map[string]any {
	if args == nil {
		args = []any{}
	}
	return map[string]any{"task": name, "queue": on, "args": args}
}

func immutable(n map[string]any) map[string]any { n["immutable"] = true; return n }

func chainOf(nodes ...any) map[string]any { return map[string]any{"chain": nodes} }
func groupOf(nodes ...any) map[string]any { return map[string]any{"group": nodes} }
func chordOf(body any, header ...any) map[string]any {
	return map[string]any{"chord": map[string]any{"header": header, "body": body}}
}

// canvasWorld starts a Python Celery worker and a Go worker with the same
// tasks (tasks.add, tasks.echo, tasks.fail) on their own queues.
func canvasWorld(t *testing.T) *interop {
	ix := newInterop(t)
	ix.startPythonWorker()
	var g goHandlers
	ix.goWorker(g.register(ix), WithConcurrency(4))
	return ix
}

func (ix *interop) canvas(spec any) canvasOutcome {
	ix.t.Helper()
	var out canvasOutcome
	ix.python(&out, "canvas", map[string]any{"canvas": spec})
	return out
}

func wantResult(t *testing.T, what string, o canvasOutcome, want string) {
	t.Helper()
	if o.Raised != "" {
		t.Errorf("%s: raised %s.%s: %s, want %s", what, o.RaisedModule, o.Raised, o.Message, want)
		return
	}
	if string(o.Result) != want {
		t.Errorf("%s: result %s, want %s", what, o.Result, want)
	}
}

// Proves (Python Celery's chain → Go worker, both version sets): a chain
// whose steps run on the Go worker continues (the next signature is taken
// from the embed's chain, last-first, with the result prepended), in every
// mix of Go and Python steps and with an immutable step, and Celery's
// AsyncResult.get() on the chain returns the last step's result. Before
// this, the Go worker dropped the rest of the chain and get() never
// returned.
func TestCanvasChainInterop(t *testing.T) {
	ix := canvasWorld(t)
	cases := []struct {
		name string
		spec any
		want string
	}{
		{"all on Go", chainOf(task("tasks.add", "go", 1, 2), task("tasks.add", "go", 10), task("tasks.add", "go", 100)), "113"},
		{"Go then Python then Go", chainOf(task("tasks.add", "go", 1, 2), task("tasks.add", "py", 10), task("tasks.add", "go", 100)), "113"},
		{"Python then Go then Python", chainOf(task("tasks.add", "py", 1, 2), task("tasks.add", "go", 10), task("tasks.add", "py", 100)), "113"},
		{"immutable step on Go", chainOf(task("tasks.add", "go", 1, 2), immutable(task("tasks.add", "go", 5, 5)), task("tasks.echo", "py")), `{"args": [10], "kwargs": {}}`},
	}
	for _, c := range cases {
		wantResult(t, c.name, ix.canvas(c.spec), c.want)
	}
}

// Proves: a step failing on the Go worker stops the chain and Celery's
// get() on the chain raises the step's exception (the Go worker stores the
// failure for the later steps too, as mark_as_failure does, so nobody
// waits forever); the later steps never run.
func TestCanvasChainFailureInterop(t *testing.T) {
	ix := canvasWorld(t)
	o := ix.canvas(chainOf(task("tasks.add", "go", 1, 2), immutable(task("tasks.fail", "go", "boom")), task("tasks.add", "py", 100)))
	if o.Raised != "ValueError" || o.Message != "boom" {
		t.Fatalf("chain with a failing Go step: %+v, want ValueError('boom')", o)
	}
	o = ix.canvas(chainOf(immutable(task("tasks.fail", "py", "py boom")), task("tasks.add", "go", 1)))
	if o.Raised != "ValueError" || o.Message != "py boom" {
		t.Fatalf("chain with a failing Python step before a Go step: %+v", o)
	}
}

// Proves (chords, both version sets): header tasks run on the Go worker do
// what Celery's Redis backend does in on_chord_part_return, so the body
// runs with the results in header order, wherever the body is served; a
// Python header with a Go body works too; a failing header part gives the
// body Celery's ChordError.
func TestCanvasChordInterop(t *testing.T) {
	ix := canvasWorld(t)
	header := []any{task("tasks.add", "go", 1, 2), task("tasks.add", "go", 3, 4), task("tasks.add", "py", 5, 6)}
	wantResult(t, "Go header, Python body", ix.canvas(chordOf(task("tasks.echo", "py"), header...)), `{"args": [[3, 7, 11]], "kwargs": {}}`)
	wantResult(t, "Go header, Go body", ix.canvas(chordOf(task("tasks.echo", "go"), header...)), `{"args": [[3, 7, 11]], "kwargs": {}}`)
	pyHeader := []any{task("tasks.add", "py", 1, 1), task("tasks.add", "py", 2, 2)}
	wantResult(t, "Python header, Go body", ix.canvas(chordOf(task("tasks.echo", "go", "x"), pyHeader...)), `{"args": [[2, 4], "x"], "kwargs": {}}`)

	// Celery's get() on the body raises the failed header part's error
	// (it checks the parents first); the body's own result is the
	// ChordError the Go worker stored.
	o := ix.canvas(chordOf(task("tasks.echo", "py"), task("tasks.add", "go", 1, 2), task("tasks.fail", "go", "part")))
	if o.Raised != "ValueError" || o.Message != "part" {
		t.Errorf("chord with a failing Go part: %+v, want the part's ValueError", o)
	}
	meta, err := ix.backend.Get(context.Background(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	var te *TaskError
	if !errors.As(meta.Err(), &te) || meta.Status != StateFailure || te.Type != "ChordError" || te.Module != "celery.exceptions" ||
		!strings.HasPrefix(te.Message(), "Dependency ") || !strings.HasSuffix(te.Message(), " raised ValueError('part')") {
		t.Errorf("chord body result: %s %v, want FAILURE ChordError(\"Dependency <id> raised ValueError('part')\")", meta.Status, meta.Err())
	}
	// The Python client sees the ChordError as Celery's own type.
	var outs []pyOutcome
	ix.python(&outs, "get", []string{o.ID})
	if len(outs) != 1 || outs[0].State != "FAILURE" || outs[0].Raised != "ChordError" || outs[0].RaisedModule != "celery.exceptions" {
		t.Errorf("Python reading the chord body: %+v", outs)
	}
}

// Proves the nested shapes, driven by Python's canvas and run on the Go
// worker: a group followed by a task in a chain (Celery upgrades it to a
// chord), a chord inside a chain, a chain inside a chord header, a chord
// of chains, and a group of 1,000 tasks.
func TestCanvasNestedInterop(t *testing.T) {
	ix := canvasWorld(t)
	wantResult(t, "group then task in a chain",
		ix.canvas(chainOf(task("tasks.add", "go", 1, 2), groupOf(task("tasks.add", "go", 10), task("tasks.add", "py", 20)), task("tasks.echo", "go"))),
		`{"args": [[13, 23]], "kwargs": {}}`)
	wantResult(t, "chord inside a chain",
		ix.canvas(chainOf(task("tasks.add", "go", 1, 1), chordOf(task("tasks.echo", "go"), task("tasks.add", "go", 1), task("tasks.add", "go", 2)), task("tasks.echo", "py"))),
		`{"args": [{"args": [[3, 4]], "kwargs": {}}], "kwargs": {}}`)
	wantResult(t, "chain inside a chord header",
		ix.canvas(chordOf(task("tasks.echo", "go"), chainOf(task("tasks.add", "go", 1, 2), task("tasks.add", "go", 10)), task("tasks.add", "go", 5, 5))),
		`{"args": [[13, 10]], "kwargs": {}}`)
	// A group inside a chord header: Celery flattens it (its members return
	// to the chord after the others: [4, 2, 6] on 5.2.6 and 5.5.2); the Go
	// worker gives the body exactly what a Python worker gives it.
	nested := func(on string) canvasOutcome {
		return ix.canvas(chordOf(task("tasks.echo", on), groupOf(task("tasks.add", on, 1, 1), task("tasks.add", on, 2, 2)), task("tasks.add", on, 3, 3)))
	}
	pyRef := nested("py")
	wantResult(t, "group inside a chord header, as on Python ("+string(pyRef.Result)+")", nested("go"), string(pyRef.Result))
	wantResult(t, "chord of chains",
		ix.canvas(chordOf(task("tasks.echo", "py"), chainOf(task("tasks.add", "go", 1, 1), task("tasks.add", "py", 1)), chainOf(task("tasks.add", "py", 2, 2), task("tasks.add", "go", 2)))),
		`{"args": [[3, 6]], "kwargs": {}}`)

	var members []any
	want := "["
	for i := range 1000 {
		members = append(members, task("tasks.add", "go", i, 1))
		if i > 0 {
			want += ", "
		}
		want += fmt.Sprint(i + 1)
	}
	wantResult(t, "group of 1,000", ix.canvas(groupOf(members...)), want+"]")
}

// Proves (Go builds the canvas, both version sets): Chain, Group and Chord
// sent with Client.Apply run on a Python Celery worker, on the Go worker
// and across both, and the handles Apply returns give what Celery's would:
// a chain's last result (with its parents), a GroupResult joined in order,
// a chord body's result; a failing member propagates its error.
func TestCanvasGoClientInterop(t *testing.T) {
	ix := canvasWorld(t)
	ctx := context.Background()
	on := func(q string, name string, args ...any) Signature {
		return NewSignature(name, args, nil).Set("queue", map[string]string{"go": ix.goQueue, "py": ix.pyQueue}[q])
	}
	get := func(what string, sig Signature) (any, error) {
		t.Helper()
		r, err := ix.client.Apply(ctx, sig)
		if err != nil {
			t.Fatalf("%s: Apply: %v", what, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		return r.Get(cctx)
	}
	check := func(what string, sig Signature, want string) {
		t.Helper()
		v, err := get(what, sig)
		if err != nil || fmt.Sprint(v) != want {
			t.Errorf("%s: %v %v, want %s", what, v, err, want)
		}
	}
	check("chain on Python", Chain(on("py", "tasks.add", 1, 2), on("py", "tasks.add", 10), on("py", "tasks.add", 100)), "113")
	check("chain Go, Python, Go", Chain(on("go", "tasks.add", 1, 2), on("py", "tasks.add", 10), on("go", "tasks.add", 100)), "113")
	check("group across both", Group(on("go", "tasks.add", 1, 1), on("py", "tasks.add", 2, 2), on("go", "tasks.add", 3, 3)), "[2 4 6]")
	check("chord, Go header, Python body", Chord(Group(on("go", "tasks.add", 1, 1), on("go", "tasks.add", 2, 2)), on("py", "tasks.echo")), "map[args:[[2 4]] kwargs:map[]]")
	check("chord, all on Python", Chord(Group(on("py", "tasks.add", 1, 1), on("py", "tasks.add", 2, 2)), on("py", "tasks.echo")), "map[args:[[2 4]] kwargs:map[]]")
	check("chord, Python header, Go body", Chord(Group(on("py", "tasks.add", 1, 1), on("py", "tasks.add", 2, 2)), on("go", "tasks.echo")), "map[args:[[2 4]] kwargs:map[]]")
	check("group then task (a chord)", Chain(on("go", "tasks.add", 1, 2), Group(on("py", "tasks.add", 1), on("go", "tasks.add", 2)), on("go", "tasks.echo")), "map[args:[[4 5]] kwargs:map[]]")

	r, err := ix.client.Apply(ctx, Chain(on("go", "tasks.add", 1, 2), on("go", "tasks.add", 3)))
	if err != nil {
		t.Fatal(err)
	}
	last := r.(*AsyncResult)
	if last.Parent == nil {
		t.Fatal("a chain's result has no parent")
	}
	if v, err := last.Parent.Get(ctx); err != nil || fmt.Sprint(v) != "3" {
		t.Errorf("chain's first step through Parent: %v %v", v, err)
	}

	_, err = get("group with a failing member", Group(on("go", "tasks.add", 1, 1), on("py", "tasks.fail", "member")))
	var te *TaskError
	if !errors.As(err, &te) || te.Type != "ValueError" || te.Message() != "member" {
		t.Errorf("group with a failing member: %v, want ValueError member", err)
	}
}

// Proves: GroupResult.Save writes celery-taskset-meta-<id> so that
// Python's GroupResult.restore(id) finds the same members and joins their
// results, and RestoreGroup reads a group Python saved.
func TestGroupResultSaveRestoreInterop(t *testing.T) {
	ix := canvasWorld(t)
	ctx := context.Background()
	g, err := ix.client.Apply(ctx, Group(NewSignature("tasks.add", []any{1, 2}, nil).Set("queue", ix.goQueue),
		NewSignature("tasks.add", []any{3, 4}, nil).Set("queue", ix.pyQueue)))
	if err != nil {
		t.Fatal(err)
	}
	gr := g.(*GroupResult)
	if err := gr.Save(ctx); err != nil {
		t.Fatal(err)
	}
	var restored struct {
		ID      string `json:"id"`
		IDs     []string
		Results []int
	}
	ix.python(&restored, "restoregroup", gr.ID)
	if restored.ID != gr.ID || len(restored.IDs) != 2 || restored.IDs[0] != gr.Results[0].(*AsyncResult).ID ||
		fmt.Sprint(restored.Results) != "[3 7]" {
		t.Errorf("Python restored %+v from the group Go saved (%s)", restored, gr.ID)
	}

	a := ix.send("tasks.add", []any{5, 5}, nil, WithQueue(ix.goQueue))
	b := ix.send("tasks.add", []any{6, 6}, nil, WithQueue(ix.pyQueue))
	var gid string
	ix.python(&gid, "savegroup", []string{a.ID, b.ID})
	back, err := ix.backend.RestoreGroup(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if v, err := back.Join(cctx); err != nil || fmt.Sprint(v) != "[10 12]" || back.ID != gid {
		t.Errorf("RestoreGroup of Python's group: %v %v %+v", v, err, back)
	}
	if _, err := ix.backend.RestoreGroup(ctx, "no-such-group"); !errors.Is(err, ErrGroupNotFound) {
		t.Errorf("RestoreGroup of a missing group: %v", err)
	}
}

// Proves (Celery 5.5 stamping, both version sets): a task Python stamped
// (sig.stamp(team='blue') on 5.5; the same stamped_headers and stamps
// headers given by hand on 5.2, which has no stamping) reaches the Go
// worker with its stamps, and when the Go worker retries it the retried
// message still carries them untouched.
func TestStampsPassThroughInterop(t *testing.T) {
	ix := newInterop(t)
	ix.goWorker(func(w *Worker) {
		w.Register("tasks.stamps", func(_ context.Context, t *Task) (any, error) {
			if t.Retries < 1 {
				return nil, t.Retry(nil, 50*time.Millisecond)
			}
			return map[string]any{"stamped_headers": t.Headers["stamped_headers"], "stamps": t.Headers["stamps"], "retries": t.Retries}, nil
		})
	})
	var out struct {
		How    string
		Result struct {
			StampedHeaders []string          `json:"stamped_headers"`
			Stamps         map[string]string `json:"stamps"`
			Retries        int
		}
	}
	ix.python(&out, "stamped", nil)
	wantHow := "headers"
	if testenv.PythonVersionAtLeast(t, "celery", "5.3") {
		wantHow = "stamp"
	}
	r := out.Result
	if out.How != wantHow || r.Retries != 1 || fmt.Sprint(r.StampedHeaders) != "[team]" || r.Stamps["team"] != "blue" {
		t.Errorf("stamps after a Go retry: %+v (sent by %s)", out, out.How)
	}
}
