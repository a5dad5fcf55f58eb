package redis

import (
	"context"
	"time"

	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// The sharded layout's tests take and ack only through these helpers, so
// a change of the backend's take and ack methods touches them here.

// shardWait takes one message of queues with acks, waiting up to timeout.
func shardWait(ctx context.Context, b *Backend, queues []string, timeout time.Duration) (transport.Delivery, error) {
	return transporttest.FetchOne(ctx, b, queues, true, timeout)
}

// shardFetch takes up to req.Max messages without waiting.
func shardFetch(ctx context.Context, b *Backend, req transport.FetchRequest) ([]transport.Delivery, error) {
	return b.Fetch(ctx, req, nil)
}

// shardAckTags deletes the unacked records of tags.
func shardAckTags(ctx context.Context, b *Backend, tags ...string) error {
	return b.Ack(ctx, tags...)
}
