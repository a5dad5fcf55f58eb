package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// Redis Cluster, the compatible layout (celery/kombu pull request 2204).
//
// Kombu's Redis layout touches many keys in one atomic step (a publish
// routes through the binding set and pushes to lists, a take pops a list
// and records the message in unacked and unacked_index), and Redis Cluster
// only runs a multi-key command or script when all its keys hash to one
// slot. The PR's rediscluster transport solves this the simple way: its
// hash_tag option puts "{tag}" before global_keyprefix, so every key of
// the transport is "{tag}" + global_keyprefix + Kombu's name and hashes to
// the slot of "tag" (Redis hashes only what is between the first "{" and
// the next "}"). kombu-go does the same, so a Python Kombu with the PR
// applied and a Go service share queues on a cluster.
//
// The cost: one slot lives on one master, so every queue of the transport
// lives on that master. The cluster buys failover (a replica is promoted
// when the master dies, without Sentinel), not throughput: the other
// masters hold none of the transport's keys.
//
// Fanout uses plain PUBLISH and PSUBSCRIBE, as the PR does (its pub/sub
// client is redis-py's ClusterPubSub), and both go to one node: the master
// of the channel name's slot. go-redis opens a subscription there by
// itself (the slot of the first pattern, which carries the "{tag}"
// prefix); a PUBLISH it would send to any node, whence the cluster bus
// relays it to the others, so a publisher's messages could take different
// paths, arriving out of order or (around a subscription) not at all.
// PublishFanout therefore sends it on the master of the channel's slot
// (clusterPublish), where publisher and subscriber meet and keep Redis's
// ordering of one connection. Sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) would pin the same node, but it has no pattern
// form (Kombu subscribes with PSUBSCRIBE) and a Python peer would not hear
// it.

// ClusterScheme is the URL scheme of Redis Cluster:
//
//	rediscluster://[user:password@]host:port[,host:port...][/0][?hash_tag=tag&...]
//
// Several seed nodes may also be written Kombu's way, as URLs joined by
// ";". Only database 0 exists on a cluster.
const ClusterScheme = "rediscluster"

// ErrNotCluster means a rediscluster:// URL names a server that is not a
// cluster node (cluster_enabled:0). It is returned by Open before any
// message moves.
var ErrNotCluster = errors.New("kombu: redis: not a Redis Cluster node")

// HashTagPrefix returns what goes before global_keyprefix for a hash_tag
// option: "" for no tag, else "{" + tag + "}". The PR's spelling with the
// braces ("{tag}", as its tests write it) gives the same prefix. Any other
// brace is refused with an error matching ErrBadOption: Redis hashes only
// the text up to the first "}", so a tag holding braces would not name
// the slot it seems to. celery.NewClusterBackend uses it too, so results
// and broker keys of one tag share a slot.
func HashTagPrefix(tag string) (string, error) {
	if tag == "" {
		return "", nil
	}
	inner := tag
	if strings.HasPrefix(tag, "{") && strings.HasSuffix(tag, "}") && len(tag) >= 2 {
		inner = tag[1 : len(tag)-1]
	}
	if inner == "" {
		return "", fmt.Errorf("%w: hash_tag %q is empty: Redis would hash the whole key", ErrBadOption, tag)
	}
	if strings.ContainsAny(inner, "{}") {
		return "", fmt.Errorf("%w: hash_tag %q holds a brace: write the tag without braces (hash_tag=celery gives keys {celery}...)", ErrBadOption, tag)
	}
	return "{" + inner + "}", nil
}

// notClusterForm refuses, on a redis://, rediss:// or sentinel:// URL,
// what only a cluster URL may have: a host list (but for sentinel://) and
// the hash_tag option.
func notClusterForm(u *transport.URL, o Options) error {
	if u.Scheme != "sentinel" && len(u.Hosts) > 1 {
		return fmt.Errorf("%w: %s:// takes one host, not a list (a cluster is rediscluster://host:port,host:port)", transport.ErrBadURL, u.Scheme)
	}
	if o.HashTag != "" {
		return fmt.Errorf("%w: hash_tag is an option of rediscluster:// URLs, not %s://", transport.ErrBadURL, u.Scheme)
	}
	if o.ClusterLayout == LayoutSharded {
		return fmt.Errorf("%w: cluster_layout is an option of rediscluster:// URLs, not %s://", transport.ErrBadURL, u.Scheme)
	}
	return nil
}

