package celery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// This file is the worker's side of Celery's canvas (celery/canvas.py,
// celery/app/trace.py, celery/backends/base.py): continuing a chain after
// a task succeeds, applying the group, chord and chain signatures a chain
// or a callback may hold, and propagating a failure down the rest of a
// chain.

// ErrInvalidCanvas is wrapped by the errors for a chain, chord or group
// embed the worker cannot read. The task that carried it fails with that
// error stored as its result.
var ErrInvalidCanvas = errors.New("celery: invalid canvas")

// applyOpts are the options the worker adds when it applies a signature
// (Signature.apply_async((retval,), chain=..., parent_id=..., root_id=...)).
// They override the signature's own options, except group_id (Celery's
// _IMMUTABLE_OPTIONS); unset fields leave the signature's options alone
// (Celery drops options passed as None).
type applyOpts struct {
	parentID, rootID string
	chain            []any // set: the rest of a chain, last-first
	hasChain         bool
	chord            any // a chord body for header tasks
	groupID          string
	groupIndex       *int
}

// parseChain reads the embed's chain: a list of signature dicts, stored
// last-first (the next task is the last element).
func parseChain(v any) ([]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		for i, e := range x {
			if _, ok := e.(map[string]any); !ok {
				return nil, fmt.Errorf("%w: chain element %d is %T, not a signature dict", ErrInvalidCanvas, i, e)
			}
		}
		return x, nil
	}
	return nil, fmt.Errorf("%w: chain is %T, not a list", ErrInvalidCanvas, v)
}

// sigFromAny reads a signature dict (or an already decoded Signature).
func sigFromAny(v any) (Signature, error) {
	switch x := v.(type) {
	case Signature:
		return x, nil
	case *Signature:
		return *x, nil
	case pyjson.Object:
		m := make(map[string]any, len(x))
		for _, kv := range x {
			m[kv.Key] = kv.Value
		}
		return sigFromAny(m)
	case map[string]any:
		s, err := signatureFrom(x)
		if err != nil {
			return s, fmt.Errorf("%w: %v", ErrInvalidCanvas, err)
		}
		if s.Task == "" && s.SubtaskType == "" {
			return s, fmt.Errorf("%w: signature without a task name", ErrInvalidCanvas)
		}
		return s, nil
	}
	return Signature{}, fmt.Errorf("%w: signature is %T, not a dict", ErrInvalidCanvas, v)
}

// applySignature sends sig with extra leading arguments (unless immutable)
// as Signature.apply_async does, for plain task signatures and for chain,
// group and chord signatures. It returns the id of the result a waiter of
// sig would follow (the task id; a group's id; a chord body's id; a chain's
// last task id is not known here, so its first task's id).
func (c *Client) applySignature(ctx context.Context, sig Signature, extra []any, ao applyOpts) (string, error) {
	switch sig.SubtaskType {
	case "", "signature":
		return c.applyTask(ctx, sig, extra, ao)
	case "chain":
		return c.applyChainSig(ctx, sig, extra, ao)
	case "group":
		return c.applyGroupSig(ctx, sig, extra, ao)
	case "chord":
		return c.applyChordSig(ctx, sig, extra, ao)
	}
	return "", fmt.Errorf("%w: unknown subtask_type %q (%s)", ErrInvalidCanvas, sig.SubtaskType, sig.Task)
}

