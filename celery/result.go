package celery

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// State is a task state as Celery stores it (celery.states).
type State string

// Celery's task states.
const (
	StatePending  State = "PENDING"
	StateReceived State = "RECEIVED"
	StateStarted  State = "STARTED"
	StateSuccess  State = "SUCCESS"
	StateFailure  State = "FAILURE"
	StateRevoked  State = "REVOKED"
	StateRejected State = "REJECTED"
	StateRetry    State = "RETRY"
	StateIgnored  State = "IGNORED"
)

// Ready reports whether the state is final: SUCCESS, FAILURE or REVOKED
// (celery.states.READY_STATES).
func (s State) Ready() bool { return s == StateSuccess || s == StateFailure || s == StateRevoked }

// HasException reports whether the result of this state is an exception:
// RETRY, FAILURE or REVOKED (celery.states.EXCEPTION_STATES).
func (s State) HasException() bool {
	return s == StateRetry || s == StateFailure || s == StateRevoked
}

// ResultMeta is the value Celery's Redis result backend keeps under
// celery-task-meta-<id>, and publishes on the channel of the same name.
type ResultMeta struct {
	TaskID string
	Status State
	// Result is the task's return value for SUCCESS; for RETRY, FAILURE and
	// REVOKED it is the exception as Celery serializes it with json: a dict
	// with exc_type, exc_message and exc_module (see Err). For STARTED it is
	// {"pid": ..., "hostname": ...}.
	Result any
	// Traceback is the formatted traceback of a failure ("" is null).
	Traceback string
	// Children are the results of tasks this one sent (callbacks, retries),
	// as Celery's result tuples: [[id, parent], null].
	Children []any
	// DateDone is when the task became ready (zero, null, until then).
	DateDone time.Time
	// GroupID and ParentID are written only when set, as Celery does.
	GroupID, ParentID string

	// Extended holds the fields Celery adds with result_extended=True
	// (name, args, kwargs, worker, retries, queue), in that order; nil when
	// absent.
	Extended *ExtendedMeta
}

// ExtendedMeta are the request fields stored with result_extended=True.
type ExtendedMeta struct {
	Name    string
	Args    []any
	Kwargs  map[string]any
	Worker  string
	Retries int
	Queue   string
}

// Marshal writes the meta as Celery's backend does: json.dumps of the dict
// status, result, traceback, children, date_done, [group_id], [parent_id],
// [extended fields], task_id.
func (m *ResultMeta) Marshal() ([]byte, error) {
	children := m.Children
	if children == nil {
		children = []any{}
	}
	var dateDone any
	if !m.DateDone.IsZero() {
		dateDone = formatNaiveUTC(m.DateDone)
	}
	o := pyjson.Object{
		{Key: "status", Value: string(m.Status)},
		{Key: "result", Value: m.Result},
		{Key: "traceback", Value: nullable(m.Traceback)},
		{Key: "children", Value: children},
		{Key: "date_done", Value: dateDone},
	}
	if m.GroupID != "" {
		o = append(o, pyjson.Member{Key: "group_id", Value: m.GroupID})
	}
	if m.ParentID != "" {
		o = append(o, pyjson.Member{Key: "parent_id", Value: m.ParentID})
	}
	if e := m.Extended; e != nil {
		args := e.Args
		if args == nil {
			args = []any{}
		}
		var kwargs any = e.Kwargs
		if kwargs == nil {
			kwargs = pyjson.Object{}
		}
		o = append(o,
			pyjson.Member{Key: "name", Value: nullable(e.Name)},
			pyjson.Member{Key: "args", Value: args},
			pyjson.Member{Key: "kwargs", Value: kwargs},
			pyjson.Member{Key: "worker", Value: nullable(e.Worker)},
			pyjson.Member{Key: "retries", Value: e.Retries},
			pyjson.Member{Key: "queue", Value: nullable(e.Queue)},
		)
	}
	o = append(o, pyjson.Member{Key: "task_id", Value: m.TaskID})
	b, err := pyjson.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("celery: encode result of task %s: %w", m.TaskID, err)
	}
	return b, nil
}

// ParseResultMeta reads a result meta written by Celery or by Marshal.
func ParseResultMeta(b []byte) (*ResultMeta, error) {
	v, err := pyjson.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("celery: result meta: %w", err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("celery: result meta is %T, not a dict", v)
	}
	m := &ResultMeta{Result: d["result"]}
	m.TaskID, _ = d["task_id"].(string)
	s, _ := d["status"].(string)
	m.Status = State(s)
	m.Traceback, _ = d["traceback"].(string)
	m.Children, _ = d["children"].([]any)
	if dd, ok := d["date_done"].(string); ok {
		if m.DateDone, err = parseISO(dd, true); err != nil {
			return nil, fmt.Errorf("celery: result meta date_done: %w", err)
		}
	}
	m.GroupID, _ = d["group_id"].(string)
	m.ParentID, _ = d["parent_id"].(string)
	if _, ok := d["worker"]; ok {
		e := &ExtendedMeta{}
		e.Name, _ = d["name"].(string)
		e.Args, _ = d["args"].([]any)
		e.Kwargs, _ = d["kwargs"].(map[string]any)
		e.Worker, _ = d["worker"].(string)
		e.Retries, _ = toInt(d["retries"])
		e.Queue, _ = d["queue"].(string)
		m.Extended = e
	}
	return m, nil
}

// Err returns the task's exception as a *TaskError for the RETRY, FAILURE
// and REVOKED states, and nil for the others.
func (m *ResultMeta) Err() error {
	if !m.Status.HasException() {
		return nil
	}
	e := exceptionFromResult(m.Result)
	e.TaskID, e.State, e.Traceback = m.TaskID, m.Status, m.Traceback
	return e
}

