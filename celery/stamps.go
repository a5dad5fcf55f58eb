package celery

import (
	"fmt"
	"sort"
	"strings"
)

// Revoking by stamped headers (Celery 5.3+'s revoke_by_stamped_headers):
// a task whose message carries stamps (the stamps header, its names in
// stamped_headers, as Celery's canvas stamping writes them) matching a
// revoked stamp never runs, as a task revoked by id; with terminate the
// running ones are cancelled too. As in Celery, revoked stamps are kept
// for the worker's life (no limit, no expiry, not shared by mingle).

// revokedStamps maps a stamp name to the revoked values.
type revokedStamps map[string][]any

// stampRevoked reports whether the message's stamps match a revoked stamp
// (Celery's Request.revoked: the first stamped header with revoked values
// decides).
func (w *Worker) stampRevoked(tm *TaskMessage) bool {
	w.state.mu.Lock()
	defer w.state.mu.Unlock()
	if len(w.state.stamps) == 0 {
		return false
	}
	return stampsMatch(w.state.stamps, tm) != nil
}

// stampsMatch returns the first revoked stamp the message carries, as
// {name: value}, or nil.
func stampsMatch(revoked revokedStamps, tm *TaskMessage) map[string]any {
	names := stringList(tm.Headers["stamped_headers"])
	stamps, _ := tm.Headers["stamps"].(map[string]any)
	for _, name := range names {
		values, ok := revoked[name]
		if !ok {
			continue
		}
		for _, v := range listOf(stamps[name]) {
			for _, r := range values {
				if fmt.Sprint(v) == fmt.Sprint(r) {
					return map[string]any{name: v}
				}
			}
		}
		return nil // Celery looks at the first revoked name only
	}
	return nil
}

func listOf(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// controlRevokeByStamps is the revoke_by_stamped_headers command.
func (w *Worker) controlRevokeByStamps(headers any, terminate bool) any {
	h := map[string]any{}
	switch x := headers.(type) {
	case map[string]any:
		h = x
	case []any: // "name=value" strings, as the command line sends them
		for _, s := range stringList(x) {
			name, value, _ := strings.Cut(s, "=")
			h[name] = value
		}
	default:
		return nok(fmt.Sprintf("AttributeError(\"'%s' object has no attribute 'items'\")", pyTypeName(headers)))
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	w.state.mu.Lock()
	if w.state.stamps == nil {
		w.state.stamps = revokedStamps{}
	}
	for _, name := range names {
		w.state.stamps[name] = append(w.state.stamps[name], listOf(h[name])...)
	}
	w.state.mu.Unlock()
	w.log.Info("celery: tasks flagged as revoked by stamped headers", "headers", h)
	if !terminate {
		return ok(fmt.Sprintf("headers %s flagged as revoked, but not terminated", safeRepr(h, 1<<20)))
	}
	terminated := map[string][]any{}
	w.state.mu.Lock()
	for _, a := range w.state.active {
		if m := stampsMatch(revokedStamps(mapOfLists(h)), a.req.tm); m != nil {
			for name, v := range m {
				terminated[name] = append(terminated[name], v)
			}
			a.terminate(ErrTerminated)
		}
	}
	w.state.mu.Unlock()
	if len(terminated) == 0 {
		return ok(fmt.Sprintf("headers %s were not terminated", safeRepr(h, 1<<20)))
	}
	// Celery formats a defaultdict of sets.
	var parts []string
	for _, name := range names {
		if vs, ok := terminated[name]; ok {
			var items []string
			for _, v := range vs {
				items = append(items, safeRepr(v, 1<<20))
			}
			parts = append(parts, pyRepr(name)+": {"+strings.Join(items, ", ")+"}")
		}
	}
	return ok("headers defaultdict(<class 'set'>, {" + strings.Join(parts, ", ") + "}) revoked")
}

func mapOfLists(h map[string]any) map[string][]any {
	out := make(map[string][]any, len(h))
	for k, v := range h {
		out[k] = listOf(v)
	}
	return out
}

// pyTypeName is the Python type name of a decoded JSON value.
func pyTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case string:
		return "str"
	case bool:
		return "bool"
	case map[string]any:
		return "dict"
	case []any:
		return "list"
	}
	if _, ok := toInt(v); ok {
		return "int"
	}
	return "float"
}
