package redis

import (
	"context"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

var _ transport.BatchPublisher = (*Backend)(nil)

// maxScriptBatch bounds the messages of one publish_batch.lua call (and of
// one LPUSH), so one call never holds the server for long.
const maxScriptBatch = 512

// PublishBatch publishes many messages in one pipeline
// (transport.BatchPublisher). Consecutive messages to the same named
// exchange share one scripts/publish_batch.lua call, which reads the
// binding table once and routes each message exactly as Publish does;
// consecutive messages to the same queue through the default exchange
// share one LPUSH. Messages that land in the same list are consumed in
// the order given. A round trip that fails fails every message it
// carried (they may or may not have been put; nothing is resent).
//
// The script travels with each pipeline (its first call is an EVAL of
// the script without comments, about 5 KB), so a server whose script
// cache was flushed or restarted never sees a batch out of order.
//
// On a cluster whose hash tag's slot is migrating, messages that were not
// written (TRYAGAIN, or a redirect go-redis gave up on) are sent again
// until the slot is assigned, when no message after them was written
// (publishBatchMigrating); otherwise they fail with that error.
func (b *Backend) PublishBatch(ctx context.Context, items []transport.PublishItem) ([]int, []error) {
	ns, errs := b.publishBatch1(ctx, items)
	if b.k.guard != "" {
		if from := movingTail(errs); from >= 0 {
			return b.publishBatchMigrating(ctx, items, ns, errs, from) // cluster.go
		}
	}
	return ns, errs
}

// publishBatch1 is one attempt of PublishBatch.
func (b *Backend) publishBatch1(ctx context.Context, items []transport.PublishItem) ([]int, []error) {
	ns := make([]int, len(items))
	errs := make([]error, len(items))
	if err := b.checkOpen(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return ns, errs
	}
	if b.shard != nil {
		return b.shardPublishBatch(ctx, items) // sharded_ops.go
	}
	type op struct {
		from, to int // items[from:to]
		cmd      *goredis.Cmd
		push     *goredis.IntCmd
	}
	var ops []op
	scripted := false
	pipe, err := b.writePipeline(ctx) // cluster.go
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return ns, errs
	}
	for i := 0; i < len(items); {
		it := items[i]
		j := i + 1
		if it.Exchange == "" {
			key := b.k.queueKey(it.RoutingKey, it.Priority)
			for j < len(items) && j-i < maxScriptBatch && items[j].Exchange == "" &&
				items[j].RoutingKey == it.RoutingKey && b.k.listSuffix(items[j].Priority) == b.k.listSuffix(it.Priority) {
				j++
			}
			vals := make([]any, j-i)
			for k := i; k < j; k++ {
				vals[k-i] = items[k].Envelope
			}
			ops = append(ops, op{from: i, to: j, push: pipe.LPush(ctx, key, vals...)})
		} else {
			typ := it.Type.Normalize()
			for j < len(items) && j-i < maxScriptBatch && items[j].Exchange == it.Exchange && items[j].Type.Normalize() == typ {
				j++
			}
			args := make([]any, 0, 4+3*(j-i))
			args = append(args, string(typ), b.k.prefix, b.k.sep, strconv.Itoa(j-i))
			for k := i; k < j; k++ {
				args = append(args, items[k].RoutingKey, b.k.listSuffix(items[k].Priority), items[k].Envelope)
			}
			cmdArgs := publishBatchScript.args(b.k.publishKeys(it.Exchange), args...)
			// A pipeline sends EVALSHA, which fails with NOSCRIPT when
			// the server's script cache lacks the script (a fresh or
			// restarted server); sending those calls again after a load
			// would put them after the pipeline's later pushes, out of
			// order. So the pipeline's first call is an EVAL, which
			// caches the script for the EVALSHAs behind it.
			cmd := publishBatchScript.queue(ctx, pipe, !scripted, cmdArgs)
			scripted = true
			ops = append(ops, op{from: i, to: j, cmd: cmd})
		}
		i = j
	}
	var wait *goredis.IntCmd
	if b.waiting() {
		wait = b.queueWait(ctx, pipe) // covers every write above: same connection
		b.execWrite(ctx, pipe)        // cluster.go
	} else {
		_, _ = pipe.Exec(ctx) // each command carries its own error
	}

	for _, o := range ops {
		if o.push != nil {
			err := wrap("publish", o.push.Err())
			for k := o.from; k < o.to; k++ {
				errs[k] = err
				if err == nil {
					ns[k] = 1
				}
			}
			continue
		}
		res, err := o.cmd.Int64Slice()
		if err == nil && (len(res) < 1 || (res[0] >= 0 && len(res) != 1+o.to-o.from)) {
			err = fmt.Errorf("unexpected script reply %v", res)
		}
		if err != nil {
			for k := o.from; k < o.to; k++ {
				errs[k] = wrap("publish", err)
			}
			continue
		}
		if res[0] == -1 {
			if len(res) > 1 && res[1] > 0 {
				b.warnSkipped(items[o.from].Exchange, res[1])
			}
			// A stored pattern the Lua matcher does not cover: route these
			// in Go, one Publish each (its fallback does the same).
			for k := o.from; k < o.to; k++ {
				it := items[k]
				ns[k], errs[k] = b.publishNow(ctx, it.Exchange, it.Type, it.RoutingKey, it.Priority, it.Envelope)
			}
			continue
		}
		if res[0] > 0 {
			b.warnSkipped(items[o.from].Exchange, res[0])
		}
		for k := o.from; k < o.to; k++ {
			ns[k] = int(res[1+k-o.from])
		}
	}
	if wait != nil {
		if werr := b.replicated(wait); werr != nil {
			// Every message written stays published, on the master only.
			for k := range items {
				if errs[k] == nil && ns[k] > 0 {
					errs[k] = werr
				}
			}
		}
	}
	return ns, errs
}

func (b *Backend) warnSkipped(exchange string, n int64) {
	b.log.Warn("kombu: redis: skipped binding members that do not have three parts",
		"key", b.k.bindingKey(exchange), "count", n)
}
