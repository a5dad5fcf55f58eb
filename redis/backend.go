package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/transport"
)

// Backend is a transport.Backend over Redis with Python Kombu's key layout.
// It is safe for concurrent use.
type Backend struct {
	client goredis.UniversalClient
	owned  bool // created by Open: Close closes it

	// wait carries the watchers' blocking BLMOVEs (see wait.go): a pool of
	// its own, created by the backend, when client is a *redis.Client, so
	// blocked commands never take connections the rest of the program
	// needs; otherwise client itself.
	wait     goredis.UniversalClient
	ownsWait bool
	opts     Options
	k        keys
	log      *slog.Logger

	hub *waitHub

	// shard is the sharded cluster layout's state (sharded.go); nil in
	// Kombu's layout.
	shard *shardState

	// pipe coalesces concurrent Publish and Put calls (autopipe.go); nil
	// when Options.NoAutoPipeline is set.
	pipe *autoPipe

	// resends: the client may send a command again by itself after a
	// connection error (MaxRetries not -1, or a client type whose retries
	// are not known), so every take must look for its own receipt.
	resends bool

	// spent are receipts of takes whose replies arrived, deleted by the
	// next take (scripts/get.lua).
	spentMu sync.Mutex
	spent   []string

	// windowSkip counts the takes of many queues still to go to the full
	// list after a windowed take found nothing (take).
	windowSkip atomic.Int32

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var (
	_ transport.Backend     = (*Backend)(nil)
	_ transport.Publisher   = (*Backend)(nil)
	_ transport.BatchPutter = (*Backend)(nil)
	_ transport.Fanout      = (*Backend)(nil)
	_ transport.Pinger      = (*Backend)(nil)
)

// maxRestoreAttempts bounds the compare-and-set retries of a restore whose
// record keeps changing under it.
const maxRestoreAttempts = 16

// New returns a Backend on client. The backend never closes client: Close
// releases only what the backend started. Options start from
// DefaultOptions.
//
// The client should not have ContextTimeoutEnabled set if it is shared with
// code that cancels contexts around blocking commands; the backend itself
// never sends a command whose loss on cancellation could lose a message (see
// the package documentation).
func New(client goredis.UniversalClient, opts ...Option) (*Backend, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: nil client", ErrBadOption)
	}
	o := DefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	return newBackend(client, false, o)
}

func newBackend(client goredis.UniversalClient, owned bool, o Options) (*Backend, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	db := o.DB
	if db < 0 {
		db = 0
		if c, ok := client.(*goredis.Client); ok {
			db = c.Options().DB
		}
	}
	k, err := newKeys(&o, db)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	b := &Backend{client: client, owned: owned, opts: o, k: k, log: o.Logger, wait: client, resends: true}
	if c, ok := client.(*goredis.Client); ok {
		b.resends = c.Options().MaxRetries >= 0 // 0 means go-redis's default, 3
	}
	if c, ok := client.(*goredis.Client); ok && o.WaitConnections > 0 {
		b.wait, b.ownsWait = newWaitClient(c, o.WaitConnections), true
	}
	if c, ok := client.(*goredis.ClusterClient); ok && o.WaitConnections > 0 {
		b.wait, b.ownsWait = newWaitCluster(c, o.WaitConnections), true // cluster.go
	}
	b.hub = newWaitHub(b, o.WaitConnections)
	if k.sharded {
		b.shard = newShardState(b) // sharded.go
	}
	if !o.NoAutoPipeline {
		b.pipe = newAutoPipe(b)
	}
	return b, nil
}

// newWaitClient returns a client with c's connection settings (address,
// credentials, database, TLS, dialer, timeouts) and a pool of its own of at
// most n connections, for blocking commands. Hooks added to c with AddHook
// do not apply to it.
func newWaitClient(c *goredis.Client, n int) *goredis.Client {
	opt := *c.Options()
	if opt.MaintNotificationsConfig != nil {
		mc := *opt.MaintNotificationsConfig
		opt.MaintNotificationsConfig = &mc
	}
	opt.PushNotificationProcessor = nil // NewClient makes its own
	opt.ClientSideCache, opt.ClientSideCacheConfig = nil, nil
	opt.PoolSize, opt.MaxActiveConns = n, n
	opt.MinIdleConns, opt.MaxIdleConns = 0, 0
	opt.ContextTimeoutEnabled = false
	return goredis.NewClient(&opt)
}

// Options returns the backend's options.
func (b *Backend) Options() Options { return b.opts }

// LoadScripts loads the backend's Lua scripts into the server's script
// cache. Scripts are also loaded on first use; Open calls this.
func (b *Backend) LoadScripts(ctx context.Context) error {
	for _, s := range allScripts {
		if err := s.load(ctx, b.client); err != nil {
			return fmt.Errorf("kombu: redis: load script: %w", err)
		}
	}
	return nil
}

func (b *Backend) checkOpen() error {
	if b.closed.Load() {
		return transport.ErrClosed
	}
	return nil
}

// wrap gives a Redis error the package's context; redis.Nil never leaks.
func wrap(op string, err error) error {
	if err == nil || errors.Is(err, goredis.Nil) {
		return nil
	}
	return fmt.Errorf("kombu: redis: %s: %w", op, err)
}

