package celery

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
)

// Proves: the Go worker rides out `redis-cli --cluster reshard` of a busy
// queue's slot on a local Redis Cluster (three masters, three replicas;
// broker on rediscluster:// with hash_tag, results on NewClusterBackend
// under the same tag): with a backlog of 300 tasks, a client sending more
// faster than the worker runs them (so the queue grows throughout), the
// tool moves the tag's master's slots up to and including the tag's slot
// (the last one moved) to another master. Every task sent runs and its
// result is stored and read back; no send fails while the slot migrates
// (Publish waits it out); no task runs that was not sent; no task runs
// twice (no restore runs, so a duplicate would be a take that ran twice).
func TestClusterWorkerReshard(t *testing.T) {
	testenv.RedisURL(t)
	c := testenv.StartCluster(t)
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, c.URL()+"?hash_tag=kombu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { rc.Close() })
	backend, err := NewClusterBackend(rc, "kombu", WithPollInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	q := "q-" + uuid.NewString()[:8]
	client := NewClient(conn, backend, WithDefaultQueue(q))

	var (
		mu      sync.Mutex
		runs    = map[string]int{}
		sent    []*AsyncResult
		sendErr []error
	)
	send := func(i int) {
		r, err := client.SendTask(ctx, "tasks.count", []any{i}, nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			sendErr = append(sendErr, err)
			return
		}
		sent = append(sent, r)
	}
	for i := range 300 {
		send(i)
	}

	w := NewWorker(conn, backend, WithQueues(q), WithConcurrency(4), WithShutdownTimeout(2*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(clusterTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	w.Register("tasks.count", func(_ context.Context, task *Task) (any, error) {
		mu.Lock()
		runs[task.ID]++
		mu.Unlock()
		time.Sleep(10 * time.Millisecond) // slower than the sender: the queue grows while the slots move
		return task.Args[0], nil
	})
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown() })

	sctx, stopSending := context.WithCancel(ctx)
	var senders sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		for i := 300; sctx.Err() == nil; i++ {
			send(i)
			time.Sleep(time.Millisecond)
		}
	}()

	time.Sleep(100 * time.Millisecond)
	from, err := c.MasterOf("{kombu}")
	if err != nil {
		t.Fatal(err)
	}
	masters, err := c.Masters(from)
	if err != nil {
		t.Fatal(err)
	}
	to := masters[0]
	if to == from {
		to = masters[1]
	}
	slotOut, err := c.CLI(from, "CLUSTER", "KEYSLOT", "{kombu}")
	if err != nil {
		t.Fatal(err)
	}
	slot, err := strconv.Atoi(slotOut)
	if err != nil {
		t.Fatalf("keyslot: %q", slotOut)
	}
	backlog, err := conn.Len(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ranBefore := len(runs)
	mu.Unlock()
	moveStart := time.Now()
	moved, err := c.Reshard(slot, from, to)
	if err != nil {
		t.Fatal(err)
	}
	moveTook := time.Since(moveStart)
	backlogAfter, err := conn.Len(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stopSending()
	senders.Wait()

	mu.Lock()
	results := append([]*AsyncResult(nil), sent...)
	mu.Unlock()
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, r := range results {
		if _, err := r.Get(gctx); err != nil {
			t.Fatalf("result %d of %d (%s): %v", i, len(results), r.ID, err)
		}
	}
	if now, err := c.MasterOf("{kombu}"); err != nil || now != to {
		t.Errorf("the tag's slot is served by %d, %v; want %d", now, err, to)
	}

	mu.Lock()
	defer mu.Unlock()
	ids := map[string]bool{}
	for _, r := range sent {
		ids[r.ID] = true
	}
	dups, unknown, missing := 0, 0, 0
	for id, n := range runs {
		dups += n - 1
		if !ids[id] {
			unknown++
		}
	}
	for id := range ids {
		if runs[id] == 0 {
			missing++
		}
	}
	t.Logf("redis-cli --cluster reshard moved %d slots, the tag's slot %d last, from %d to %d in %v; when it began %d tasks had run and %d waited in the queue, when it ended %d waited",
		moved, slot, from, to, moveTook.Round(time.Millisecond), ranBefore, backlog, backlogAfter)
	t.Logf("sent %d (send errors %d), ran %d distinct, %d duplicates, %d never sent, %d sent but never run",
		len(sent), len(sendErr), len(runs), dups, unknown, missing)
	if len(sendErr) > 0 {
		t.Errorf("%d sends failed while the slot moved, first: %v", len(sendErr), sendErr[0])
	}
	if missing > 0 || unknown > 0 || dups > 0 {
		t.Errorf("%d missing, %d unknown, %d duplicate runs", missing, unknown, dups)
	}
	if backlog == 0 || ranBefore == 0 || backlogAfter == 0 {
		t.Errorf("%d tasks run and %d in the queue when the move began, %d when it ended: the queue was not busy throughout", ranBefore, backlog, backlogAfter)
	}
}
