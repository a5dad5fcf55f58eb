package redis

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

var _ transport.Inspector = (*Backend)(nil)

// QueueLengths returns the length of each of queue's priority lists, lowest
// step first (one MULTI of LLENs).
func (b *Backend) QueueLengths(ctx context.Context, queue string) ([]transport.StepLength, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.IntCmd, len(b.k.steps))
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for i, s := range b.k.steps {
			cmds[i] = p.LLen(ctx, b.k.stepKey(queue, s))
		}
		return nil
	})
	if err != nil {
		return nil, wrap("queue lengths", err)
	}
	out := make([]transport.StepLength, len(cmds))
	for i, c := range cmds {
		out[i] = transport.StepLength{Step: b.k.steps[i], Length: c.Val()}
	}
	return out, nil
}

// Exchanges lists, sorted, the exchanges that have a binding SET (SCAN for
// P+"_kombu.binding.*").
func (b *Backend) Exchanges(ctx context.Context) ([]string, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	base := b.k.bindingKey("")
	var out []string
	if c, ok := b.client.(*goredis.ClusterClient); ok {
		// SCAN goes to one node; the binding keys may be on any master.
		var mu sync.Mutex
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error {
			iter := node.Scan(ctx, 0, globEscape(base)+"*", 1000).Iterator()
			for iter.Next(ctx) {
				mu.Lock()
				out = append(out, strings.TrimPrefix(iter.Val(), base))
				mu.Unlock()
			}
			return iter.Err()
		})
		if err != nil {
			return nil, wrap("exchanges", err)
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	iter := b.client.Scan(ctx, 0, globEscape(base)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, strings.TrimPrefix(iter.Val(), base))
	}
	if err := iter.Err(); err != nil {
		return nil, wrap("exchanges", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// globEscape escapes Redis glob metacharacters.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// Unacked returns the number of records in the unacked hash and the receive
// time of the oldest entry of unacked_index (zero if none).
func (b *Backend) Unacked(ctx context.Context) (int64, time.Time, error) {
	if err := b.checkOpen(); err != nil {
		return 0, time.Time{}, err
	}
	if b.shard != nil {
		return b.shardUnacked(ctx) // sharded_ops.go
	}
	var n *goredis.IntCmd
	var first *goredis.ZSliceCmd
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		n = p.HLen(ctx, b.k.unacked)
		first = p.ZRangeWithScores(ctx, b.k.unackedIndex, 0, 0)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return 0, time.Time{}, wrap("unacked", err)
	}
	var oldest time.Time
	if zs := first.Val(); len(zs) > 0 {
		oldest = fromUnixSeconds(zs[0].Score)
	}
	return n.Val(), oldest, nil
}

// fromUnixSeconds converts an unacked_index score back to a time, rounded
// to the microsecond: a float64 near 1.8e9 s carries no finer precision.
func fromUnixSeconds(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3)
}

// UnackedEntries returns up to limit unacked records (limit <= 0: all),
// oldest first by unacked_index. Index entries without a record are left
// out; a record that cannot be parsed is returned with its raw value as
// Envelope.
func (b *Backend) UnackedEntries(ctx context.Context, limit int) ([]transport.UnackedEntry, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	if b.shard != nil {
		return b.shardUnackedEntries(ctx, limit) // sharded_ops.go
	}
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit) - 1
	}
	zs, err := b.client.ZRangeWithScores(ctx, b.k.unackedIndex, 0, stop).Result()
	if err != nil {
		return nil, wrap("unacked entries", err)
	}
	if len(zs) == 0 {
		return nil, nil
	}
	tags := make([]string, len(zs))
	for i, z := range zs {
		tags[i], _ = z.Member.(string)
	}
	vals, err := b.client.HMGet(ctx, b.k.unacked, tags...).Result()
	if err != nil {
		return nil, wrap("unacked entries", err)
	}
	return appendUnackedEntries(make([]transport.UnackedEntry, 0, len(zs)), tags, zs, vals), nil
}

// appendUnackedEntries appends the entries of the records vals (HMGET of
// tags, whose index scores are zs) to out, leaving out records gone
// meanwhile; a record that does not parse is returned raw as its envelope.
func appendUnackedEntries(out []transport.UnackedEntry, tags []string, zs []goredis.Z, vals []any) []transport.UnackedEntry {
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		e := transport.UnackedEntry{Tag: tags[i], Since: fromUnixSeconds(zs[i].Score)}
		if env, ex, rk, err := ParseUnackedValue([]byte(s)); err == nil {
			e.Envelope, e.Exchange, e.RoutingKey = env, ex, rk
		} else {
			e.Envelope = []byte(s)
		}
		out = append(out, e)
	}
	return out
}

// Peek returns up to n envelopes of queue in the order Get would take them
// (each list from its right end, lowest step first), removing nothing.
func (b *Backend) Peek(ctx context.Context, queue string, n int) ([]transport.Delivery, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	var out []transport.Delivery
	for _, s := range b.k.steps {
		if len(out) >= n {
			break
		}
		want := int64(n - len(out))
		vals, err := b.client.LRange(ctx, b.k.stepKey(queue, s), -want, -1).Result()
		if err != nil {
			return nil, wrap("peek", err)
		}
		for i := len(vals) - 1; i >= 0; i-- {
			out = append(out, transport.Delivery{Queue: queue, Envelope: []byte(vals[i])})
		}
	}
	return out, nil
}