// Close stops the backend's blocked waits, closes the connection pool it
// made for them and, if the backend opened its client itself (Open),
// closes that client. A client handed to New is left open.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.hub.close()
		// Closing the wait pool interrupts the blocked BLMOVEs, which is
		// safe: they never hold a message.
		if b.ownsWait {
			_ = b.wait.Close()
		}
		if b.owned {
			b.closeErr = wrap("close", b.client.Close())
		}
		b.hub.wait()
	})
	return b.closeErr
}

// Ping checks the connection (transport.Pinger).
func (b *Backend) Ping(ctx context.Context) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	return wrap("ping", b.client.Ping(ctx).Err())
}

// Put LPUSHes envelope to queue's list for priority (Kombu's _put).
func (b *Backend) Put(ctx context.Context, queue string, priority int, envelope []byte) error {
	err := b.put1(ctx, queue, priority, envelope)
	if err != nil && clusterMoving(err) && b.shard == nil { // sharded: shardSend retries
		_, err = b.whileMoving(ctx, func() (int, error) { // cluster.go
			return 1, b.put1(ctx, queue, priority, envelope)
		})
	}
	return err
}

// put1 is one attempt of Put.
func (b *Backend) put1(ctx context.Context, queue string, priority int, envelope []byte) error {
	if b.pipe != nil {
		return b.pipePut(ctx, queue, priority, envelope) // autopipe.go
	}
	return b.putNow(ctx, queue, priority, envelope)
}

// putNow is Put on its own round trip.
func (b *Backend) putNow(ctx context.Context, queue string, priority int, envelope []byte) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.waiting() {
		items := []transport.PutItem{{Queue: queue, Priority: priority, Envelope: envelope}}
		if b.shard != nil {
			return b.shardPutBatch(ctx, items) // sharded_ops.go
		}
		return b.pushWaiting(ctx, "put", items) // replicas.go
	}
	if b.shard != nil {
		if err := b.checkQueueName(queue); err != nil { // sharded.go
			return err
		}
		err := b.client.LPush(ctx, b.k.queueKey(queue, priority), envelope).Err()
		if err != nil && clusterMoving(err) {
			// Not written: shardSend sends it again while the slot moves.
			return b.shardPutBatch(ctx, []transport.PutItem{{Queue: queue, Priority: priority, Envelope: envelope}})
		}
		b.shardPushed(queue)
		return wrap("put", err)
	}
	return wrap("put", b.client.LPush(ctx, b.k.queueKey(queue, priority), envelope).Err())
}

// PutBatch LPUSHes many envelopes in one MULTI/EXEC round trip
// (transport.BatchPutter).
func (b *Backend) PutBatch(ctx context.Context, items []transport.PutItem) error {
	err := b.putBatch1(ctx, items)
	if err != nil && clusterMoving(err) && b.shard == nil {
		// One MULTI: nothing of it was written. (The sharded layout
		// sends again only the refused pushes itself: shardSend.)
		_, err = b.whileMoving(ctx, func() (int, error) { // cluster.go
			return len(items), b.putBatch1(ctx, items)
		})
	}
	return err
}

// putBatch1 is one attempt of PutBatch.
func (b *Backend) putBatch1(ctx context.Context, items []transport.PutItem) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if len(items) == 0 {
		return nil
	}
	if b.shard != nil {
		return b.shardPutBatch(ctx, items) // sharded_ops.go
	}
	if b.waiting() {
		return b.pushWaiting(ctx, "put batch", items)
	}
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, it := range items {
			p.LPush(ctx, b.k.queueKey(it.Queue, it.Priority), it.Envelope)
		}
		return nil
	})
	return wrap("put batch", err)
}

// Fetch takes up to req.Max messages of req.Queues in one get.lua call,
// step-major, as that many successive one-message takes would (rotating
// the queue order after each take when req.Rotate is set), each recorded
// as unacked in the same atomic step, after deleting the unacked records
// of req.Settle in the same call (transport.Backend). A malformed message
// ends the batch: it is moved to the malformed list and reported as a
// *transport.MalformedError after the messages taken before it.
//
// When every list is empty and req.Wait > 0 it waits for a message as the
// package documentation describes, never popping to wait. With ctx already
// done it takes nothing and returns ctx.Err().
func (b *Backend) Fetch(ctx context.Context, req transport.FetchRequest, dst []transport.Delivery) ([]transport.Delivery, error) {
	if err := b.checkOpen(); err != nil {
		return dst, err
	}
	if err := ctx.Err(); err != nil {
		return dst, err // a done ctx takes nothing
	}
	if len(req.Queues) == 0 {
		if len(req.Settle) > 0 {
			if err := b.Ack(ctx, req.Settle...); err != nil {
				return dst, err
			}
		}
		return dst, transport.ErrEmpty
	}
	n := max(req.Max, 1)
	out, err := b.take(ctx, req.Queues, req.Ack, n, req.Rotate, req.Settle, dst)
	if req.Wait <= 0 || !errors.Is(err, transport.ErrEmpty) {
		return out, err
	}
	return b.waitFetch(ctx, req.Queues, req.Ack, n, req.Rotate, req.Wait, dst)
}

