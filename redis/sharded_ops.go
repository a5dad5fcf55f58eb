package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/transport"
)

// The sharded layout's publish, restore, sweep and inspection (see
// sharded.go). The binding table of an exchange lives in a slot of its
// own, the queues it routes to in theirs, so a publish routes in Go from
// a cached table and pushes to each queue's list; a restore that routes
// back to the message's own queue stays one atomic script in that queue's
// slot, one that routes elsewhere pushes first and deletes the record
// after (a crash between gives a duplicate, never a loss).

// shardTable returns exchange's binding table, from the cache if it is
// younger than bindingTTL (fresh forces a read).
func (b *Backend) shardTable(ctx context.Context, exchange string, fresh bool) (rows []transport.BindingRow, cached bool, err error) {
	s := b.shard
	if !fresh {
		s.bmu.Lock()
		c, ok := s.bindings[exchange]
		s.bmu.Unlock()
		if ok && time.Since(c.at) < bindingTTL {
			return c.rows, true, nil
		}
	}
	at := time.Now()
	rows, err = b.Bindings(ctx, exchange)
	if err != nil {
		return nil, false, err
	}
	s.bmu.Lock()
	s.bindings[exchange] = bindingCache{rows: rows, at: at}
	s.bmu.Unlock()
	return rows, false, nil
}

// forgetTable drops the cached table of exchange (Bind, Unbind).
func (b *Backend) forgetTable(exchange string) {
	b.shard.bmu.Lock()
	delete(b.shard.bindings, exchange)
	b.shard.bmu.Unlock()
}

// shardRoute names the queues a publish goes to. A cached table that
// routes nowhere is read again first (a binding another process just
// made).
func (b *Backend) shardRoute(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string) ([]string, error) {
	if exchange == "" {
		return []string{routingKey}, nil
	}
	table, cached, err := b.shardTable(ctx, exchange, false)
	if err != nil {
		return nil, err
	}
	queues, err := transport.Lookup(table, string(typ.Normalize()), routingKey, "")
	if err == nil && len(queues) == 0 && cached {
		if table, _, err = b.shardTable(ctx, exchange, true); err != nil {
			return nil, err
		}
		queues, err = transport.Lookup(table, string(typ.Normalize()), routingKey, "")
	}
	if err != nil {
		return nil, fmt.Errorf("kombu: redis: publish to %q: %w", exchange, err)
	}
	return slices.DeleteFunc(queues, func(q string) bool { return q == "" || b.checkQueueName(q) != nil }), nil
}

// shardPublish is publishNow in the sharded layout: route, then LPUSH to
// each queue's list (one pipeline; each master gets its part). A message
// for several queues is not all-or-nothing: on an error some may have it.
func (b *Backend) shardPublish(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, env []byte) (int, error) {
	ns, errs := b.shardPublishBatch(ctx, []transport.PublishItem{{Exchange: exchange, Type: typ, RoutingKey: routingKey, Priority: priority, Envelope: env}})
	return ns[0], errs[0]
}

// shardPublishBatch is PublishBatch in the sharded layout: each item
// routed (binding tables cached), the pushes in one pipeline, consecutive
// pushes to one list in one LPUSH, in order. Its callers (publishNow,
// publishBatch1) have checked that the backend is open.
func (b *Backend) shardPublishBatch(ctx context.Context, items []transport.PublishItem) ([]int, []error) {
	ns := make([]int, len(items))
	errs := make([]error, len(items))
	var pushes []*shardPush
	for i, it := range items {
		if it.Exchange == "" {
			if err := b.checkQueueName(it.RoutingKey); err != nil {
				errs[i] = err
				continue
			}
		}
		queues, err := b.shardRoute(ctx, it.Exchange, it.Type, it.RoutingKey)
		if err != nil {
			errs[i] = err
			continue
		}
		for _, q := range queues {
			key := b.k.queueKey(q, it.Priority)
			if n := len(pushes); n > 0 && pushes[n-1].key == key && len(pushes[n-1].vals) < maxScriptBatch {
				p := pushes[n-1]
				p.vals = append(p.vals, it.Envelope)
				p.items = append(p.items, i)
				continue
			}
			pushes = append(pushes, &shardPush{key: key, queue: q, vals: []any{it.Envelope}, items: []int{i}})
		}
	}
	b.shardSend(ctx, pushes)
	for _, ps := range pushes {
		err := wrap("publish", ps.cmd.Err())
		for _, i := range ps.items {
			if err != nil {
				if errs[i] == nil {
					errs[i] = err
				}
				continue
			}
			ns[i]++
			if ps.notReplicated != nil && errs[i] == nil {
				errs[i] = ps.notReplicated // published, on the master only
			}
		}
		if err == nil {
			b.shard.hints.busy(ps.queue)
		}
	}
	return ns, errs
}