// clusterAddrs returns the seed nodes of a rediscluster:// URL (the URL
// parser splits "a:1,b:2" into hosts; a host still holding a comma is
// split here too).
func clusterAddrs(u *transport.URL) ([]string, error) {
	if len(u.Hosts) == 0 {
		return nil, fmt.Errorf("%w: rediscluster:// needs at least one host:port", transport.ErrBadURL)
	}
	var out []string
	for _, h := range u.Hosts {
		full := h.Host
		if h.Port != 0 {
			full += ":" + strconv.Itoa(h.Port)
		}
		for _, a := range strings.Split(full, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				return nil, fmt.Errorf("%w: empty host in rediscluster:// host list", transport.ErrBadURL)
			}
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				host, port = a, strconv.Itoa(DefaultPort)
			}
			if _, err := strconv.Atoi(port); err != nil || host == "" || strings.ContainsAny(host, ":/") {
				return nil, fmt.Errorf("%w: bad host %q in rediscluster:// host list", transport.ErrBadURL, a)
			}
			out = append(out, net.JoinHostPort(host, port))
		}
	}
	return out, nil
}

// openCluster is OpenURL for rediscluster://: a go-redis ClusterClient on
// the seed nodes, owned by the backend. Before returning it checks that
// the seeds are cluster nodes (ErrNotCluster otherwise), pings the
// cluster and loads the scripts on every master.
func openCluster(ctx context.Context, u *transport.URL, opts ...Option) (*Backend, error) {
	o := DefaultOptions()
	cc := connConfig{poolSize: DefaultMaxConnections}
	if err := applyURLOptions(&o, &cc, u.Options); err != nil {
		return nil, err
	}
	if cc.masterName != "" {
		return nil, fmt.Errorf("%w: master_name is a sentinel:// option; a cluster needs no Sentinel", transport.ErrBadURL)
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	db, err := parseDB(u.VirtualHost)
	if err != nil {
		return nil, err
	}
	if db != 0 {
		return nil, fmt.Errorf("%w: a Redis Cluster has only database 0, not %d", transport.ErrBadURL, db)
	}
	if o.DB < 0 {
		o.DB = 0
	}
	addrs, err := clusterAddrs(u)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if cc.tls {
		if tlsConf, err = cc.tlsConfig(); err != nil {
			return nil, err
		}
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", transport.ErrBadURL, err)
	}
	if err := checkClusterNodes(ctx, addrs, u, cc, tlsConf); err != nil {
		return nil, err
	}
	client := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs:        addrs,
		Username:     u.Username,
		Password:     u.Password,
		PoolSize:     cc.poolSize,
		DialTimeout:  cc.connectTimeout,
		ReadTimeout:  cc.readTimeout,
		WriteTimeout: cc.readTimeout,
		TLSConfig:    tlsConf,
		Protocol:     2,
		// MaxRedirects stays at go-redis's default (3): the cluster client
		// needs it to follow MOVED and ASK, and to find the promoted
		// replica after a failover. It also resends a command whose
		// connection broke, so a publish may (rarely) land twice around a
		// failover: at-least-once, never lost. Takes are safe against
		// resends (receipts, scripts/get.lua).
	})
	return openOwned(ctx, client, o, u)
}

// checkClusterNodes asks each seed node, with a plain connection, whether
// it runs in cluster mode (INFO cluster). A seed that answers
// cluster_enabled:0 is a single-instance server: ErrNotCluster. Seeds that
// do not answer are skipped as long as one answers (a cluster is meant to
// survive a dead node).
func checkClusterNodes(ctx context.Context, addrs []string, u *transport.URL, cc connConfig, tlsConf *tls.Config) error {
	var lastErr error
	answered := false
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{
			Addr: a, Username: u.Username, Password: u.Password,
			DialTimeout: cc.connectTimeout, ReadTimeout: cc.readTimeout, WriteTimeout: cc.readTimeout,
			TLSConfig: tlsConf, MaxRetries: -1, Protocol: 2, PoolSize: 1,
		})
		info, err := c.Info(ctx, "cluster").Result()
		_ = c.Close()
		if err != nil {
			lastErr = err
			continue
		}
		answered = true
		if !strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("%w: %s answers cluster_enabled:0 (a single-instance server: use redis://%s)", ErrNotCluster, a, a)
		}
	}
	if !answered {
		return fmt.Errorf("kombu: redis: connect to %s: no seed node answered: %w", u.String(), lastErr)
	}
	return nil
}

