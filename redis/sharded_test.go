package redis

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport/transporttest"
)

// TestShardedConformance runs the transport conformance suite in the
// sharded layout on a local Redis Cluster of three masters and three
// replicas, through a go-redis ClusterClient handed to New.
// Proves: every transport guarantee the suite checks (at-least-once
// takes, visibility restore, strict priorities within a queue, round
// robin over queues, batches, deferred acks, fanout) holds when each
// queue's keys live in that queue's own slot and no command spans two
// slots (a cross-slot command fails with CROSSSLOT on a cluster). The
// step-major order across queues is the one guarantee this layout does
// not make (Features.NoCrossQueuePriority).
func TestShardedConformance(t *testing.T) {
	c := startCluster(t)
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { _ = client.Close() })
	conformance(t, client, "shconf:", shardedFeatures(), WithClusterLayout(LayoutSharded))
}

// TestShardedConformanceSingle runs the same suite in the sharded layout
// on the single server of KOMBU_TEST_REDIS_URL (the layout works on any
// Redis; a cluster only adds the slot checks).
func TestShardedConformanceSingle(t *testing.T) {
	e := integrationEnv(t)
	conformance(t, e.client, e.prefix, shardedFeatures(), WithClusterLayout(LayoutSharded))
}

func shardedFeatures() transporttest.Features {
	// The dead-letter list of a queue's malformed messages is in the
	// queue's slot (P{queue}kombu-go.malformed), not a queue of its own.
	return transporttest.Features{
		DeadLetterQueue:      "-",
		NoCrossQueuePriority: "the sharded layout keeps each queue in its own slot, and no Redis command reads lists of two slots: priorities are strict within a queue, queues are served round robin",
	}
}
