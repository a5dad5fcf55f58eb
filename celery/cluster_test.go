package celery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	kredis "github.com/kombu-go/kombu/redis"
)

// Proves: NewClusterBackend puts every result and group key under the
// broker's hash tag the way Celery applies a result global_keyprefix
// ("{tag}_celery-task-meta-", "{tag}_celery-taskset-meta-"), accepts the
// PR's "{tag}" spelling, and refuses an empty tag or stray braces.
func TestClusterBackendKeys(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	for _, tag := range []string{"kombu", "{kombu}"} {
		b, err := NewClusterBackend(client, tag)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Key("id"); got != "{kombu}_celery-task-meta-id" {
			t.Errorf("tag %q: Key = %q", tag, got)
		}
		if got := b.GroupKey("g", ".j"); got != "{kombu}_celery-taskset-meta-g.j" {
			t.Errorf("tag %q: GroupKey = %q", tag, got)
		}
	}
	for _, bad := range []string{"", "a{b}", "{}"} {
		if _, err := NewClusterBackend(client, bad); !errors.Is(err, kredis.ErrBadOption) {
			t.Errorf("NewClusterBackend(%q) = %v, want ErrBadOption", bad, err)
		}
	}
}

// Proves: the Go worker runs a chord on a local Redis Cluster (three
// masters, three replicas) with the broker on rediscluster:// and the
// results on NewClusterBackend under the same tag: the header's parts
// count up in one MULTI on the chord's keys (which would be refused as
// CROSSSLOT if they spread over slots), the body runs once with the
// header's results in order, and every result key lives in the tag's
// slot, the slot of the broker's queues.
func TestClusterWorkerChord(t *testing.T) {
	testenv.RedisURL(t) // an integration test: skipped (or failed, under make test) like the others
	c := testenv.StartCluster(t)
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, c.URL()+"?hash_tag=kombu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { rc.Close() })
	backend, err := NewClusterBackend(rc, "kombu", WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	q := "q-" + uuid.NewString()[:8]
	w := NewWorker(conn, backend, WithQueues(q), WithConcurrency(3), WithShutdownTimeout(2*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(clusterTestLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	registerBasics(w)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Shutdown() })
	client := NewClient(conn, backend, WithDefaultQueue(q))
	add := func(x, y int) Signature { return NewSignature("tasks.add", []any{x, y}, nil) }
	res, err := client.Apply(ctx, Chord(Group(add(1, 1), add(2, 2), add(3, 3)), NewSignature("tasks.echo", nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	body := res.(*AsyncResult)
	gctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := body.Get(gctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(v); got != "map[args:[[2 4 6]] kwargs:map[]]" {
		t.Fatalf("chord body got %s", got)
	}
	tagSlot, err := rc.ClusterKeySlot(ctx, "kombu").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{body.ID} {
		key := backend.Key(id)
		if n, err := rc.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("result key %q: exists %d, %v", key, n, err)
		}
		if s, _ := rc.ClusterKeySlot(ctx, key).Result(); s != tagSlot {
			t.Fatalf("result key %q in slot %d, the tag's is %d", key, s, tagSlot)
		}
	}
	m, _ := c.MasterOf("{kombu}")
	t.Logf("chord of 3 on the cluster: body %s; tag slot %d on the master at port %d", v, tagSlot, m)
}

// clusterTestLog sends a worker's log lines to the test log.
type clusterTestLog struct{ t *testing.T }

func (w clusterTestLog) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Proves (interop, both version sets): Python Celery's Redis result
// backend, given result_backend_transport_options global_keyprefix "{kombu}",
// names a task's result and a chord's counter keys exactly as
// NewClusterBackend(client, "kombu") does (Celery 5.3 and later); Celery
// 5.2 has no such option, and its keys carry no tag, which the test
// asserts too (a 5.2 peer cannot share results on a cluster).
func TestClusterBackendKeysPython(t *testing.T) {
	testenv.RequirePython(t, "celery", "redis")
	code := `from celery import Celery
app = Celery("t", broker="memory://", backend="redis://127.0.0.1:1/0")
app.conf.result_backend_transport_options = {"global_keyprefix": "{kombu}"}
b = app.backend
print(b.get_key_for_task("id").decode())
print(b.get_key_for_group("g", ".j").decode())
print(b.get_key_for_group("g", ".t").decode())`
	out, err := testenv.PythonCommand(context.Background(), "-c", code).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	b, err := NewClusterBackend(client, "kombu")
	if err != nil {
		t.Fatal(err)
	}
	want := b.Key("id") + "\n" + b.GroupKey("g", ".j") + "\n" + b.GroupKey("g", ".t") + "\n"
	if !testenv.PythonVersionAtLeast(t, "celery", "5.3") {
		want = "celery-task-meta-id\ncelery-taskset-meta-g.j\ncelery-taskset-meta-g.t\n"
	}
	if string(out) != want {
		t.Fatalf("Python keys:\n%s\nwant:\n%s", out, want)
	}
	t.Logf("Python result keys: %q", out)
}