// newWaitCluster returns a cluster client with c's settings and a pool of
// at most n connections per node, for the watchers' blocking commands
// (see newWaitClient).
func newWaitCluster(c *goredis.ClusterClient, n int) *goredis.ClusterClient {
	opt := *c.Options()
	if opt.MaintNotificationsConfig != nil {
		mc := *opt.MaintNotificationsConfig
		opt.MaintNotificationsConfig = &mc
	}
	opt.PushNotificationProcessor = nil // each client makes its own
	opt.PoolSize, opt.MaxActiveConns = n, n
	opt.MinIdleConns, opt.MaxIdleConns = 0, 0
	opt.ContextTimeoutEnabled = false
	return goredis.NewClusterClient(&opt)
}

// clusterPublish PUBLISHes on the master of channel's slot (see above).
// If that master is gone (a failover), the cluster state is reloaded and
// the publish tried once more on the new master; fanout stays
// at-most-once.
func clusterPublish(ctx context.Context, c *goredis.ClusterClient, channel string, payload []byte) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var node *goredis.Client
		if node, err = c.MasterForKey(ctx, channel); err == nil {
			if err = node.Publish(ctx, channel, payload).Err(); err == nil {
				return nil
			}
		}
		c.ReloadState(ctx)
	}
	return err
}

// writePipeline returns the pipeline publishes write through. With
// PublishWaitReplicas on a cluster client it is a pipeline on the master
// of the transport's slot (the compatible layout keeps every key there):
// Redis's WAIT covers the writes of its own connection, and go-redis's
// cluster pipeline would send the keyless WAIT (and MULTI/EXEC) to any
// node.
func (b *Backend) writePipeline(ctx context.Context) (goredis.Pipeliner, error) {
	c, ok := b.client.(*goredis.ClusterClient)
	if !ok || !b.waiting() {
		return b.client.Pipeline(), nil
	}
	node, err := c.MasterForKey(ctx, b.k.unacked)
	if err != nil {
		c.ReloadState(ctx)
		if node, err = c.MasterForKey(ctx, b.k.unacked); err != nil {
			return nil, wrap("find the master of the hash tag's slot", err)
		}
	}
	return node.Pipeline(), nil
}

// Resharding: a slot moved from one master to another while the transport
// runs (`redis-cli --cluster reshard`, or CLUSTER SETSLOT MIGRATING and
// IMPORTING, then MIGRATE of its keys one batch at a time, then CLUSTER
// SETSLOT NODE). While the slot migrates, Redis decides by the keys a
// command declares: the source runs it if it holds them all; if it holds
// none it answers ASK (go-redis then sends ASKING and the command to the
// target, which runs it there); a command of several keys, some missing,
// gets TRYAGAIN on either node and does not run. Once the slot is
// assigned, the source answers MOVED.
//
// The publish scripts declare only the binding key: the queue lists they
// push to are found by routing, inside the script. Once the binding key
// had moved, the source answered ASK and the script ran on the target,
// pushing to a queue list the source still held: a second list of the
// same name, which MIGRATE then refuses to move (BUSYKEY), stranding the
// source's messages, and which `redis-cli --cluster fix --cluster-replace`
// would overwrite, messages and all. So on a hash tag's layout the publish
// scripts also declare the slot guard, P+"kombu-go.slot-guard", a key no
// one writes: while the slot migrates, a publish always has a missing
// key, gets TRYAGAIN and does not run, and Publish tries it again until
// the slot is assigned (whileMoving; clusterMoving). The take script needs no
// guard: its receipt key is new to each call (scripts/get.lua), so it
// does not run during a migration either (a TRYAGAIN its retry loop waits
// out; the same receipt keeps a take that did run from taking twice). The
// restore script declares every list it pushes to; single-key commands (a
// publish to the default exchange is an LPUSH) follow ASK safely.

