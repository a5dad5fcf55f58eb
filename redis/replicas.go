package redis

import (
	"context"
	"fmt"

	"github.com/kombu-go/kombu/transport"
	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated matches the error of a publish that was written but not
// confirmed by Options.PublishWaitReplicas replicas in time; it is
// transport.ErrNotReplicated.
var ErrNotReplicated = transport.ErrNotReplicated

// NotReplicatedError says how many replicas confirmed a publish that
// wanted more (Options.PublishWaitReplicas). The message was published on
// the master; it is lost if the master is lost before it replicates.
type NotReplicatedError struct {
	Want, Got int
}

func (e *NotReplicatedError) Error() string {
	return fmt.Sprintf("kombu: redis: publish confirmed by %d of the %d replicas asked for (it is on the master only; a failover now may lose it)", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrNotReplicated) true.
func (e *NotReplicatedError) Is(target error) bool { return target == ErrNotReplicated }

// waiting reports whether publishes wait for replicas.
func (b *Backend) waiting() bool { return b.opts.PublishWaitReplicas > 0 }

// queueWait adds Redis's WAIT for the configured replicas to pipe, after
// the writes it must cover (WAIT covers the writes of its connection, so
// it must share the pipeline's).
func (b *Backend) queueWait(ctx context.Context, pipe goredis.Pipeliner) *goredis.IntCmd {
	w := goredis.NewIntCmd(ctx, "wait", b.opts.PublishWaitReplicas, max(1, b.opts.PublishWaitTimeout.Milliseconds()))
	_ = pipe.Process(ctx, w)
	return w
}

// pushWaiting LPUSHes each item's envelope onto its queue's list for its
// priority, several in one MULTI/EXEC as PutBatch does, and sends the WAIT
// on the same connection after them (a WAIT inside MULTI would not wait).
// The write's error, or else replicated's verdict, is returned. Put,
// PutBatch and Publish's Go-routed fallback write through it when
// publishes wait for replicas.
func (b *Backend) pushWaiting(ctx context.Context, op string, items []transport.PutItem) error {
	pipe, err := b.writePipeline(ctx) // cluster.go
	if err != nil {
		return err
	}
	multi := len(items) > 1
	if multi {
		pipe.Do(ctx, "multi")
	}
	pushes := make([]*goredis.Cmd, len(items))
	for i, it := range items {
		pushes[i] = pipe.Do(ctx, "lpush", b.k.queueKey(it.Queue, it.Priority), it.Envelope)
	}
	var exec *goredis.Cmd
	if multi {
		exec = pipe.Do(ctx, "exec")
	}
	w := b.queueWait(ctx, pipe)
	b.execWrite(ctx, pipe) // cluster.go
	// In a MULTI, a push refused when queued (a MOVED, ASK or TRYAGAIN
	// while the slot migrates: the pipeline follows no redirection) says
	// why EXEC answered EXECABORT; nothing was written.
	for _, p := range pushes {
		if err := p.Err(); err != nil {
			return wrap(op, err)
		}
	}
	if multi {
		res, err := exec.Slice()
		if err != nil {
			return wrap(op, err)
		}
		for _, r := range res {
			if rerr, ok := r.(error); ok {
				return wrap(op, rerr)
			}
		}
	}
	return b.replicated(w)
}

// replicated turns the reply of a queued WAIT into nil, or the error that
// says the write is on the master only.
func (b *Backend) replicated(w *goredis.IntCmd) error {
	got, err := w.Result()
	if err != nil {
		return wrap("wait for replicas", err)
	}
	if int(got) < b.opts.PublishWaitReplicas {
		return &NotReplicatedError{Want: b.opts.PublishWaitReplicas, Got: int(got)}
	}
	return nil
}
