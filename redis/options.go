package redis

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// RestorePriority chooses the list a restored message goes back to.
type RestorePriority string

const (
	// RestoreOwn restores a message to the list of its own priority, as
	// Kombu 5.4.0 and later do. It is the default: every Kombu version
	// consumes all priority lists, so no peer can tell the difference except
	// by order, and this order is the one the publisher asked for.
	RestoreOwn RestorePriority = "own"
	// RestoreBase restores every message to the step-0 (base) list whatever
	// its priority, as Kombu up to 5.3.7 (Debian's 5.2.4) does: a restored
	// message then jumps ahead of waiting higher-numbered messages.
	RestoreBase RestorePriority = "base"
)

// DefaultMalformedKey is the list (after the global key prefix) where
// messages that are not JSON, or have no delivery tag, are kept. It is named
// like a Kombu queue, so it can be consumed or inspected as one.
const DefaultMalformedKey = "kombu-go.malformed"

// DefaultFanoutPrefix is Kombu's keyprefix_fanout; {db} is replaced by the
// database number.
const DefaultFanoutPrefix = "/{db}."

// Options configure a Backend. Field names follow Kombu's transport
// options; DefaultOptions has Kombu's defaults.
type Options struct {
	// KeyPrefix is Kombu's global_keyprefix, put before every key and
	// channel name.
	KeyPrefix string
	// HashTag is the hash_tag option of Kombu's Redis Cluster transport
	// (celery/kombu pull request 2204): when set, every key and channel
	// name starts with "{" + HashTag + "}" before KeyPrefix, so all of the
	// backend's keys share one cluster slot (see cluster.go). The PR's own
	// spelling with the braces ("{tag}") is accepted too and means the
	// same; any other brace is an error.
	HashTag string
	// ClusterLayout chooses how keys spread over a Redis Cluster's slots:
	// "" or LayoutCompatible (Kombu PR 2204's layout: every key in the
	// hash tag's slot, or Kombu's plain names without a tag), or
	// LayoutSharded (each queue's keys in that queue's own slot, so queues
	// spread over the masters; Go-only, see CLUSTER-SHARDED.md). URL
	// option cluster_layout.
	ClusterLayout ClusterLayout
	// Sep separates a queue name from its priority step, and the fields of
	// binding members (Kombu: sep, "\x06\x16").
	Sep string
	// PrioritySteps are Kombu's priority_steps, ascending.
	PrioritySteps []int
	// UnackedKey, UnackedIndexKey and UnackedMutexKey name the ack-emulation
	// keys (before KeyPrefix).
	UnackedKey, UnackedIndexKey, UnackedMutexKey string
	// UnackedMutexExpire is how long the restore mutex lives (Kombu:
	// unacked_mutex_expire, 300 s).
	UnackedMutexExpire time.Duration
	// UnackedRestoreLimit caps how many expired messages one RestoreExpired
	// call restores; 0 means no limit (Kombu: unacked_restore_limit, None).
	UnackedRestoreLimit int
	// FanoutPrefix is Kombu's keyprefix_fanout: "/{db}." by default, ""
	// when fanout_prefix is false. "{db}" is replaced by DB ("{{" and "}}"
	// are literal braces).
	FanoutPrefix string
	// FanoutPatterns appends "/" + routing key to fanout channel names
	// (Kombu: fanout_patterns, true).
	FanoutPatterns bool
	// DB is the database number used in FanoutPrefix. A negative value means
	// the database of the client (0 when the client does not say).
	DB int
	// MalformedKey is the list (before KeyPrefix) receiving messages that
	// cannot be parsed.
	MalformedKey string
	// RestorePriority chooses where restored messages go; RestoreOwn by
	// default.
	RestorePriority RestorePriority
	// WaitConnections is the most connections a waiting Fetch keeps blocked in
	// Redis at once (see the package documentation). 0 disables blocking
	// waits: Fetch then polls. In the sharded cluster layout the same
	// watchers tell takes which queues are empty: one per priority list
	// of each queue consumed (4 per queue with the default steps).
	WaitConnections int
	// PublishWaitReplicas, if positive, makes every write of a new
	// message (Publish, PublishBatch, Put, PutBatch; a publish to the
	// default exchange is a Put) wait, with Redis's WAIT on the connection
	// that wrote, until that many replicas have the message, for at most
	// PublishWaitTimeout (kombu-go's own, URL option
	// publish_wait_replicas). Replication is
	// asynchronous, so without it a publish the master acknowledged just
	// before a failover can be lost with it; with it, a publish that
	// returns nil survives the loss of the master (given the replicas
	// survive). When fewer replicas confirm in time, the message is
	// published all the same and the call returns a *NotReplicatedError
	// (errors.Is ErrNotReplicated): it may or may not survive a failover.
	PublishWaitReplicas int
	// PublishWaitTimeout bounds the wait of PublishWaitReplicas (URL
	// option publish_wait_timeout, seconds); 1 s by default. Zero would
	// wait forever (Redis's WAIT 0) and is refused.
	PublishWaitTimeout time.Duration
	// HealthCheckInterval is how often an idle fanout subscription is
	// checked with PING (Kombu: health_check_interval, 25 s); one that does
	// not answer within another interval is replaced by a new subscription.
	HealthCheckInterval time.Duration
	// NoAutoPipeline turns auto-pipelining off (URL option
	// auto_pipeline=false). With it on, the default, Publish and Put calls
	// made while another's round trip is in flight wait for it to end and
	// then go out together in one pipeline (PublishBatch); each call still
	// returns its own result after Redis's reply. A lone caller is sent at
	// once, as without it.
	NoAutoPipeline bool
	// Logger receives the backend's logs; nil discards them.
	Logger *slog.Logger
	// Clock gives the receive time written to unacked_index.
	Clock transport.Clock
}

