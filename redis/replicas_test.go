package redis

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
	goredis "github.com/redis/go-redis/v9"
)

// Proves: with publish_wait_replicas, a publish returns nil only once the
// replica has the message (WAIT on the connection that wrote), for
// Publish through a direct exchange, a topic route in Lua and one in Go
// (a pattern the Lua matcher declines), Publish to the default exchange
// (a lone LPUSH: it returned nil without waiting before, which is how
// TestClusterFailover lost a "confirmed" publish), Put, PutBatch and
// PublishBatch;
// when the replica is gone, the same publishes still write the message
// to the master and return a *NotReplicatedError (errors.Is
// ErrNotReplicated, Want 1, Got 0) after the timeout, with the routed
// count; and the options are validated.
func TestIntegrationPublishWaitReplicas(t *testing.T) {
	integrationURL(t)
	mserver := testenv.StartRedis(t)
	mport := mserver.Port
	rserver := testenv.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(mport))
	replica := goredis.NewClient(&goredis.Options{Addr: rserver.Addr(), Protocol: 2})
	defer replica.Close()
	waitUntil(t, 10*time.Second, "the replica's link to the master", func() bool {
		return strings.Contains(replica.Info(bg, "replication").Val(), "master_link_status:up")
	})

	// While the replica is up, b waits up to 5 s (a slow replica under
	// load must not fail the test); once it is gone, short waits up to
	// 0.3 s, so the test can time them.
	b, err := Open(bg, fmt.Sprintf("redis://127.0.0.1:%d/0?publish_wait_replicas=1&publish_wait_timeout=5", mport))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	short, err := Open(bg, fmt.Sprintf("redis://127.0.0.1:%d/0?publish_wait_replicas=1&publish_wait_timeout=0.3", mport))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if err := b.Bind(bg, "ex", transport.BindingRow{RoutingKey: "rk", Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Bind(bg, "tx", transport.BindingRow{RoutingKey: "a.*", Pattern: transport.KeyToPattern("a.*"), Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	// A stored pattern the Lua matcher declines: Go routes it and pushes
	// with MULTI/EXEC, then WAIT (Publish's fallback).
	const goPattern = `^a(b|c)$`
	if res, err := matchDriver.Run(bg, b.client, nil, goPattern, "ab").Int64Slice(); err != nil || len(res) != 1 || res[0] != -1 {
		t.Fatalf("the Lua matcher should decline %q: %v, %v", goPattern, res, err)
	}
	if err := b.Bind(bg, "gx", transport.BindingRow{Pattern: goPattern, Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	env := []byte(kombuEnvelope)
	publishAll := func(b *Backend) (ns []int, errs []error) {
		n, err := b.Publish(bg, "ex", entity.Direct, "rk", 0, env)
		ns, errs = append(ns, n), append(errs, err)
		n, err = b.Publish(bg, "tx", entity.Topic, "a.b", 0, env)
		ns, errs = append(ns, n), append(errs, err)
		n, err = b.Publish(bg, "gx", entity.Topic, "ab", 0, env)
		ns, errs = append(ns, n), append(errs, err)
		// The default exchange: a Put, alone (the auto-pipeline's lone
		// send) and through the backend's Put and PutBatch.
		n, err = b.Publish(bg, "", entity.Direct, "q", 0, env)
		ns, errs = append(ns, n), append(errs, err)
		err = b.Put(bg, "q", 0, env)
		ns, errs = append(ns, 1), append(errs, err)
		err = b.PutBatch(bg, []transport.PutItem{{Queue: "q", Envelope: env}, {Queue: "q2", Priority: 3, Envelope: env}})
		ns, errs = append(ns, 2), append(errs, err)
		bn, berrs := b.PublishBatch(bg, []transport.PublishItem{
			{Exchange: "ex", Type: entity.Direct, RoutingKey: "rk", Envelope: env},
			{Exchange: "ex", Type: entity.Direct, RoutingKey: "nomatch", Envelope: env},
			{RoutingKey: "q", Envelope: env},
		})
		return append(ns, bn...), append(errs, berrs...)
	}
	ns, errs := publishAll(b)
	for i, err := range errs {
		if err != nil || ns[i] != []int{1, 1, 1, 1, 1, 2, 1, 0, 1}[i] {
			t.Fatalf("with the replica up, publish %d: routed %d, %v", i, ns[i], err)
		}
	}
	// Acknowledged means on the replica already (read right away, no wait).
	if n := replica.LLen(bg, "q").Val() + replica.LLen(bg, b.k.queueKey("q2", 3)).Val(); n != 9 {
		t.Fatalf("replica has %d messages right after 9 confirmed writes", n)
	}

	rserver.Stop() // SIGKILL
	master := goredis.NewClient(&goredis.Options{Addr: mserver.Addr(), Protocol: 2})
	defer master.Close()
	waitUntil(t, 10*time.Second, "the master to see its replica gone", func() bool {
		return strings.Contains(master.Info(bg, "replication").Val(), "connected_slaves:0")
	})
	start := time.Now()
	ns, errs = publishAll(short)
	for i, err := range errs {
		want := []int{1, 1, 1, 1, 1, 2, 1, 0, 1}[i]
		if ns[i] != want {
			t.Fatalf("without the replica, publish %d routed %d, want %d", i, ns[i], want)
		}
		if want == 0 {
			if err != nil {
				t.Fatalf("unrouted publish %d: %v, want nil (nothing written)", i, err)
			}
			continue
		}
		var nr *NotReplicatedError
		if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, transport.ErrNotReplicated) || !errors.As(err, &nr) || nr.Want != 1 || nr.Got != 0 {
			t.Fatalf("without the replica, publish %d: %v, want a *NotReplicatedError{1, 0}", i, err)
		}
	}
	if took := time.Since(start); took < 2100*time.Millisecond {
		t.Fatalf("seven waits of 0.3 s took %v", took)
	}
	if n := master.LLen(bg, "q").Val() + master.LLen(bg, b.k.queueKey("q2", 3)).Val(); n != 18 {
		t.Fatalf("master has %d messages, want 18 (the unconfirmed ones are published too)", n)
	}

	for _, bad := range []string{"publish_wait_replicas=-1", "publish_wait_replicas=1&publish_wait_timeout=0", "publish_wait_replicas=x"} {
		if _, err := Open(bg, fmt.Sprintf("redis://127.0.0.1:%d/0?%s", mport, bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