// maxSpentReceipts bounds the receipts kept for deletion by the next take.
const maxSpentReceipts = 64

// minTakeWindow is the fewest queues, at the head of the order, that a
// windowed take looks at; windowMissSkip is how many takes go straight to
// the full list after a windowed take found nothing (take).
const (
	minTakeWindow  = 8
	windowMissSkip = 8
)

// takeWindow is how many queues a windowed take of n messages looks at:
// n at least, since a queue rotated after a take leaves the window.
func takeWindow(n int) int { return max(minTakeWindow, n) }

// take runs scripts/get.lua for up to n messages of queues, after
// deleting the unacked records of settle. Deliveries are appended to dst.
//
// A consumer of many queues sends every name with every call, which costs
// Redis and the client in proportion to the number of queues. A take of
// more than twice takeWindow(n) queues therefore first looks at the
// highest priority step of the first takeWindow(n) queues only. Because
// they head the order and that step comes first, the message it finds
// first is the one the full call would have taken (and so is each next
// one of a batch: after a rotation the window's remainder still heads the
// order); it stops at the first take the window cannot answer (a queue
// rotated to the end of the order leaves the window). Only when it takes
// nothing is the full list sent, in the same take; after such a miss the
// next windowMissSkip takes go to the full list directly, so a consumer
// whose busy queues sit deep in the order pays for the window rarely.
func (b *Backend) take(ctx context.Context, queues []string, ack bool, n int, rotate bool, settle []string, dst []transport.Delivery) ([]transport.Delivery, error) {
	if b.shard != nil {
		return b.shardTake(ctx, queues, ack, n, rotate, settle, dst) // sharded.go
	}
	suffixes := b.k.stepSuffixes()
	if w := takeWindow(n); len(queues) > 2*w {
		if !b.skipWindow() {
			out, err := b.takeCall(ctx, queues[:w], suffixes[:1], ack, n, rotate, true, settle, dst)
			if !errors.Is(err, transport.ErrEmpty) {
				return out, err
			}
			settle = nil // deleted by the windowed call
			b.windowSkip.Store(windowMissSkip)
		}
	}
	return b.takeCall(ctx, queues, suffixes, ack, n, rotate, false, settle, dst)
}

// skipWindow reports whether this take goes straight to the full list,
// using up one of the windowMissSkip takes a windowed miss left; racing
// takes never count below zero.
func (b *Backend) skipWindow() bool {
	for {
		k := b.windowSkip.Load()
		if k <= 0 {
			return false
		}
		if b.windowSkip.CompareAndSwap(k, k-1) {
			return true
		}
	}
}

