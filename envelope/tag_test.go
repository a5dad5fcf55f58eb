package envelope

import (
	"sync"
	"testing"

	"github.com/google/uuid"
)

// TestNewDeliveryTag proves tags are version 4, RFC 4122 variant UUIDs in
// the lowercase hyphenated form str(uuid4()) writes, and distinct across
// goroutines.
func TestNewDeliveryTag(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				tag := NewDeliveryTag()
				u, err := uuid.Parse(tag)
				if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != tag {
					t.Errorf("tag %q: %v %v %v", tag, err, u.Version(), u.Variant())
					return
				}
				mu.Lock()
				if seen[tag] {
					t.Errorf("tag %q twice", tag)
				}
				seen[tag] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