// DefaultOptions returns Kombu's defaults.
func DefaultOptions() Options {
	return Options{
		Sep:                 DefaultSep,
		PrioritySteps:       append([]int(nil), transport.DefaultPrioritySteps...),
		UnackedKey:          "unacked",
		UnackedIndexKey:     "unacked_index",
		UnackedMutexKey:     "unacked_mutex",
		UnackedMutexExpire:  300 * time.Second,
		FanoutPrefix:        DefaultFanoutPrefix,
		FanoutPatterns:      true,
		DB:                  -1,
		MalformedKey:        DefaultMalformedKey,
		RestorePriority:     RestoreOwn,
		WaitConnections:     16,
		PublishWaitTimeout:  time.Second,
		HealthCheckInterval: 25 * time.Second,
	}
}

// Option changes Options; it may fail on a bad value.
type Option func(*Options) error

// WithOptions replaces all options with o (start from DefaultOptions).
func WithOptions(o Options) Option {
	return func(dst *Options) error {
		o.PrioritySteps = append([]int(nil), o.PrioritySteps...)
		*dst = o
		return nil
	}
}

// WithKeyPrefix sets Kombu's global_keyprefix.
func WithKeyPrefix(p string) Option {
	return func(o *Options) error { o.KeyPrefix = p; return nil }
}

// WithHashTag sets the cluster hash tag (Options.HashTag).
func WithHashTag(tag string) Option {
	return func(o *Options) error { o.HashTag = tag; return nil }
}

// WithClusterLayout sets Options.ClusterLayout.
func WithClusterLayout(l ClusterLayout) Option {
	return func(o *Options) error { o.ClusterLayout = l; return nil }
}

// WithSep sets Kombu's sep.
func WithSep(sep string) Option {
	return func(o *Options) error { o.Sep = sep; return nil }
}

// WithPrioritySteps sets Kombu's priority_steps.
func WithPrioritySteps(steps ...int) Option {
	return func(o *Options) error { o.PrioritySteps = append([]int(nil), steps...); return nil }
}

// WithUnackedKeys sets Kombu's unacked_key, unacked_index_key and
// unacked_mutex_key; empty arguments keep the current names.
func WithUnackedKeys(unacked, index, mutex string) Option {
	return func(o *Options) error {
		if unacked != "" {
			o.UnackedKey = unacked
		}
		if index != "" {
			o.UnackedIndexKey = index
		}
		if mutex != "" {
			o.UnackedMutexKey = mutex
		}
		return nil
	}
}

// WithUnackedMutexExpire sets Kombu's unacked_mutex_expire.
func WithUnackedMutexExpire(d time.Duration) Option {
	return func(o *Options) error { o.UnackedMutexExpire = d; return nil }
}

// WithUnackedRestoreLimit sets Kombu's unacked_restore_limit (0: none).
func WithUnackedRestoreLimit(n int) Option {
	return func(o *Options) error { o.UnackedRestoreLimit = n; return nil }
}

// WithFanoutPrefix sets Kombu's fanout_prefix as a string ("" is Kombu's
// fanout_prefix=False).
func WithFanoutPrefix(p string) Option {
	return func(o *Options) error { o.FanoutPrefix = p; return nil }
}

