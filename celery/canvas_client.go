package celery

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// Chain returns a chain of signatures (Celery's chain(*sigs), subtask_type
// "chain"): each step runs after the previous one succeeded, with its
// result prepended to its arguments unless the step is immutable. As in
// Celery, a group followed by another step becomes a chord whose body is
// that step, and nested chains are flattened.
func Chain(sigs ...Signature) Signature {
	var flat []Signature
	for _, s := range sigs {
		if s.SubtaskType == "chain" {
			if inner, err := canvasTasks(s); err == nil {
				flat = append(flat, inner...)
				continue
			}
		}
		flat = append(flat, s)
	}
	var steps []Signature
	for i := 0; i < len(flat); i++ {
		s := flat[i]
		if s.SubtaskType == "group" && i+1 < len(flat) {
			s = Chord(s, flat[i+1])
			i++
		}
		steps = append(steps, s)
	}
	return Signature{Task: "celery.chain", SubtaskType: "chain", Kwargs: map[string]any{"tasks": sigObjects(steps)}}
}

// Group returns a group of signatures (Celery's group(*sigs), subtask_type
// "group"): its tasks run in parallel; its result is a GroupResult.
func Group(sigs ...Signature) Signature {
	return Signature{Task: "celery.group", SubtaskType: "group", Kwargs: map[string]any{"tasks": sigObjects(sigs)}}
}

// Chord returns a chord (Celery's chord(header, body), subtask_type
// "chord"): header is a group (or a single signature, made a group of one)
// and body runs with the list of the header's results, in header order,
// once all of them have succeeded. The result is the body's.
func Chord(header Signature, body Signature) Signature {
	if header.SubtaskType != "group" {
		header = Group(header)
	}
	return Signature{Task: "celery.chord", SubtaskType: "chord", Kwargs: map[string]any{
		"kwargs": map[string]any{}, "header": header.object(), "body": body.object(),
	}}
}

// Set returns a copy of s with an execution option set, as Celery's
// sig.set(key=value): "queue", "routing_key", "exchange", "priority",
// "countdown", "eta" (ISO 8601), "expires", "task_id", "link",
// "link_error", "time_limit", "soft_time_limit", "ignore_result"...
func (s Signature) Set(key string, value any) Signature {
	n := make(map[string]any, len(s.Options)+1)
	for k, v := range s.Options {
		n[k] = v
	}
	n[key] = value
	s.Options = n
	return s
}

// AsImmutable returns a copy of s that does not receive its parent's
// result (Celery's .si() / sig.set(immutable=True)).
func (s Signature) AsImmutable() Signature { s.Immutable = true; return s }

func sigObjects(sigs []Signature) []any {
	out := make([]any, len(sigs))
	for i, s := range sigs {
		out[i] = s.object()
	}
	return out
}

// Result is the handle Client.Apply returns: an *AsyncResult for a task,
// a chain (its last task, with Parent set along the chain) or a chord (its
// body); a *GroupResult for a group.
type Result interface {
	// Get waits for the result and returns it, or the error the task (or
	// a failed member, for a group) ended with.
	Get(ctx context.Context) (any, error)
	// Ready reports whether the result is ready (all members, for a group).
	Ready(ctx context.Context) (bool, error)
}

var (
	_ Result = (*AsyncResult)(nil)
	_ Result = (*GroupResult)(nil)
)

