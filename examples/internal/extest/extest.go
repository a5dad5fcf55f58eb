// Package extest runs the example programs' tests on every broker at hand:
// a private memory:// broker always, and the Redis server named by
// KOMBU_TEST_REDIS_URL when that is set, under a fresh global_keyprefix so
// that tests running in parallel on one server never see each other's keys.
package extest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
)

// Timeout bounds one run of an example in a test.
const Timeout = 60 * time.Second

// ForEachBroker runs test as the subtests "memory" and "redis", giving each
// a broker URL and a context that ends after Timeout. The redis subtest is
// skipped, saying why, when KOMBU_TEST_REDIS_URL is unset or when the
// program does not register the redis:// backend.
func ForEachBroker(t *testing.T, test func(t *testing.T, ctx context.Context, url string)) {
	t.Run("memory", func(t *testing.T) {
		// A broker of its own: memory:// URLs with the same name share one.
		url := "memory://" + strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		test(t, ctx, url)
	})
	t.Run("redis", func(t *testing.T) {
		base := os.Getenv("KOMBU_TEST_REDIS_URL")
		if base == "" {
			t.Skip("KOMBU_TEST_REDIS_URL is not set: tested on memory:// only")
		}
		url := WithKeyPrefix(base, "ex"+strings.ReplaceAll(uuid.NewString()[:13], "-", "")+":")
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		conn, err := kombu.Dial(ctx, url)
		if errors.Is(err, kombu.ErrUnknownScheme) {
			t.Skip("the redis:// backend is not registered: this example does not import github.com/kombu-go/kombu/redis yet")
		}
		if err != nil {
			t.Fatalf("KOMBU_TEST_REDIS_URL: %v", err)
		}
		if err := conn.Ping(ctx); err != nil {
			t.Fatalf("KOMBU_TEST_REDIS_URL: ping: %v", err)
		}
		conn.Close()
		test(t, ctx, url)
	})
}

// WithKeyPrefix adds Kombu's global_keyprefix transport option to a broker
// URL's query.
func WithKeyPrefix(url, prefix string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "global_keyprefix=" + prefix
}

// Unique returns name with a short random suffix, for exchange and queue
// names that must not collide with another test's.
func Unique(name string) string { return name + "-" + uuid.NewString()[:8] }

// Lines splits output into lines, without the trailing empty one.
func Lines(out string) []string {
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}
