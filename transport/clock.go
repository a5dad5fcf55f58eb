package transport

import "time"

// Clock tells the time. Tests inject a fake one to drive visibility
// timeouts without sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// UnixSeconds returns t as Unix time in float seconds, the score unit of
// Kombu's unacked_index.
func UnixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