// takeCall is one get.lua call over queues at the priority steps whose
// list suffixes are given (take); head says queues are the head of a
// longer order, so that a rotated queue leaves the call.
func (b *Backend) takeCall(ctx context.Context, queues, suffixes []string, ack bool, n int, rotate, head bool, settle []string, dst []transport.Delivery) ([]transport.Delivery, error) {
	nonce, err := newToken()
	if err != nil {
		return dst, err
	}
	receipt := b.k.receiptKey(nonce)
	spent := b.takeSpent()
	keys := make([]string, 0, 4+len(spent))
	keys = append(keys, b.k.unacked, b.k.unackedIndex, b.k.malformed, receipt)
	keys = append(keys, spent...)
	args := make([]any, 0, 8+len(suffixes)+len(queues)+len(settle))
	flag, rot := "0", "0"
	if ack {
		// "2": a first attempt the client will not resend by itself needs
		// no look for its receipt (a GET fewer); retries send "1".
		flag = "1"
		if !b.resends {
			flag = "2"
		}
	}
	if rotate {
		rot = "1"
		if head {
			rot = "2"
		}
	}
	args = append(args, flag, formatScore(b.opts.Clock.Now()), strconv.Itoa(n), rot,
		strconv.Itoa(len(queues)), strconv.Itoa(len(suffixes)), strconv.Itoa(len(settle)), b.k.prefix)
	for _, sfx := range suffixes {
		args = append(args, sfx)
	}
	for _, q := range queues {
		args = append(args, q)
	}
	for _, t := range settle {
		args = append(args, t)
	}
	// The script pops: never let a cancelled context cut its reply off.
	sctx := context.WithoutCancel(ctx)
	var res any
	start := time.Now()
	delay := 50 * time.Millisecond
	for {
		res, err = getScript.call(sctx, b.client, keys, args...).Result()
		if ack {
			args[0] = "1" // a retry looks for the receipt
		}
		if err == nil || errors.Is(err, goredis.Nil) || !ack || !retryable(err) ||
			b.closed.Load() || ctx.Err() != nil || time.Since(start)+delay > getRetryBudget {
			break
		}
		// The reply may be lost after the script ran: the same call
		// (same receipt) returns the same messages instead of others.
		b.log.Debug("kombu: redis: get failed; retrying with the same receipt", "error", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = min(2*delay, time.Second)
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		// The spent receipts were not deleted; they expire by themselves.
		return dst, wrap("get", err)
	}
	if errors.Is(err, goredis.Nil) {
		return dst, transport.ErrEmpty
	}
	arr, ok := res.([]any)
	if !ok || len(arr) == 0 || len(arr)%3 != 0 {
		return dst, fmt.Errorf("kombu: redis: get: unexpected script reply %v", res)
	}
	recorded := false
	for i := 0; i < len(arr); i += 3 {
		status, _ := arr[i].(int64)
		queue, _ := arr[i+1].(string)
		msg, _ := arr[i+2].(string)
		switch status {
		case 1:
			recorded = recorded || ack
			dst = append(dst, transport.Delivery{Queue: queue, Envelope: replyBytes(msg)})
		case 2:
			if recorded {
				b.putSpent([]string{receipt})
			}
			b.log.Warn("kombu: redis: malformed message moved to the dead-letter list",
				"queue", queue, "dead_letter", b.k.malformed)
			return dst, &transport.MalformedError{
				Queue: queue,
				Raw:   []byte(msg),
				Where: b.k.malformed,
				Err:   errors.New("not a JSON envelope with properties.delivery_tag"),
			}
		default:
			return dst, fmt.Errorf("kombu: redis: get: unexpected script status %d", status)
		}
	}
	if recorded {
		b.putSpent([]string{receipt})
	}
	return dst, nil
}

// spentBatch is how many spent receipts wait before a take deletes them:
// one DEL for several calls rather than one each (the rest expire).
const spentBatch = 16

// takeSpent returns the receipts of earlier takes whose replies arrived (no
// retry will ask for them again), for the next take to delete, once there
// are spentBatch of them.
func (b *Backend) takeSpent() []string {
	b.spentMu.Lock()
	defer b.spentMu.Unlock()
	if len(b.spent) < spentBatch {
		return nil
	}
	out := b.spent
	b.spent = nil
	return out
}

// putSpent adds receipts to delete with the next take; beyond
// maxSpentReceipts they are left to expire.
func (b *Backend) putSpent(keys []string) {
	if len(keys) == 0 {
		return
	}
	b.spentMu.Lock()
	defer b.spentMu.Unlock()
	if len(b.spent)+len(keys) <= maxSpentReceipts {
		b.spent = append(b.spent, keys...)
	}
}

// getRetryBudget bounds how long one Get retries after connection errors
// (the receipt of scripts/get.lua lives 10 s). After that the error is
// returned; a message the lost call took is in the unacked records and
// comes back after the visibility timeout.
const getRetryBudget = 8 * time.Second

// retryable reports whether err is a connection-level failure (the command
// may or may not have run: a reset, a refused dial while the server
// restarts, a pool timeout) or an error reply saying the server is not
// ready yet, or a cluster slot is migrating (the command did not run:
// clusterMoving); not a failure of the operation itself.
func retryable(err error) bool {
	if err == nil || errors.Is(err, goredis.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "READONLY") ||
			strings.HasPrefix(msg, "MASTERDOWN") || clusterMoving(err)
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, goredis.ErrPoolTimeout)
}

// formatScore writes t as Unix float seconds with the shortest digits that
// round-trip, as Python's repr(time()) does.
func formatScore(t time.Time) string {
	return strconv.FormatFloat(transport.UnixSeconds(t), 'f', -1, 64)
}