// Apply sends a signature of any kind, as Celery's sig.apply_async():
// a task, a chain, a group or a chord, and returns the handle Celery
// returns. Every task of the canvas gets its id before anything is sent,
// so the handle is complete at once.
func (c *Client) Apply(ctx context.Context, sig Signature) (Result, error) {
	frozen, res, err := c.freeze(sig, "", nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.applySignature(ctx, frozen, nil, applyOpts{}); err != nil {
		return nil, err
	}
	return res, nil
}

// freeze gives every task of sig its id (Celery's sig.freeze()) and
// returns the result handle. groupID and index, when set, place a task in
// a group.
func (c *Client) freeze(sig Signature, groupID string, index *int) (Signature, Result, error) {
	switch sig.SubtaskType {
	case "", "signature":
		id, _ := sig.Options["task_id"].(string)
		if id == "" {
			id = uuid.NewString()
			sig = sig.Set("task_id", id)
		}
		if _, ok := sig.Options["reply_to"]; !ok && c.replyTo != "" {
			sig = sig.Set("reply_to", c.replyTo) // as Celery's freeze sets its thread oid
		}
		if groupID != "" {
			sig = sig.Set("group_id", groupID)
			if index != nil {
				sig = sig.Set("group_index", *index)
			}
		}
		return sig, c.AsyncResult(id), nil
	case "chain":
		tasks, err := canvasTasks(sig)
		if err != nil {
			return sig, nil, err
		}
		var prev Result
		out := make([]Signature, len(tasks))
		for i, t := range tasks {
			f, r, err := c.freeze(t, "", nil)
			if err != nil {
				return sig, nil, err
			}
			if ar, ok := r.(*AsyncResult); ok && prev != nil {
				ar.Parent = prev
			}
			out[i], prev = f, r
		}
		sig.Kwargs = map[string]any{"tasks": sigObjects(out)}
		return sig, prev, nil
	case "group":
		tasks, err := canvasTasks(sig)
		if err != nil {
			return sig, nil, err
		}
		gid, _ := sig.Options["task_id"].(string)
		if gid == "" {
			gid = uuid.NewString()
			sig = sig.Set("task_id", gid)
		}
		gr := &GroupResult{ID: gid, backend: c.backend}
		out := make([]Signature, len(tasks))
		for i, t := range tasks {
			i := i
			f, r, err := c.freeze(t, gid, &i)
			if err != nil {
				return sig, nil, err
			}
			out[i] = f
			gr.Results = append(gr.Results, r)
		}
		sig.Kwargs = map[string]any{"tasks": sigObjects(out)}
		return sig, gr, nil
	case "chord":
		body, err := sigFromAny(sig.Kwargs["body"])
		if err != nil {
			return sig, nil, err
		}
		header, err := sigFromAny(sig.Kwargs["header"])
		if err != nil {
			return sig, nil, err
		}
		fh, hr, err := c.freeze(header, "", nil)
		if err != nil {
			return sig, nil, err
		}
		fb, br, err := c.freeze(body, "", nil)
		if err != nil {
			return sig, nil, err
		}
		if ar, ok := br.(*AsyncResult); ok {
			ar.Parent = hr
		}
		sig.Kwargs = map[string]any{"kwargs": map[string]any{}, "header": fh.object(), "body": fb.object()}
		return sig, br, nil
	}
	return sig, nil, fmt.Errorf("%w: unknown subtask_type %q", ErrInvalidCanvas, sig.SubtaskType)
}

// GroupResult is Celery's GroupResult: the results of a group's tasks, in
// the group's order.
type GroupResult struct {
	ID      string
	Results []Result
	backend *Backend
}

// NewGroupResult returns a handle on a group's results.
func NewGroupResult(id string, backend *Backend, results ...Result) *GroupResult {
	return &GroupResult{ID: id, Results: results, backend: backend}
}

// Get is Join: it waits for every member in order and returns their
// results as a list.
func (g *GroupResult) Get(ctx context.Context) (any, error) { return g.Join(ctx) }

// Join waits for every member in order and returns their results as a
// list; as Celery's join(propagate=True), the first failed member (in
// order) ends the wait with its error.
func (g *GroupResult) Join(ctx context.Context) ([]any, error) {
	out := make([]any, len(g.Results))
	for i, r := range g.Results {
		v, err := r.Get(ctx)
		if err != nil {
			return out, err
		}
		out[i] = v
	}
	return out, nil
}

// Ready reports whether every member is ready.
func (g *GroupResult) Ready(ctx context.Context) (bool, error) {
	for _, r := range g.Results {
		ok, err := r.Ready(ctx)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// Completed returns how many members have succeeded (Celery's
// completed_count()).
func (g *GroupResult) Completed(ctx context.Context) (int, error) {
	n := 0
	for _, r := range g.Results {
		switch x := r.(type) {
		case *AsyncResult:
			s, err := x.State(ctx)
			if err != nil {
				return n, err
			}
			if s == StateSuccess {
				n++
			}
		case *GroupResult:
			ok, err := x.Successful(ctx)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
	}
	return n, nil
}

// Successful reports whether every member has succeeded.
func (g *GroupResult) Successful(ctx context.Context) (bool, error) {
	n, err := g.Completed(ctx)
	return err == nil && n == len(g.Results), err
}

// asTuple is Celery's as_tuple(): ((id, parent), [members]).
func (g *GroupResult) asTuple() any {
	members := make([]any, len(g.Results))
	for i, r := range g.Results {
		members[i] = resultAsTuple(r)
	}
	return []any{[]any{g.ID, nil}, members}
}

func resultAsTuple(r Result) any {
	switch x := r.(type) {
	case *GroupResult:
		return x.asTuple()
	case *AsyncResult:
		var parent any
		if x.Parent != nil {
			parent = resultAsTuple(x.Parent)
		}
		return []any{[]any{x.ID, parent}, nil}
	}
	return nil
}

// Save stores the group under celery-taskset-meta-<id> as Celery's
// GroupResult.save() does ({"result": as_tuple()}, with the result
// expiry), so Python's GroupResult.restore(id) reads it.
func (g *GroupResult) Save(ctx context.Context) error {
	b, err := pyjson.Marshal(pyjson.Object{{Key: "result", Value: g.asTuple()}})
	if err != nil {
		return err
	}
	err = g.backend.set(ctx, g.backend.GroupKey(g.ID, ""), b)
	if err != nil {
		return fmt.Errorf("celery: save group %s: %w", g.ID, err)
	}
	return nil
}

// ErrGroupNotFound is returned by RestoreGroup for a group never saved (or
// expired).
var ErrGroupNotFound = errors.New("celery: group result not found")

// RestoreGroup reads a group saved by Save or by Python's
// GroupResult.save() (Celery's GroupResult.restore(id)).
func (b *Backend) RestoreGroup(ctx context.Context, id string) (*GroupResult, error) {
	raw, err := b.client.Get(ctx, b.GroupKey(id, "")).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s", ErrGroupNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("celery: restore group %s: %w", id, err)
	}
	v, err := pyjson.Unmarshal(raw)
	if err != nil {
		return nil, fmt.Errorf("celery: restore group %s: %w", id, err)
	}
	m, _ := v.(map[string]any)
	r, err := b.resultFromTuple(m["result"])
	if err != nil {
		return nil, fmt.Errorf("celery: restore group %s: %w", id, err)
	}
	g, ok := r.(*GroupResult)
	if !ok {
		return nil, fmt.Errorf("celery: restore group %s: saved result is not a group", id)
	}
	return g, nil
}

// resultFromTuple is Celery's result_from_tuple.
func (b *Backend) resultFromTuple(v any) (Result, error) {
	t, ok := v.([]any)
	if !ok || len(t) != 2 {
		return nil, fmt.Errorf("%w: result tuple %v", ErrInvalidCanvas, v)
	}
	head, ok := t[0].([]any)
	if !ok || len(head) != 2 {
		return nil, fmt.Errorf("%w: result tuple head %v", ErrInvalidCanvas, t[0])
	}
	id, _ := head[0].(string)
	var parent Result
	if head[1] != nil {
		p, err := b.resultFromTuple(head[1])
		if err != nil {
			return nil, err
		}
		parent = p
	}
	if members, ok := t[1].([]any); ok {
		g := &GroupResult{ID: id, backend: b}
		for _, m := range members {
			r, err := b.resultFromTuple(m)
			if err != nil {
				return nil, err
			}
			g.Results = append(g.Results, r)
		}
		return g, nil
	}
	return &AsyncResult{ID: id, backend: b, Parent: parent}, nil
}
