package celery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
)

// Control does from Go what `celery inspect` and `celery control` do
// (Celery's app.control, kombu.pidbox.Mailbox): it broadcasts a command on
// the "celery.pidbox" fanout exchange and collects the workers' replies,
// Python and Go alike, for the reply timeout. It is safe for concurrent
// use: each broadcast that waits for replies has a reply queue of its own
// (routing key: its ticket), deleted when it returns, so concurrent
// broadcasts never take each other's replies.
type Control struct {
	conn  *kombu.Connection
	clock lamport
}

// NewControl returns a Control over a broker connection.
func NewControl(conn *kombu.Connection) *Control {
	return &Control{conn: conn}
}

// Reply is one worker's answer to a broadcast.
type Reply struct {
	// Hostname is the worker's node name ("celery@host").
	Hostname string
	// Value is the reply as decoded JSON (for most commands a dict with
	// "ok" or "error", or a list).
	Value any
}

// Err returns the command's error reply ({"error": ...}) as an error.
func (r Reply) Err() error {
	if m, ok := r.Value.(map[string]any); ok {
		if e, ok := m["error"]; ok {
			return fmt.Errorf("celery: %s: %v", r.Hostname, e)
		}
	}
	return nil
}

// BroadcastOption configures a broadcast.
type BroadcastOption func(*broadcastOptions)

type broadcastOptions struct {
	destination      []string
	pattern, matcher string
	timeout          time.Duration
	limit            int
	noReply          bool
}

// WithDestination sends the command to these nodes only.
func WithDestination(nodes ...string) BroadcastOption {
	return func(o *broadcastOptions) { o.destination = nodes }
}

// WithPattern sends the command to the nodes whose name matches pattern;
// matcher is "glob" or "pcre" (Celery's --pattern/--matcher).
func WithPattern(pattern, matcher string) BroadcastOption {
	return func(o *broadcastOptions) { o.pattern, o.matcher = pattern, matcher }
}

// WithReplyTimeout sets how long replies are collected (default 1 s, as
// Celery's).
func WithReplyTimeout(d time.Duration) BroadcastOption {
	return func(o *broadcastOptions) { o.timeout = d }
}

// WithLimit stops collecting after n replies (default: the number of
// destinations, else no limit).
func WithLimit(n int) BroadcastOption { return func(o *broadcastOptions) { o.limit = n } }

// WithoutReply sends the command and returns at once (Celery's cast).
func WithoutReply() BroadcastOption { return func(o *broadcastOptions) { o.noReply = true } }