// Size is the number of waiting messages in all of queue's lists: one
// MULTI of LLENs (Kombu's _size).
func (b *Backend) Size(ctx context.Context, queue string) (int64, error) {
	if err := b.checkOpen(); err != nil {
		return 0, err
	}
	if err := b.checkQueueName(queue); err != nil { // declare, in the sharded layout
		return 0, err
	}
	var cmds []*goredis.IntCmd
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range b.k.queueKeys(queue) {
			cmds = append(cmds, p.LLen(ctx, k))
		}
		return nil
	})
	if err != nil {
		return 0, wrap("size", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// Purge deletes queue's waiting messages and returns how many there were:
// one MULTI of LLEN, DEL per list (Kombu's _purge).
func (b *Backend) Purge(ctx context.Context, queue string) (int64, error) {
	if err := b.checkOpen(); err != nil {
		return 0, err
	}
	var cmds []*goredis.IntCmd
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range b.k.queueKeys(queue) {
			cmds = append(cmds, p.LLen(ctx, k))
			p.Del(ctx, k)
		}
		return nil
	})
	if err != nil {
		return 0, wrap("purge", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// DeleteQueue deletes all of queue's lists in one MULTI (the DEL half of
// Kombu's _delete; the core removes the bindings).
func (b *Backend) DeleteQueue(ctx context.Context, queue string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range b.k.queueKeys(queue) {
			p.Del(ctx, k)
		}
		return nil
	})
	return wrap("delete queue", err)
}

// QueueExists reports whether any of queue's lists exists (is non-empty).
// Unlike Kombu, whose EXISTS is never prefixed (so a passive declare always
// fails when global_keyprefix is set), the names checked carry the prefix.
func (b *Backend) QueueExists(ctx context.Context, queue string) (bool, error) {
	if err := b.checkOpen(); err != nil {
		return false, err
	}
	if err := b.checkQueueName(queue); err != nil {
		return false, err
	}
	n, err := b.client.Exists(ctx, b.k.queueKeys(queue)...).Result()
	if err != nil {
		return false, wrap("queue exists", err)
	}
	return n > 0, nil
}

// Bindings returns the exchange's binding table (Kombu's get_table). A
// member that does not split into three parts is skipped and logged.
func (b *Backend) Bindings(ctx context.Context, exchange string) ([]transport.BindingRow, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	members, err := b.client.SMembers(ctx, b.k.bindingKey(exchange)).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, wrap("bindings", err)
	}
	rows := make([]transport.BindingRow, 0, len(members))
	for _, m := range members {
		row, ok := b.k.parseMember(m)
		if !ok {
			b.log.Warn("kombu: redis: skipping binding member that does not have three parts",
				"key", b.k.bindingKey(exchange), "member", m)
			continue
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Bind SADDs the binding member (Kombu's _queue_bind).
func (b *Backend) Bind(ctx context.Context, exchange string, row transport.BindingRow) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.shard != nil {
		if err := b.checkQueueName(row.Queue); err != nil {
			return err
		}
		defer b.forgetTable(exchange) // sharded_ops.go
	}
	return wrap("bind", b.client.SAdd(ctx, b.k.bindingKey(exchange), b.k.bindingMember(row)).Err())
}

// Unbind SREMs the binding member (as Kombu's queue_delete does).
func (b *Backend) Unbind(ctx context.Context, exchange string, row transport.BindingRow) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.shard != nil {
		defer b.forgetTable(exchange)
	}
	return wrap("unbind", b.client.SRem(ctx, b.k.bindingKey(exchange), b.k.bindingMember(row)).Err())
}

// Publish routes a message through the exchange's binding table and
// LPUSHes it to every matching queue in one script (transport.Publisher).
// When a stored topic pattern is outside what the script's matcher
// understands, it routes with transport.Lookup and LPUSHes in one MULTI.
func (b *Backend) Publish(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (int, error) {
	n, err := b.publish1(ctx, exchange, typ, routingKey, priority, envelope)
	if err != nil && clusterMoving(err) && b.shard == nil { // sharded: shardSend retries
		return b.whileMoving(ctx, func() (int, error) { // cluster.go
			return b.publish1(ctx, exchange, typ, routingKey, priority, envelope)
		})
	}
	return n, err
}

// publish1 is one attempt of Publish.
func (b *Backend) publish1(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (int, error) {
	if b.pipe != nil {
		return b.pipePublish(ctx, exchange, typ, routingKey, priority, envelope) // autopipe.go
	}
	return b.publishNow(ctx, exchange, typ, routingKey, priority, envelope)
}

// publishNow is Publish on its own round trip.
func (b *Backend) publishNow(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (int, error) {
	if err := b.checkOpen(); err != nil {
		return 0, err
	}
	if b.shard != nil {
		return b.shardPublish(ctx, exchange, typ, routingKey, priority, envelope) // sharded_ops.go
	}
	typ = typ.Normalize()
	n, skipped, err := b.runPublish(ctx, exchange, typ, routingKey, priority, envelope)
	if errors.Is(err, ErrNotReplicated) {
		return int(n), err // published, on the master only
	}
	if err != nil {
		return 0, wrap("publish", err)
	}
	if skipped > 0 {
		b.log.Warn("kombu: redis: skipped binding members that do not have three parts",
			"key", b.k.bindingKey(exchange), "count", skipped)
	}
	if n >= 0 {
		return int(n), nil
	}
	// Fallback: a stored pattern the Lua matcher does not cover.
	table, err := b.Bindings(ctx, exchange)
	if err != nil {
		return 0, err
	}
	queues, err := transport.Lookup(table, string(typ), routingKey, "")
	if err != nil {
		return 0, fmt.Errorf("kombu: redis: publish to %q: %w", exchange, err)
	}
	if len(queues) == 0 {
		return 0, nil
	}
	items := make([]transport.PutItem, len(queues))
	for i, q := range queues {
		items[i] = transport.PutItem{Queue: q, Priority: priority, Envelope: envelope}
	}
	// putBatch1, not PutBatch: Publish itself sends again a write the
	// slot's migration refused.
	if err := b.putBatch1(ctx, items); err != nil {
		if errors.Is(err, ErrNotReplicated) {
			return len(queues), err // published, on the master only
		}
		return 0, err
	}
	return len(queues), nil
}

// process sends cmd, followed on the same connection by a WAIT for the
// replicas when publishes wait for them (the WAIT is returned, else nil).
func (b *Backend) process(ctx context.Context, cmd goredis.Cmder) *goredis.IntCmd {
	if !b.waiting() {
		_ = b.client.Process(ctx, cmd)
		return nil
	}
	pipe, err := b.writePipeline(ctx) // cluster.go
	if err != nil {
		cmd.SetErr(err)
		return nil
	}
	_ = pipe.Process(ctx, cmd)
	w := b.queueWait(ctx, pipe)
	b.execWrite(ctx, pipe) // cluster.go
	return w
}

// runPublish runs publish.lua (script.run) and returns its n and skipped.
// It builds the command's arguments itself, in one publishCall, rather
// than with script.args: the constant pieces are boxed once, the variable
// ones go in as pointers, and the script usually replies with a plain
// integer.
func (b *Backend) runPublish(ctx context.Context, exchange string, typ entity.ExchangeType, routingKey string, priority int, envelope []byte) (n, skipped int64, err error) {
	c := &publishCall{rk: routingKey, env: envelope}
	c.key = append(append(append(c.keyBuf[:0], b.k.prefix...), bindingPrefix...), exchange...)
	var typArg any
	switch typ {
	case entity.Topic:
		typArg = "topic"
	case entity.Fanout:
		typArg = "fanout"
	case entity.Direct:
		typArg = "direct"
	default:
		typArg = string(typ)
	}
	var suffix any = ""
	if s := b.k.listSuffix(priority); s != "" {
		suffix = s
	}
	c.args = [...]any{"evalsha", nil, 1, &c.key, typArg, &c.rk, &c.env, b.k.prefixArg, b.k.sepArg, suffix, nil}
	args := c.args[:10]
	if b.k.guard != "" {
		c.args = [...]any{"evalsha", nil, 2, &c.key, &b.k.guard, typArg, &c.rk, &c.env, b.k.prefixArg, b.k.sepArg, suffix}
		args = c.args[:]
	}
	var wait *goredis.IntCmd
	cmd := publishScript.run(ctx, func(ctx context.Context, cmd goredis.Cmder) { wait = b.process(ctx, cmd) }, args)
	res, err := cmd.Result()
	if err != nil {
		return 0, 0, err
	}
	if wait != nil {
		// Checked only when the script ran: its n is returned with the
		// error (the message is published, on the master only).
		defer func() {
			if err == nil && n > 0 {
				err = b.replicated(wait)
			}
		}()
	}
	switch v := res.(type) {
	case int64:
		return v, 0, nil
	case []any:
		if len(v) == 2 {
			n, ok1 := v[0].(int64)
			skipped, ok2 := v[1].(int64)
			if ok1 && ok2 {
				return n, skipped, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("unexpected script reply %v", res)
}

// publishCall holds the arguments of one publish.lua call in one
// allocation: the binding key, routing key and envelope go to go-redis as
// pointers into it (*string and an encoding.BinaryMarshaler), which box
// without allocating, and the binding key is written into its keyBuf when
// it fits.
type publishCall struct {
	args     [11]any     // 10, or 11 with the slot guard (cluster.go)
	key, env scriptBytes // key: P+"_kombu.binding."+exchange, in keyBuf if it fits
	rk       string
	keyBuf   [64]byte
}

// scriptBytes is a script argument written as it is.
type scriptBytes []byte

// MarshalBinary returns the bytes themselves (go-redis writes them).
func (s *scriptBytes) MarshalBinary() ([]byte, error) { return *s, nil }

// String returns the bytes as text, for go-redis hooks that log commands.
func (s *scriptBytes) String() string { return string(*s) }

// Ack deletes the unacked records of tags in one round trip: MULTI, ZREM
// unacked_index tag..., HDEL unacked tag..., EXEC (Kombu's basic_ack). It
// retries connection errors: ZREM and HDEL can be repeated safely.
func (b *Backend) Ack(ctx context.Context, tags ...string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if len(tags) == 0 {
		return nil
	}
	if b.shard != nil {
		return b.shardAck(ctx, tags) // sharded.go
	}
	zargs := make([]any, len(tags))
	for i, t := range tags {
		zargs[i] = t
	}
	err := b.retry(ctx, func() error {
		_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.ZRem(ctx, b.k.unackedIndex, zargs...)
			p.HDel(ctx, b.k.unacked, tags...)
			return nil
		})
		return err
	})
	return wrap("ack", err)
}

// retry runs fn, which must be safe to repeat, again after connection
// errors (a server restart, a failover) for up to getRetryBudget.
func (b *Backend) retry(ctx context.Context, fn func() error) error {
	start := time.Now()
	delay := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil || !retryable(err) || b.closed.Load() || ctx.Err() != nil || time.Since(start)+delay > getRetryBudget {
			return err
		}
		b.log.Debug("kombu: redis: retrying after a connection error", "error", err)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		delay = min(2*delay, time.Second)
	}
}

// RecordUnacked writes the unacked record of a message delivered outside
// Get (fanout): MULTI, ZADD unacked_index now tag, HSET unacked tag
// [envelope, exchange, routing_key], EXEC (Kombu's QoS.append).
func (b *Backend) RecordUnacked(ctx context.Context, tag string, envelope []byte, exchange, routingKey string) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.shard != nil {
		return b.shardRecordUnacked(ctx, tag, envelope, exchange, routingKey) // sharded_ops.go
	}
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZAdd(ctx, b.k.unackedIndex, goredis.Z{Score: transport.UnixSeconds(b.opts.Clock.Now()), Member: tag})
		p.HSet(ctx, b.k.unacked, tag, UnackedValue(envelope, exchange, routingKey))
		return nil
	})
	return wrap("record unacked", err)
}

// Restore moves the unacked message of tag back to the queues route names
// (Kombu's restore transaction): WATCH unacked, HGET, then MULTI, ZREM,
// HDEL, LPUSH (leftmost) or RPUSH to each queue, EXEC. When the WATCH
// fails three times (every delivery and ack of every consumer writes the
// same hash), the same writes are applied by a script that checks that
// this one record is unchanged. A missing record only removes the index
// entry. The message
// gets the redelivered flags and goes to its own priority list or the base
// list (Options.RestorePriority). A record that cannot be parsed, and a
// message that routes nowhere (Kombu drops those), are moved to the
// malformed list instead of being lost.
func (b *Backend) Restore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	if b.shard != nil {
		return b.shardRestore(ctx, tag, leftmost, route) // sharded_ops.go
	}
	// A restore can be repeated safely (a second run finds no record), so
	// connection errors are retried.
	return b.retry(ctx, func() error {
		_, err := b.restore(ctx, tag, leftmost, route)
		return err
	})
}

func (b *Backend) restore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) (bool, error) {
	for attempt := 0; attempt < watchAttempts; attempt++ {
		restored, err := b.restoreWatch(ctx, tag, leftmost, route)
		if errors.Is(err, goredis.TxFailedErr) {
			continue
		}
		return restored, err
	}
	// The unacked hash is shared by every consumer, so under load a WATCH
	// on all of it rarely survives a round trip: compare and set the one
	// record instead (scripts/restore.lua).
	for attempt := 0; attempt < maxRestoreAttempts; attempt++ {
		restored, applied, err := b.restoreCAS(ctx, tag, leftmost, route)
		if err != nil || applied {
			return restored, err
		}
	}
	return false, fmt.Errorf("kombu: redis: restore %s: the record kept changing (%d attempts)", tag, watchAttempts+maxRestoreAttempts)
}

