package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// startCluster starts a private local Redis Cluster for an integration
// test (skipped, like the other integration tests, without
// KOMBU_TEST_REDIS_URL; a failure under KOMBU_REQUIRE_INTEGRATION when
// redis-server is missing).
func startCluster(t *testing.T) *testenv.Cluster {
	t.Helper()
	integrationURL(t)
	return testenv.StartCluster(t)
}

// TestClusterConformance runs the transport conformance suite on a local
// Redis Cluster of three masters and three replicas, through a go-redis
// ClusterClient handed to New with the compatible layout's hash tag.
// Proves: every transport guarantee (at-least-once takes, visibility
// restore, priorities, fair multi-queue, batches, fanout) holds on a
// cluster when all keys share the tag's slot; without the tag the suite's
// first multi-key script fails with CROSSSLOT.
func TestClusterConformance(t *testing.T) {
	c := startCluster(t)
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), Protocol: 2})
	t.Cleanup(func() { _ = client.Close() })
	conformance(t, client, "conf:", transporttest.Features{}, WithHashTag("kombu"))
}

// TestClusterHashTag proves the prefix formula of Kombu PR 2204: the
// Python option value "{tag}" (as the PR's tests write it) is put before
// global_keyprefix; kombu-go accepts that spelling and the bare "tag" alike
// and refuses any other brace, and an empty tag means no prefix.
func TestClusterHashTag(t *testing.T) {
	for _, tc := range []struct{ tag, want string }{
		{"", ""}, {"celery", "{celery}"}, {"{celery}", "{celery}"}, {"a.b:c", "{a.b:c}"},
	} {
		got, err := HashTagPrefix(tc.tag)
		if err != nil || got != tc.want {
			t.Errorf("HashTagPrefix(%q) = %q, %v; want %q", tc.tag, got, err, tc.want)
		}
	}
	for _, bad := range []string{"{}", "a{b", "a}b", "{a}b", "a{b}", "{{a}}", "{a", "}"} {
		if got, err := HashTagPrefix(bad); err == nil {
			t.Errorf("HashTagPrefix(%q) = %q, want an error", bad, got)
		}
	}
	// The PR: global_keyprefix = hash_tag + global_keyprefix; every key is
	// that prefix + Kombu's name.
	o := DefaultOptions()
	o.HashTag, o.KeyPrefix = "{celery}", "app:"
	k, err := newKeys(&o, 0)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		k.queueKey("q", 0):          "{celery}app:q",
		k.queueKey("q", 9):          "{celery}app:q\x06\x169",
		k.unacked:                   "{celery}app:unacked",
		k.unackedIndex:              "{celery}app:unacked_index",
		k.unackedMutex:              "{celery}app:unacked_mutex",
		k.bindingKey("ex"):          "{celery}app:_kombu.binding.ex",
		k.fanoutChannel("bc", ""):   "{celery}app:/0.bc",
		k.fanoutPattern("bc", "a#"): "{celery}app:/0.bc/a*",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}

// TestClusterBadURL proves that bad cluster input fails at Open with a
// clear error matching transport.ErrBadURL, before any connection is made
// (the hosts are unreachable): mixed cluster and non-cluster URLs, a
// comma list or hash_tag on redis://, braces in the tag, a database other
// than 0, a sentinel master name.
func TestClusterBadURL(t *testing.T) {
	for _, tc := range []struct{ url, says string }{
		{"rediscluster://127.0.0.1:1;redis://127.0.0.1:2", "mixed schemes"},
		{"redis://127.0.0.1:1;rediscluster://127.0.0.1:2", "mixed schemes"},
		{"redis://127.0.0.1:1,127.0.0.1:2", "takes one host, not a list"},
		{"rediss://127.0.0.1:1,127.0.0.1:2", "takes one host, not a list"},
		{"redis://127.0.0.1:1?hash_tag=celery", "hash_tag is an option of rediscluster"},
		{"rediscluster://127.0.0.1:1,127.0.0.1:2?hash_tag=a{b}", "brace"},
		{"rediscluster://127.0.0.1:1?hash_tag=%7B%7D", "empty"},
		{"rediscluster://127.0.0.1:1/2", "only database 0"},
		{"rediscluster://127.0.0.1:1?master_name=m", "sentinel"},
		{"rediscluster://127.0.0.1:1,,127.0.0.1:2", "bad host"},
		{"rediscluster://,127.0.0.1:2", "empty host"},
	} {
		_, err := Open(bg, tc.url)
		if !errors.Is(err, transport.ErrBadURL) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Open(%q) = %v; want ErrBadURL saying %q", tc.url, err, tc.says)
		}
	}
}

