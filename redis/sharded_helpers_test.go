package redis

import (
	"context"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// The sharded layout's tests take and ack only through these helpers, so
// a change of the backend's take and ack methods touches them here.

// shardWait takes one message of queues with acks, waiting up to timeout.
func shardWait(ctx context.Context, b *Backend, queues []string, timeout time.Duration) (transport.Delivery, error) {
	return b.GetWait(ctx, queues, true, timeout)
}

// shardFetch takes up to req.Max messages without waiting.
func shardFetch(ctx context.Context, b *Backend, req transport.BatchGet) ([]transport.Delivery, error) {
	return b.GetBatch(ctx, req)
}

// shardAckTags deletes the unacked records of tags.
func shardAckTags(ctx context.Context, b *Backend, tags ...string) error {
	return b.AckBatch(ctx, tags)
}
