package redis

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
)

// env is a Redis to test against: miniredis (unit tests) or a real
// redis-server (integration tests). Every key a test writes starts with
// prefix, so tests on a shared real server never see each other's keys.
type env struct {
	t      *testing.T
	client *goredis.Client
	mr     *miniredis.Miniredis // nil on a real server
	prefix string
}

func newMiniEnv(t *testing.T) *env {
	t.Helper()
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	return &env{t: t, client: c, mr: mr}
}

func (e *env) real() bool { return e.mr == nil }

// key returns the full name of a key the backend writes as name.
func (e *env) key(name string) string { return e.prefix + name }

// backend opens a backend on the env's client with the env's prefix (plus
// extra, which may add to it with WithKeyPrefix).
func (e *env) backend(opts ...Option) *Backend {
	e.t.Helper()
	all := append([]Option{WithKeyPrefix(e.prefix)}, opts...)
	b, err := New(e.client, all...)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() { _ = b.Close() })
	return b
}

// keys lists every key under the env's prefix, sorted, leaving out the
// short-lived Get receipts (P+"kombu-go.get.*", see scripts/get.lua).
func (e *env) keys() []string {
	e.t.Helper()
	var out []string
	for _, k := range e.allKeys() {
		if !strings.Contains(k, "kombu-go.get.") {
			out = append(out, k)
		}
	}
	return out
}

// allKeys lists every key under the env's prefix, sorted.
func (e *env) allKeys() []string {
	e.t.Helper()
	ks, err := e.client.Keys(context.Background(), escapeGlob(e.prefix)+"*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(ks)
	return ks
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func (e *env) lrange(key string) []string {
	e.t.Helper()
	v, err := e.client.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		e.t.Fatalf("LRANGE %q: %v", key, err)
	}
	return v
}

func (e *env) smembers(key string) []string {
	e.t.Helper()
	v, err := e.client.SMembers(context.Background(), key).Result()
	if err != nil {
		e.t.Fatalf("SMEMBERS %q: %v", key, err)
	}
	sort.Strings(v)
	return v
}

func (e *env) hget(key, field string) (string, bool) {
	e.t.Helper()
	v, err := e.client.HGet(context.Background(), key, field).Result()
	if err == goredis.Nil {
		return "", false
	}
	if err != nil {
		e.t.Fatalf("HGET %q %q: %v", key, field, err)
	}
	return v, true
}

func (e *env) zscore(key, member string) (float64, bool) {
	e.t.Helper()
	v, err := e.client.ZScore(context.Background(), key, member).Result()
	if err == goredis.Nil {
		return 0, false
	}
	if err != nil {
		e.t.Fatalf("ZSCORE %q %q: %v", key, member, err)
	}
	return v, true
}

func (e *env) lpush(key string, vals ...string) {
	e.t.Helper()
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	if err := e.client.LPush(context.Background(), key, args...).Err(); err != nil {
		e.t.Fatal(err)
	}
}

// fakeClock is a settable transport.Clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// testEnvelope returns a Kombu envelope in Python's exact format with the given
// tag, exchange, routing key and priority (the layout of wire spec §3.1).
func testEnvelope(tag, exchange, rk string, priority int) string {
	e := envelope.Envelope{
		Body:            []byte(`{"n": 1}`),
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		Headers:         map[string]any{},
		Exchange:        exchange,
		RoutingKey:      rk,
		DeliveryTag:     tag,
	}
	e.Properties.Priority = priority
	raw, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return string(raw)
}

// Captured envelopes from the wire spec §3.1.
const (
	celeryEnvelope = `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen8300@vm", "ignore_result": false}, "properties": {"correlation_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "reply_to": "d5383031-2891-32bb-af8f-30b85c08aa1b", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776-9637-4984-9ad5-2979fc98b1e4"}}`
	celeryTag      = "94d8b776-9637-4984-9ad5-2979fc98b1e4"
	kombuEnvelope  = `{"body": "eyJoZWxsbyI6ICJ3b3JsZCIsICJuIjogMSwgInUiOiAiXHUwMGU5In0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"x": 1}, "properties": {"correlation_id": "cid-1", "reply_to": "rq", "delivery_mode": 2, "delivery_info": {"exchange": "ex_direct", "routing_key": "rk.direct"}, "priority": 5, "body_encoding": "base64", "delivery_tag": "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"}}`
	kombuTag       = "eb5dcd44-e06c-43de-a0df-eeda9a96f0ed"
)

// uniquePrefix returns a fresh key prefix for a test on a shared server.
func uniquePrefix() string { return "kgotest:" + uuid.NewString() + ":" }

// staticRoute routes like Kombu's _lookup for the default exchange and
// through a fixed table otherwise.
func staticRoute(table map[string][]string) transport.RouteFunc {
	return func(ctx context.Context, exchange, rk string) ([]string, error) {
		if exchange == "" {
			return []string{rk}, nil
		}
		return table[exchange+"|"+rk], nil
	}
}

func goredisZ(score float64, member string) goredis.Z { return goredis.Z{Score: score, Member: member} }

type goredisPipeliner = goredis.Pipeliner
