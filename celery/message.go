package celery

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// TaskMessage is one Celery task message. Encoding writes protocol 2 exactly
// as Celery 5.2 does (celery/app/amqp.py as_task_v2): the task fields in the
// headers, the body [args, kwargs, embed] as JSON, and the correlation_id and
// reply_to properties. Decoding reads protocol 2, protocol 1 (everything in
// the body) and the hybrid of both into the same fields.
type TaskMessage struct {
	// ID is the task id, a uuid4; it is also the correlation_id property.
	ID string
	// Task is the registered task name, e.g. "tasks.add".
	Task string
	// Args and Kwargs are the task's positional and keyword arguments.
	Args   []any
	Kwargs map[string]any

	// Lang is the sender's language; encoding writes "py" when empty, as
	// Celery workers expect nothing else.
	Lang string
	// RootID is the id of the first task of the workflow; encoding writes
	// ID when empty, as Celery does.
	RootID string
	// ParentID is the id of the task that sent this one, if any.
	ParentID string
	// GroupID and GroupIndex place the task in a group.
	GroupID    string
	GroupIndex *int
	// Retries is how many times the task was retried before this message.
	Retries int
	// ETA is when the task may run (zero: now). Countdown is converted to it.
	ETA time.Time
	// Expires is when the task expires (zero: never). A worker receiving it
	// later marks it REVOKED instead of running it.
	Expires time.Time
	// TimeLimit and SoftTimeLimit are Celery's [time_limit, soft_time_limit]
	// in seconds; zero means none (null).
	TimeLimit, SoftTimeLimit float64
	// Shadow is an alternative name for logs.
	Shadow string
	// ArgsRepr and KwargsRepr are the reprs shown in logs and monitors;
	// encoding computes them with Celery's saferepr when empty.
	ArgsRepr, KwargsRepr string
	// Origin names the sender; encoding writes "gen<pid>@<host>" when
	// empty, as Celery's anon_nodename does.
	Origin string
	// IgnoreResult asks the worker not to store the result.
	IgnoreResult bool
	// Headers are further message headers, written after Celery's own (in
	// sorted order) and, on decode, every header that is not a task field.
	Headers map[string]any

	// Callbacks (link) run with the result when the task succeeds;
	// Errbacks (link_error) run with the task id when it fails.
	Callbacks, Errbacks []Signature
	// Chain and Chord are the remaining canvas, passed through as decoded.
	Chain any
	Chord any

	// ReplyTo is the reply_to property (Celery writes its client's oid).
	ReplyTo string
	// Priority is the message priority, 0..9; on Redis 0 is consumed first.
	Priority int
	// Expiration, when set, is written as the expiration property (in
	// milliseconds), as Celery does for a task with expires.
	Expiration *time.Duration

	// Protocol is the protocol version a decoded message used: 1 or 2.
	Protocol int
	// UTC is protocol 1's utc flag: naive eta/expires are UTC when true.
	UTC bool
}

// Signature is a task signature as Celery serializes one (a dict with task,
// args, kwargs, options, subtask_type, immutable): the form link and
// link_error callbacks travel in.
type Signature struct {
	Task    string
	Args    []any
	Kwargs  map[string]any
	Options map[string]any
	// SubtaskType is "chain", "group", "chord"... for canvas primitives,
	// empty for a plain task signature.
	SubtaskType string
	// Immutable signatures do not receive the parent's result (Celery's
	// .si()).
	Immutable bool
}

// NewSignature returns a signature for a task with arguments (Celery's
// task.s(*args, **kwargs)).
func NewSignature(task string, args []any, kwargs map[string]any) Signature {
	return Signature{Task: task, Args: args, Kwargs: kwargs}
}

func (s Signature) object() pyjson.Object {
	args := s.Args
	if args == nil {
		args = []any{}
	}
	var kwargs any = s.Kwargs
	if s.Kwargs == nil {
		kwargs = pyjson.Object{}
	}
	var options any = s.Options
	if s.Options == nil {
		options = pyjson.Object{}
	}
	var st any
	if s.SubtaskType != "" {
		st = s.SubtaskType
	}
	return pyjson.Object{
		{Key: "task", Value: s.Task},
		{Key: "args", Value: args},
		{Key: "kwargs", Value: kwargs},
		{Key: "options", Value: options},
		{Key: "subtask_type", Value: st},
		{Key: "immutable", Value: s.Immutable},
	}
}