// restoreWatch is Kombu's restore transaction: WATCH unacked, HGET, MULTI,
// ZREM, HDEL, LPUSH/RPUSH, EXEC. It returns goredis.TxFailedErr when the
// WATCH failed.
func (b *Backend) restoreWatch(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) (bool, error) {
	var plan restorePlan
	err := b.client.Watch(ctx, func(tx *goredis.Tx) error {
		plan = restorePlan{}
		raw, err := tx.HGet(ctx, b.k.unacked, tag).Bytes()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return err
		}
		if len(raw) > 0 {
			if plan, err = b.planRestore(ctx, tag, raw, route); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.ZRem(ctx, b.k.unackedIndex, tag)
			p.HDel(ctx, b.k.unacked, tag)
			for _, l := range plan.lists {
				if leftmost {
					p.LPush(ctx, l, plan.payload)
				} else {
					p.RPush(ctx, l, plan.payload)
				}
			}
			if plan.dead != nil {
				p.LPush(ctx, b.k.malformed, plan.dead)
			}
			return nil
		})
		return err
	}, b.k.unacked)
	if errors.Is(err, goredis.TxFailedErr) {
		return false, err
	}
	return plan.result(tag, err)
}

// restoreCAS reads the record, plans the restore, and applies it with
// scripts/restore.lua if the record is unchanged (applied false: retry).
func (b *Backend) restoreCAS(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) (restored, applied bool, err error) {
	raw, err := b.client.HGet(ctx, b.k.unacked, tag).Bytes()
	exists := err == nil
	if err != nil && !errors.Is(err, goredis.Nil) {
		return false, false, wrap("restore "+tag, err)
	}
	var plan restorePlan
	if exists && len(raw) > 0 {
		if plan, err = b.planRestore(ctx, tag, raw, route); err != nil {
			return false, false, wrap("restore "+tag, err)
		}
	}
	keys := []string{b.k.unacked, b.k.unackedIndex}
	mode, payload := "R", plan.payload
	if leftmost {
		mode = "L"
	}
	if plan.dead != nil {
		keys = append(keys, b.k.malformed)
		mode, payload = "L", plan.dead
	} else {
		keys = append(keys, plan.lists...)
	}
	flag := "0"
	if exists {
		flag = "1"
	}
	n, err := restoreScript.call(ctx, b.client, keys, tag, flag, raw, mode, payload).Int()
	if err != nil {
		return false, false, wrap("restore "+tag, err)
	}
	if n == 0 {
		return false, false, nil
	}
	restored, err = plan.result(tag, nil)
	return restored, true, err
}