// shardSend sends pushes, and sends again, with a backoff from 5 ms to
// 200 ms for up to getRetryBudget, those their slot's migration refused
// (clusterMoving), until none is refused, ctx ends or the backend
// closes. Only the refused pushes go again, so no list gets a message
// twice; each list's order holds, since a key that has moved does not
// move back (a push to it after a refused one was refused too). Each
// push carries its own result in cmd. Publish, Put, PutBatch and
// PublishBatch in the sharded layout all push through it, so they need
// no retry of their own around it.
func (b *Backend) shardSend(ctx context.Context, pushes []*shardPush) {
	b.shardSendOnce(ctx, pushes)
	again := refusedPushes(pushes)
	if len(again) == 0 {
		return
	}
	// whileMoving's backoff and budget; each push keeps its own result,
	// so the error it returns adds nothing.
	_, _ = b.whileMoving(ctx, func() (int, error) { // cluster.go
		b.shardSendOnce(ctx, again)
		if again = refusedPushes(again); len(again) > 0 {
			return 0, again[0].cmd.Err()
		}
		return 0, nil
	})
}

// refusedPushes returns the pushes a moving slot refused (clusterMoving).
func refusedPushes(pushes []*shardPush) []*shardPush {
	var out []*shardPush
	for _, ps := range pushes {
		if ps.cmd != nil && clusterMoving(ps.cmd.Err()) {
			out = append(out, ps)
		}
	}
	return out
}

// shardSendOnce sends pushes once: waiting for replicas, alone, or in
// one pipeline.
func (b *Backend) shardSendOnce(ctx context.Context, pushes []*shardPush) {
	switch {
	case len(pushes) == 0:
	case b.waiting():
		b.shardPushWaiting(ctx, pushes)
	case len(pushes) == 1:
		// The common case: one message to one queue, one command (a
		// cluster client's pipeline machinery costs more than it saves).
		pushes[0].cmd = b.client.LPush(ctx, pushes[0].key, pushes[0].vals...)
	default:
		_, _ = b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, ps := range pushes {
				ps.cmd = p.LPush(ctx, ps.key, ps.vals...)
			}
			return nil
		})
	}
}

// shardPush is one LPUSH of a sharded publish.
type shardPush struct {
	key, queue    string
	vals          []any
	items         []int
	cmd           *goredis.IntCmd
	notReplicated error // the WAIT after it fell short (PublishWaitReplicas)
}

// shardPushWaiting sends pushes with Options.PublishWaitReplicas: a
// pipeline per master (the LPUSHes, then a WAIT on the same connection,
// which covers that connection's writes), the masters in parallel.
func (b *Backend) shardPushWaiting(ctx context.Context, pushes []*shardPush) {
	type group struct {
		pipe   goredis.Pipeliner
		pushes []*shardPush
		wait   *goredis.IntCmd
	}
	var groups []*group
	byNode := map[*goredis.Client]*group{}
	cc, cluster := b.client.(*goredis.ClusterClient)
	for _, ps := range pushes {
		var node *goredis.Client
		if cluster {
			var err error
			if node, err = cc.MasterForKey(ctx, ps.key); err != nil {
				cc.ReloadState(ctx)
				if node, err = cc.MasterForKey(ctx, ps.key); err != nil {
					ps.cmd = goredis.NewIntCmd(ctx)
					ps.cmd.SetErr(fmt.Errorf("find the master of %q: %w", ps.key, err))
					continue
				}
			}
		}
		g := byNode[node]
		if g == nil {
			g = &group{}
			if node != nil {
				g.pipe = node.Pipeline()
			} else {
				g.pipe = b.client.Pipeline()
			}
			byNode[node] = g
			groups = append(groups, g)
		}
		ps.cmd = g.pipe.LPush(ctx, ps.key, ps.vals...)
		g.pushes = append(g.pushes, ps)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		g.wait = b.queueWait(ctx, g.pipe)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.execWrite(ctx, g.pipe) // cluster.go
		}()
	}
	wg.Wait()
	for _, g := range groups {
		werr := b.replicated(g.wait)
		for _, ps := range g.pushes {
			if ps.cmd.Err() == nil {
				ps.notReplicated = werr
			}
		}
	}
}