func signatureFrom(v any) (Signature, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Signature{}, fmt.Errorf("%w: signature is %T, not a dict", ErrInvalidMessage, v)
	}
	s := Signature{}
	s.Task, _ = m["task"].(string)
	if a, ok := m["args"].([]any); ok {
		s.Args = a
	}
	if k, ok := m["kwargs"].(map[string]any); ok {
		s.Kwargs = k
	}
	if o, ok := m["options"].(map[string]any); ok {
		s.Options = o
	}
	s.SubtaskType, _ = m["subtask_type"].(string)
	s.Immutable, _ = m["immutable"].(bool)
	return s, nil
}

func signaturesFrom(v any) ([]Signature, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		out := make([]Signature, 0, len(x))
		for _, e := range x {
			s, err := signatureFrom(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	case map[string]any:
		s, err := signatureFrom(x)
		if err != nil {
			return nil, err
		}
		return []Signature{s}, nil
	}
	return nil, fmt.Errorf("%w: callbacks are %T", ErrInvalidMessage, v)
}

func signatureList(sigs []Signature) any {
	if len(sigs) == 0 {
		return nil
	}
	out := make([]any, len(sigs))
	for i, s := range sigs {
		out[i] = s.object()
	}
	return out
}

// DefaultOrigin is Celery's anon_nodename(): "gen<pid>@<hostname>".
func DefaultOrigin() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("gen%d@%s", os.Getpid(), host)
}

// headerOrder is the order in which Celery 5.2 writes its task headers.
var headerOrder = []string{
	"lang", "task", "id", "shadow", "eta", "expires", "group", "group_index",
	"retries", "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr",
	"origin", "ignore_result",
}

var knownHeaders = func() map[string]bool {
	m := map[string]bool{"meth": true, "replaced_task_nesting": true}
	for _, h := range headerOrder {
		m[h] = true
	}
	return m
}()

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatISO(t)
}

// seconds writes a time limit as Python would hold it: an int when it is
// whole, else a float; zero is None.
func seconds(f float64) any {
	switch {
	case f == 0:
		return nil
	case f == math.Trunc(f) && math.Abs(f) < 1<<53:
		return int64(f)
	}
	return f
}

// MarshalHeaders returns the message headers as JSON, in the order and
// form Celery writes them.
func (m *TaskMessage) MarshalHeaders() ([]byte, error) { return pyjson.Marshal(m.headersObject()) }

// rootAndReprs returns the root_id, argsrepr and kwargsrepr Celery writes:
// the task's own id when it has no root, the reprs of the arguments when
// none were given.
func (m *TaskMessage) rootAndReprs() (root, argsrepr, kwargsrepr string) {
	root, argsrepr, kwargsrepr = m.RootID, m.ArgsRepr, m.KwargsRepr
	if root == "" {
		root = m.ID
	}
	if argsrepr == "" {
		argsrepr = argsRepr(m.Args)
	}
	if kwargsrepr == "" {
		kwargsrepr = kwargsRepr(m.Kwargs)
	}
	return root, argsrepr, kwargsrepr
}

// headersObject returns the message headers in the order Celery writes them.
func (m *TaskMessage) headersObject() pyjson.Object {
	lang := m.Lang
	if lang == "" {
		lang = "py"
	}
	root, argsrepr, kwargsrepr := m.rootAndReprs()
	origin := m.Origin
	if origin == "" {
		origin = DefaultOrigin()
	}
	var gi any
	if m.GroupIndex != nil {
		gi = *m.GroupIndex
	}
	h := pyjson.Object{
		{Key: "lang", Value: lang},
		{Key: "task", Value: m.Task},
		{Key: "id", Value: m.ID},
		{Key: "shadow", Value: nullable(m.Shadow)},
		{Key: "eta", Value: nullableTime(m.ETA)},
		{Key: "expires", Value: nullableTime(m.Expires)},
		{Key: "group", Value: nullable(m.GroupID)},
		{Key: "group_index", Value: gi},
		{Key: "retries", Value: m.Retries},
		{Key: "timelimit", Value: []any{seconds(m.TimeLimit), seconds(m.SoftTimeLimit)}},
		{Key: "root_id", Value: root},
		{Key: "parent_id", Value: nullable(m.ParentID)},
		{Key: "argsrepr", Value: argsrepr},
		{Key: "kwargsrepr", Value: kwargsrepr},
		{Key: "origin", Value: origin},
		{Key: "ignore_result", Value: m.IgnoreResult},
	}
	for _, k := range sortedKeys(m.Headers) {
		h.Set(k, m.Headers[k]) // Celery: headers2.update(headers)
	}
	return h
}

