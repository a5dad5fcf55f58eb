package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// Redis Cluster, the sharded layout (CLUSTER-SHARDED.md): each queue's
// keys (its priority lists, the unacked records of what was taken from it,
// its restore mutex, its take receipts and its dead-letter list) are
// P+"{"+queue+"}"+name, so they share the queue's slot and the queues of
// an application spread over the masters. Every script names keys of one
// queue only; nothing here sends a cross-slot command.

// ClusterLayout is the value of Options.ClusterLayout (URL option
// cluster_layout).
type ClusterLayout string

const (
	// LayoutCompatible is Kombu's key layout (with hash_tag on a cluster,
	// Kombu PR 2204's): every key of the transport in one slot. It is the
	// default.
	LayoutCompatible ClusterLayout = "compatible"
	// LayoutSharded puts each queue's keys in that queue's slot (Go-only;
	// no Python Kombu reads it).
	LayoutSharded ClusterLayout = "sharded"
)

// ErrShardedName matches the error for a queue name holding "{" or "}" in
// the sharded layout: Redis hashes only the text between the first "{" and
// the next "}", so such a name would not name the slot it seems to. The
// error also matches entity.ErrInvalid. Nothing is written.
var ErrShardedName = errors.New("kombu: redis: a queue name with { or } cannot be used in the sharded cluster layout")

// validateLayout checks the layout option and what the sharded layout
// cannot be combined with.
func (o *Options) validateLayout() error {
	switch o.ClusterLayout {
	case "", LayoutCompatible:
		return nil
	case LayoutSharded:
	default:
		return fmt.Errorf("%w: cluster_layout %q (want %q or %q)", ErrBadOption, o.ClusterLayout, LayoutCompatible, LayoutSharded)
	}
	if o.HashTag != "" {
		return fmt.Errorf("%w: cluster_layout=sharded and hash_tag=%q conflict: the hash tag puts every key in one slot, the sharded layout each queue in its own (choose one)", ErrBadOption, o.HashTag)
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return fmt.Errorf("%w: global_keyprefix %q holds a brace: in the sharded layout Redis would hash it instead of the queue name", ErrBadOption, o.KeyPrefix)
	}
	return nil
}

// checkQueueName refuses, in the sharded layout, a queue name the slot
// formula cannot carry.
func (b *Backend) checkQueueName(queue string) error {
	if b.shard == nil || !strings.ContainsAny(queue, "{}") {
		return nil
	}
	return fmt.Errorf("%w (%w): queue %q", ErrShardedName, entity.ErrInvalid, queue)
}

// groupKeys are the ack-emulation keys of one queue (a "group": a queue
// name, or an exchange name for fanout deliveries) in the sharded layout.
type groupKeys struct {
	base                             string // P+"{"+group+"}"
	unacked, index, mutex, malformed string
}

func (k *keys) group(g string) groupKeys {
	base := k.prefix + "{" + g + "}"
	return groupKeys{
		base:      base,
		unacked:   base + strings.TrimPrefix(k.unacked, k.prefix),
		index:     base + strings.TrimPrefix(k.unackedIndex, k.prefix),
		mutex:     base + strings.TrimPrefix(k.unackedMutex, k.prefix),
		malformed: base + strings.TrimPrefix(k.malformed, k.prefix),
	}
}

// shardState is a sharded backend's own state.
type shardState struct {
	groupsKey string // P+"_kombu-go.queues": SET of groups with unacked bookkeeping
	prefixArg string // P+"{": scripts/get.lua's prefix
	suffixes  []any  // "}"+step suffix, scripts/get.lua's step suffixes

	mu         sync.Mutex
	tags       map[string]string // delivery tag -> group, for what this backend recorded
	registered map[string]bool   // groups this backend has SADDed to groupsKey
	spent      map[string][]string

	bmu      sync.Mutex
	bindings map[string]bindingCache

	hints *hints

	plainPubSub atomic.Bool // the server has no SPUBLISH: PUBLISH and SUBSCRIBE (sharded_fanout.go)
}

// bindingCache is an exchange's binding table as last read.
type bindingCache struct {
	rows []transport.BindingRow
	at   time.Time
}

// bindingTTL bounds how long Publish routes through a cached binding
// table that this backend did not change itself.
const bindingTTL = time.Second

