package celery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of the Redis result backend, as in Celery 5.2.
const (
	// DefaultResultExpires is Celery's result_expires: results are kept one
	// day (SETEX ... 86400).
	DefaultResultExpires = 24 * time.Hour
	// DefaultTaskKeyPrefix is the prefix of result keys and channels
	// (BaseKeyValueStoreBackend.task_keyprefix).
	DefaultTaskKeyPrefix = "celery-task-meta-"
	// DefaultPollInterval is how often a waiting Get re-reads the key, in
	// case a notification was lost while the pub/sub connection was down.
	DefaultPollInterval = time.Second
)

// Backend is Celery's Redis result backend (celery.backends.redis): task
// states and results under celery-task-meta-<id>, each write also
// published on the channel of the same name, which waiting clients
// subscribe to. It is safe for concurrent use.
type Backend struct {
	client  redis.UniversalClient
	owned   bool
	expires time.Duration
	prefix  string
	poll    time.Duration
	now     func() time.Time
	batch   storeBatcher // concurrent Store calls (storebatch.go)
}

// BackendOption configures a Backend.
type BackendOption func(*Backend)

// WithResultExpires sets how long results are kept (Celery's
// result_expires, one day by default). Zero keeps them forever (SET
// without EX).
func WithResultExpires(d time.Duration) BackendOption { return func(b *Backend) { b.expires = d } }

// WithTaskKeyPrefix changes the key and channel prefix (default
// "celery-task-meta-"). Celery 5.2 has no option for it; use this only to
// match a Python side that changed backend.task_keyprefix.
func WithTaskKeyPrefix(p string) BackendOption { return func(b *Backend) { b.prefix = p } }

// WithPollInterval sets how often a waiting Get re-reads the result key
// besides listening for its notification (default 1 s; zero disables).
func WithPollInterval(d time.Duration) BackendOption { return func(b *Backend) { b.poll = d } }

// withClock sets the time source (tests).
func withClock(now func() time.Time) BackendOption { return func(b *Backend) { b.now = now } }

// NewBackend returns a result backend over a go-redis client the caller
// owns: Close does not close it.
func NewBackend(client redis.UniversalClient, opts ...BackendOption) *Backend {
	b := &Backend{client: client, expires: DefaultResultExpires, prefix: DefaultTaskKeyPrefix, poll: DefaultPollInterval, now: time.Now}
	for _, o := range opts {
		o(b)
	}
	return b
}

// OpenBackend opens a result backend from a Celery result_backend URL
// ("redis://host:6379/0"). The backend owns its client: Close closes it.
func OpenBackend(url string, opts ...BackendOption) (*Backend, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("celery: result backend URL: %w", err)
	}
	b := NewBackend(redis.NewClient(o), opts...)
	b.owned = true
	return b, nil
}

// Close closes the client if the backend opened it (OpenBackend).
func (b *Backend) Close() error {
	if b.owned {
		return b.client.Close()
	}
	return nil
}

// Client returns the go-redis client.
func (b *Backend) Client() redis.UniversalClient { return b.client }

// Key returns the key (and channel) of a task's result.
func (b *Backend) Key(taskID string) string { return b.prefix + taskID }

// Get returns a task's current meta; a task with no stored state is
// PENDING, as in Celery.
func (b *Backend) Get(ctx context.Context, taskID string) (*ResultMeta, error) {
	raw, err := b.client.Get(ctx, b.Key(taskID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return &ResultMeta{TaskID: taskID, Status: StatePending}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("celery: get result of %s: %w", taskID, err)
	}
	m, err := ParseResultMeta(raw)
	if err != nil {
		return nil, err
	}
	if m.TaskID == "" {
		m.TaskID = taskID
	}
	return m, nil
}

// Store writes a task's meta as Celery's backend does: it reads the current
// meta and leaves a SUCCESS in place (Celery's guard against a lost worker
// overwriting a result), else SETEX (or SET when results never expire) and
// PUBLISH in one MULTI/EXEC. DateDone is set for ready states if zero.
// Concurrent calls share those two round trips (group commit), each
// returning its own result once Redis has replied.
func (b *Backend) Store(ctx context.Context, m *ResultMeta) error {
	if m.Status.Ready() && m.DateDone.IsZero() {
		m.DateDone = b.now()
	}
	val, err := m.Marshal()
	if err != nil {
		return err
	}
	// Concurrent calls share the round trips (storebatch.go).
	return b.store(ctx, &storeCall{id: m.TaskID, key: b.Key(m.TaskID), val: val, success: m.Status == StateSuccess})
}

// set is Celery's RedisBackend.set: SETEX with the result expiry (SET when
// results never expire) and PUBLISH on the key's channel, in one
// MULTI/EXEC.
func (b *Backend) set(ctx context.Context, key string, val any) error {
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if b.expires > 0 {
			p.SetEx(ctx, key, val, b.expires)
		} else {
			p.Set(ctx, key, val, 0)
		}
		p.Publish(ctx, key, val)
		return nil
	})
	return err
}

// Forget deletes a task's result.
func (b *Backend) Forget(ctx context.Context, taskID string) error {
	if err := b.client.Del(ctx, b.Key(taskID)).Err(); err != nil {
		return fmt.Errorf("celery: forget result of %s: %w", taskID, err)
	}
	return nil
}

// Wait waits until the task is ready (SUCCESS, FAILURE or REVOKED) or ctx
// is done, and returns its meta. Like Celery's ResultConsumer it subscribes
// to the task's channel, then reads the key, so a result stored in between
// is not missed; it also re-reads the key every poll interval.
func (b *Backend) Wait(ctx context.Context, taskID string) (*ResultMeta, error) {
	key := b.Key(taskID)
	ps := b.client.Subscribe(ctx, key)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return nil, fmt.Errorf("celery: subscribe to result of %s: %w", taskID, err)
	}
	m, err := b.Get(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if m.Status.Ready() {
		return m, nil
	}
	ch := ps.Channel()
	var tick <-chan time.Time
	if b.poll > 0 {
		t := time.NewTicker(b.poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("celery: wait for result of %s: %w", taskID, ctx.Err())
		case msg, ok := <-ch:
			if !ok {
				return nil, fmt.Errorf("celery: wait for result of %s: subscription closed", taskID)
			}
			m, err := ParseResultMeta([]byte(msg.Payload))
			if err != nil {
				continue
			}
			if m.Status.Ready() {
				if m.TaskID == "" {
					m.TaskID = taskID
				}
				return m, nil
			}
		case <-tick:
			m, err := b.Get(ctx, taskID)
			if err == nil && m.Status.Ready() {
				return m, nil
			}
		}
	}
}
