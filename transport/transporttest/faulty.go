package transporttest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kombu-go/kombu/transport"
)

// ErrInjected is the error Faulty returns for an injected failure.
var ErrInjected = errors.New("transporttest: injected backend failure")

// Faulty wraps a Backend and fails every FailEvery-th call (counting the
// calls of every method except Close) with an error wrapping ErrInjected.
// A failed call is not forwarded, so it surely did not happen: this is the
// promise of database/sql's ErrBadConn, and a correct core loses nothing
// under it. Use it by pointer.
//
// Faulty exposes only the Backend methods, so the core takes its fallbacks
// (route-then-Put instead of Publisher, no fanout).
type Faulty struct {
	transport.Backend
	// FailEvery fails call number FailEvery, 2×FailEvery, ...; zero or less
	// never fails.
	FailEvery int

	calls    atomic.Int64
	failures atomic.Int64
}

var _ transport.Backend = (*Faulty)(nil)

// Calls returns how many calls were made (failed ones included).
func (f *Faulty) Calls() int64 { return f.calls.Load() }

// Failures returns how many calls failed.
func (f *Faulty) Failures() int64 { return f.failures.Load() }

func (f *Faulty) fail(op string) error {
	n := f.calls.Add(1)
	if f.FailEvery > 0 && n%int64(f.FailEvery) == 0 {
		f.failures.Add(1)
		return fmt.Errorf("%s (call %d): %w", op, n, ErrInjected)
	}
	return nil
}

// Put forwards unless the call is one to fail.
func (f *Faulty) Put(ctx context.Context, queue string, priority int, envelope []byte) error {
	if err := f.fail("Put"); err != nil {
		return err
	}
	return f.Backend.Put(ctx, queue, priority, envelope)
}

// Fetch forwards unless the call is one to fail.
func (f *Faulty) Fetch(ctx context.Context, req transport.FetchRequest, dst []transport.Delivery) ([]transport.Delivery, error) {
	if err := f.fail("Fetch"); err != nil {
		return dst, err
	}
	return f.Backend.Fetch(ctx, req, dst)
}

// Size forwards unless the call is one to fail.
func (f *Faulty) Size(ctx context.Context, queue string) (int64, error) {
	if err := f.fail("Size"); err != nil {
		return 0, err
	}
	return f.Backend.Size(ctx, queue)
}

// Purge forwards unless the call is one to fail.
func (f *Faulty) Purge(ctx context.Context, queue string) (int64, error) {
	if err := f.fail("Purge"); err != nil {
		return 0, err
	}
	return f.Backend.Purge(ctx, queue)
}

// DeleteQueue forwards unless the call is one to fail.
func (f *Faulty) DeleteQueue(ctx context.Context, queue string) error {
	if err := f.fail("DeleteQueue"); err != nil {
		return err
	}
	return f.Backend.DeleteQueue(ctx, queue)
}

// QueueExists forwards unless the call is one to fail.
func (f *Faulty) QueueExists(ctx context.Context, queue string) (bool, error) {
	if err := f.fail("QueueExists"); err != nil {
		return false, err
	}
	return f.Backend.QueueExists(ctx, queue)
}

// Bindings forwards unless the call is one to fail.
func (f *Faulty) Bindings(ctx context.Context, exchange string) ([]transport.BindingRow, error) {
	if err := f.fail("Bindings"); err != nil {
		return nil, err
	}
	return f.Backend.Bindings(ctx, exchange)
}

// Bind forwards unless the call is one to fail.
func (f *Faulty) Bind(ctx context.Context, exchange string, row transport.BindingRow) error {
	if err := f.fail("Bind"); err != nil {
		return err
	}
	return f.Backend.Bind(ctx, exchange, row)
}

// Unbind forwards unless the call is one to fail.
func (f *Faulty) Unbind(ctx context.Context, exchange string, row transport.BindingRow) error {
	if err := f.fail("Unbind"); err != nil {
		return err
	}
	return f.Backend.Unbind(ctx, exchange, row)
}

// Ack forwards unless the call is one to fail.
func (f *Faulty) Ack(ctx context.Context, tags ...string) error {
	if err := f.fail("Ack"); err != nil {
		return err
	}
	return f.Backend.Ack(ctx, tags...)
}

// Restore forwards unless the call is one to fail.
func (f *Faulty) Restore(ctx context.Context, tag string, leftmost bool, route transport.RouteFunc) error {
	if err := f.fail("Restore"); err != nil {
		return err
	}
	return f.Backend.Restore(ctx, tag, leftmost, route)
}

// RestoreExpired forwards unless the call is one to fail.
func (f *Faulty) RestoreExpired(ctx context.Context, deadline time.Time, route transport.RouteFunc) (int, error) {
	if err := f.fail("RestoreExpired"); err != nil {
		return 0, err
	}
	return f.Backend.RestoreExpired(ctx, deadline, route)
}