// applyTask sends a plain task signature with its own options (queue,
// routing_key, exchange, priority, countdown, eta, expires, link,
// link_error, task_id, group_id, group_index, chord, chain, time limits,
// shadow, ignore_result, headers) and the worker's.
func (c *Client) applyTask(ctx context.Context, sig Signature, extra []any, ao applyOpts) (string, error) {
	args := sig.Args
	if !sig.Immutable && len(extra) > 0 {
		args = append(append([]any(nil), extra...), sig.Args...)
	}
	o := sig.Options
	var so sendOptions
	str := func(k string) string { s, _ := o[k].(string); return s }
	so.taskID = str("task_id")
	if so.taskID == "" {
		so.taskID = uuid.NewString()
	}
	so.queue = str("queue")
	if q, ok := o["queue"].(map[string]any); ok { // a kombu Queue as a dict
		so.queue, _ = q["name"].(string)
	}
	so.routingKey = str("routing_key")
	so.exchange = str("exchange")
	if ex, ok := o["exchange"].(map[string]any); ok {
		so.exchange, _ = ex["name"].(string)
	}
	if so.exchange != "" {
		so.exchangeType = "direct"
	}
	if p, ok := toInt(o["priority"]); ok {
		so.priority = p
	}
	if cd, ok := toFloat(o["countdown"]); ok && cd != 0 {
		so.countdown = time.Duration(cd * float64(time.Second))
	}
	if s := str("eta"); s != "" {
		t, err := parseISO(s, true)
		if err != nil {
			return "", fmt.Errorf("%w: eta %q of %s: %v", ErrInvalidCanvas, s, sig.Task, err)
		}
		so.eta = t
	}
	switch e := o["expires"].(type) {
	case string:
		t, err := parseISO(e, true)
		if err != nil {
			return "", fmt.Errorf("%w: expires %q of %s: %v", ErrInvalidCanvas, e, sig.Task, err)
		}
		so.expires = t
	default:
		if f, ok := toFloat(e); ok {
			d := time.Duration(f * float64(time.Second))
			so.expiresIn = &d
		}
	}
	var err error
	if so.link, err = signaturesFrom(o["link"]); err != nil {
		return "", fmt.Errorf("%w: link of %s: %v", ErrInvalidCanvas, sig.Task, err)
	}
	if so.linkError, err = signaturesFrom(o["link_error"]); err != nil {
		return "", fmt.Errorf("%w: link_error of %s: %v", ErrInvalidCanvas, sig.Task, err)
	}
	so.groupID = str("group_id")
	if i, ok := toInt(o["group_index"]); ok {
		so.groupIndex = &i
	}
	if ao.groupID != "" && so.groupID == "" { // group_id is immutable once set
		so.groupID = ao.groupID
	}
	if ao.groupIndex != nil {
		so.groupIndex = ao.groupIndex
	}
	if tl, ok := toFloat(o["time_limit"]); ok {
		so.timeLimit = time.Duration(tl * float64(time.Second))
	}
	if tl, ok := toFloat(o["soft_time_limit"]); ok {
		so.softTimeLimit = time.Duration(tl * float64(time.Second))
	}
	so.shadow = str("shadow")
	so.ignoreResult, _ = o["ignore_result"].(bool)
	if h, ok := o["headers"].(map[string]any); ok {
		so.headers = h
	}
	// Celery 5.5 stamping: a signature's stamped_headers name options that
	// travel as the message's stamped_headers and stamps headers
	// (app/amqp.py as_task_v2).
	if sh, ok := o["stamped_headers"].([]any); ok && len(sh) > 0 {
		h := make(map[string]any, len(so.headers)+2)
		for k, v := range so.headers {
			h[k] = v
		}
		stamps := map[string]any{}
		for _, name := range sh {
			if n, ok := name.(string); ok {
				stamps[n] = o[n]
			}
		}
		h["stamped_headers"], h["stamps"] = sh, stamps
		so.headers = h
	}
	so.rootID, so.parentID = str("root_id"), str("parent_id")
	if ao.rootID != "" {
		so.rootID = ao.rootID
	}
	if ao.parentID != "" {
		so.parentID = ao.parentID
	}
	so.chord = o["chord"]
	if ao.chord != nil {
		so.chord = ao.chord
	}
	if ch, ok := o["chain"]; ok && ch != nil {
		rest, err := parseChain(ch)
		if err != nil {
			return "", err
		}
		so.chain = rest
	}
	if ao.hasChain {
		so.chain = ao.chain
	}
	m, err := c.newMessage(sig.Task, args, sig.Kwargs, &so)
	if err != nil {
		return "", err
	}
	if rt := str("reply_to"); rt != "" {
		m.ReplyTo = rt
	}
	if err := c.Publish(ctx, m, so.queue, so.exchange, so.exchangeType, so.routingKey); err != nil {
		return "", err
	}
	return m.ID, nil
}

