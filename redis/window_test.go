package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kombu-go/kombu/transport"
)

// windowQueues returns n queue names, q000 ... in order.
func windowQueues(n int) []string {
	qs := make([]string, n)
	for i := range qs {
		qs[i] = fmt.Sprintf("q%03d", i)
	}
	return qs
}

// TestWindowedTake proves that a take of many queues, which looks at the
// highest step of the first queues before sending the whole list, takes
// what Kombu's step-major order says: a lower-priority message at the head
// of the order never beats a higher-priority one further down, a message
// in the last queue is found, and a batch from the window is the queues in
// order.
func TestWindowedTake(t *testing.T) {
	ctx := context.Background()
	qs := windowQueues(3 * minTakeWindow)
	fetch := func(b *Backend, max int) []string {
		t.Helper()
		ds, err := b.Fetch(ctx, transport.FetchRequest{Queues: qs, Ack: true, Max: max, Rotate: true}, nil)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.Queue)
		}
		return got
	}

	t.Run("Priority", func(t *testing.T) {
		e := newMiniEnv(t)
		b := e.backend()
		for _, q := range qs[:minTakeWindow] {
			if err := b.Put(ctx, q, 9, []byte(testEnvelope("low-"+q, "", q, 9))); err != nil {
				t.Fatal(err)
			}
		}
		far := qs[2*minTakeWindow+1]
		if err := b.Put(ctx, far, 0, []byte(testEnvelope("high", "", far, 0))); err != nil {
			t.Fatal(err)
		}
		if got := fetch(b, 1); !slices.Equal(got, []string{far}) {
			t.Fatalf("took %v, want the priority-0 message of %s before the window's priority-9 ones", got, far)
		}
		if got := fetch(b, 2); !slices.Equal(got, qs[:2]) {
			t.Fatalf("then took %v, want %v", got, qs[:2])
		}
	})
	t.Run("LastQueue", func(t *testing.T) {
		e := newMiniEnv(t)
		b := e.backend()
		last := qs[len(qs)-1]
		if err := b.Put(ctx, last, 0, []byte(testEnvelope("t", "", last, 0))); err != nil {
			t.Fatal(err)
		}
		if got := fetch(b, 1); !slices.Equal(got, []string{last}) {
			t.Fatalf("took %v, want [%s]", got, last)
		}
		if b.windowSkip.Load() != windowMissSkip {
			t.Fatalf("windowSkip = %d after a miss, want %d", b.windowSkip.Load(), windowMissSkip)
		}
	})
	t.Run("Batch", func(t *testing.T) {
		e := newMiniEnv(t)
		b := e.backend()
		for _, q := range qs {
			if err := b.Put(ctx, q, 0, []byte(testEnvelope("t-"+q, "", q, 0))); err != nil {
				t.Fatal(err)
			}
		}
		if got := fetch(b, 5); !slices.Equal(got, qs[:5]) {
			t.Fatalf("took %v, want %v", got, qs[:5])
		}
		if b.windowSkip.Load() != 0 {
			t.Fatal("the window missed with every queue full")
		}
	})
}

// TestWindowedTakeMatchesFull runs the same random fetches (sizes,
// rotation, priorities, queues drained as they go) against two Redis
// holding the same messages, one backend using the window and one always
// sending the whole list, and proves every fetch returns the same messages
// in the same order; it also checks that both the window's hits and its
// misses were exercised.
func TestWindowedTakeMatchesFull(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 11))
	hits, misses := 0, 0
	for round := range 20 {
		qs := windowQueues(2*minTakeWindow + 1 + rng.IntN(40))
		ew, ef := newMiniEnv(t), newMiniEnv(t)
		bw, bf := ew.backend(), ef.backend()
		for i := range 3 * len(qs) {
			q := qs[rng.IntN(len(qs))]
			if rng.IntN(2) == 0 {
				q = qs[rng.IntN(minTakeWindow)] // crowd the window
			}
			prio := []int{0, 0, 0, 3, 6, 9}[rng.IntN(6)]
			env := []byte(testEnvelope(fmt.Sprintf("t%d-%d", round, i), "", q, prio))
			for _, b := range []*Backend{bw, bf} {
				if err := b.Put(ctx, q, prio, env); err != nil {
					t.Fatal(err)
				}
			}
		}
		rotate := round%2 == 0
		ow, of := slices.Clone(qs), slices.Clone(qs)
		for {
			max := 1 + rng.IntN(12) // windows of 8 to 12
			bf.windowSkip.Store(1 << 30)
			before := bw.windowSkip.Load()
			dw, errw := bw.Fetch(ctx, transport.FetchRequest{Queues: ow, Ack: true, Max: max, Rotate: rotate}, nil)
			df, errf := bf.Fetch(ctx, transport.FetchRequest{Queues: of, Ack: true, Max: max, Rotate: rotate}, nil)
			if before == 0 {
				if bw.windowSkip.Load() == windowMissSkip {
					misses++
				} else {
					hits++
				}
			}
			if (errw == nil) != (errf == nil) {
				t.Fatalf("round %d: windowed err %v, full err %v", round, errw, errf)
			}
			if errf != nil {
				if errf != transport.ErrEmpty {
					t.Fatal(errf)
				}
				break
			}
			if len(dw) > len(df) {
				t.Fatalf("round %d: windowed took %d, full %d", round, len(dw), len(df))
			}
			// A window hit may take fewer: the full backend puts the
			// rest back by taking them first next time, which the
			// comparison cannot follow. Compare the common prefix and
			// requeue the full backend's extra messages where they were.
			for i := range dw {
				if string(dw[i].Envelope) != string(df[i].Envelope) {
					t.Fatalf("round %d: message %d differs: windowed %s, full %s", round, i, dw[i].Queue, df[i].Queue)
				}
			}
			if len(df) > len(dw) {
				// Put the extra ones back at the front of their lists
				// (RPUSH: they are taken next), undoing their takes.
				for i := len(df) - 1; i >= len(dw); i-- {
					d := df[i]
					prio := envelopePriority(d.Envelope)
					if err := ef.client.RPush(ctx, bf.k.queueKey(d.Queue, prio), d.Envelope).Err(); err != nil {
						t.Fatal(err)
					}
				}
				df = df[:len(dw)]
			}
			for i := range dw {
				if rotate {
					rotateTo(ow, dw[i].Queue)
					rotateTo(of, df[i].Queue)
				}
			}
		}
	}
	t.Logf("%d fetches answered by the window, %d sent the whole list after a miss", hits, misses)
	if hits == 0 || misses == 0 {
		t.Fatal("the fetches did not exercise both the window's hits and its misses")
	}
}
