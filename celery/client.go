package celery

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// DefaultQueue is Celery's task_default_queue.
const DefaultQueue = "celery"

// Client sends tasks the way Celery's app.send_task does and reads their
// results from the Redis result backend. It is safe for concurrent use.
type Client struct {
	conn     *kombu.Connection
	backend  *Backend
	queue    string
	origin   string
	replyTo  string
	declared sync.Map // queue or exchange name -> true
	now      func() time.Time
	// sentEvents: send task-sent events (WithSentEvents), with the
	// client's own Lamport clock, as Celery's app-level EventDispatcher.
	sentEvents bool
	clock      lamport
	hooks      clientHooks // WithSendMiddleware (hooks.go)
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithDefaultQueue sets the queue tasks go to without WithQueue (Celery's
// task_default_queue, "celery").
func WithDefaultQueue(q string) ClientOption { return func(c *Client) { c.queue = q } }

// WithOrigin sets the origin header (default "gen<pid>@<hostname>").
func WithOrigin(origin string) ClientOption { return func(c *Client) { c.origin = origin } }

// WithReplyTo sets the reply_to property (default a uuid per client, as
// Celery writes its thread's oid).
func WithReplyTo(replyTo string) ClientOption { return func(c *Client) { c.replyTo = replyTo } }

// WithSentEvents makes the client send a task-sent event for every task it
// sends (Celery's task_send_sent_event), so Flower, `celery events` and
// celery-exporter see tasks from the moment they are queued. The event
// goes out after the task message, from the client's node name (its
// origin, "gen<pid>@<host>" by default); an event that cannot be published
// fails the send, as in Celery, though the task is already queued.
func WithSentEvents() ClientOption { return func(c *Client) { c.sentEvents = true } }

// withClientClock sets the time source (tests).
func withClientClock(now func() time.Time) ClientOption { return func(c *Client) { c.now = now } }

// NewClient returns a client that publishes on conn and reads results from
// backend. backend may be nil for fire-and-forget use; then results cannot
// be read.
func NewClient(conn *kombu.Connection, backend *Backend, opts ...ClientOption) *Client {
	c := &Client{conn: conn, backend: backend, queue: DefaultQueue, origin: DefaultOrigin(), replyTo: uuid.NewString(), now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Backend returns the client's result backend (may be nil).
func (c *Client) Backend() *Backend { return c.backend }

// SendOption sets one apply_async/send_task option.
type SendOption func(*sendOptions)

type sendOptions struct {
	queue, exchange, routingKey string
	exchangeType                kombu.ExchangeType
	priority                    int
	countdown                   time.Duration
	eta, expires                time.Time
	expiresIn                   *time.Duration
	taskID                      string
	headers                     map[string]any
	link, linkError             []Signature
	ignoreResult                bool
	rootID, parentID            string
	groupID                     string
	groupIndex                  *int
	timeLimit, softTimeLimit    time.Duration
	shadow                      string
	retries                     int
	chain                       []any // the rest of a chain, last-first (embed "chain")
	chord                       any   // a chord body (embed "chord")
}

// WithQueue sends the task to a queue (default: the client's default
// queue). The queue is declared once per client, as Celery declares it:
// bound to a direct exchange of the same name.
func WithQueue(q string) SendOption { return func(o *sendOptions) { o.queue = q } }

// WithExchange publishes to a named exchange with the routing key given by
// WithRoutingKey. Without a routing key, or without an exchange, Celery
// publishes to the default exchange with the queue name as routing key, and
// so does SendTask.
func WithExchange(name string, typ kombu.ExchangeType) SendOption {
	return func(o *sendOptions) { o.exchange, o.exchangeType = name, typ }
}

// WithRoutingKey sets the routing key used with WithExchange.
func WithRoutingKey(rk string) SendOption { return func(o *sendOptions) { o.routingKey = rk } }

// WithPriority sets the message priority (0..9; on Redis 0 runs first).
func WithPriority(p int) SendOption { return func(o *sendOptions) { o.priority = p } }

// WithCountdown delays the task: its eta is now plus d.
func WithCountdown(d time.Duration) SendOption { return func(o *sendOptions) { o.countdown = d } }

// WithETA sets the earliest time the task may run.
func WithETA(t time.Time) SendOption { return func(o *sendOptions) { o.eta = t } }

// WithExpires sets when the task expires: a worker receiving it later marks
// it REVOKED instead of running it.
func WithExpires(t time.Time) SendOption { return func(o *sendOptions) { o.expires = t } }

// WithExpiresIn sets the expiry relative to now (Celery's expires=seconds).
func WithExpiresIn(d time.Duration) SendOption { return func(o *sendOptions) { o.expiresIn = &d } }

// WithTaskID sets the task id (default a fresh uuid4).
func WithTaskID(id string) SendOption { return func(o *sendOptions) { o.taskID = id } }

// WithHeaders adds message headers after Celery's own.
func WithHeaders(h map[string]any) SendOption {
	return func(o *sendOptions) {
		if o.headers == nil {
			o.headers = map[string]any{}
		}
		maps.Copy(o.headers, h)
	}
}

// WithLink adds callbacks run with the task's result when it succeeds
// (Celery's link).
func WithLink(sigs ...Signature) SendOption {
	return func(o *sendOptions) { o.link = append(o.link, sigs...) }
}

// WithLinkError adds errbacks run with the task id when it fails (Celery's
// link_error).
func WithLinkError(sigs ...Signature) SendOption {
	return func(o *sendOptions) { o.linkError = append(o.linkError, sigs...) }
}

// WithIgnoreResult asks the worker not to store the result.
func WithIgnoreResult() SendOption { return func(o *sendOptions) { o.ignoreResult = true } }

// WithParent sets the root_id and parent_id headers (a task sent from
// another task).
func WithParent(rootID, parentID string) SendOption {
	return func(o *sendOptions) { o.rootID, o.parentID = rootID, parentID }
}

// WithGroup sets the group id and the task's index in it.
func WithGroup(id string, index int) SendOption {
	return func(o *sendOptions) { o.groupID, o.groupIndex = id, &index }
}

// WithTimeLimit sets the hard and soft time limits (zero: the worker's).
func WithTimeLimit(hard, soft time.Duration) SendOption {
	return func(o *sendOptions) { o.timeLimit, o.softTimeLimit = hard, soft }
}

// WithShadow sets the shadow name shown in logs instead of the task name.
func WithShadow(name string) SendOption { return func(o *sendOptions) { o.shadow = name } }

// WithRetries sets the retries header (how many retries came before).
func WithRetries(n int) SendOption { return func(o *sendOptions) { o.retries = n } }

// NewMessage builds the task message SendTask would publish, without
// publishing it: for tools that print or store messages.
func (c *Client) NewMessage(name string, args []any, kwargs map[string]any, opts ...SendOption) (*TaskMessage, error) {
	var o sendOptions
	for _, f := range opts {
		f(&o)
	}
	return c.newMessage(name, args, kwargs, &o)
}

func (c *Client) newMessage(name string, args []any, kwargs map[string]any, o *sendOptions) (*TaskMessage, error) {
	if name == "" {
		return nil, fmt.Errorf("celery: send task: empty task name")
	}
	now := c.now()
	m := &TaskMessage{
		ID: o.taskID, Task: name, Args: args, Kwargs: kwargs,
		RootID: o.rootID, ParentID: o.parentID, GroupID: o.groupID, GroupIndex: o.groupIndex,
		Retries: o.retries, Shadow: o.shadow, Origin: c.origin, IgnoreResult: o.ignoreResult,
		Headers: o.headers, Callbacks: o.link, Errbacks: o.linkError, Chord: o.chord,
		ReplyTo: c.replyTo, Priority: o.priority,
		TimeLimit: o.timeLimit.Seconds(), SoftTimeLimit: o.softTimeLimit.Seconds(),
	}
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if len(o.chain) > 0 {
		m.Chain = o.chain
	}
	switch {
	case o.countdown != 0:
		m.ETA = now.Add(o.countdown).UTC()
	case !o.eta.IsZero():
		m.ETA = o.eta
	}
	switch {
	case o.expiresIn != nil:
		m.Expires = now.Add(*o.expiresIn).UTC()
		exp := max(0, *o.expiresIn)
		m.Expiration = &exp
	case !o.expires.IsZero():
		m.Expires = o.expires
		exp := max(0, o.expires.Sub(now))
		m.Expiration = &exp
	}
	return m, nil
}

// SendTask sends a task by name, as Celery's app.send_task(name, args,
// kwargs, **options) does, and returns a handle on its result. The message
// is protocol 2, byte for byte what Celery 5.2 writes, on the default
// exchange with the queue name as routing key unless WithExchange and
// WithRoutingKey say otherwise.
func (c *Client) SendTask(ctx context.Context, name string, args []any, kwargs map[string]any, opts ...SendOption) (*AsyncResult, error) {
	var o sendOptions
	for _, f := range opts {
		f(&o)
	}
	m, err := c.newMessage(name, args, kwargs, &o)
	if err != nil {
		return nil, err
	}
	if err := c.Publish(ctx, m, o.queue, o.exchange, o.exchangeType, o.routingKey); err != nil {
		return nil, err
	}
	return c.AsyncResult(m.ID), nil
}

// publish publishes a prepared task message. With exchange "" or no
// routing key it goes to queue (the default queue when empty) through the
// default exchange, as Celery's send_task_message does for direct
// exchanges; otherwise to exchange with routingKey.
func (c *Client) publish(ctx context.Context, m *TaskMessage, queue, exchange string, typ kombu.ExchangeType, routingKey string) error {
	if queue == "" && exchange == "" {
		queue = c.queue
	}
	if queue != "" {
		if err := c.declareQueue(ctx, queue); err != nil {
			return err
		}
	}
	if exchange == "" || routingKey == "" {
		exchange, routingKey = "", queue
	} else if err := c.declareExchange(ctx, exchange, typ); err != nil {
		return err
	}
	raw, err := m.MarshalEnvelope(exchange, routingKey, "")
	if err != nil {
		return err
	}
	if _, err := c.conn.PublishRaw(ctx, exchange, routingKey, m.Priority, raw); err != nil {
		return fmt.Errorf("celery: send task %s[%s]: %w", m.Task, m.ID, err)
	}
	if c.sentEvents {
		if err := c.sendSentEvent(ctx, m, queue, exchange, routingKey); err != nil {
			return fmt.Errorf("celery: task %s[%s] sent, but not its task-sent event: %w", m.Task, m.ID, err)
		}
	}
	return nil
}

// sendSentEvent publishes task-sent with the fields Celery's
// send_task_message gives it.
func (c *Client) sendSentEvent(ctx context.Context, m *TaskMessage, queue, exchange, routingKey string) error {
	root, argsrepr, kwargsrepr := m.rootAndReprs()
	qname := queue
	if qname == "" {
		qname = routingKey
	}
	ev := newEvent("task-sent", c.origin, c.clock.forward(), map[string]any{
		"uuid": m.ID, "root_id": root, "parent_id": nullable(m.ParentID), "name": m.Task,
		"args": argsrepr, "kwargs": kwargsrepr, "retries": m.Retries,
		"eta": nullableTime(m.ETA), "expires": nullableTime(m.Expires),
		"queue": qname, "exchange": exchange, "routing_key": routingKey,
	})
	return publishEvent(ctx, c.conn.Producer(), c.origin, ev)
}

// declareQueue declares a queue once per client as Celery does
// (declare=[queue]): bound to a direct exchange named after it.
func (c *Client) declareQueue(ctx context.Context, q string) error {
	if _, done := c.declared.Load("q:" + q); done {
		return nil
	}
	if _, err := c.conn.DeclareQueue(ctx, CeleryQueue(q)); err != nil {
		return fmt.Errorf("celery: declare queue %s: %w", q, err)
	}
	c.declared.Store("q:"+q, true)
	return nil
}

func (c *Client) declareExchange(ctx context.Context, name string, typ kombu.ExchangeType) error {
	if _, done := c.declared.Load("x:" + name); done {
		return nil
	}
	if err := c.conn.DeclareExchange(ctx, kombu.Exchange{Name: name, Type: typ}); err != nil {
		return fmt.Errorf("celery: declare exchange %s: %w", name, err)
	}
	c.declared.Store("x:"+name, true)
	return nil
}

// CeleryQueue returns the queue Celery creates for a name
// (task_create_missing_queues): bound to a direct exchange of the same name
// with the name as routing key.
func CeleryQueue(name string) kombu.Queue {
	return kombu.Queue{Name: name, Exchange: kombu.Exchange{Name: name, Type: kombu.Direct}, RoutingKey: name}
}

// AsyncResult returns a handle on the result of a task id.
func (c *Client) AsyncResult(id string) *AsyncResult { return &AsyncResult{ID: id, backend: c.backend} }

// AsyncResult is a handle on a task's result, like Celery's AsyncResult.
type AsyncResult struct {
	// ID is the task id.
	ID string
	// Parent is the result this one follows in a chain (or, for a chord's
	// body, the header's GroupResult), as Celery's result.parent; nil for
	// a task sent on its own.
	Parent  Result
	backend *Backend
}

// NewAsyncResult returns a handle on a task's result in backend.
func NewAsyncResult(id string, backend *Backend) *AsyncResult {
	return &AsyncResult{ID: id, backend: backend}
}

// Info returns the task's current meta without waiting.
func (r *AsyncResult) Info(ctx context.Context) (*ResultMeta, error) {
	if r.backend == nil {
		return nil, ErrNoBackend
	}
	return r.backend.Get(ctx, r.ID)
}

// State returns the task's current state (PENDING when nothing is stored).
func (r *AsyncResult) State(ctx context.Context) (State, error) {
	m, err := r.Info(ctx)
	if err != nil {
		return "", err
	}
	return m.Status, nil
}

// Ready reports whether the task has finished: SUCCESS, FAILURE or REVOKED.
func (r *AsyncResult) Ready(ctx context.Context) (bool, error) {
	s, err := r.State(ctx)
	return s.Ready(), err
}

// Wait waits until the task is ready or ctx is done and returns its meta,
// whatever the outcome (see Get).
func (r *AsyncResult) Wait(ctx context.Context) (*ResultMeta, error) {
	if r.backend == nil {
		return nil, ErrNoBackend
	}
	return r.backend.Wait(ctx, r.ID)
}

// Get waits for the task and returns its result, as AsyncResult.get() does:
// the decoded return value (JSON numbers as json.Number) on SUCCESS, a
// *TaskError with the exception type and message on FAILURE
// (errors.Is ErrTaskFailed) and REVOKED (ErrTaskRevoked). Bound the wait
// with ctx.
func (r *AsyncResult) Get(ctx context.Context) (any, error) {
	m, err := r.Wait(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	return m.Result, nil
}

// GetInto is Get decoding the result into v (as encoding/json would).
func (r *AsyncResult) GetInto(ctx context.Context, v any) error {
	m, err := r.Wait(ctx)
	if err != nil {
		return err
	}
	if err := m.Err(); err != nil {
		return err
	}
	return m.Decode(v)
}

// Forget deletes the stored result.
func (r *AsyncResult) Forget(ctx context.Context) error {
	if r.backend == nil {
		return ErrNoBackend
	}
	return r.backend.Forget(ctx, r.ID)
}

// ParseArgs reads task arguments given as JSON text: a JSON array for
// args (or "" for none). Numbers stay exact (json.Number).
func ParseArgs(s string) ([]any, error) {
	if s == "" {
		return []any{}, nil
	}
	v, err := pyjson.Unmarshal([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("celery: args: %w", err)
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("celery: args must be a JSON array, not %T", v)
	}
	return a, nil
}

// ParseKwargs reads keyword arguments given as a JSON object (or "" for
// none).
func ParseKwargs(s string) (map[string]any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	v, err := pyjson.Unmarshal([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("celery: kwargs: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("celery: kwargs must be a JSON object, not %T", v)
	}
	return m, nil
}