// TestClusterNotACluster proves that rediscluster:// naming a
// single-instance server fails at Open with ErrNotCluster, which says so
// and names the redis:// URL to use, and writes nothing.
func TestClusterNotACluster(t *testing.T) {
	e := integrationEnv(t)
	addr := e.client.Options().Addr
	before, err := e.client.DBSize(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(bg, "rediscluster://"+addr+"?hash_tag=kombu")
	if !errors.Is(err, ErrNotCluster) || !strings.Contains(err.Error(), "cluster_enabled:0") {
		t.Fatalf("Open(rediscluster:// on a single instance) = %v; want ErrNotCluster", err)
	}
	if n, _ := e.client.Keys(bg, "{kombu}*").Result(); len(n) != 0 {
		t.Fatalf("keys written: %v (db had %d keys before)", n, before)
	}
}

// TestClusterOpenURL proves rediscluster:// is registered (opened through
// the transport registry from a comma-separated seed list), that the
// backend's keys follow Kombu PR 2204's formula {hash_tag}global_keyprefix
// + name, all in the tag's slot on one master, and that a message put
// through the URL-opened backend is taken by one on a ClusterClient
// handed to New with the PR's own spelling of the tag.
func TestClusterOpenURL(t *testing.T) {
	c := startCluster(t)
	raw := c.URL() + "?hash_tag=kombu&global_keyprefix=app:"
	tb, u, err := transport.OpenURL(bg, raw)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if u.Scheme != ClusterScheme {
		t.Fatalf("scheme %q", u.Scheme)
	}
	b := tb.(*Backend)
	if _, ok := b.client.(*goredis.ClusterClient); !ok {
		t.Fatalf("client %T, want a ClusterClient", b.client)
	}
	if err := b.Put(bg, "q", 9, []byte(`{"body":"x","properties":{"delivery_tag":"t1"}}`)); err != nil {
		t.Fatal(err)
	}
	cl := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()[:1], Protocol: 2})
	defer cl.Close()
	key := "{kombu}app:q" + DefaultSep + "9"
	if n, err := cl.LLen(bg, key).Result(); err != nil || n != 1 {
		t.Fatalf("LLEN %q = %d, %v; want 1", key, n, err)
	}
	slot, err := cl.ClusterKeySlot(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	tagSlot, _ := cl.ClusterKeySlot(bg, "kombu").Result()
	if slot != tagSlot {
		t.Fatalf("slot of %q is %d, slot of the tag %d", key, slot, tagSlot)
	}
	other, err := New(cl, WithHashTag("{kombu}"), WithKeyPrefix("app:"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	d, err := transporttest.FetchOne(bg, other, []string{"q"}, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Queue != "q" || !strings.Contains(string(d.Envelope), `"t1"`) {
		t.Fatalf("delivery %+v", d)
	}
	if n, _ := cl.HLen(bg, "{kombu}app:unacked").Result(); n != 1 {
		t.Fatalf("unacked has %d records after the take, want 1", n)
	}
	if err := other.Ack(bg, "t1"); err != nil {
		t.Fatal(err)
	}
	if n, _ := cl.HLen(bg, "{kombu}app:unacked").Result(); n != 0 {
		t.Fatalf("unacked has %d records after the ack", n)
	}
	m, _ := c.MasterOf("{kombu}")
	t.Logf("seeds %s; the tag's slot %d is on the master at port %d", raw, tagSlot, m)
}

// ExampleOpen_cluster opens the backend on a Redis Cluster in Kombu PR
// 2204's layout: every key under the hash tag {myapp}, so all of them
// live on the master of that tag's slot (and its replica takes over if
// that master dies).
func ExampleOpen_cluster() {
	ctx := context.Background()
	b, err := Open(ctx, "rediscluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?hash_tag=myapp&publish_wait_replicas=1")
	if err != nil {
		log.Fatal(err) // ErrNotCluster if a seed is a single-instance server
	}
	defer b.Close()
	if err := b.Put(ctx, "celery", 0, []byte(`{"body": "..."}`)); err != nil { // LPUSH {myapp}celery
		log.Fatal(err)
	}
}

// TestClusterLoadOnOneMaster measures where the compatible layout's work
// goes: 4 queues, 2,000 messages published and consumed with acks, and
// each master's commands (scripts' inner calls included) and CPU over the
// run (INFO stats, INFO cpu).
// Proves the documentation's claim: the master of the tag's slot does
// nearly all of it (the others see only the cluster client's slot-map
// refreshes and the script loads), so this layout buys failover, not
// throughput. The shares are logged.
func TestClusterLoadOnOneMaster(t *testing.T) {
	c := startCluster(t)
	b, err := Open(bg, c.URL()+"?hash_tag=kombu")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tagMaster, err := c.MasterOf("{kombu}")
	if err != nil {
		t.Fatal(err)
	}
	var masters []int
	for _, p := range c.Ports {
		cl := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + strconv.Itoa(p), Protocol: 2})
		if role, _ := cl.Do(bg, "ROLE").Slice(); len(role) > 0 && role[0] == "master" {
			masters = append(masters, p)
		}
		_ = cl.Close()
	}
	before := map[int]masterLoad{}
	for _, p := range masters {
		before[p] = readLoad(p)
	}
	const n = 2000
	queues := []string{"a", "b", "c", "d"}
	for i := range n {
		env := faultEnvelope(fmt.Sprintf("m%d", i))
		if _, err := b.Publish(bg, "", entity.Direct, queues[i%len(queues)], 0, env); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		d, err := transporttest.FetchOne(bg, b, queues, true, time.Second)
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		var env struct {
			Properties struct {
				DeliveryTag string `json:"delivery_tag"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(d.Envelope, &env); err != nil {
			t.Fatal(err)
		}
		if err := b.Ack(bg, env.Properties.DeliveryTag); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	delta := map[int]masterLoad{}
	for _, p := range masters {
		a := readLoad(p)
		delta[p] = masterLoad{cmds: a.cmds - before[p].cmds, cpu: a.cpu - before[p].cpu}
		total += delta[p].cmds
	}
	for _, p := range masters {
		t.Logf("master %d%s: %d commands (%.1f%%), %.3f s CPU", p, map[bool]string{true: " (the tag's)"}[p == tagMaster],
			delta[p].cmds, 100*float64(delta[p].cmds)/float64(total), delta[p].cpu)
	}
	if share := float64(delta[tagMaster].cmds) / float64(total); share < 0.95 {
		t.Fatalf("the tag's master ran %.1f%% of the commands, want nearly all", 100*share)
	}
}
