package celery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Group commit of result stores.
//
// Celery's Redis backend stores a state in two round trips: a GET of the
// current meta (a SUCCESS already there is left in place,
// BaseKeyValueStoreBackend._store_result) and a MULTI of SETEX and PUBLISH
// (RedisBackend.set). Concurrent Store calls on one Backend share those two
// round trips, as a database's group commit does: a call made while no
// batch is in flight is sent at once, alone, exactly as above; calls made
// while one is in flight queue up and, when it ends, go together: one
// pipeline of their GETs, then one MULTI/EXEC holding each call's SETEX and
// PUBLISH, in the order the calls were made. Every call returns its own
// result after Redis's reply for it. A task's own writes are never
// reordered: a caller's Store returns before it can make the next.
//
// Within a batch the SUCCESS guard is applied as successive calls would
// apply it: a call for a task whose SUCCESS an earlier call of the same
// batch writes is left out, as its GET would have found that SUCCESS.
//
// A caller whose context ends while its call is still queued takes it out
// and returns the context's error: nothing was written. Once the call is in
// a batch on the wire the caller waits for the reply (bounded by the
// client's timeouts), so an error never hides a state that was stored.

// maxStoreBatch caps the calls of one batch.
const maxStoreBatch = 256

// storeFlushTimeout bounds one batch's round trips (batches after the
// first are sent by a helper goroutine, under no caller's context).
const storeFlushTimeout = 30 * time.Second

// storeBatcher is a Backend's group-commit queue of Store calls.
type storeBatcher struct {
	mu      sync.Mutex
	running bool         // a batch is in flight
	queue   []*storeCall // waiting for the next batch
}

// storeCall is one Store of a batch.
type storeCall struct {
	id      string
	key     string
	val     []byte
	success bool // the state written is SUCCESS
	taken   bool // in a batch on the wire (under storeBatcher.mu)
	err     error
	done    chan struct{}
}

// store writes c, sharing round trips with concurrent calls, and returns
// c's result.
func (b *Backend) store(ctx context.Context, c *storeCall) error {
	q := &b.batch
	q.mu.Lock()
	if !q.running {
		q.running = true
		c.taken = true
		q.mu.Unlock()
		b.storeBatch(ctx, []*storeCall{c})
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return c.err
		}
		q.mu.Unlock()
		// Whoever queued meanwhile goes now, sent by a helper so that
		// this caller is not held up.
		go b.drainStores()
		return c.err
	}
	c.done = make(chan struct{})
	q.queue = append(q.queue, c)
	q.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
	}
	q.mu.Lock()
	if !c.taken {
		for i, x := range q.queue {
			if x == c {
				q.queue = append(q.queue[:i], q.queue[i+1:]...)
				break
			}
		}
		q.mu.Unlock()
		return fmt.Errorf("celery: store result of %s: %w", c.id, ctx.Err())
	}
	q.mu.Unlock()
	<-c.done
	return c.err
}

// drainStores sends queued calls, a batch at a time, until none are left.
func (b *Backend) drainStores() {
	q := &b.batch
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		n := min(len(q.queue), maxStoreBatch)
		batch := make([]*storeCall, n)
		copy(batch, q.queue)
		for _, c := range batch {
			c.taken = true
		}
		q.queue = append(q.queue[:0], q.queue[n:]...)
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), storeFlushTimeout)
		b.storeBatch(ctx, batch)
		cancel()
		for _, c := range batch {
			close(c.done)
		}
	}
}

// storeBatch runs the two round trips of a batch and sets each call's err.
func (b *Backend) storeBatch(ctx context.Context, calls []*storeCall) {
	gets := make([]*redis.StringCmd, len(calls))
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			gets[i] = p.Get(ctx, c.key)
		}
		return nil
	}) // errors are read per command below
	var succeeded map[string]bool // keys holding (or about to hold) SUCCESS
	write := make([]*storeCall, 0, len(calls))
	for i, c := range calls {
		raw, err := gets[i].Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			c.err = fmt.Errorf("celery: get result of %s: %w", c.id, err)
			continue
		default:
			cur, err := ParseResultMeta(raw)
			if err != nil {
				c.err = err
				continue
			}
			if cur.Status == StateSuccess {
				continue // Celery leaves a SUCCESS in place
			}
		}
		if succeeded[c.key] {
			continue // an earlier call of this batch writes SUCCESS
		}
		if c.success {
			if succeeded == nil {
				succeeded = map[string]bool{}
			}
			succeeded[c.key] = true
		}
		write = append(write, c)
	}
	if len(write) == 0 {
		return
	}
	type pair struct{ set, pub redis.Cmder }
	cmds := make([]pair, len(write))
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range write {
			if b.expires > 0 {
				cmds[i].set = p.SetEx(ctx, c.key, c.val, b.expires)
			} else {
				cmds[i].set = p.Set(ctx, c.key, c.val, 0)
			}
			cmds[i].pub = p.Publish(ctx, c.key, c.val)
		}
		return nil
	})
	// An error of one call's commands is that call's alone; an error with
	// none on any command (the MULTI itself) is every call's.
	anyCmdErr := false
	for i, c := range write {
		cerr := cmds[i].set.Err()
		if cerr == nil {
			cerr = cmds[i].pub.Err()
		}
		if cerr != nil {
			anyCmdErr = true
			c.err = fmt.Errorf("celery: store result of %s: %w", c.id, cerr)
		}
	}
	if err != nil && !anyCmdErr {
		for _, c := range write {
			c.err = fmt.Errorf("celery: store result of %s: %w", c.id, err)
		}
	}
	if len(write) > 1 {
		// On a Redis Cluster a slot being migrated refuses a transaction
		// naming several of its keys (TRYAGAIN) where it would redirect a
		// one-key one (ASK): such calls are stored one by one, as
		// Celery's backend stores them.
		for _, c := range write {
			if c.err != nil && slotMoving(c.err) {
				c.err = b.storeAlone(ctx, c)
			}
		}
	}
}

// storeAlone writes one call's SETEX and PUBLISH in a MULTI of its own,
// retrying for up to two seconds while its slot is being migrated.
func (b *Backend) storeAlone(ctx context.Context, c *storeCall) error {
	delay := 10 * time.Millisecond
	for start := time.Now(); ; {
		err := b.set(ctx, c.key, c.val)
		if err == nil {
			return nil
		}
		if !slotMoving(err) || time.Since(start)+delay > 2*time.Second {
			return fmt.Errorf("celery: store result of %s: %w", c.id, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return fmt.Errorf("celery: store result of %s: %w", c.id, ctx.Err())
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// slotMoving reports a Redis Cluster error of a slot in migration or
// moved: TRYAGAIN, ASK, MOVED (or a CROSSSLOT the migration caused).
func slotMoving(err error) bool {
	msg := err.Error()
	for _, p := range []string{"TRYAGAIN", "ASK ", "MOVED ", "CROSSSLOT"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
