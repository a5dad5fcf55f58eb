package transport

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/kombu-go/kombu/envelope"
)

// What backends and the engine share about options and priorities.

// CoreOptionNames are the Kombu transport options the engine handles
// itself; backends must not reject them when they parse a URL.
var CoreOptionNames = []string{"visibility_timeout", "polling_interval", "deadletter_queue", "queue_order_strategy", "unacked_restore_interval"}

// ParseSeconds parses a Kombu duration option: a number of seconds (float
// allowed, as Python does) or a Go duration string ("1m30s").
func ParseSeconds(v string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case f < 0:
			return 0, fmt.Errorf("negative duration %q", v)
		case math.IsNaN(f):
			return 0, fmt.Errorf("%q is not a number of seconds", v)
		case f*float64(time.Second) >= math.MaxInt64: // +Inf too
			return 0, fmt.Errorf("duration %q is too long", v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%q is neither seconds nor a duration", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", v)
	}
	return d, nil
}

// PriorityStep returns the step a priority falls in (see PriorityKey).
func PriorityStep(priority int, steps []int) int {
	if len(steps) == 0 {
		return 0
	}
	p := envelope.ClampPriority(priority)
	// bisect_right(steps, p) - 1
	i := 0
	for i < len(steps) && steps[i] <= p {
		i++
	}
	i--
	if i < 0 {
		i = len(steps) - 1
	}
	return steps[i]
}

// DefaultPrioritySteps are Kombu's priority_steps.
var DefaultPrioritySteps = []int{0, 3, 6, 9}