// WithFanoutPatterns sets Kombu's fanout_patterns.
func WithFanoutPatterns(on bool) Option {
	return func(o *Options) error { o.FanoutPatterns = on; return nil }
}

// WithDB sets the database number used in the fanout prefix, for clients
// whose database the backend cannot read (cluster, ring, wrappers).
func WithDB(db int) Option {
	return func(o *Options) error { o.DB = db; return nil }
}

// WithMalformedKey sets the dead-letter list for unparseable messages.
func WithMalformedKey(key string) Option {
	return func(o *Options) error { o.MalformedKey = key; return nil }
}

// WithRestorePriority chooses the list restored messages go to.
func WithRestorePriority(p RestorePriority) Option {
	return func(o *Options) error { o.RestorePriority = p; return nil }
}

// WithPublishWaitReplicas makes publishes wait until n replicas have the
// message, for at most timeout (see Options.PublishWaitReplicas).
func WithPublishWaitReplicas(n int, timeout time.Duration) Option {
	return func(o *Options) error { o.PublishWaitReplicas, o.PublishWaitTimeout = n, timeout; return nil }
}

// WithWaitConnections sets how many connections a waiting Fetch may keep blocked.
func WithWaitConnections(n int) Option {
	return func(o *Options) error { o.WaitConnections = n; return nil }
}

// WithHealthCheckInterval sets Kombu's health_check_interval.
func WithHealthCheckInterval(d time.Duration) Option {
	return func(o *Options) error { o.HealthCheckInterval = d; return nil }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *Options) error { o.Logger = l; return nil }
}

// WithClock sets the clock used for unacked_index scores.
func WithClock(c transport.Clock) Option {
	return func(o *Options) error { o.Clock = c; return nil }
}

// ErrBadOption means an option value is invalid. Errors from URL options
// also match transport.ErrBadURL.
var ErrBadOption = errors.New("kombu: redis: bad option")

// validate checks o and fills in what may be left empty.
func (o *Options) validate() error {
	if _, err := HashTagPrefix(o.HashTag); err != nil {
		return err
	}
	if err := o.validateLayout(); err != nil { // sharded.go
		return err
	}
	if o.Sep == "" {
		return fmt.Errorf("%w: sep must not be empty", ErrBadOption)
	}
	if len(o.PrioritySteps) == 0 {
		return fmt.Errorf("%w: priority_steps must not be empty", ErrBadOption)
	}
	for i, s := range o.PrioritySteps {
		if s < 0 {
			return fmt.Errorf("%w: priority_steps %v: negative step", ErrBadOption, o.PrioritySteps)
		}
		if i > 0 && s <= o.PrioritySteps[i-1] {
			return fmt.Errorf("%w: priority_steps %v must be strictly ascending", ErrBadOption, o.PrioritySteps)
		}
	}
	if o.UnackedKey == "" || o.UnackedIndexKey == "" || o.UnackedMutexKey == "" {
		return fmt.Errorf("%w: unacked key names must not be empty", ErrBadOption)
	}
	if _, err := formatFanoutPrefix(o.FanoutPrefix, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	if o.MalformedKey == "" {
		return fmt.Errorf("%w: the malformed-message key must not be empty", ErrBadOption)
	}
	if o.UnackedMutexExpire <= 0 {
		return fmt.Errorf("%w: unacked_mutex_expire must be positive", ErrBadOption)
	}
	if o.UnackedRestoreLimit < 0 {
		return fmt.Errorf("%w: unacked_restore_limit must not be negative", ErrBadOption)
	}
	if o.PublishWaitReplicas < 0 {
		return fmt.Errorf("%w: publish_wait_replicas must not be negative", ErrBadOption)
	}
	if o.PublishWaitReplicas > 0 && o.PublishWaitTimeout <= 0 {
		return fmt.Errorf("%w: publish_wait_timeout must be positive (WAIT 0 would block forever)", ErrBadOption)
	}
	if o.WaitConnections < 0 {
		return fmt.Errorf("%w: wait_connections must not be negative", ErrBadOption)
	}
	switch o.RestorePriority {
	case "":
		o.RestorePriority = RestoreOwn
	case RestoreOwn, RestoreBase:
	default:
		return fmt.Errorf("%w: restore_priority %q (want %q or %q)", ErrBadOption, o.RestorePriority, RestoreOwn, RestoreBase)
	}
	if o.HealthCheckInterval <= 0 {
		o.HealthCheckInterval = 25 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = transport.SystemClock{}
	}
	return nil
}
