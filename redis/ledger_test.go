package redis

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