// shardPushed tells the hints that this backend put messages on queue.
func (b *Backend) shardPushed(queues ...string) {
	for _, q := range queues {
		b.shard.hints.busy(q)
	}
}

// groupsOf returns the groups that hold an unacked record of tag: the one
// this backend recorded it in, else every group that has it.
func (b *Backend) groupsOf(ctx context.Context, tag string) ([]string, error) {
	if g, ok := b.shard.lookup(tag); ok {
		return []string{g}, nil
	}
	gs, err := b.shard.groups(ctx, b)
	if err != nil || len(gs) == 0 {
		return nil, err
	}
	cmds := make([]*goredis.BoolCmd, len(gs))
	_, err = b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, g := range gs {
			cmds[i] = p.HExists(ctx, b.k.group(g).unacked, tag)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("find the unacked record of "+tag, err)
	}
	var out []string
	for i, c := range cmds {
		if c.Val() {
			out = append(out, gs[i])
		}
	}
	return out, nil
}

// shardRestore is Restore in the sharded layout.
func (b *Backend) shardRestore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) error {
	return b.retry(ctx, func() error {
		gs, err := b.groupsOf(ctx, tag)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if _, err := b.shardRestoreOne(ctx, g, tag, leftmost, route); err != nil {
				return err
			}
		}
		b.shard.forget(tag)
		return nil
	})
}

// shardRestoreOne restores the record of tag in group g: read it, route
// it, and apply the restore with scripts/restore.lua if the record is
// unchanged. When every list it goes to is in g's slot (the message
// routes back to its own queue: the usual case) the script pushes and
// deletes in one atomic step. Otherwise the pushes go first and the
// script then deletes the record if unchanged; if it changed meanwhile
// (acked or restored by someone else) the message may now be there twice.
func (b *Backend) shardRestoreOne(ctx context.Context, g, tag string, leftmost bool, route transport.RouteFunc) (bool, error) {
	gk := b.k.group(g)
	for attempt := 0; attempt < maxRestoreAttempts; attempt++ {
		raw, err := b.client.HGet(ctx, gk.unacked, tag).Bytes()
		exists := err == nil
		if err != nil && !errors.Is(err, goredis.Nil) {
			return false, wrap("restore "+tag, err)
		}
		var plan restorePlan
		if exists && len(raw) > 0 {
			if plan, err = b.planRestore(ctx, tag, raw, route); err != nil {
				return false, wrap("restore "+tag, err)
			}
		}
		keys := []string{gk.unacked, gk.index}
		mode, payload := "R", plan.payload
		if leftmost {
			mode = "L"
		}
		local := true
		switch {
		case plan.dead != nil:
			if plan.mal != nil {
				plan.mal.Where = gk.malformed
			}
			keys = append(keys, gk.malformed)
			mode, payload = "L", plan.dead
		default:
			for _, l := range plan.lists {
				if !strings.HasPrefix(l, gk.base) {
					local = false
				}
			}
			if local {
				keys = append(keys, plan.lists...)
			}
		}
		if !local {
			_, err := b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, l := range plan.lists {
					if leftmost {
						p.LPush(ctx, l, plan.payload)
					} else {
						p.RPush(ctx, l, plan.payload)
					}
				}
				return nil
			})
			if err != nil {
				return false, wrap("restore "+tag, err)
			}
		}
		flag := "0"
		if exists {
			flag = "1"
		}
		n, err := restoreScript.call(ctx, b.client, keys, tag, flag, raw, mode, payload).Int()
		if err != nil {
			return false, wrap("restore "+tag, err)
		}
		if n == 0 && local {
			continue // the record changed under us: read it again
		}
		if n == 0 {
			b.log.Warn("kombu: redis: a restored record changed while it was restored; the message may now be queued twice",
				"delivery_tag", tag)
		}
		for _, l := range plan.lists {
			b.shardPushed(b.queueOfList(l))
		}
		return plan.result(tag, nil)
	}
	return false, fmt.Errorf("kombu: redis: restore %s: the record kept changing (%d attempts)", tag, maxRestoreAttempts)
}

// queueOfList recovers the queue name from a sharded list key.
func (b *Backend) queueOfList(list string) string {
	rest := strings.TrimPrefix(list, b.k.prefix+"{")
	q, _, _ := strings.Cut(rest, "}")
	return q
}