// Body returns the protocol 2 body as Celery serializes it with json:
// [args, kwargs, {"callbacks": ..., "errbacks": ..., "chain": ..., "chord": ...}].
func (m *TaskMessage) Body() ([]byte, error) {
	args := m.Args
	if args == nil {
		args = []any{}
	}
	var kwargs any = m.Kwargs
	if m.Kwargs == nil {
		kwargs = pyjson.Object{}
	}
	embed := pyjson.Object{
		{Key: "callbacks", Value: signatureList(m.Callbacks)},
		{Key: "errbacks", Value: signatureList(m.Errbacks)},
		{Key: "chain", Value: m.Chain},
		{Key: "chord", Value: m.Chord},
	}
	b, err := pyjson.Marshal([]any{args, kwargs, embed})
	if err != nil {
		return nil, fmt.Errorf("celery: encode task %s arguments: %w", m.Task, err)
	}
	return b, nil
}

// MarshalEnvelope returns the Kombu envelope that Celery 5.2 (on Kombu 5.2)
// pushes for this message when it publishes to exchange with routingKey,
// byte for byte: header order included. An empty deliveryTag gets a fresh
// uuid4.
func (m *TaskMessage) MarshalEnvelope(exchange, routingKey, deliveryTag string) ([]byte, error) {
	body, err := m.Body()
	if err != nil {
		return nil, err
	}
	if deliveryTag == "" {
		deliveryTag = uuid.NewString()
	}
	headers, err := pyjson.Marshal(m.headersObject())
	if err != nil {
		return nil, fmt.Errorf("celery: encode task %s headers: %w", m.Task, err)
	}
	b := make([]byte, 0, 512+base64.StdEncoding.EncodedLen(len(body))+len(headers))
	b = append(b, `{"body": "`...)
	b = base64.StdEncoding.AppendEncode(b, body)
	b = append(b, `", "content-encoding": "utf-8", "content-type": "application/json", "headers": `...)
	b = append(b, headers...)
	b = append(b, `, "properties": {"correlation_id": `...)
	b = pyjson.AppendString(b, m.ID)
	b = append(b, `, "reply_to": `...)
	b = pyjson.AppendString(b, m.ReplyTo)
	b = append(b, `, "delivery_mode": 2`...)
	if m.Expiration != nil {
		b = append(b, `, "expiration": `...)
		b = pyjson.AppendString(b, strconv.FormatInt(max(0, m.Expiration.Milliseconds()), 10))
	}
	b = append(b, `, "delivery_info": {"exchange": `...)
	b = pyjson.AppendString(b, exchange)
	b = append(b, `, "routing_key": `...)
	b = pyjson.AppendString(b, routingKey)
	b = append(b, `}, "priority": `...)
	b = strconv.AppendInt(b, int64(m.Priority), 10)
	b = append(b, `, "body_encoding": "base64", "delivery_tag": `...)
	b = pyjson.AppendString(b, deliveryTag)
	b = append(b, "}}"...)
	return b, nil
}

// DecodeMessage reads a task message a consumer received: protocol 2
// (headers["task"] set, body [args, kwargs, embed]), protocol 1 (headers
// empty, body a dict with task, id, args, kwargs, ...) or the hybrid Celery
// also accepts. The body is decoded with the message's decoder, so the
// consumer's accept list applies. Errors wrap ErrInvalidMessage.
func DecodeMessage(msg *entity.Message) (*TaskMessage, error) {
	payload, err := msg.Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	m := &TaskMessage{
		ReplyTo:  msg.Properties.ReplyTo,
		Priority: msg.Properties.Priority,
		UTC:      true,
	}
	if e := msg.Properties.Expiration; e != "" {
		if ms, err := strconv.ParseFloat(e, 64); err == nil {
			d := time.Duration(ms * float64(time.Millisecond))
			m.Expiration = &d
		}
	}
	headers := msg.Headers
	if _, isV2 := headers["task"]; isV2 {
		if body, ok := payload.(map[string]any); ok {
			if _, hybrid := body["args"]; hybrid {
				return decodeV1(m, body, headers, true)
			}
		}
		return decodeV2(m, payload, headers)
	}
	body, ok := payload.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: no task header and the body is not a protocol 1 dict (%T)", ErrInvalidMessage, payload)
	}
	return decodeV1(m, body, headers, false)
}

