package redis

import (
	"testing"
	"time"
)

// What the fault and reshard tests count, over their maps of message ids:
// attempted (a producer called Publish), confirmed (Publish returned nil)
// and delivered (how many times a consumer took the id). The callers hold
// the lock that guards the maps.

// undelivered is how many confirmed ids were never delivered.
func undelivered(confirmed map[string]bool, delivered map[string]int) int {
	n := 0
	for id := range confirmed {
		if delivered[id] == 0 {
			n++
		}
	}
	return n
}

// tally counts the deliveries beyond each id's first (dups), the
// deliveries of ids no producer attempted (unknown), the confirmed ids
// never delivered (miss) and the attempted, unconfirmed ids never
// delivered (lost, which a failed Publish may rightly leave).
func tally(attempted, confirmed map[string]bool, delivered map[string]int) (dups, unknown, miss, lost int) {
	for id, n := range delivered {
		if n > 1 {
			dups += n - 1
		}
		if !attempted[id] {
			unknown++
		}
	}
	for id := range attempted {
		if !confirmed[id] && delivered[id] == 0 {
			lost++
		}
	}
	return dups, unknown, undelivered(confirmed, delivered), lost
}

// awaitNotReplicated is for the failover tests, between a replica's
// promotion and the killed master's return, when the promoted master has
// no replica: it waits until a publish to that master returned
// ErrNotReplicated, and fails the test if one was confirmed meanwhile or
// none reached it within 15 s. counts returns, under the caller's lock,
// how many publishes to that master's queues were confirmed and how many
// returned ErrNotReplicated, and how many publishes failed; what names
// those queues in failures.
func awaitNotReplicated(t *testing.T, what string, counts func() (confirmed, unconfirmed, failed int)) {
	t.Helper()
	confirmedAt, _, _ := counts()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		confirmed, unconfirmed, failed := counts()
		if confirmed != confirmedAt {
			t.Fatalf("%d publishes to %s confirmed while its promoted master had no replica", confirmed-confirmedAt, what)
		}
		if unconfirmed > 0 {
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("no publish to %s reached its promoted master within 15 s (failed %d)", what, failed)
		}
	}
}
