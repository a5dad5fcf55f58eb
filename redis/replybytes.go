package redis

import "unsafe"

// replyBytes returns the bytes of s without copying them. s must be a
// string the reply reader allocated for one call's reply alone (a message a
// take script returned), so that nothing else refers to it; the bytes are
// only read from then on (transport.Delivery.Envelope and
// entity.Message.Raw are read-only). It saves an allocation and a copy of
// every message taken; the memory a prefetched message holds is the same
// (the reply's string was freed after the copy before).
func replyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