func newShardState(b *Backend) *shardState {
	s := &shardState{
		groupsKey:  b.k.prefix + "_kombu-go.queues",
		prefixArg:  b.k.prefix + "{",
		tags:       map[string]string{},
		registered: map[string]bool{},
		spent:      map[string][]string{},
		bindings:   map[string]bindingCache{},
	}
	for _, sfx := range b.k.stepSuffixes() {
		s.suffixes = append(s.suffixes, "}"+sfx)
	}
	s.hints = newHints(b)
	return s
}

// register adds group to the set the restore sweep walks, before the
// first unacked record of this backend in it is written.
func (s *shardState) register(ctx context.Context, b *Backend, group string) error {
	s.mu.Lock()
	done := s.registered[group]
	s.mu.Unlock()
	if done {
		return nil
	}
	if err := b.retry(ctx, func() error { return b.client.SAdd(ctx, s.groupsKey, group).Err() }); err != nil {
		return wrap("register queue for the restore sweep", err)
	}
	s.mu.Lock()
	s.registered[group] = true
	s.mu.Unlock()
	return nil
}

// groups returns every group with unacked bookkeeping.
func (s *shardState) groups(ctx context.Context, b *Backend) ([]string, error) {
	gs, err := b.client.SMembers(ctx, s.groupsKey).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, wrap("read the queues with unacked records", err)
	}
	return gs, nil
}

func (s *shardState) remember(tag, group string) {
	s.mu.Lock()
	s.tags[tag] = group
	s.mu.Unlock()
}

// lookup returns the group of tag, if this backend recorded it.
func (s *shardState) lookup(tag string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tags[tag]
	return g, ok
}

func (s *shardState) forget(tags ...string) {
	s.mu.Lock()
	for _, t := range tags {
		delete(s.tags, t)
	}
	s.mu.Unlock()
}

// split sorts tags by the group this backend knows for them; the unknown
// ones are returned apart.
func (s *shardState) split(tags []string) (known map[string][]string, unknown []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tags {
		if g, ok := s.tags[t]; ok {
			if known == nil {
				known = map[string][]string{}
			}
			known[g] = append(known[g], t)
		} else {
			unknown = append(unknown, t)
		}
	}
	return known, unknown
}

func (s *shardState) takeSpent(group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.spent[group]) < spentBatch {
		return nil
	}
	out := s.spent[group]
	delete(s.spent, group)
	return out
}

func (s *shardState) putSpent(group, receipt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.spent[group]) < maxSpentReceipts {
		s.spent[group] = append(s.spent[group], receipt)
	}
}