// slotGuard returns the slot guard of prefix: "" without a hash tag (no
// cluster; nothing to guard).
func slotGuard(tag, prefix string) string {
	if tag == "" {
		return ""
	}
	return prefix + "kombu-go.slot-guard"
}

// publishKeys returns the KEYS of a publish script for exchange: its
// binding key, and the slot guard if there is one.
func (k *keys) publishKeys(exchange string) []string {
	if k.guard == "" {
		return []string{k.bindingKey(exchange)}
	}
	return []string{k.bindingKey(exchange), k.guard}
}

// clusterMoving reports whether err is a reply of Redis Cluster saying
// the command did not run because its slot is migrating or has moved:
// TRYAGAIN, or an ASK or MOVED redirection go-redis still held after
// following its MaxRedirects (an ASK to the target answered TRYAGAIN,
// which go-redis retries on the target without ASKING, which answers
// MOVED back to the source, which answers ASK again).
func clusterMoving(err error) bool {
	return goredis.HasErrorPrefix(err, "TRYAGAIN") || goredis.HasErrorPrefix(err, "ASK ") ||
		goredis.HasErrorPrefix(err, "MOVED ")
}

// whileMoving runs a write again after it failed with clusterMoving:
// the hash tag's slot (or, in the sharded layout, the queue's) is
// migrating or has moved, and the write did not run (see above). It tries
// again, with a backoff from 5 ms to 200 ms, until the write runs, fails
// otherwise, ctx ends or getRetryBudget has passed since the first try.
// Publish, Put and PutBatch use it outside the sharded layout; there
// shardSend uses it to send again only the refused pushes.
func (b *Backend) whileMoving(ctx context.Context, write func() (int, error)) (int, error) {
	start := time.Now()
	delay := 5 * time.Millisecond
	for {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, fmt.Errorf("kombu: redis: write while the slot migrates: %w", ctx.Err())
		}
		n, err := write()
		if err == nil || !clusterMoving(err) || b.closed.Load() || time.Since(start)+delay > getRetryBudget {
			return n, err
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// execWrite runs a pipeline of writePipeline's, or of a master's node
// client (shardPushWaiting), and has a cluster client's slot map reloaded
// when the reply says the slot moved (MOVED) or the master did not answer
// (a connection error: it may be dead, its replica promoted). Such a
// pipeline follows no redirection and finds no other node by itself, and
// go-redis reloads its map on its own only every 60 s: without the
// reload, publishes that wait for replicas would go to a dead master's
// address for that long (TestClusterFailover). The reload runs in the
// background; each command of pipe carries its own result.
func (b *Backend) execWrite(ctx context.Context, pipe goredis.Pipeliner) {
	_, err := pipe.Exec(ctx)
	c, ok := b.client.(*goredis.ClusterClient)
	if err == nil || !ok || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	var reply goredis.Error
	if !errors.As(err, &reply) || goredis.HasErrorPrefix(err, "MOVED ") {
		c.ReloadState(ctx)
	}
}

// movingTail returns the index of the first failed message of a batch if
// every message from there on failed with clusterMoving (none of them was
// written, none after them was: sending them again keeps the order of
// the batch), else -1.
func movingTail(errs []error) int {
	from := -1
	for i, err := range errs {
		switch {
		case err != nil && clusterMoving(err):
			if from < 0 {
				from = i
			}
		case err != nil || from >= 0:
			return -1 // another error, or a message written after one that was not
		}
	}
	return from
}

// publishBatchMigrating is PublishBatch after its messages from index
// from on were not written because the hash tag's slot is migrating (see
// movingTail): it sends them again, with whileMoving's backoff and
// budget, for as long as a tail of the batch is left in that state, and
// fills in their results.
func (b *Backend) publishBatchMigrating(ctx context.Context, items []transport.PublishItem, ns []int, errs []error, from int) ([]int, []error) {
	start := time.Now()
	delay := 5 * time.Millisecond
	for from >= 0 && !b.closed.Load() && time.Since(start)+delay <= getRetryBudget {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ns, errs
		}
		n2, e2 := b.publishBatch1(ctx, items[from:])
		copy(ns[from:], n2)
		copy(errs[from:], e2)
		if next := movingTail(e2); next >= 0 {
			from += next
		} else {
			from = -1
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	return ns, errs
}
