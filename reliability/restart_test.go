package reliability

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// ledger records what producers sent and consumers handled.
type ledger struct {
	mu      sync.Mutex
	sent    map[string]bool // publish returned nil
	failed  map[string]error
	handled map[string]int
	errs    atomic.Int64 // errors the consumers' error handlers saw
}

func newLedger() *ledger {
	return &ledger{sent: map[string]bool{}, failed: map[string]error{}, handled: map[string]int{}}
}

func (l *ledger) published(tag string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed[tag] = err
		return
	}
	l.sent[tag] = true
}

func (l *ledger) handle(tag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.handled[tag]++
}

// missing returns how many sent messages were not handled yet.
func (l *ledger) missing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for tag := range l.sent {
		if l.handled[tag] == 0 {
			n++
		}
	}
	return n
}

// tally returns sent, handled (distinct sent ones), lost and duplicates.
func (l *ledger) tally() (sent, handled, lost, dups int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for tag := range l.sent {
		c := l.handled[tag]
		if c == 0 {
			lost++
			continue
		}
		handled++
		dups += c - 1
	}
	return len(l.sent), handled, lost, dups
}

// failures returns how many publishes gave up, and one of their errors.
func (l *ledger) failures() (n int, example error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.failed {
		example = err
	}
	return len(l.failed), example
}

// runConsumers starts n consumers, each on its own connection, recording
// into l until ctx is done; the returned function waits for them.
func runConsumers(t *testing.T, ctx context.Context, url, queue string, n int, l *ledger, opts ...kombu.ConsumerOption) func() {
	t.Helper()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		conn, err := kombu.Dial(bg, url)
		if err != nil {
			t.Fatal(err)
		}
		o := append([]kombu.ConsumerOption{kombu.WithConcurrency(2),
			kombu.WithShutdownTimeout(2 * time.Second),
			kombu.WithErrorHandler(func(error) { l.errs.Add(1) })}, opts...)
		c := conn.Consumer([]kombu.Queue{{Name: queue}}, o...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			if err := c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
				l.handle(m.DeliveryTag)
				return nil
			}); err != nil {
				t.Errorf("consume: %v", err)
			}
		}()
	}
	return wg.Wait
}

// retryPolicy rides out a restart of a second or two.
var retryPolicy = kombu.RetryPolicy{MaxRetries: 30, IntervalStart: 50 * time.Millisecond,
	IntervalStep: 100 * time.Millisecond, IntervalMax: 500 * time.Millisecond}

// runProducers publishes tagged messages from n goroutines with WithRetry
// until stop is closed; the returned function waits for them.
func runProducers(t *testing.T, url, queue, prefix string, n int, l *ledger, stop <-chan struct{}) func() {
	t.Helper()
	conn, err := kombu.Dial(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	p := conn.Producer(kombu.WithRoutingKey(queue), kombu.WithRetry(retryPolicy))
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tag := fmt.Sprintf("%s-%d-%06d", prefix, g, i)
				_, err := p.Publish(bg, map[string]any{"i": i}, kombu.WithDeliveryTag(tag))
				l.published(tag, err)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return func() { wg.Wait(); conn.Close() }
}

// TestRedisRestart kills redis-server (SIGKILL) and starts it again, with
// the append-only file fsynced on every write, three times while producers
// publish with WithRetry and consumers consume. Every publish that
// returned nil is handled.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	rc := client(t, srv)
	const prefix, queue = "restart:", "rq"
	url := srv.URL(0) + "?global_keyprefix=" + prefix + "&visibility_timeout=5&unacked_restore_interval=1&unacked_mutex_expire=2"
	l := newLedger()
	ctx, cancel := context.WithCancel(bg)
	waitConsumers := runConsumers(t, ctx, url, queue, 2, l)
	stop := make(chan struct{})
	waitProducers := runProducers(t, url, queue, "r", 2, l, stop)

	const restarts = 3
	inFlight := int64(0)
	for i := 0; i < restarts; i++ {
		time.Sleep(800 * time.Millisecond)
		inFlight += rc.ZCard(bg, prefix+"unacked_index").Val()
		srv.Stop()
		time.Sleep(300 * time.Millisecond) // down long enough to fail commands
		srv.Start()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	waitProducers()
	waitFor(t, 30*time.Second, "every sent message to be handled", func() bool { return l.missing() == 0 })
	cancel()
	waitConsumers()

	sent, handled, lost, dups := l.tally()
	failed, failErr := l.failures()
	addFault(t, faultRow{
		Fault:    "redis-server SIGKILL + restart (appendfsync always)",
		Injected: fmt.Sprintf("%d restarts, down 0.3 s each", restarts),
		Sent:     sent, Handled: handled, Lost: lost, Dups: dups,
		InFlight: fmt.Sprintf("%d unacked at the kills", inFlight),
		Notes:    fmt.Sprintf("%d publishes gave up; consumer error handlers saw %d errors", failed, l.errs.Load()),
	})
	if lost != 0 {
		t.Errorf("%d sent messages lost", lost)
	}
	if failed != 0 {
		t.Errorf("%d publishes failed despite WithRetry, e.g. %v", failed, failErr)
	}
	if sent < 100 {
		t.Errorf("only %d messages sent", sent)
	}
}

// TestPublishRetryGivesUp: with the server gone, a publish with WithRetry
// retries MaxRetries times with the policy's waits, then returns an error
// that says so and wraps the connection error; without WithRetry the
// first error is returned at once.
func TestPublishRetryGivesUp(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	url := "redis://:s3cr3t-pw@" + srv.Addr() + "/0"
	rc := client(t, srv)
	if err := rc.ConfigSet(bg, "requirepass", "s3cr3t-pw").Err(); err != nil {
		t.Fatal(err)
	}
	conn, err := kombu.Dial(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv.Stop()
	p := conn.Producer(kombu.WithRoutingKey("q"))

	start := time.Now()
	_, err = p.Publish(bg, "x", kombu.WithRetry(kombu.RetryPolicy{MaxRetries: 3,
		IntervalStart: 100 * time.Millisecond, IntervalStep: 100 * time.Millisecond, IntervalMax: 150 * time.Millisecond}))
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 retries") {
		t.Fatalf("want a give-up error, got %v", err)
	}
	if errors.Is(err, kombu.ErrNoRoute) || errors.Is(err, kombu.ErrClosed) {
		t.Fatalf("wrong error class: %v", err)
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error shows the password: %v", err)
	}
	// Waits 100 + 150 + 150 ms.
	if took < 380*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want about 400 ms", took)
	}
	t.Logf("give-up error after %v: %v", took.Round(time.Millisecond), err)

	start = time.Now()
	_, err = p.Publish(bg, "x")
	if err == nil || strings.Contains(err.Error(), "gave up") || time.Since(start) > 2*time.Second {
		t.Fatalf("without WithRetry: %v after %v", err, time.Since(start))
	}
}
