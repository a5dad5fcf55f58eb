package celery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	kredis "github.com/kombu-go/kombu/redis"
)

// Proves: the Go worker runs tasks and a chord on a local Redis Cluster
// (three masters, three replicas) with the broker in the sharded layout
// (rediscluster://...?cluster_layout=sharded) over three queues whose
// slots are on the three different masters: 30 tasks sent round robin to
// the queues wait in lists on their own queue's master (10 each, seen on
// each master before the worker starts), the worker consuming all three
// queues runs every one with its right result, and a chord whose header
// tasks go to the three queues runs its body once with the header's
// results in order. Results are on NewClusterBackend under a tag of their
// own (a chord's keys must share a slot; results are small). A worker
// asked to consume a queue whose name holds a brace fails to start with
// redis.ErrShardedName.
func TestShardedWorkerChord(t *testing.T) {
	testenv.RedisURL(t) // an integration test: skipped (or failed, under make test) like the others
	c := testenv.StartCluster(t)
	ctx := context.Background()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { rc.Close() })

	// Three queues, one per master.
	base := "sh-" + uuid.NewString()[:8] + "-"
	var queues []string
	masterOf := map[string]int{}
	var used []int
	for i := 0; len(queues) < 3 && i < 1000; i++ {
		q := base + strconv.Itoa(i)
		m, err := c.MasterOf("{" + q + "}")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(used, m) {
			used = append(used, m)
			queues = append(queues, q)
			masterOf[q] = m
		}
	}
	if len(queues) < 3 {
		t.Fatalf("queues on %d masters only", len(queues))
	}

	conn, err := kombu.Dial(ctx, c.URL()+"?cluster_layout=sharded")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	backend, err := NewClusterBackend(rc, "results", WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	client := NewClient(conn, backend, WithDefaultQueue(queues[0]))

	const n = 30
	results := make([]*AsyncResult, n)
	for i := range n {
		q := queues[i%len(queues)]
		if results[i], err = client.SendTask(ctx, "tasks.add", []any{i, 1000}, nil, WithQueue(q)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range queues {
		node := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(masterOf[q]), Protocol: 2})
		l, err := node.LLen(ctx, "{"+q+"}").Result()
		_ = node.Close()
		if err != nil || l != n/3 {
			t.Fatalf("queue %s: LLEN {%s} on its master %d = %d, %v; want %d", q, q, masterOf[q], l, err, n/3)
		}
	}

	// A queue name with a brace is refused when the worker declares it.
	bad := NewWorker(conn, backend, WithQueues("bad{"+base+"}"))
	if err := bad.Start(ctx); !errors.Is(err, kredis.ErrShardedName) {
		_ = bad.Shutdown()
		t.Fatalf("worker on a braced queue: Start = %v, want ErrShardedName", err)
	}

	w := NewWorker(conn, backend, WithQueues(queues...), WithConcurrency(3), WithShutdownTimeout(2*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(clusterTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	registerBasics(w)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown() })

	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, r := range results {
		v, err := r.Get(gctx)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if fmt.Sprint(v) != strconv.Itoa(i+1000) {
			t.Fatalf("task %d = %v, want %d", i, v, i+1000)
		}
	}

	add := func(x, y int, q string) Signature { return NewSignature("tasks.add", []any{x, y}, nil).Set("queue", q) }
	res, err := client.Apply(ctx, Chord(Group(add(1, 1, queues[0]), add(2, 2, queues[1]), add(3, 3, queues[2])),
		NewSignature("tasks.echo", nil, nil).Set("queue", queues[1])))
	if err != nil {
		t.Fatal(err)
	}
	v, err := res.(*AsyncResult).Get(gctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v); got != "map[args:[[2 4 6]] kwargs:map[]]" {
		t.Fatalf("chord body got %s", got)
	}
	for _, q := range queues {
		if n, err := conn.Len(ctx, q); err != nil || n != 0 {
			t.Errorf("queue %s holds %d, %v after the run", q, n, err)
		}
	}
	t.Logf("%d tasks and a chord over queues %v on masters %v; chord body %s", n, queues, used, v)
}