// watchAttempts is how many WATCH transactions a restore tries before it
// switches to the per-record compare-and-set (a variable for tests).
var watchAttempts = 3

// restorePlan is what a restore pushes where: the marked envelope to lists,
// or dead (bytes for the malformed list).
type restorePlan struct {
	payload []byte
	lists   []string
	dead    []byte
	mal     *transport.MalformedError
}

func (p restorePlan) result(tag string, err error) (bool, error) {
	if err != nil {
		return false, wrap("restore "+tag, err)
	}
	if p.mal != nil {
		return false, p.mal
	}
	return len(p.lists) > 0, nil
}

// planRestore decides what a restore of the record raw pushes where.
func (b *Backend) planRestore(ctx context.Context, tag string, raw []byte, route transport.RouteFunc) (restorePlan, error) {
	env, exchange, rk, perr := ParseUnackedValue(raw)
	var payload []byte
	if perr == nil {
		payload, perr = envelope.MarkRedelivered(env)
	}
	if perr != nil {
		b.log.Error("kombu: redis: unacked record cannot be parsed; moved to the dead-letter list",
			"delivery_tag", tag, "dead_letter", b.k.malformed, "error", perr)
		return restorePlan{dead: raw, mal: &transport.MalformedError{Raw: raw, Where: b.k.malformed, Err: perr}}, nil
	}
	routed, err := route(ctx, exchange, rk)
	if err != nil {
		return restorePlan{}, fmt.Errorf("route exchange %q routing key %q: %w", exchange, rk, err)
	}
	// An empty name (default exchange, empty routing key) is no queue:
	// Kombu fails on it too.
	queues := slices.DeleteFunc(slices.Clone(routed), func(q string) bool { return q == "" })
	if len(queues) == 0 {
		b.log.Warn("kombu: redis: restored message routes to no queue; moved to the dead-letter list (Kombu drops it)",
			"delivery_tag", tag, "exchange", exchange, "routing_key", rk, "dead_letter", b.k.malformed)
		return restorePlan{dead: payload}, nil
	}
	prio := 0
	if b.opts.RestorePriority == RestoreOwn {
		prio = envelopePriority(payload)
	}
	lists := make([]string, len(queues))
	for i, q := range queues {
		if b.opts.RestorePriority == RestoreOwn {
			lists[i] = b.k.queueKey(q, prio)
		} else {
			lists[i] = b.k.stepKey(q, 0)
		}
	}
	return restorePlan{payload: payload, lists: lists}, nil
}

