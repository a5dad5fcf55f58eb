package redis

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// scriptCounter is a go-redis hook counting the take scripts a client
// sends (alone or in a pipeline).
type scriptCounter struct{ n atomic.Int64 }

func (h *scriptCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *scriptCounter) count(cmd goredis.Cmder) {
	if name := strings.ToLower(cmd.Name()); name == "evalsha" || name == "eval" {
		h.n.Add(1)
	}
}

func (h *scriptCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}

func (h *scriptCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}

// TestShardedHintsSkipEmptyQueues proves how the sharded layout consumes
// many queues without a script call per empty queue: a consumer of 20
// queues, one of which holds 200 messages, takes them one per GetWait,
// rotating its queue order after each message as the consumer loop does;
// each empty queue is asked once, found drained and left out while its
// watchers block, so the takes cost about one script call per message
// (without the hints a take would call every empty queue before the busy
// one: about 2,000 calls). Then a message put on one of the empty queues
// by another backend (another process) wakes the consumer's wait at once:
// the queue's watcher signals, and the next take asks it again.
func TestShardedHintsSkipEmptyQueues(t *testing.T) {
	e := integrationEnv(t)
	counter := &scriptCounter{}
	opt := *e.client.Options()
	client := goredis.NewClient(&opt)
	client.AddHook(counter)
	defer client.Close()
	b, err := New(client, WithKeyPrefix(e.prefix), WithClusterLayout(LayoutSharded), WithWaitConnections(128))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	other, err := New(e.client, WithKeyPrefix(e.prefix), WithClusterLayout(LayoutSharded))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var queues []string
	for i := range 20 {
		queues = append(queues, "hint."+strconv.Itoa(i))
	}
	const n = 200
	busy := queues[5]
	for i := range n {
		if err := other.Put(bg, busy, 0, shardEnvelope("m"+strconv.Itoa(i), busy)); err != nil {
			t.Fatal(err)
		}
	}
	order := append([]string(nil), queues...)
	for i := range n {
		d, err := shardWait(bg, b, order, time.Second)
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		if err := shardAckTags(bg, b, deliveryTag(d.Envelope)); err != nil {
			t.Fatal(err)
		}
		rotateTo(order, d.Queue)
	}
	calls := counter.n.Load()
	t.Logf("%d messages from 1 of %d queues: %d take script calls", n, len(queues), calls)
	if calls > n+3*int64(len(queues)) {
		t.Errorf("%d script calls for %d messages: the empty queues were asked again and again", calls, n)
	}

	// Another process puts a message on a queue the consumer has hinted
	// empty: the wait returns it at once.
	late := queues[13]
	got := make(chan string, 1)
	go func() {
		d, err := shardWait(bg, b, order, 5*time.Second)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- d.Queue + " " + deliveryTag(d.Envelope)
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := other.Put(bg, late, 0, shardEnvelope("late", late)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != late+" late" {
			t.Fatalf("the wait returned %q, want %q", s, late+" late")
		}
		t.Logf("a message put by another backend on a hinted-empty queue was taken after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatal("the wait did not return the message put on a hinted-empty queue within 3 s")
	}
}
