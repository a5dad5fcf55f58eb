package envelope

import (
	"crypto/rand"
	"sync"
)

// NewDeliveryTag returns a fresh delivery tag: a random (version 4) UUID
// in its 36-character text form, as Kombu's basic_publish makes one per
// publish with str(uuid4()).
//
// The random bytes come from crypto/rand, read 4 KiB at a time into
// per-processor buffers (one system call per 256 tags instead of one per
// tag); a buffer's bytes are used once, so tags are as unpredictable as
// crypto/rand's output.
func NewDeliveryTag() string {
	src := tagSources.Get().(*tagSource)
	if src.off+16 > len(src.buf) {
		if _, err := rand.Read(src.buf[:]); err != nil {
			panic("kombu: crypto/rand: " + err.Error()) // crypto/rand.Read never fails on Go 1.24+
		}
		src.off = 0
	}
	var u [16]byte
	copy(u[:], src.buf[src.off:src.off+16])
	clear(src.buf[src.off : src.off+16])
	src.off += 16
	tagSources.Put(src)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	var out [36]byte
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hexDigits[b>>4], hexDigits[b&0x0f]
		j += 2
	}
	return string(out[:])
}

type tagSource struct {
	buf [4096]byte
	off int
}

var tagSources = sync.Pool{New: func() any { return &tagSource{off: 4096} }}
