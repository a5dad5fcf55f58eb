package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/transport"
)

// Kombu's Redis layout that other packages may need (tools, tests): the
// names of a queue's priority lists and the value of an unacked record.
// keys.go builds every key this backend writes from these.

// PriorityKey returns Kombu's list name for queue at priority with the
// given steps and separator: the largest step not above the clamped
// priority (the last step if the priority is below the first, as Python's
// bisect with a negative index does), the bare queue name for step 0, else
// queue + sep + step.
func PriorityKey(queue string, priority int, steps []int, sep string) string {
	s := transport.PriorityStep(priority, steps)
	if s == 0 {
		return queue
	}
	return queue + sep + strconv.Itoa(s)
}

// QueueFromKey recovers the queue name from a priority list key (prefix
// already removed): everything before the last sep, or the whole key.
func QueueFromKey(key, sep string) string {
	if sep == "" {
		return key
	}
	if i := strings.LastIndex(key, sep); i >= 0 {
		return key[:i]
	}
	return key
}

// DefaultSep is Kombu's default separator, "\x06\x16".
const DefaultSep = "\x06\x16"

// UnackedValue returns the value Kombu stores in the unacked hash for a
// delivered message: the JSON array [envelope, exchange, routing_key], the
// envelope's bytes kept as they were popped.
func UnackedValue(envelope []byte, exchange, routingKey string) []byte {
	dst := make([]byte, 0, len(envelope)+len(exchange)+len(routingKey)+10)
	dst = append(dst, '[')
	dst = append(dst, envelope...)
	dst = append(dst, ", "...)
	dst = pyjson.AppendString(dst, exchange)
	dst = append(dst, ", "...)
	dst = pyjson.AppendString(dst, routingKey)
	return append(dst, ']')
}

// ParseUnackedValue splits an unacked hash value into the envelope and the
// exchange and routing key stored beside it.
func ParseUnackedValue(v []byte) (envelope []byte, exchange, routingKey string, err error) {
	arr, err := pyjson.UnmarshalOrdered(v)
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: unacked record: %w", transport.ErrMalformed, err)
	}
	a, ok := arr.([]any)
	if !ok || len(a) < 3 {
		return nil, "", "", fmt.Errorf("%w: unacked record is not [envelope, exchange, routing_key]", transport.ErrMalformed)
	}
	if envelope, err = pyjson.Marshal(a[0]); err != nil {
		return nil, "", "", err
	}
	return envelope, jsonString(a[1]), jsonString(a[2]), nil
}

// jsonString is a decoded JSON value as Kombu's record holds it: a
// string as it is, null as "", anything else as its JSON text.
func jsonString(v any) string {
	if s, ok := v.(string); ok || v == nil {
		return s
	}
	b, _ := pyjson.Marshal(v)
	return string(b)
}