// canvasTasks reads kwargs["tasks"] of a chain or group signature.
func canvasTasks(sig Signature) ([]Signature, error) {
	raw, ok := sig.Kwargs["tasks"].([]any)
	if !ok {
		if sig.Kwargs["tasks"] == nil && sig.SubtaskType == "group" {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s signature has tasks of type %T, not a list", ErrInvalidCanvas, sig.SubtaskType, sig.Kwargs["tasks"])
	}
	out := make([]Signature, len(raw))
	for i, r := range raw {
		s, err := sigFromAny(r)
		if err != nil {
			return nil, fmt.Errorf("%s task %d: %w", sig.SubtaskType, i, err)
		}
		out[i] = s
	}
	return out, nil
}

// mergeOptions returns sig with opts added where it has none of its own
// (the options a chain, group or chord gives its members).
func withOptions(sig Signature, opts map[string]any, override bool) Signature {
	if len(opts) == 0 {
		return sig
	}
	n := make(map[string]any, len(sig.Options)+len(opts))
	for k, v := range sig.Options {
		n[k] = v
	}
	for k, v := range opts {
		if _, has := n[k]; has && (!override || k == "group_id") {
			continue
		}
		n[k] = v
	}
	sig.Options = n
	return sig
}

// applyChainSig applies a chain signature: its first task with the extra
// arguments, the rest riding in the message's chain (last-first), followed
// by whatever chain the worker was already continuing.
func (c *Client) applyChainSig(ctx context.Context, sig Signature, extra []any, ao applyOpts) (string, error) {
	tasks, err := canvasTasks(sig)
	if err != nil {
		return "", err
	}
	if len(tasks) == 0 {
		return "", fmt.Errorf("%w: empty chain", ErrInvalidCanvas)
	}
	rest := append([]any(nil), ao.chain...)
	for i := len(tasks) - 1; i >= 1; i-- {
		rest = append(rest, tasks[i].object())
	}
	first := tasks[0]
	if sig.Immutable {
		first.Immutable = true
	}
	ao.chain, ao.hasChain = rest, true
	return c.applySignature(ctx, first, extra, ao)
}

// applyGroupSig applies a group: every member with the extra arguments,
// the group's id (its task_id option, or a new one) and its index, as
// group.apply_async does.
func (c *Client) applyGroupSig(ctx context.Context, sig Signature, extra []any, ao applyOpts) (string, error) {
	tasks, err := canvasTasks(sig)
	if err != nil {
		return "", err
	}
	gid, _ := sig.Options["task_id"].(string)
	if gid == "" {
		gid = uuid.NewString()
	}
	shared := map[string]any{}
	for _, k := range []string{"queue", "routing_key", "exchange", "priority"} {
		if v, ok := sig.Options[k]; ok {
			shared[k] = v
		}
	}
	for i, t := range tasks {
		t = withOptions(t, shared, false)
		idx := i
		mo := applyOpts{parentID: ao.parentID, rootID: ao.rootID, groupID: gid, groupIndex: &idx, chord: ao.chord}
		if _, err := c.applySignature(ctx, t, extra, mo); err != nil {
			return gid, err
		}
	}
	return gid, nil
}

// applyChordSig applies a chord as chord.run does: the body gets a task id
// (and carries the chain the worker was continuing); the header's tasks
// go out with the body in their chord field, the group's id and index;
// the header's size is written to celery-taskset-meta-<gid>.s before the
// last header task is sent; an empty header sends the body with [].
func (c *Client) applyChordSig(ctx context.Context, sig Signature, extra []any, ao applyOpts) (string, error) {
	body, err := sigFromAny(sig.Kwargs["body"])
	if err != nil {
		return "", fmt.Errorf("chord body: %w", err)
	}
	var header Signature
	switch h := sig.Kwargs["header"].(type) {
	case []any:
		header = Signature{Task: "celery.group", SubtaskType: "group", Kwargs: map[string]any{"tasks": h}}
	default:
		if header, err = sigFromAny(h); err != nil {
			return "", fmt.Errorf("chord header: %w", err)
		}
	}
	tasks, err := canvasTasks(header)
	if err != nil {
		return "", err
	}
	gid, _ := header.Options["task_id"].(string)
	if gid == "" {
		gid = uuid.NewString()
	}
	bodyOpts := map[string]any{}
	for k, v := range body.Options {
		bodyOpts[k] = v
	}
	for k, v := range sig.Options {
		if k != "task_id" {
			bodyOpts[k] = v
		}
	}
	if ao.hasChain && len(ao.chain) > 0 {
		bodyOpts["chain"] = ao.chain
	}
	if ao.parentID != "" {
		bodyOpts["parent_id"] = ao.parentID
	}
	if ao.rootID != "" {
		bodyOpts["root_id"] = ao.rootID
	}
	bodyID, _ := bodyOpts["task_id"].(string)
	if bodyID == "" {
		bodyID, _ = sig.Options["task_id"].(string)
	}
	if bodyID == "" {
		bodyID = uuid.NewString()
	}
	bodyOpts["task_id"] = bodyID
	body.Options = bodyOpts
	if len(tasks) == 0 {
		_, err := c.applySignature(ctx, body, []any{[]any{}}, applyOpts{})
		return bodyID, err
	}
	bodyDict := body.object()
	size := len(tasks)
	for i, t := range tasks {
		if i == len(tasks)-1 {
			if err := c.backend.SetChordSize(ctx, gid, size); err != nil {
				return bodyID, err
			}
		}
		idx := i
		mo := applyOpts{parentID: ao.parentID, rootID: ao.rootID, groupID: gid, groupIndex: &idx, chord: bodyDict}
		if _, err := c.applySignature(ctx, t, extra, mo); err != nil {
			return bodyID, err
		}
	}
	return bodyID, nil
}

// continueChain applies the next step of the request's chain with the
// task's result, as trace.py does after a success. It returns the id of
// the step sent ("" when there is no chain).
func (w *Worker) continueChain(ctx context.Context, req *request, result any) (string, error) {
	rest, err := parseChain(req.tm.Chain)
	if err != nil || len(rest) == 0 {
		return "", err
	}
	next, err := sigFromAny(rest[len(rest)-1])
	if err != nil {
		return "", err
	}
	rest = rest[: len(rest)-1 : len(rest)-1]
	root := req.tm.RootID
	if root == "" {
		root = req.tm.ID
	}
	return w.client.applySignature(ctx, next, []any{result}, applyOpts{
		parentID: req.tm.ID, rootID: root, chain: rest, hasChain: true,
	})
}

// failChain stores the failure for every later step of the request's chain
// that has a task id, and returns a chord part for steps that belong to a
// chord, as backends/base.py mark_as_failure does, so a client waiting on
// the chain's last result sees the failure instead of waiting forever.
func (w *Worker) failChain(ctx context.Context, req *request, status State, exc *TaskError, traceback string) {
	rest, err := parseChain(req.tm.Chain)
	if err != nil {
		return
	}
	for _, raw := range rest {
		s, err := sigFromAny(raw)
		if err != nil {
			continue
		}
		id, _ := s.Options["task_id"].(string)
		gid, _ := s.Options["group_id"].(string)
		if id != "" {
			meta := &ResultMeta{TaskID: id, Status: status, Result: exc.exceptionDict(), Traceback: traceback, GroupID: gid}
			if err := w.backend.Store(ctx, meta); err != nil {
				w.log.Error("celery: store chain failure", "task", s.Task, "id", id, "error", err)
			}
		}
		if chord, ok := s.Options["chord"]; ok && chord != nil && id != "" && gid != "" {
			var idx *int
			if i, ok := toInt(s.Options["group_index"]); ok {
				idx = &i
			}
			w.chordPartReturn(ctx, chordPart{id: id, groupID: gid, groupIndex: idx, chord: chord}, status, exc.exceptionDict())
		}
	}
}

// chordError is Celery's celery.exceptions.ChordError.
func chordError(msg string) *TaskError {
	return &TaskError{Type: "ChordError", Module: "celery.exceptions", Args: []any{msg}}
}

// pyExcRepr is repr() of an exception as Python shows one stored as a
// result dict: Type('arg', ...).
func pyExcRepr(v any) string {
	e := exceptionFromResult(v)
	if e == nil {
		return fmt.Sprint(v)
	}
	parts := make([]string, len(e.Args))
	for i, a := range e.Args {
		parts[i] = safeRepr(normalize(a), 1<<20)
	}
	return e.Type + "(" + strings.Join(parts, ", ") + ")"
}

// applyCallbacks sends the link callbacks with the result as trace.py
// does: one callback on its own; several as one group (each group
// callback applied on its own, the plain ones together in a new group, so
// their results carry its id). It returns the result tuples for children.
func (w *Worker) applyCallbacks(ctx context.Context, req *request, root string, result any) []any {
	tm := req.tm
	ao := applyOpts{parentID: tm.ID, rootID: root}
	report := func(sig Signature, err error) {
		w.logFor(req).Error("celery: send callback", "task", tm.Task, "id", tm.ID, "callback", sig.Task, "error", err)
		w.onError(err)
	}
	if len(tm.Callbacks) == 1 {
		id, err := w.client.applySignature(ctx, tm.Callbacks[0], []any{result}, ao)
		if err != nil {
			report(tm.Callbacks[0], err)
			return nil
		}
		return []any{resultTuple(id)}
	}
	var children []any
	var plain []Signature
	for _, sig := range tm.Callbacks {
		if sig.SubtaskType != "group" {
			plain = append(plain, sig)
			continue
		}
		id, err := w.client.applySignature(ctx, sig, []any{result}, ao)
		if err != nil {
			report(sig, err)
			continue
		}
		children = append(children, resultTuple(id))
	}
	if len(plain) == 0 {
		return children
	}
	g, res, err := w.client.freeze(Group(plain...), "", nil)
	if err == nil {
		_, err = w.client.applySignature(ctx, g, []any{result}, ao)
	}
	if err != nil {
		report(g, err)
		return children
	}
	return append(children, res.(*GroupResult).asTuple())
}
