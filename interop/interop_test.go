package interop

// Shared helpers of the interop suite: the per-test environment (shared
// redis-server, fresh prefix, raw Redis client), the Python peer process
// (testdata/peer.py), and type-aware comparison of JSON values.

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/internal/testenv"
	_ "github.com/kombu-go/kombu/redis" // redis:// for kombu.Dial
)

// sep is Kombu's default separator (wire spec §1).
const sep = "\x06\x16"

// helperEnv selects a helper mode when the test binary re-executes itself
// (see TestMain and helper_test.go).
const helperEnv = "KOMBU_INTEROP_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// profile is a set of transport options both sides use.
type profile struct {
	name   string
	sep    string
	steps  []int
	goOpts []string // URL query: name, value, ...
	pyOpts []any    // transport_options: name, value, ...
}

// defaultProfile is Kombu's defaults: sep "\x06\x16", steps 0, 3, 6, 9.
var defaultProfile = profile{name: "default", sep: sep, steps: []int{0, 3, 6, 9}}

// celeryProfile is what deployments following Celery's "Redis Message
// Priorities" docs set (wire spec §11): sep ":", ten priority steps,
// queue_order_strategy priority.
var celeryProfile = profile{
	name: "celery_docs", sep: ":", steps: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
	goOpts: []string{"sep", ":", "priority_steps", "0,1,2,3,4,5,6,7,8,9", "queue_order_strategy", "priority"},
	pyOpts: []any{"sep", ":", "priority_steps", []any{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "queue_order_strategy", "priority"},
}

// profiles are the option sets the matrix and wire tests run under.
var profiles = []profile{defaultProfile, celeryProfile}

// env is one test's view of the world: the shared redis-server, a fresh
// global_keyprefix both sides use, the transport options profile, and a raw
// client to look at the keys.
type env struct {
	t      *testing.T
	url    string // the shared server's URL, without options
	db     int
	prefix string
	prof   profile
	rdb    *goredis.Client
	script string // testdata/peer.py
}

func newEnv(t *testing.T) *env {
	t.Helper()
	raw := testenv.RedisURL(t)
	testenv.RequirePython(t, "kombu", "redis")
	opt, err := goredis.ParseURL(raw)
	if err != nil {
		t.Fatalf("KOMBU_TEST_REDIS_URL %q: %v", raw, err)
	}
	rdb := goredis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	script, err := filepath.Abs(filepath.Join("testdata", "peer.py"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, url: raw, db: opt.DB, prefix: testenv.Prefix(), prof: defaultProfile, rdb: rdb, script: script}
	e.cleanupKeys()
	return e
}

// cleanupKeys deletes the keys under e's prefix when the test ends, unless
// it failed (they help then). Keys of other tests are never touched.
func (e *env) cleanupKeys() {
	e.t.Cleanup(func() {
		if e.t.Failed() {
			e.t.Logf("keys left under prefix %q in db %d for inspection", e.prefix, e.db)
			return
		}
		ctx := context.Background()
		iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			e.rdb.Del(ctx, iter.Val())
		}
	})
}

// withProfile returns a copy of e using profile p.
func (e *env) withProfile(p profile) *env {
	c := *e
	c.prof = p
	return &c
}

// withDB returns a copy of e on another database of the same server.
func (e *env) withDB(db int) *env {
	e.t.Helper()
	c := *e
	u, err := url.Parse(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	u.Path = "/" + strconv.Itoa(db)
	c.url, c.db = u.String(), db
	opt, err := goredis.ParseURL(c.url)
	if err != nil {
		e.t.Fatal(err)
	}
	c.rdb = goredis.NewClient(opt)
	e.t.Cleanup(func() { c.rdb.Close() })
	c.cleanupKeys() // runs before the client is closed
	return &c
}

// withPrefix returns a copy of e using another fresh prefix (for tests that
// compare two runs side by side).
func (e *env) withPrefix() *env {
	c := *e
	c.prefix = testenv.Prefix()
	c.cleanupKeys()
	return &c
}

// goURL is the URL the Go side dials: the shared server with this test's
// global_keyprefix and the given extra transport options (name, value, ...).
func (e *env) goURL(opts ...string) string {
	u, err := url.Parse(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	q := u.Query()
	q.Set("global_keyprefix", e.prefix)
	opts = append(slices.Clone(e.prof.goOpts), opts...)
	for i := 0; i+1 < len(opts); i += 2 {
		q.Set(opts[i], opts[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// dial opens a Go connection with this test's prefix; it is closed when the
// test ends.
func (e *env) dial(opts ...string) *kombu.Connection {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kombu.Dial(ctx, e.goURL(opts...))
	if err != nil {
		e.t.Fatalf("kombu.Dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// pyOptions are the transport_options the Python side uses: the same prefix,
// plus extras.
func (e *env) pyOptions(extra ...any) pyjson.Object {
	o := pyjson.Object{{Key: "global_keyprefix", Value: e.prefix}}
	extra = append(slices.Clone(e.prof.pyOpts), extra...)
	for i := 0; i+1 < len(extra); i += 2 {
		o = append(o, pyjson.Member{Key: extra[i].(string), Value: extra[i+1]})
	}
	return o
}

// fanoutChannel is the pub/sub channel Kombu publishes a fanout message on
// (wire spec §6.3): P + "/{db}." + exchange [+ "/" + routing key].
func (e *env) fanoutChannel(exchange, routingKey string) string {
	ch := e.prefix + "/" + strconv.Itoa(e.db) + "." + exchange
	if routingKey != "" {
		ch += "/" + routingKey
	}
	return ch
}

// waitSubscribed publishes empty payloads on a fanout channel until at least
// one subscriber gets them. Kombu skips empty pub/sub payloads (wire spec
// §6.3, receive step 5), so the probe is invisible to a Kombu consumer; a Go
// consumer must skip them too.
func (e *env) waitSubscribed(channel string) {
	e.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		n, err := e.rdb.Publish(ctx, channel, "").Result()
		if err != nil {
			e.t.Fatalf("PUBLISH %q: %v", channel, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("nobody subscribed to %q within 15s", channel)
}

// key returns the prefixed name of a Redis key.
func (e *env) key(name string) string { return e.prefix + name }

// priorityKeys are a queue's lists, one per priority step (wire spec §7.2).
func (e *env) priorityKeys(queue string) []string {
	var out []string
	for _, s := range e.prof.steps {
		if s == 0 {
			out = append(out, queue)
		} else {
			out = append(out, queue+e.prof.sep+strconv.Itoa(s))
		}
	}
	return out
}

// queueLen sums LLEN over a queue's lists.
func (e *env) queueLen(queue string) int64 {
	e.t.Helper()
	var n int64
	for _, k := range e.priorityKeys(queue) {
		l, err := e.rdb.LLen(context.Background(), e.key(k)).Result()
		if err != nil {
			e.t.Fatalf("LLEN %q: %v", e.key(k), err)
		}
		n += l
	}
	return n
}

// unackedCount returns HLEN unacked and ZCARD unacked_index.
func (e *env) unackedCount() (hash, index int64) {
	e.t.Helper()
	ctx := context.Background()
	hash, err := e.rdb.HLen(ctx, e.key("unacked")).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	index, err = e.rdb.ZCard(ctx, e.key("unacked_index")).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return hash, index
}

// ---------------------------------------------------------------------------
// The Python peer.

// event is one JSON line printed by peer.py, parsed as Python would
// (numbers keep their text).
type event map[string]any

func (ev event) kind() string { s, _ := ev["event"].(string); return s }

// pyProc is a running peer.py.
type pyProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan event
	stderr *testenv.LockedBuffer
	done   chan struct{}
	err    error
}

// startPy starts `peer.py command` and writes spec as its first stdin line.
// The process is killed when the test ends if it is still running.
func (e *env) startPy(command string, spec any) *pyProc {
	e.t.Helper()
	line, err := pyjson.Marshal(spec)
	if err != nil {
		e.t.Fatalf("spec: %v", err)
	}
	cmd := testenv.PythonCommand(context.Background(), e.script, command)
	cmd.Env = append(cmd.Env, "PYTHONUNBUFFERED=1")
	p := &pyProc{t: e.t, name: command, cmd: cmd, events: make(chan event, 1024), stderr: &testenv.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		e.t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start python: %v", err)
	}
	if _, err := p.stdin.Write(append(line, '\n')); err != nil {
		e.t.Fatalf("write spec: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			v, err := pyjson.Unmarshal(sc.Bytes())
			m, ok := v.(map[string]any)
			if err != nil || !ok {
				p.events <- event{"event": "garbage", "line": sc.Text()}
				continue
			}
			p.events <- event(m)
		}
		p.err = cmd.Wait()
		close(p.events)
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// next returns the next event, failing the test after timeout or if the
// process ended.
func (p *pyProc) next(timeout time.Duration) event {
	p.t.Helper()
	select {
	case ev, ok := <-p.events:
		if !ok {
			p.t.Fatalf("peer.py %s ended early: %v\nstderr:\n%s", p.name, p.err, p.stderr)
		}
		if ev.kind() == "garbage" {
			p.t.Fatalf("peer.py %s printed a non-JSON line: %v\nstderr:\n%s", p.name, ev["line"], p.stderr)
		}
		return ev
	case <-time.After(timeout):
		p.t.Fatalf("peer.py %s: no output within %v\nstderr:\n%s", p.name, timeout, p.stderr)
	}
	return nil
}

// expect reads the next event and checks its kind.
func (p *pyProc) expect(kind string, timeout time.Duration) event {
	p.t.Helper()
	ev := p.next(timeout)
	if ev.kind() != kind {
		p.t.Fatalf("peer.py %s: want event %q, got %v\nstderr:\n%s", p.name, kind, ev, p.stderr)
	}
	return ev
}

// collect reads "message" events until "done" and returns them (a
// "ready" not read yet is skipped).
func (p *pyProc) collect(timeout time.Duration) []pyMsg {
	p.t.Helper()
	var out []pyMsg
	deadline := time.Now().Add(timeout)
	for {
		ev := p.next(time.Until(deadline))
		switch ev.kind() {
		case "message":
			out = append(out, parsePyMsg(p.t, ev))
		case "done":
			return out
		case "ready":
		default:
			p.t.Fatalf("peer.py %s: unexpected event %v", p.name, ev)
		}
	}
}

// send writes one line to the process's stdin.
func (p *pyProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("peer.py %s: write %q: %v\nstderr:\n%s", p.name, line, err, p.stderr)
	}
}

// wait waits for the process to exit successfully.
func (p *pyProc) wait(timeout time.Duration) {
	p.t.Helper()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("peer.py %s did not exit within %v\nstderr:\n%s", p.name, timeout, p.stderr)
	}
	for ev := range p.events {
		p.t.Errorf("peer.py %s: unread event %v", p.name, ev)
	}
	if p.err != nil {
		p.t.Fatalf("peer.py %s: %v\nstderr:\n%s", p.name, p.err, p.stderr)
	}
}

// runPy runs a command to completion and returns its events, "ready"
// events left out.
func (e *env) runPy(command string, spec any, timeout time.Duration) []event {
	e.t.Helper()
	p := e.startPy(command, spec)
	p.stdin.Close()
	var evs []event
	deadline := time.Now().Add(timeout)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				if p.err != nil {
					e.t.Fatalf("peer.py %s: %v\nstderr:\n%s", command, p.err, p.stderr)
				}
				return evs
			}
			if ev.kind() != "ready" {
				evs = append(evs, ev)
			}
		case <-time.After(time.Until(deadline)):
			e.t.Fatalf("peer.py %s did not finish within %v\nstderr:\n%s", command, timeout, p.stderr)
		}
	}
}

// pyMsg is a message as a Python Kombu consumer saw it (peer.py describe()).
type pyMsg struct {
	Queue           string
	Payload         any // tagged: {"json": v} | {"text": s} | {"bytes": b64}
	DecodeError     any
	Body            []byte // message.body: after base64 and decompression
	ContentType     any
	ContentEncoding any
	Headers         map[string]any
	Properties      map[string]any
	DeliveryInfo    map[string]any
	DeliveryTag     string
	Redelivered     bool
}

func parsePyMsg(t *testing.T, ev event) pyMsg {
	t.Helper()
	m := pyMsg{Payload: ev["payload"], DecodeError: ev["decode_error"], ContentType: ev["content_type"], ContentEncoding: ev["content_encoding"]}
	m.Queue, _ = ev["queue"].(string)
	b64, _ := ev["body"].(string)
	body, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("peer.py body %q: %v", b64, err)
	}
	m.Body = body
	m.Headers, _ = ev["headers"].(map[string]any)
	m.Properties, _ = ev["properties"].(map[string]any)
	m.DeliveryInfo, _ = ev["delivery_info"].(map[string]any)
	m.DeliveryTag, _ = ev["delivery_tag"].(string)
	m.Redelivered, _ = ev["redelivered"].(bool)
	return m
}

// header returns a string header ("case" identifies the matrix case).
func (m pyMsg) header(k string) string { s, _ := m.Headers[k].(string); return s }

// ---------------------------------------------------------------------------
// Comparison.

// canon returns v as Python's json.dumps would write it with sorted keys:
// values compare equal when their canon is equal, and an int never equals a
// float (2 vs 2.0), as Python tells them apart.
func canon(v any) string {
	b, err := pyjson.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<unencodable %T: %v>", v, err)
	}
	return string(b)
}

// sameJSON reports a mismatch of two JSON-like values, or "".
func sameJSON(what string, got, want any) string {
	g, w := canon(got), canon(want)
	if g == w {
		return ""
	}
	return fmt.Sprintf("%s:\n\tgot:  %s\n\twant: %s", what, g, w)
}

// uuid4Re matches Kombu's delivery tags: str(uuid4()).
var uuid4Re = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// tagRe finds the delivery tag in an envelope.
var tagRe = regexp.MustCompile(`"delivery_tag": "[^"]*"`)

// maskTag replaces the delivery tag of a raw envelope with a fixed text.
func maskTag(raw []byte) []byte {
	return tagRe.ReplaceAll(raw, []byte(`"delivery_tag": "<tag>"`))
}

// firstDiff describes where two byte strings first differ.
func firstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	lo := max(0, i-60)
	ctx := func(s []byte) string {
		return strconv.Quote(string(s[lo:min(len(s), i+60)]))
	}
	return fmt.Sprintf("first difference at byte %d (lengths %d and %d):\n\tgo:     …%s…\n\tpython: …%s…", i, len(a), len(b), ctx(a), ctx(b))
}

// sortedKeys returns a map's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// quoteKey shows a Redis key with the separator visible.
func quoteKey(k string) string { return strings.ReplaceAll(strconv.Quote(k), `\x06\x16`, "␆␖") }

// b64 is standard padded base64, as Kombu's body_encoding writes it.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// contextWithTimeout is context.WithTimeout on the test's context.
func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