// shardRestoreExpired is RestoreExpired in the sharded layout: every
// group with unacked bookkeeping in turn, each under its own restore
// mutex (held elsewhere: that group is skipped this time).
func (b *Backend) shardRestoreExpired(ctx context.Context, deadline time.Time, route transport.RouteFunc) (int, error) {
	gs, err := b.shard.groups(ctx, b)
	if err != nil {
		return 0, err
	}
	total := 0
	var errs []error
	for _, g := range gs {
		limit := 0
		if b.opts.UnackedRestoreLimit > 0 {
			limit = b.opts.UnackedRestoreLimit - total
			if limit <= 0 {
				break
			}
		}
		n, err := b.shardRestoreGroup(ctx, g, deadline, route, limit)
		total += n
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return total, errors.Join(errs...)
}

func (b *Backend) shardRestoreGroup(ctx context.Context, g string, deadline time.Time, route transport.RouteFunc, limit int) (int, error) {
	gk := b.k.group(g)
	return b.sweepExpired(ctx, gk.mutex, gk.index, deadline, limit, func(tag string) (bool, error) {
		ok, err := b.shardRestoreOne(ctx, g, tag, false, route)
		b.shard.forget(tag)
		return ok, err
	}, "queue", g)
}

// shardRecordUnacked is RecordUnacked in the sharded layout: the record
// of a fanout delivery goes to the exchange's group.
func (b *Backend) shardRecordUnacked(ctx context.Context, tag string, env []byte, exchange, routingKey string) error {
	if err := b.shard.register(ctx, b, exchange); err != nil {
		return err
	}
	gk := b.k.group(exchange)
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, gk.index, goredis.Z{Score: transport.UnixSeconds(b.opts.Clock.Now()), Member: tag})
		p.HSet(ctx, gk.unacked, tag, UnackedValue(env, exchange, routingKey))
		return nil
	})
	if err != nil {
		return wrap("record unacked", err)
	}
	b.shard.remember(tag, exchange)
	return nil
}

// shardUnacked is Inspector.Unacked over every group.
func (b *Backend) shardUnacked(ctx context.Context) (int64, time.Time, error) {
	gs, err := b.shard.groups(ctx, b)
	if err != nil {
		return 0, time.Time{}, err
	}
	var total int64
	var oldest time.Time
	for _, g := range gs {
		gk := b.k.group(g)
		n, err := b.client.HLen(ctx, gk.unacked).Result()
		if err != nil {
			return 0, time.Time{}, wrap("unacked", err)
		}
		total += n
		zs, err := b.client.ZRangeWithScores(ctx, gk.index, 0, 0).Result()
		if err != nil {
			return 0, time.Time{}, wrap("unacked", err)
		}
		if len(zs) > 0 {
			if t := fromUnixSeconds(zs[0].Score); oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	return total, oldest, nil
}

// shardUnackedEntries is Inspector.UnackedEntries over every group,
// oldest first.
func (b *Backend) shardUnackedEntries(ctx context.Context, limit int) ([]transport.UnackedEntry, error) {
	gs, err := b.shard.groups(ctx, b)
	if err != nil {
		return nil, err
	}
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	var out []transport.UnackedEntry
	for _, g := range gs {
		gk := b.k.group(g)
		zs, err := b.client.ZRangeWithScores(ctx, gk.index, 0, stop).Result()
		if err != nil {
			return nil, wrap("unacked entries", err)
		}
		if len(zs) == 0 {
			continue
		}
		tags := make([]string, len(zs))
		for i, z := range zs {
			tags[i], _ = z.Member.(string)
		}
		vals, err := b.client.HMGet(ctx, gk.unacked, tags...).Result()
		if err != nil {
			return nil, wrap("unacked entries", err)
		}
		out = appendUnackedEntries(out, tags, zs, vals)
	}
	slices.SortStableFunc(out, func(a, b transport.UnackedEntry) int { return a.Since.Compare(b.Since) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// shardPutBatch is PutBatch in the sharded layout: shardPublishBatch's
// pushes of messages to the default exchange (one pipeline, or one per
// master waiting for replicas; a MULTI cannot span the queues' slots).
// It returns the first error, else the first *NotReplicatedError (every
// message was written).
func (b *Backend) shardPutBatch(ctx context.Context, items []transport.PutItem) error {
	for _, it := range items {
		if err := b.checkQueueName(it.Queue); err != nil {
			return err
		}
	}
	pub := make([]transport.PublishItem, len(items))
	for i, it := range items {
		pub[i] = transport.PublishItem{RoutingKey: it.Queue, Priority: it.Priority, Envelope: it.Envelope}
	}
	_, errs := b.shardPublishBatch(ctx, pub)
	var notReplicated error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ErrNotReplicated):
			notReplicated = cmp.Or(notReplicated, err)
		default:
			return err
		}
	}
	return notReplicated
}