func decodeV2(m *TaskMessage, payload any, headers map[string]any) (*TaskMessage, error) {
	m.Protocol = 2
	parts, ok := payload.([]any)
	if !ok || len(parts) < 2 {
		return nil, fmt.Errorf("%w: protocol 2 body is not [args, kwargs, embed]", ErrInvalidMessage)
	}
	if err := m.setArgs(parts[0], parts[1]); err != nil {
		return nil, err
	}
	if len(parts) > 2 && parts[2] != nil {
		embed, ok := parts[2].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: protocol 2 embed is %T, not a dict", ErrInvalidMessage, parts[2])
		}
		if err := m.setEmbed(embed); err != nil {
			return nil, err
		}
	}
	if err := m.setFields(headers, true); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeV1(m *TaskMessage, body, headers map[string]any, hybrid bool) (*TaskMessage, error) {
	m.Protocol = 1
	kwargs, ok := body["kwargs"]
	if !ok {
		kwargs = map[string]any{}
	}
	if err := m.setArgs(body["args"], kwargs); err != nil {
		return nil, err
	}
	if err := m.setEmbed(body); err != nil {
		return nil, err
	}
	fields := map[string]any{}
	for k, v := range body {
		fields[k] = v
	}
	if g, ok := body["taskset"]; ok && g != nil && !hybrid {
		fields["group"] = g
	}
	if u, ok := body["utc"].(bool); ok {
		m.UTC = u
	}
	for k, v := range headers { // hybrid_to_proto2: headers.update(message.headers)
		fields[k] = v
	}
	if err := m.setFields(fields, false); err != nil {
		return nil, err
	}
	// Headers of a protocol 1 message are all application headers.
	m.Headers = nil
	for k, v := range headers {
		if !knownHeaders[k] || !hybrid {
			if m.Headers == nil {
				m.Headers = map[string]any{}
			}
			m.Headers[k] = v
		}
	}
	return m, nil
}

func (m *TaskMessage) setArgs(args, kwargs any) error {
	switch a := args.(type) {
	case nil:
		m.Args = []any{}
	case []any:
		m.Args = a
	default:
		return fmt.Errorf("%w: task args are %T, not a list", ErrInvalidMessage, args)
	}
	switch k := kwargs.(type) {
	case nil:
		m.Kwargs = map[string]any{}
	case map[string]any:
		m.Kwargs = k
	default:
		return fmt.Errorf("%w: task keyword arguments must be a mapping, not %T", ErrInvalidMessage, kwargs)
	}
	return nil
}

func (m *TaskMessage) setEmbed(embed map[string]any) error {
	var err error
	if m.Callbacks, err = signaturesFrom(embed["callbacks"]); err != nil {
		return err
	}
	if m.Errbacks, err = signaturesFrom(embed["errbacks"]); err != nil {
		return err
	}
	m.Chain = embed["chain"]
	m.Chord = embed["chord"]
	return nil
}

func (m *TaskMessage) setFields(h map[string]any, v2 bool) error {
	var ok bool
	if m.ID, ok = h["id"].(string); !ok || m.ID == "" {
		return fmt.Errorf("%w: missing task id", ErrInvalidMessage)
	}
	if m.Task, ok = h["task"].(string); !ok || m.Task == "" {
		return fmt.Errorf("%w: missing task name", ErrInvalidMessage)
	}
	m.Lang, _ = h["lang"].(string)
	m.RootID, _ = h["root_id"].(string)
	m.ParentID, _ = h["parent_id"].(string)
	m.GroupID, _ = h["group"].(string)
	if gi, ok := toInt(h["group_index"]); ok {
		m.GroupIndex = &gi
	}
	m.Retries, _ = toInt(h["retries"])
	m.Shadow, _ = h["shadow"].(string)
	m.ArgsRepr, _ = h["argsrepr"].(string)
	m.KwargsRepr, _ = h["kwargsrepr"].(string)
	m.Origin, _ = h["origin"].(string)
	m.IgnoreResult, _ = h["ignore_result"].(bool)
	if tl, ok := h["timelimit"].([]any); ok && len(tl) == 2 {
		m.TimeLimit, _ = toFloat(tl[0])
		m.SoftTimeLimit, _ = toFloat(tl[1])
	}
	var err error
	if m.ETA, err = timeField(h["eta"], m.UTC); err != nil {
		return fmt.Errorf("eta: %w", err)
	}
	if m.Expires, err = timeField(h["expires"], m.UTC); err != nil {
		return fmt.Errorf("expires: %w", err)
	}
	if v2 {
		for k, v := range h {
			if knownHeaders[k] {
				continue
			}
			if m.Headers == nil {
				m.Headers = map[string]any{}
			}
			m.Headers[k] = v
		}
	}
	return nil
}

func timeField(v any, utc bool) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case string:
		return parseISO(x, utc)
	}
	return time.Time{}, fmt.Errorf("%w: date-time is %T", ErrInvalidMessage, v)
}

func toInt(v any) (int, bool) {
	switch x := v.(type) {
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			f, ferr := x.Float64()
			if ferr != nil {
				return 0, false
			}
			return int(f), true
		}
		return int(i), true
	case int:
		return x, true
	case int64:
		return int(x), true
	case uint64:
		return int(x), true
	case float64:
		return int(x), true
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
