package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// TestGracefulShutdown cancels a consumer's context while two handlers are
// in flight and more messages are prefetched: the handler that finishes
// within the shutdown timeout is acked, the one that does not has its
// context cancelled only when the timeout runs out, and then every message
// not acked (the cut-off one and the prefetched ones) is back on the queue,
// once each, with no unacked record left.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	rc := client(t, srv)
	const prefix, queue = "shut:", "sq"
	const grace = 700 * time.Millisecond
	conn, err := kombu.Dial(bg, srv.URL(0)+"?global_keyprefix="+prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := conn.Producer(kombu.WithRoutingKey(queue))
	const n = 10
	for i := 0; i < n; i++ {
		if _, err := p.Publish(bg, i, kombu.WithDeliveryTag(fmt.Sprintf("s%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(bg)
	var mu sync.Mutex
	var started []string
	acked := map[string]bool{}
	var cancelledAt time.Time
	inFlight := make(chan struct{}, 2)
	var cancelAt time.Time
	cutOff := make(chan struct{}) // closed when the slow handler saw its context end
	done := make(chan error, 1)
	go func() {
		c := conn.Consumer([]kombu.Queue{{Name: queue}}, kombu.WithConcurrency(2), kombu.WithPrefetch(6),
			kombu.WithShutdownTimeout(grace), kombu.WithErrorHandler(func(error) {}))
		done <- c.Consume(ctx, func(hctx context.Context, m *kombu.Message) error {
			mu.Lock()
			started = append(started, m.DeliveryTag)
			first := len(started) == 1
			mu.Unlock()
			inFlight <- struct{}{}
			<-kombu.Stopping(hctx)
			if first {
				// Finishes well within the grace period: acked.
				time.Sleep(grace / 4)
				mu.Lock()
				acked[m.DeliveryTag] = true
				mu.Unlock()
				return nil
			}
			// Runs past the grace period: cut off.
			<-hctx.Done()
			mu.Lock()
			cancelledAt = time.Now()
			select {
			case <-cutOff: // a third handler: the len(started) check fails the test
			default:
				close(cutOff)
			}
			mu.Unlock()
			return hctx.Err()
		})
	}()
	<-inFlight
	<-inFlight
	waitFor(t, 5*time.Second, "6 messages prefetched", func() bool { return rc.HLen(bg, prefix+"unacked").Val() == 6 })
	cancelAt = time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Consume: %v", err)
	}
	took := time.Since(cancelAt)
	// Consume does not wait for a handler it cut off to return, so the
	// slow one may record its cancellation just after Consume returned.
	select {
	case <-cutOff:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow handler's context was never cancelled")
	}

	mu.Lock()
	defer mu.Unlock()
	if len(started) != 2 {
		t.Fatalf("handlers started for %v; want 2 (nothing new after the cancel)", started)
	}
	if cut := cancelledAt.Sub(cancelAt); cut < grace || cut > grace+time.Second {
		t.Errorf("the slow handler's context was cancelled %v after the consumer's, want the %v shutdown timeout", cut, grace)
	}
	if took > grace+3*time.Second {
		t.Errorf("Consume took %v to return after the cancel", took)
	}
	if h, z := rc.HLen(bg, prefix+"unacked").Val(), rc.ZCard(bg, prefix+"unacked_index").Val(); h != 0 || z != 0 {
		t.Errorf("unacked records left after shutdown: %d, index %d", h, z)
	}
	raw, err := rc.LRange(bg, prefix+queue, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var back []string
	for _, r := range raw {
		var env struct {
			Properties struct {
				DeliveryTag string `json:"delivery_tag"`
			} `json:"properties"`
		}
		if err := json.Unmarshal([]byte(r), &env); err != nil {
			t.Fatal(err)
		}
		back = append(back, env.Properties.DeliveryTag)
	}
	sort.Strings(back)
	want := []string{}
	for i := 0; i < n; i++ {
		if tag := fmt.Sprintf("s%02d", i); !acked[tag] {
			want = append(want, tag)
		}
	}
	if fmt.Sprint(back) != fmt.Sprint(want) {
		t.Errorf("queue after shutdown holds %v, want every message but the acked one: %v", back, want)
	}
	addFault(t, faultRow{
		Fault:    "graceful shutdown (context cancelled)",
		Injected: fmt.Sprintf("cancel with 2 handlers running, 4 prefetched; shutdown timeout %v", grace),
		Sent:     n, Handled: len(acked), Lost: n - len(acked) - len(back), Dups: len(raw) - len(back),
		InFlight: "6 unacked at the cancel",
		Notes:    fmt.Sprintf("1 finished in the grace period and was acked; the slow one was cut off at %v; %d restored to the queue, 0 unacked records left", grace, len(back)),
	})
}