// envelopePriority reads properties.priority as Kombu's
// _get_message_priority does: int() of the value (numbers, numeric
// strings, booleans), clamped to 0..9; anything else is 0.
func envelopePriority(raw []byte) int {
	v, err := pyjson.Unmarshal(raw)
	if err != nil {
		return 0
	}
	top, _ := v.(map[string]any)
	props, _ := top["properties"].(map[string]any)
	var p float64
	switch x := props["priority"].(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0
		}
		p = f
	case float64:
		p = x
	case bool:
		if x {
			p = 1
		}
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return 0
		}
		p = float64(i)
	default:
		return 0
	}
	if math.IsNaN(p) || math.IsInf(p, 0) {
		return 0
	}
	return envelope.ClampPriority(int(math.Max(-1e9, math.Min(1e9, math.Trunc(p)))))
}

// RestoreExpired restores, to the front of their queues, the unacked
// messages received before deadline (Kombu's restore_visible): SET
// unacked_mutex <token> PX <expire> NX (if someone holds it, nothing is
// done), ZREVRANGEBYSCORE unacked_index deadline 0 WITHSCORES [LIMIT],
// one restore transaction per tag, then the mutex is released with
// redis-py's compare-and-delete script.
func (b *Backend) RestoreExpired(ctx context.Context, deadline time.Time, route transport.RouteFunc) (int, error) {
	if err := b.checkOpen(); err != nil {
		return 0, err
	}
	if b.shard != nil {
		return b.shardRestoreExpired(ctx, deadline, route) // sharded_ops.go
	}
	return b.sweepExpired(ctx, b.k.unackedMutex, b.k.unackedIndex, deadline, b.opts.UnackedRestoreLimit,
		func(tag string) (bool, error) { return b.restore(ctx, tag, false, route) })
}

// sweepExpired is one restore sweep over one unacked index: under the
// restore mutex (held elsewhere: it does nothing, as Kombu's
// restore_visible), it restores, newest first, up to limit (<= 0: all)
// records of index scored before deadline with restoreOne, retried on
// connection errors, and returns how many it restored. logAttrs go with
// its log record.
func (b *Backend) sweepExpired(ctx context.Context, mutex, index string, deadline time.Time, limit int, restoreOne func(tag string) (bool, error), logAttrs ...any) (int, error) {
	token, err := newToken()
	if err != nil {
		return 0, err
	}
	err = b.client.Do(ctx, "SET", mutex, token, "PX",
		strconv.FormatInt(b.opts.UnackedMutexExpire.Milliseconds(), 10), "NX").Err()
	if errors.Is(err, goredis.Nil) {
		return 0, nil // held elsewhere
	}
	if err != nil {
		return 0, wrap("restore: take mutex", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := releaseLockScript.call(rctx, b.client, []string{mutex}, token).Err(); err != nil && !errors.Is(err, goredis.Nil) {
			b.log.Warn("kombu: redis: cannot release the restore mutex (it expires by itself)", append(logAttrs, "error", err)...)
		}
	}()
	by := &goredis.ZRangeBy{Max: formatScore(deadline), Min: "0"}
	if limit > 0 {
		by.Count = int64(limit)
	}
	zs, err := b.client.ZRevRangeByScoreWithScores(ctx, index, by).Result()
	if err != nil {
		return 0, wrap("restore: scan unacked_index", err)
	}
	n := 0
	var errs []error
	for _, z := range zs {
		tag, _ := z.Member.(string)
		var ok bool
		err := b.retry(ctx, func() (err error) {
			ok, err = restoreOne(tag)
			return err
		})
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if ok {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// newToken returns 32 hex characters, the shape of redis-py's lock tokens.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("kombu: redis: lock token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
