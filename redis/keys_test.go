package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

func testKeys(t *testing.T, opts ...Option) keys {
	t.Helper()
	o := DefaultOptions()
	for _, f := range opts {
		if err := f(&o); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	db := o.DB
	if db < 0 {
		db = 0
	}
	k, err := newKeys(&o, db)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeyNames proves the key builders against the wire spec: priority
// lists, step-major consume order, binding key and member, unacked keys.
func TestKeyNames(t *testing.T) {
	k := testKeys(t, WithKeyPrefix("pfx:"))
	for _, c := range []struct {
		got, want string
	}{
		{k.queueKey("q_direct", 5), "pfx:q_direct\x06\x163"},
		{k.queueKey("q_plain", 0), "pfx:q_plain"},
		{k.queueKey("celery", 7), "pfx:celery\x06\x166"},
		{k.queueKey("celery", 42), "pfx:celery\x06\x169"},
		{k.queueKey("celery", -3), "pfx:celery"},
		{k.bindingKey("ex_topic"), "pfx:_kombu.binding.ex_topic"},
		{k.bindingMember(transport.BindingRow{RoutingKey: "rk.direct", Queue: "q_direct"}), "rk.direct\x06\x16\x06\x16q_direct"},
		{k.unacked, "pfx:unacked"},
		{k.unackedIndex, "pfx:unacked_index"},
		{k.unackedMutex, "pfx:unacked_mutex"},
		{k.malformed, "pfx:kombu-go.malformed"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	lists, owners := k.consumeKeys([]string{"A", "B"})
	want := []string{"pfx:A", "pfx:B", "pfx:A\x06\x163", "pfx:B\x06\x163", "pfx:A\x06\x166", "pfx:B\x06\x166", "pfx:A\x06\x169", "pfx:B\x06\x169"}
	for i := range want {
		if lists[i] != want[i] || owners[i] != string(want[i][4]) {
			t.Fatalf("consume keys %q owners %q", lists, owners)
		}
	}
	// Steps not starting at 0: a priority below the first maps to the last
	// step (Python's bisect with index -1).
	k2 := testKeys(t, WithPrioritySteps(3, 6))
	if got := k2.queueKey("q", 1); got != "q\x06\x166" {
		t.Fatalf("%q", got)
	}
}

// TestParseMember proves member parsing: three parts give a row, anything
// else is rejected (and skipped by Bindings).
func TestParseMember(t *testing.T) {
	k := testKeys(t)
	if r, ok := k.parseMember("a.#\x06\x16^a\\..*?$\x06\x16q_topic2"); !ok || r != (transport.BindingRow{RoutingKey: "a.#", Pattern: `^a\..*?$`, Queue: "q_topic2"}) {
		t.Fatalf("%+v %v", r, ok)
	}
	if r, ok := k.parseMember("\x06\x16\x06\x16"); !ok || r != (transport.BindingRow{}) {
		t.Fatalf("empty parts: %+v %v", r, ok)
	}
	for _, m := range []string{"", "plain", "a\x06\x16b", "a\x06\x16b\x06\x16c\x06\x16d"} {
		if _, ok := k.parseMember(m); ok {
			t.Fatalf("%q accepted", m)
		}
	}
}

// TestFanoutNames proves fanout channel, pattern and receive parsing as in
// wire spec §6.3: '#' becomes '*' in subscribe patterns, an empty binding
// key is the exact channel, and the exchange comes back from every
// channel form (default, custom, no prefix, global prefix).
func TestFanoutNames(t *testing.T) {
	k := testKeys(t)
	if got := k.fanoutPattern("ex_fanout", "ev.#"); got != "/0.ex_fanout/ev.*" {
		t.Fatalf("%q", got)
	}
	if got := k.fanoutPattern("celeryev", "#"); got != "/0.celeryev/*" {
		t.Fatalf("%q", got)
	}
	if got := k.fanoutPattern("celery.pidbox", ""); got != "/0.celery.pidbox" {
		t.Fatalf("%q", got)
	}
	for _, c := range []struct {
		opts    []Option
		channel string
		ex      string
	}{
		{nil, "/0.celeryev/worker.heartbeat", "celeryev"},
		{nil, "/0.celery.pidbox", "celery.pidbox"},
		{nil, "/3.fx/r1", "fx"},
		{[]Option{WithFanoutPrefix("/custom.")}, "/custom.fx", "fx"},
		{[]Option{WithFanoutPrefix("")}, "fx/r1", "fx"},
		{[]Option{WithKeyPrefix("g_")}, "g_/0.fx/r1", "fx"},
		{nil, "/nodot", ""},
	} {
		k := testKeys(t, c.opts...)
		if got := k.fanoutExchange(c.channel); got != c.ex {
			t.Errorf("%q: exchange %q, want %q", c.channel, got, c.ex)
		}
	}
}

// TestFormatFanoutPrefix proves Python str.format(db=n) semantics for the
// fanout prefix.
func TestFormatFanoutPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"/{db}.": "/3.", "/custom.": "/custom.", "": "", "/{{db}}.": "/{db}.", "{db}{db}": "33", "a}}b{{": "a}b{",
	} {
		got, err := formatFanoutPrefix(in, 3)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/{x}.", "/{db.", "}", "{"} {
		if _, err := formatFanoutPrefix(in, 0); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestReleaseScriptIsRedisPys proves the lock release script is byte for
// byte redis-py's, so its EVALSHA is the one Python Kombu sends.
func TestReleaseScriptIsRedisPys(t *testing.T) {
	if got := releaseLockScript.sha; got != "c3f8721cbb97f72bc19e972846bd7aaf91901658" {
		t.Fatalf("sha1 %s", got)
	}
}

// TestEnvelopePriority proves restore reads properties.priority as Kombu's
// int() does: numbers (floats truncated), numeric strings, booleans;
// clamped to 0..9; anything else is 0.
func TestEnvelopePriority(t *testing.T) {
	for raw, want := range map[string]int{
		`{"properties": {"priority": 7}}`:      7,
		`{"properties": {"priority": 7.9}}`:    7,
		`{"properties": {"priority": "6"}}`:    6,
		`{"properties": {"priority": " 4 "}}`:  4,
		`{"properties": {"priority": true}}`:   1,
		`{"properties": {"priority": 12}}`:     9,
		`{"properties": {"priority": -4}}`:     0,
		`{"properties": {"priority": null}}`:   0,
		`{"properties": {"priority": "high"}}`: 0,
		`{"properties": {"priority": NaN}}`:    0,
		`{"properties": {"priority": 1e300}}`:  9,
		`{"properties": {}}`:                   0,
		`not json`:                             0,
		`{"properties": {"priority": [1]}}`:    0,
	} {
		if got := envelopePriority([]byte(raw)); got != want {
			t.Errorf("%s: %d, want %d", raw, got, want)
		}
	}
}

// TestRetryable proves which errors Get, Ack and Restore retry: connection
// failures and "not ready" replies, never failures of the operation, a
// closed client or a cancelled context.
func TestRetryable(t *testing.T) {
	yes := []error{
		io.EOF, io.ErrUnexpectedEOF,
		&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED},
		fmt.Errorf("wrapped: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}),
		goredis.ErrPoolTimeout,
		goredisError("LOADING Redis is loading the dataset in memory"),
		goredisError("READONLY You can't write against a read only replica."),
		goredisError("TRYAGAIN Multiple keys request during rehashing of slot"),
		goredisError("ASK 8799 127.0.0.1:7001"), goredisError("MOVED 8799 127.0.0.1:7001"),
	}
	no := []error{
		nil, goredis.ErrClosed, context.Canceled, context.DeadlineExceeded,
		goredisError("WRONGTYPE Operation against a key holding the wrong kind of value"),
		goredisError("NOSCRIPT No matching script"),
		&transport.MalformedError{Err: errors.New("x")},
		errors.New("route exchange: no such thing"),
	}
	for _, err := range yes {
		if !retryable(err) {
			t.Errorf("%v not retryable", err)
		}
	}
	for _, err := range no {
		if retryable(err) {
			t.Errorf("%v retryable", err)
		}
	}
}

// goredisError is an error reply as go-redis returns it.
type goredisError string

func (e goredisError) Error() string { return string(e) }
func (e goredisError) RedisError()   {}