// Decode decodes the result value into v, as encoding/json would decode its
// JSON text.
func (m *ResultMeta) Decode(v any) error {
	b, err := pyjson.Marshal(m.Result)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// TaskError is a task's exception as Celery stores it: the Python exception
// type, its module and its args. A Go handler returns one (see NewError) to
// fail with a given Python type; a client gets one from a FAILURE or REVOKED
// result (errors.Is(err, ErrTaskFailed) or ErrTaskRevoked).
type TaskError struct {
	// TaskID and State say which task failed and how (on results).
	TaskID string
	State  State
	// Type is exc_type, e.g. "ValueError".
	Type string
	// Module is exc_module, e.g. "builtins"; empty is null, which makes
	// Python create an exception class of that name.
	Module string
	// Args is exc_message: the exception's args, usually one message.
	Args []any
	// Traceback is the stored traceback text, if any.
	Traceback string
}

// NewError returns an error that fails a task with the Python exception
// type excType and message msg. Python's AsyncResult.get() raises
// excType(msg): builtin types (ValueError, KeyError, ...) get module
// "builtins"; other names get a class Celery creates.
func NewError(excType, msg string) *TaskError {
	e := &TaskError{Type: excType, Args: []any{msg}}
	if pythonBuiltinExceptions[excType] {
		e.Module = "builtins"
	}
	return e
}

// Errorf is NewError with a formatted message.
func Errorf(excType, format string, a ...any) *TaskError {
	return NewError(excType, fmt.Sprintf(format, a...))
}

// Message is the exception's message as Python's str(exc) gives it for the
// usual cases: the single argument, or the args joined.
func (e *TaskError) Message() string {
	switch len(e.Args) {
	case 0:
		return ""
	case 1:
		if s, ok := e.Args[0].(string); ok {
			return s
		}
		return safeRepr(normalize(e.Args[0]), 0)
	}
	return safeRepr(pyTuple(normalizeSlice(e.Args)), 0)
}

func (e *TaskError) Error() string {
	msg := e.Message()
	name := e.Type
	if name == "" {
		name = "Exception"
	}
	if msg == "" {
		return name
	}
	return name + ": " + msg
}

// Is matches ErrTaskFailed for a FAILURE and ErrTaskRevoked for a REVOKED
// result, ErrMaxRetriesExceeded for MaxRetriesExceededError and
// ErrNotRegistered for NotRegistered.
func (e *TaskError) Is(target error) bool {
	switch target {
	case ErrTaskFailed:
		return e.State == StateFailure
	case ErrTaskRevoked:
		return e.State == StateRevoked
	case ErrMaxRetriesExceeded:
		return e.Type == "MaxRetriesExceededError"
	case ErrNotRegistered:
		return e.Type == "NotRegistered"
	}
	return false
}

// exceptionDict is prepare_exception for the json serializer.
func (e *TaskError) exceptionDict() pyjson.Object {
	args := e.Args
	if args == nil {
		args = []any{}
	}
	return pyjson.Object{
		{Key: "exc_type", Value: e.Type},
		{Key: "exc_message", Value: args},
		{Key: "exc_module", Value: nullable(e.Module)},
	}
}

// exceptionOf turns a handler error into the exception Celery stores. A
// *TaskError anywhere in the chain is used as it is; any other error
// becomes builtins.Exception with the error's text.
func exceptionOf(err error) *TaskError {
	var te *TaskError
	if errors.As(err, &te) {
		return te
	}
	return &TaskError{Type: "Exception", Module: "builtins", Args: []any{err.Error()}}
}

func exceptionFromResult(v any) *TaskError {
	d, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return &TaskError{}
		}
		return &TaskError{Type: "Exception", Args: []any{fmt.Sprint(v)}}
	}
	e := &TaskError{}
	e.Type, _ = d["exc_type"].(string)
	e.Module, _ = d["exc_module"].(string)
	switch msg := d["exc_message"].(type) {
	case []any:
		e.Args = msg
	case nil:
	default:
		e.Args = []any{msg}
	}
	return e
}

// revokedError is what Celery stores for a revoked task:
// TaskRevokedError(reason) from celery.exceptions.
func revokedError(reason string) *TaskError {
	return &TaskError{Type: "TaskRevokedError", Module: "celery.exceptions", Args: []any{reason}}
}

// notRegisteredError is Celery's NotRegistered(name).
func notRegisteredError(name string) *TaskError {
	return &TaskError{Type: "NotRegistered", Module: "celery.exceptions", Args: []any{name}}
}

// pythonBuiltinExceptions are the exception names Python finds in builtins.
var pythonBuiltinExceptions = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`BaseException Exception ArithmeticError AssertionError
		AttributeError BlockingIOError BrokenPipeError BufferError ChildProcessError
		ConnectionAbortedError ConnectionError ConnectionRefusedError ConnectionResetError
		EOFError EnvironmentError FileExistsError FileNotFoundError FloatingPointError
		IOError ImportError IndexError InterruptedError IsADirectoryError KeyError
		LookupError MemoryError ModuleNotFoundError NameError NotADirectoryError
		NotImplementedError OSError OverflowError PermissionError ProcessLookupError
		RecursionError ReferenceError RuntimeError StopIteration SyntaxError SystemError
		TimeoutError TypeError UnboundLocalError UnicodeDecodeError UnicodeEncodeError
		UnicodeError ValueError ZeroDivisionError`) {
		m[n] = true
	}
	return m
}()