// Broadcast sends a remote-control command with its arguments and returns
// the replies that arrived within the reply timeout.
func (c *Control) Broadcast(ctx context.Context, command string, args map[string]any, opts ...BroadcastOption) ([]Reply, error) {
	o := broadcastOptions{timeout: time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.limit == 0 && len(o.destination) > 0 {
		o.limit = len(o.destination)
	}
	if args == nil {
		args = map[string]any{}
	}
	var dest any
	if len(o.destination) > 0 {
		dest = stringsToAny(o.destination)
	}
	var pattern, matcher any
	if o.pattern != "" {
		pattern, matcher = o.pattern, o.matcher
	}
	body := map[string]any{"method": command, "arguments": args, "destination": dest, "pattern": pattern, "matcher": matcher}
	ticket := uuid.NewString()
	replyQ := kombu.Queue{
		Name:       ticket + "." + PidboxReplyExchange,
		Exchange:   kombu.Exchange{Name: PidboxReplyExchange, Type: kombu.Direct, Durable: false},
		RoutingKey: ticket, AutoDelete: true,
	}
	if !o.noReply {
		body["ticket"] = ticket
		body["reply_to"] = map[string]any{"exchange": PidboxReplyExchange, "routing_key": ticket}
		if _, err := c.conn.DeclareQueue(ctx, replyQ); err != nil {
			return nil, fmt.Errorf("celery: control: declare reply queue: %w", err)
		}
		defer func() {
			// Late replies then route nowhere and are dropped.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := c.conn.DeleteQueue(dctx, replyQ.Name); err != nil {
				c.conn.Logger().Warn("celery: control: delete reply queue", "queue", replyQ.Name, "error", err)
			}
		}()
	}
	expires := 0.0
	if o.timeout > 0 {
		expires = float64(time.Now().Add(o.timeout).UnixNano()) / 1e9
	}
	_, err := c.conn.Producer().Publish(ctx, body,
		kombu.WithExchange(kombu.Exchange{Name: PidboxExchange, Type: kombu.Fanout, Durable: false}),
		kombu.WithHeaders(map[string]any{"clock": c.clock.forward(), "expires": expires}),
		kombu.WithDeliveryMode(entity.Transient))
	if err != nil {
		return nil, fmt.Errorf("celery: control %s: %w", command, err)
	}
	if o.noReply {
		return nil, nil
	}
	deadline := time.Now().Add(o.timeout)
	var replies []Reply
	for o.limit == 0 || len(replies) < o.limit {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		m, err := c.conn.Get(ctx, replyQ.Name, kombu.GetWait(wait), kombu.GetNoAck())
		if errors.Is(err, kombu.ErrEmpty) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return replies, ctx.Err()
			}
			return replies, fmt.Errorf("celery: control %s: %w", command, err)
		}
		if t, _ := m.Headers["ticket"].(string); t != ticket {
			continue // not a reply to this broadcast
		}
		if clk, ok := toInt(m.Headers["clock"]); ok {
			c.clock.adjust(int64(clk))
		}
		var r map[string]any
		if err := m.Decode(&r); err != nil {
			c.conn.Logger().Warn("celery: control reply dropped: not a {node: reply} dict", "command", command, "error", err)
			continue
		}
		for host, v := range r {
			replies = append(replies, Reply{Hostname: host, Value: v})
		}
	}
	return replies, nil
}

// Ping asks the workers to answer ({"ok": "pong"}).
func (c *Control) Ping(ctx context.Context, opts ...BroadcastOption) ([]Reply, error) {
	return c.Broadcast(ctx, "ping", nil, opts...)
}

// Stats asks the workers for their statistics (`celery inspect stats`).
func (c *Control) Stats(ctx context.Context, opts ...BroadcastOption) ([]Reply, error) {
	return c.Broadcast(ctx, "stats", nil, opts...)
}

// Active lists the tasks the workers are running.
func (c *Control) Active(ctx context.Context, opts ...BroadcastOption) ([]Reply, error) {
	return c.Broadcast(ctx, "active", nil, opts...)
}

// Registered lists the task names the workers know.
func (c *Control) Registered(ctx context.Context, opts ...BroadcastOption) ([]Reply, error) {
	return c.Broadcast(ctx, "registered", nil, opts...)
}

// Revoke revokes tasks by id on every worker (`celery control revoke`):
// a revoked task that is queued, prefetched or waiting for its eta never
// runs; with terminate, a running one has its context cancelled (Go) or
// its process signalled (Python, signal defaults to TERM).
func (c *Control) Revoke(ctx context.Context, ids []string, terminate bool, signal string, opts ...BroadcastOption) ([]Reply, error) {
	args := map[string]any{"task_id": stringsToAny(ids), "terminate": terminate}
	if signal != "" {
		args["signal"] = signal
	}
	return c.Broadcast(ctx, "revoke", args, opts...)
}

// RateLimit sets a task's rate limit on the workers ("10/s"; "" or "0"
// removes it).
func (c *Control) RateLimit(ctx context.Context, task, limit string, opts ...BroadcastOption) ([]Reply, error) {
	return c.Broadcast(ctx, "rate_limit", map[string]any{"task_name": task, "rate_limit": limit}, opts...)
}