// deliveryTag finds properties.delivery_tag in an envelope the take script
// has just recorded (so it has one): the last `"delivery_tag": "` of the
// bytes (Kombu writes properties after body and headers), else a parse.
// A wrong guess only costs the ack a search over every queue.
func deliveryTag(raw []byte) string {
	const key = `"delivery_tag": "`
	if i := bytes.LastIndex(raw, []byte(key)); i >= 0 {
		rest := raw[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j > 0 && bytes.IndexByte(rest[:j], '\\') < 0 {
			return string(rest[:j])
		}
	}
	tag, _ := envelope.ExtractTag(raw)
	return tag
}

// shardTake is take in the sharded layout: scripts/get.lua once per queue
// (each call names one queue's keys only), queues that the watchers say
// are empty left out (sharded_hint.go). Without rotate the queues are
// taken from in order, each drained before the next; with rotate the
// messages are taken round robin, message by message, exactly as that
// many successive single takes rotating the order would take them.
// Priorities are strict within a queue, not across queues. settle rides
// the take of its queue when that queue is taken from, else goes in one
// pipeline of its own.
func (b *Backend) shardTake(ctx context.Context, queues []string, ack bool, n int, rotate bool, settle []string, dst []transport.Delivery) ([]transport.Delivery, error) {
	for _, q := range queues {
		if err := b.checkQueueName(q); err != nil {
			return dst, err
		}
	}
	s := b.shard
	ride, unknown := s.split(settle)
	start := len(dst)
	h := s.hints
	h.sync()
	cands := make([]string, 0, len(queues))
	for _, q := range queues {
		if !h.skip(q) && !containsStr(cands, q) {
			cands = append(cands, q)
		}
	}
	var err error
	// takeMany takes want[i] from qs[i] (one round; in one pipeline when
	// there are several) and keeps the hints.
	takeMany := func(qs []string, want []int, dst []transport.Delivery) ([]transport.Delivery, []int, error) {
		calls := make([]*takeCall, 0, len(qs))
		marks := make([]uint64, len(qs))
		for i, q := range qs {
			marks[i] = h.mark(q)
			c, err := b.newTakeCall(ctx, q, ack, want[i], ride[q])
			if err != nil {
				return dst, make([]int, len(qs)), err
			}
			delete(ride, q)
			calls = append(calls, c)
		}
		dst, got, errs := b.takeQueues(ctx, calls, dst)
		var first error
		for i, q := range qs {
			var mal *transport.MalformedError
			switch e := errs[i]; {
			case e == nil && got[i] < want[i]:
				h.drained(q, marks[i])
			case e == nil || errors.As(e, &mal):
				h.busy(q)
			}
			if errs[i] != nil && first == nil {
				first = errs[i]
			}
		}
		return dst, got, first
	}
	if !rotate || len(cands) < 2 {
		for _, q := range cands {
			if len(dst)-start >= n {
				break
			}
			if dst, _, err = takeMany([]string{q}, []int{n - (len(dst) - start)}, dst); err != nil {
				break
			}
		}
	} else {
		dst, err = b.shardRoundRobin(cands, n, dst, takeMany)
	}
	if serr := b.settleGroups(ctx, ride, unknown); serr != nil && err == nil {
		err = serr
	}
	if err == nil && len(dst) == start {
		err = transport.ErrEmpty
	}
	return dst, err
}

// shardRoundRobin takes up to n messages from cands round robin: the
// order a consumer rotating its queue list after every message would see.
// Each round asks every queue for the share strict round robin would give
// it if every queue had enough (a lower bound of what it gets, so nothing
// is taken that a single take would not have taken), then replays the
// rotation over what came back; a queue that ran dry drops out.
func (b *Backend) shardRoundRobin(cands []string, n int, dst []transport.Delivery, takeMany func(qs []string, want []int, dst []transport.Delivery) ([]transport.Delivery, []int, error)) ([]transport.Delivery, error) {
	type bank struct {
		msgs []transport.Delivery
		pos  int
		dry  bool
	}
	order := append([]string(nil), cands...)
	banks := make(map[string]*bank, len(order))
	for _, q := range order {
		banks[q] = &bank{}
	}
	out := dst
	taken := 0
	// replay hands out banked messages in rotation order until a queue
	// whose turn it is has nothing banked (and is not known dry), or n.
	replay := func(force bool) {
		for taken < n {
			moved := false
			for i, q := range order {
				bk := banks[q]
				if bk.pos >= len(bk.msgs) {
					if bk.dry || force {
						continue
					}
					return
				}
				out = append(out, bk.msgs[bk.pos])
				bk.msgs[bk.pos] = transport.Delivery{}
				bk.pos++
				taken++
				copy(order[i:], order[i+1:])
				order[len(order)-1] = q
				moved = true
				break
			}
			if !moved {
				return
			}
		}
	}
	for taken < n {
		replay(false)
		if taken >= n {
			break
		}
		var live []string
		for _, q := range order {
			if !banks[q].dry {
				live = append(live, q)
			}
		}
		if len(live) == 0 {
			break
		}
		rem := n - taken
		var qs []string
		var wants []int
		for i, q := range live {
			bk := banks[q]
			share := rem / len(live)
			if i < rem%len(live) {
				share++
			}
			if want := share - (len(bk.msgs) - bk.pos); want > 0 {
				qs = append(qs, q)
				wants = append(wants, want)
			}
		}
		var got []int
		var err error
		before := len(out)
		out, got, err = takeMany(qs, wants, out)
		// Bank each queue's messages (they were appended in qs order).
		taken0 := out[before:]
		for i, q := range qs {
			bk := banks[q]
			bk.msgs = append(bk.msgs, taken0[:got[i]]...)
			taken0 = taken0[got[i]:]
			if got[i] < wants[i] {
				bk.dry = true
			}
		}
		out = out[:before]
		if err != nil {
			// Whatever was taken is returned, in rotation order as far as
			// it goes.
			replay(true)
			return out, err
		}
	}
	replay(true)
	return out, nil
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// takeCall is one scripts/get.lua call on one queue's keys.
type takeCall struct {
	q        string
	want     int
	ack      bool
	settle   []string
	receipt  string
	deadList string
	keys     []string
	args     []any
	res      any
	err      error
}

// newTakeCall prepares a take of up to n messages of q, after deleting
// the unacked records of settle (tags of q). With ack, q is first added
// to the set the restore sweep walks.
func (b *Backend) newTakeCall(ctx context.Context, q string, ack bool, n int, settle []string) (*takeCall, error) {
	s := b.shard
	if ack {
		if err := s.register(ctx, b, q); err != nil {
			return nil, err
		}
	}
	nonce, err := newToken()
	if err != nil {
		return nil, err
	}
	gk := b.k.group(q)
	c := &takeCall{q: q, want: n, ack: ack, settle: settle, receipt: gk.base + "kombu-go.get." + nonce, deadList: gk.malformed}
	spent := s.takeSpent(q)
	c.keys = make([]string, 0, 4+len(spent))
	c.keys = append(c.keys, gk.unacked, gk.index, gk.malformed, c.receipt)
	c.keys = append(c.keys, spent...)
	c.args = make([]any, 0, 9+len(s.suffixes)+len(settle))
	flag := "0"
	if ack {
		flag = "1"
		if !b.resends {
			flag = "2"
		}
	}
	c.args = append(c.args, flag, formatScore(b.opts.Clock.Now()), strconv.Itoa(n), "0", "1",
		strconv.Itoa(len(s.suffixes)), strconv.Itoa(len(settle)), s.prefixArg)
	c.args = append(c.args, s.suffixes...)
	c.args = append(c.args, q)
	for _, t := range settle {
		c.args = append(c.args, t)
	}
	return c, nil
}

// runTakeCall sends c, and again with the same receipt after connection
// errors and TRYAGAIN, as take does (a lost reply then returns the same
// messages). resend: c already failed once (in a pipeline) with c.err.
func (b *Backend) runTakeCall(ctx context.Context, c *takeCall, resend bool) {
	sctx := context.WithoutCancel(ctx) // the script pops: never cut its reply off
	start := time.Now()
	delay := 50 * time.Millisecond
	for {
		if resend {
			if c.ack {
				c.args[0] = "1" // a retry looks for the receipt
			}
			if isNoScript(c.err) {
				resend = false // it did not run: send again at once
			} else if c.err == nil || errors.Is(c.err, goredis.Nil) || !c.ack || !retryable(c.err) ||
				b.closed.Load() || ctx.Err() != nil || time.Since(start)+delay > getRetryBudget {
				return
			}
		}
		if resend {
			b.log.Debug("kombu: redis: get failed; retrying with the same receipt", "queue", c.q, "error", c.err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
			delay = min(2*delay, time.Second)
		}
		c.res, c.err = getScript.call(sctx, b.client, c.keys, c.args...).Result()
		resend = true
	}
}

// finishTakeCall appends what c took to dst (a *MalformedError after the
// messages before it, when it met one).
func (b *Backend) finishTakeCall(c *takeCall, dst []transport.Delivery) ([]transport.Delivery, error) {
	s := b.shard
	if errors.Is(c.err, goredis.Nil) {
		s.forget(c.settle...)
		return dst, nil
	}
	if c.err != nil {
		return dst, wrap("get", c.err)
	}
	s.forget(c.settle...)
	arr, ok := c.res.([]any)
	if !ok || len(arr) == 0 || len(arr)%3 != 0 {
		return dst, fmt.Errorf("kombu: redis: get: unexpected script reply %v", c.res)
	}
	recorded := false
	for i := 0; i < len(arr); i += 3 {
		status, _ := arr[i].(int64)
		msg, _ := arr[i+2].(string)
		switch status {
		case 1:
			env := replyBytes(msg)
			if c.ack {
				recorded = true
				s.remember(deliveryTag(env), c.q)
			}
			dst = append(dst, transport.Delivery{Queue: c.q, Envelope: env})
		case 2:
			if recorded {
				s.putSpent(c.q, c.receipt)
			}
			b.log.Warn("kombu: redis: malformed message moved to the dead-letter list",
				"queue", c.q, "dead_letter", c.deadList)
			return dst, &transport.MalformedError{
				Queue: c.q,
				Raw:   []byte(msg),
				Where: c.deadList,
				Err:   errors.New("not a JSON envelope with properties.delivery_tag"),
			}
		default:
			return dst, fmt.Errorf("kombu: redis: get: unexpected script status %d", status)
		}
	}
	if recorded {
		s.putSpent(c.q, c.receipt)
	}
	return dst, nil
}

// takeQueues runs several takes of one round robin round in one pipeline
// (go-redis sends each master its calls at once); a call that failed is
// sent again on its own, with its receipt. The results are appended to
// dst, each call's after the previous one's; got[i] is how many calls[i]
// took, and err the first error (every call's messages are returned).
func (b *Backend) takeQueues(ctx context.Context, calls []*takeCall, dst []transport.Delivery) ([]transport.Delivery, []int, []error) {
	got := make([]int, len(calls))
	errs := make([]error, len(calls))
	if len(calls) == 1 {
		b.runTakeCall(ctx, calls[0], false)
	} else {
		sctx := context.WithoutCancel(ctx)
		cmds := make([]*goredis.Cmd, len(calls))
		_, _ = b.client.Pipelined(sctx, func(p goredis.Pipeliner) error {
			for i, c := range calls {
				cmds[i] = goredis.NewCmd(sctx, getScript.args(c.keys, c.args...)...)
				cmds[i].SetFirstKeyPos(3)
				_ = p.Process(sctx, cmds[i])
			}
			return nil
		})
		for i, c := range calls {
			c.res, c.err = cmds[i].Result()
			if c.err != nil && !errors.Is(c.err, goredis.Nil) {
				b.runTakeCall(ctx, c, true)
			}
		}
	}
	for i, c := range calls {
		before := len(dst)
		dst, errs[i] = b.finishTakeCall(c, dst)
		got[i] = len(dst) - before
	}
	return dst, got, errs
}

// shardAck deletes the unacked records of tags: for tags of one queue
// MULTI, ZREM, HDEL, EXEC in its slot, as Kombu; for several queues one
// pipeline (go-redis sends each master its part). A tag this backend did
// not record is looked for in every queue with unacked bookkeeping.
func (b *Backend) shardAck(ctx context.Context, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	known, unknown := b.shard.split(tags)
	return b.settleGroups(ctx, known, unknown)
}

// settleGroups deletes the records of tags by group, and of unknown in
// every group, in one pipeline.
func (b *Backend) settleGroups(ctx context.Context, byGroup map[string][]string, unknown []string) error {
	if len(byGroup) == 0 && len(unknown) == 0 {
		return nil
	}
	if len(unknown) > 0 {
		gs, err := b.shard.groups(ctx, b)
		if err != nil {
			return err
		}
		if byGroup == nil {
			byGroup = map[string][]string{}
		}
		for _, g := range gs {
			byGroup[g] = append(byGroup[g], unknown...)
		}
	}
	err := b.retry(ctx, func() error {
		if len(byGroup) == 1 {
			// One queue (the usual case): Kombu's MULTI, ZREM, HDEL, EXEC,
			// atomic in the queue's slot.
			for g, ts := range byGroup {
				gk := b.k.group(g)
				zargs := make([]any, len(ts))
				for i, t := range ts {
					zargs[i] = t
				}
				_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
					p.ZRem(ctx, gk.index, zargs...)
					p.HDel(ctx, gk.unacked, ts...)
					return nil
				})
				return err
			}
		}
		// One pipeline over every queue (go-redis sends each master its
		// part); a MULTI cannot span slots, so each queue gets HDEL before
		// ZREM: cut off between them, an index entry without its record
		// is left, which the next sweep just removes.
		_, err := b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for g, ts := range byGroup {
				gk := b.k.group(g)
				zargs := make([]any, len(ts))
				for i, t := range ts {
					zargs[i] = t
				}
				p.HDel(ctx, gk.unacked, ts...)
				p.ZRem(ctx, gk.index, zargs...)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return wrap("ack", err)
	}
	for _, ts := range byGroup {
		b.shard.forget(ts...)
	}
	b.shard.forget(unknown...)
	return nil
}
