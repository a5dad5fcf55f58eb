package main

// These tests build the kombu binary once (TestMain) and run it as a user
// would, against the shared test redis-server of `make test`
// (KOMBU_TEST_REDIS_URL) and, for interop, against Debian's Python Kombu and
// Celery. Each test keeps to its own global_keyprefix, so names inside it
// can be short and readable.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/internal/testenv"
)

// kombuBin is the binary under test, built by TestMain.
var kombuBin string

// binEnv is added to the binary's environment: a race-enabled binary
// would otherwise sleep a second at exit (the race runtime's default
// atexit_sleep_ms); a race it finds still fails the test (exit status 66).
var binEnv = []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kombu-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kombuBin = filepath.Join(dir, "kombu")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", kombuBin}
	if raceEnabled {
		args = append(args, "-race") // the binary's own data races fail its tests too
	}
	build := exec.Command(goTool, append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/kombu: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	stdout string
	// stderr is what the command itself wrote: rawStderr without the log
	// lines go-redis writes to stderr on its own (see goRedisLog).
	stderr, rawStderr string
	code              int
}

// goRedisLog matches a log line of go-redis's default logger, e.g.
// "redis: 2026/11/24 21:36:46 pool.go:1458: Unexpected conn[5] state
// changed by hook to CLOSED, closing it". go-redis prints these to stderr
// by itself, after failed dials and when a blocked connection is closed:
// a library issue (reported), not the command's output.
var goRedisLog = regexp.MustCompile(`^redis: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d [\w.]+\.go:\d+: `)

// withoutGoRedisLog drops go-redis's own log lines from stderr text.
func withoutGoRedisLog(stderr string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(stderr, "\n") {
		if !goRedisLog.MatchString(l) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// runBin runs the binary with args, stdin and extra environment, and
// returns what it did. It fails the test if the binary does not exit
// within a minute.
func runBin(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kombuBin, args...)
	cmd.Env = append(append(os.Environ(), binEnv...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), rawStderr: stderr.String(), stderr: withoutGoRedisLog(stderr.String())}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			t.Fatalf("kombu %s: %v (ctx: %v)\nstderr: %s", strings.Join(args, " "), err, ctx.Err(), r.stderr)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// kt is one test's broker world: the test redis-server and a fresh key
// prefix that every command gets through --url and --opt.
type kt struct {
	t      *testing.T
	url    string
	prefix string
}

func newKT(t *testing.T) *kt {
	t.Helper()
	return &kt{t: t, url: testenv.RedisURL(t), prefix: testenv.Prefix()}
}

// connArgs puts --url and --opt global_keyprefix right after the command
// word(s) ("celery send" is two).
func (k *kt) connArgs(args []string) []string {
	n := 1
	if len(args) > 1 && args[0] == "celery" {
		n = 2
	}
	out := append([]string(nil), args[:n]...)
	out = append(out, "--url", k.url, "--opt", "global_keyprefix="+k.prefix)
	return append(out, args[n:]...)
}

// run runs a command in this test's world.
func (k *kt) run(args ...string) result {
	k.t.Helper()
	return runBin(k.t, "", nil, k.connArgs(args)...)
}

// runIn runs a command with stdin.
func (k *kt) runIn(stdin string, args ...string) result {
	k.t.Helper()
	return runBin(k.t, stdin, nil, k.connArgs(args)...)
}

// ok runs a command that must exit 0 with nothing on stderr and returns
// its stdout.
func (k *kt) ok(args ...string) string {
	k.t.Helper()
	r := k.run(args...)
	if r.code != 0 || r.stderr != "" {
		k.t.Fatalf("kombu %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// publish runs kombu publish and returns the delivery tags it printed.
func (k *kt) publish(args ...string) []string {
	k.t.Helper()
	tags := lines(k.ok(append([]string{"publish"}, args...)...))
	for _, tag := range tags {
		if len(tag) != 36 || strings.Count(tag, "-") != 4 {
			k.t.Fatalf("publish printed %q, want a uuid delivery tag per line", tag)
		}
	}
	return tags
}

// messageKeys are the keys of a consume/peek line, in the order printed.
var messageKeys = []string{"body", "body_base64", "content_type", "content_encoding", "headers", "properties",
	"exchange", "routing_key", "priority", "delivery_tag", "redelivered"}

// messages parses consume/peek output: one JSON object per line, each
// with exactly messageKeys in that order.
func messages(t *testing.T, out string) []map[string]any {
	t.Helper()
	var ms []map[string]any
	for _, l := range lines(out) {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if keys := topKeys(t, l); !slices.Equal(keys, messageKeys) {
			t.Fatalf("line %q has keys %v, want %v", l, keys, messageKeys)
		}
		ms = append(ms, m)
	}
	return ms
}

// topKeys returns the keys of a JSON object, in order.
func topKeys(t *testing.T, obj string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(obj))
	var keys []string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q is not a JSON object", obj)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// bodies returns the "body" of each message.
func bodies(ms []map[string]any) []any {
	var out []any
	for _, m := range ms {
		out = append(out, m["body"])
	}
	return out
}

// inspectJSON runs kombu inspect --json with extra args.
type inspectOut struct {
	Queues []struct {
		Name       string         `json:"name"`
		Priorities map[string]int `json:"priorities"`
		Total      int64          `json:"total"`
	} `json:"queues"`
	Exchanges map[string][]struct {
		RoutingKey string `json:"routing_key"`
		Pattern    string `json:"pattern"`
		Queue      string `json:"queue"`
	} `json:"exchanges"`
	Unacked struct {
		Count            int64   `json:"count"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	} `json:"unacked"`
}

func (k *kt) inspect(args ...string) inspectOut {
	k.t.Helper()
	out := k.ok(append([]string{"inspect", "--json"}, args...)...)
	var v inspectOut
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		k.t.Fatalf("inspect --json output %q: %v", out, err)
	}
	return v
}

// total returns a queue's total from inspect --json.
func (k *kt) total(queue string) int64 {
	k.t.Helper()
	v := k.inspect("--queue", queue)
	if len(v.Queues) != 1 || v.Queues[0].Name != queue {
		k.t.Fatalf("inspect --queue %s: %+v", queue, v.Queues)
	}
	return v.Queues[0].Total
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

// commandNames are every command and its --help invocation.
var commandNames = [][]string{{"publish"}, {"consume"}, {"inspect"}, {"peek"}, {"restore"}, {"purge"},
	{"bind"}, {"unbind"}, {"celery", "send"}, {"celery", "canvas"}, {"celery", "inspect"}, {"celery", "control"},
	{"celery", "events"}}

// TestHelp proves --help works on every subcommand: exit 0, the usage on
// stdout (with the shared --url and --opt flags), nothing on stderr; and
// that kombu --help lists every command while a bare kombu is a usage error.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range commandNames {
		for _, h := range []string{"--help", "-h"} {
			r := runBin(t, "", nil, append(append([]string(nil), c...), h)...)
			name := strings.Join(c, " ")
			if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "usage: kombu "+name+" ") ||
				!strings.Contains(r.stdout, "-url string") || !strings.Contains(r.stdout, "-opt name=value") {
				t.Errorf("kombu %s %s: exit %d\nstdout: %s\nstderr: %s", name, h, r.code, r.stdout, r.stderr)
			}
		}
	}
	r := runBin(t, "", nil, "--help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("kombu --help: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, c := range commandNames {
		if !strings.Contains(r.stdout, "\n  "+c[0]+" ") {
			t.Errorf("kombu --help does not list %s:\n%s", c[0], r.stdout)
		}
	}
	if r := runBin(t, "", nil, "celery", "--help"); r.code != 0 || !strings.Contains(r.stdout, "usage: kombu celery SUBCOMMAND") ||
		!strings.Contains(r.stdout, "\n  inspect ") || !strings.Contains(r.stdout, "\n  events ") {
		t.Errorf("kombu celery --help: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := runBin(t, "", nil); r.code != 2 || !strings.HasPrefix(r.stderr, "usage: kombu") {
		t.Errorf("bare kombu: exit %d, stderr %q, want 2 and the usage", r.code, r.stderr)
	}
}

// TestUsageErrors proves that every command-line mistake exits 2 with
// exactly one line on stderr, naming the command, and nothing on stdout,
// before any connection is made (the URL points at a closed port).
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	closed := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	cases := []struct {
		args []string
		want string // in the stderr line
	}{
		{[]string{"frobnicate"}, `kombu: unknown command "frobnicate"`},
		{[]string{"publish", "--exchange", "x"}, "kombu publish: want exactly one BODY"},
		{[]string{"publish", "--exchange", "x", "a", "b"}, "kombu publish: want exactly one BODY"},
		{[]string{"publish", "--bogus", "x"}, "kombu publish: flag provided but not defined: -bogus"},
		{[]string{"publish", "--serializer", "pickle", "x"}, `kombu publish: --serializer "pickle"`},
		{[]string{"publish", "--serializer", "json", "{nope"}, "kombu publish: BODY is not JSON"},
		{[]string{"publish", "--type", "headers", "--exchange", "x", "b"}, `kombu publish: --type "headers"`},
		{[]string{"publish", "--count", "0", "b"}, "kombu publish: --count must be at least 1"},
		{[]string{"publish", "--header", "novalue", "b"}, `kombu publish: --header "novalue"`},
		{[]string{"publish", "--priority", "high", "b"}, "kombu publish: invalid value \"high\" for flag -priority"},
		{[]string{"consume"}, "kombu consume: --queue is required"},
		{[]string{"consume", "--queue", "q", "--mode", "maybe"}, `kombu consume: --mode "maybe"`},
		{[]string{"consume", "--queue", "q", "--timeout", "soon"}, "kombu consume: invalid value \"soon\" for flag -timeout"},
		{[]string{"consume", "--queue", "q", "extra"}, "kombu consume: unexpected arguments: extra"},
		{[]string{"inspect", "extra"}, "kombu inspect: unexpected arguments: extra"},
		{[]string{"peek"}, "kombu peek: --queue is required"},
		{[]string{"peek", "--queue", "q", "-n", "0"}, "kombu peek: -n must be at least 1"},
		{[]string{"restore", "--all=maybe"}, "kombu restore: invalid boolean value"},
		{[]string{"purge"}, "kombu purge: --queue is required"},
		{[]string{"bind", "--queue", "q"}, "kombu bind: --exchange and --queue are required"},
		{[]string{"unbind", "--exchange", "e"}, "kombu unbind: --exchange and --queue are required"},
		{[]string{"purge", "--queue", "q", "--opt", "novalue"}, `kombu purge: --opt "novalue": want name=value`},
		{[]string{"purge", "--queue", "q", "--opt", "no_such_option=1"}, `unknown option "no_such_option"`},
		{[]string{"purge", "--queue", "q", "--opt", "visibility_timeout=abc"}, "visibility_timeout"},
		{[]string{"celery"}, "kombu celery: missing subcommand: send"},
		{[]string{"celery", "run"}, `kombu celery: unknown subcommand "run"`},
		{[]string{"celery", "send"}, "kombu celery: --task is required"},
		{[]string{"celery", "send", "--task", "t", "--args", "{}"}, "kombu celery: --args"},
		{[]string{"celery", "send", "--task", "t", "--kwargs", "[1]"}, "kombu celery: --kwargs"},
	}
	for _, c := range cases {
		r := runBin(t, "", []string{"KOMBU_URL=" + closed}, c.args...)
		ls := lines(r.stderr)
		if r.code != 2 || r.stdout != "" || len(ls) != 1 || !strings.Contains(ls[0], c.want) {
			t.Errorf("kombu %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q",
				strings.Join(c.args, " "), r.code, r.stdout, r.stderr, c.want)
		}
	}
}

// TestConnectionError proves that every command exits 1 when the broker is
// unreachable (a closed port, given through $KOMBU_URL), prints nothing on
// stdout, and that the last line on stderr is one clear line of ours.
// go-redis logs its failed dials on stderr itself (a library issue,
// reported); those lines, if any, must come from go-redis.
func TestConnectionError(t *testing.T) {
	t.Parallel()
	closed := fmt.Sprintf("redis://127.0.0.1:%d/0", testenv.FreePort(t))
	for _, c := range [][]string{
		{"publish", "--exchange", "x", "hello"}, {"consume", "--queue", "q", "--count", "1"}, {"inspect"},
		{"peek", "--queue", "q"}, {"restore"}, {"purge", "--queue", "q"},
		{"bind", "--exchange", "e", "--queue", "q"}, {"unbind", "--exchange", "e", "--queue", "q"},
		{"celery", "send", "--task", "tasks.add"},
	} {
		r := runBin(t, "", []string{"KOMBU_URL=" + closed}, c...)
		ls := lines(r.rawStderr)
		name := c[0]
		if r.code != 1 || r.stdout != "" || len(ls) == 0 {
			t.Errorf("kombu %s: exit %d, stdout %q, stderr %q; want exit 1 and an error line", name, r.code, r.stdout, r.stderr)
			continue
		}
		last := ls[len(ls)-1]
		if !strings.HasPrefix(last, "kombu "+name+": ") || !strings.Contains(last, "connection refused") ||
			!strings.Contains(last, closed) {
			t.Errorf("kombu %s: last stderr line %q, want ours naming %s and the refusal", name, last, closed)
		}
		for _, l := range ls[:len(ls)-1] {
			if !goRedisLog.MatchString(l) {
				t.Errorf("kombu %s: unexpected stderr line %q", name, l)
			}
		}
	}
}

// TestPublishConsumeFormat proves consume's exact line format for each
// kind of body the publish flags make: the default text/plain string,
// --serializer json (the JSON value, integers and key order kept, as
// Python's json.dumps writes it), --serializer raw, --content-type; and
// that headers (JSON or string values), --priority, --reply-to and
// --correlation-id arrive as properties, with the delivery tag publish
// printed.
func TestPublishConsumeFormat(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	pub := func(args ...string) string {
		return k.publish(append([]string{"--exchange", "ex", "--routing-key", "rk", "--declare-queue", "q"}, args...)...)[0]
	}
	text := pub("héllo <world>")
	js := pub("--serializer", "json", "--header", "n=1", "--header", `o={"b": 1, "a": [1.5, 2]}`, "--header", "s=plain",
		`{"z": 1, "a": 12345678901234567890, "f": 1.0}`)
	raw := pub("--serializer", "raw", "--reply-to", "replies", "--correlation-id", "cid-1", "bytes")
	ct := pub("--content-type", "application/x-custom", "--priority", "0", "custom")
	out := k.ok("consume", "--queue", "q", "--count", "4", "--timeout", "30s")
	want := []string{
		`{"body":"héllo <world>","body_base64":"aMOpbGxvIDx3b3JsZD4=","content_type":"text/plain","content_encoding":"utf-8","headers":{},"properties":{"delivery_mode":2,"priority":0},"exchange":"ex","routing_key":"rk","priority":0,"delivery_tag":"` + text + `","redelivered":false}`,
		`{"body":{"z":1,"a":12345678901234567890,"f":1.0},"body_base64":"eyJ6IjogMSwgImEiOiAxMjM0NTY3ODkwMTIzNDU2Nzg5MCwgImYiOiAxLjB9","content_type":"application/json","content_encoding":"utf-8","headers":{"n":1,"o":{"b":1,"a":[1.5,2]},"s":"plain"},"properties":{"delivery_mode":2,"priority":0},"exchange":"ex","routing_key":"rk","priority":0,"delivery_tag":"` + js + `","redelivered":false}`,
		`{"body":"bytes","body_base64":"Ynl0ZXM=","content_type":"application/data","content_encoding":"binary","headers":{},"properties":{"correlation_id":"cid-1","delivery_mode":2,"priority":0,"reply_to":"replies"},"exchange":"ex","routing_key":"rk","priority":0,"delivery_tag":"` + raw + `","redelivered":false}`,
		`{"body":"custom","body_base64":"Y3VzdG9t","content_type":"application/x-custom","content_encoding":"binary","headers":{},"properties":{"delivery_mode":2,"priority":0},"exchange":"ex","routing_key":"rk","priority":0,"delivery_tag":"` + ct + `","redelivered":false}`,
	}
	got := lines(out)
	messages(t, out) // every key, in order
	if len(got) != len(want) {
		t.Fatalf("consume printed %d lines, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		// Headers are a Go map: compare them as values, the rest as text.
		g, w := messages(t, got[i])[0], messages(t, want[i])[0]
		equal(t, fmt.Sprintf("message %d", i), g, w)
		if i != 1 && got[i] != want[i] {
			t.Errorf("message %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if k.total("q") != 0 {
		t.Fatal("acked messages are still in the queue")
	}
}

// TestPublishStdin proves BODY "-" publishes one message per line of
// stdin, --count times each, printing one delivery tag per message, and
// that the messages are consumed in that order.
func TestPublishStdin(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	r := k.runIn("one\ntwo\n{\"n\": 3}\n", "publish", "--exchange", "", "--routing-key", "q", "--count", "2", "--serializer", "json", "-")
	if r.code != 2 || !strings.Contains(r.stderr, "BODY is not JSON") {
		t.Fatalf("json lines that are not JSON: exit %d, stderr %q", r.code, r.stderr)
	}
	k.ok("purge", "--queue", "q")
	r = k.runIn("one\ntwo\nthree\n", "publish", "--exchange", "", "--routing-key", "q", "--count", "2", "-")
	tags := lines(r.stdout)
	if r.code != 0 || len(tags) != 6 {
		t.Fatalf("publish -: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	ms := messages(t, k.ok("consume", "--queue", "q", "--count", "6", "--timeout", "30s"))
	equal(t, "bodies", bodies(ms), []any{"one", "one", "two", "two", "three", "three"})
	for i, m := range ms {
		equal(t, "delivery tag", m["delivery_tag"], tags[i])
	}
}

// TestCompressionZlib proves --compression zlib stores a zlib stream (as
// Kombu does: application/x-gzip in headers["compression"]) that consume
// and peek give back decompressed, checked on the raw list in Redis.
func TestCompressionZlib(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	body := strings.Repeat(`{"word": "compressible"}`, 1)
	k.publish("--exchange", "", "--routing-key", "q", "--serializer", "json", "--compression", "zlib", body)
	stored := rawList(t, k, "q")
	if len(stored) != 1 {
		t.Fatalf("raw list: %q", stored)
	}
	var env struct {
		Body    []byte         `json:"body"` // base64
		Headers map[string]any `json:"headers"`
	}
	if err := json.Unmarshal([]byte(stored[0]), &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Body) < 2 || env.Body[0] != 0x78 || env.Headers["compression"] != "application/x-gzip" {
		t.Fatalf("stored envelope is not zlib-compressed: %s", stored[0])
	}
	if got := zlibInflate(t, env.Body); got != `{"word": "compressible"}` {
		t.Fatalf("stored body inflates to %q", got)
	}
	for _, out := range []string{k.ok("peek", "--queue", "q"), k.ok("consume", "--queue", "q", "--count", "1", "--timeout", "30s")} {
		ms := messages(t, out)
		if len(ms) != 1 {
			t.Fatalf("want one message: %s", out)
		}
		equal(t, "body", ms[0]["body"], map[string]any{"word": "compressible"})
		equal(t, "headers", ms[0]["headers"], map[string]any{"compression": "application/x-gzip"})
		equal(t, "body_base64", ms[0]["body_base64"], "eyJ3b3JkIjogImNvbXByZXNzaWJsZSJ9")
	}
}

// TestConsumeTimeout proves consume exits 3 with one stderr line when
// --timeout runs out before --count messages, printing the ones it did
// handle; and exits 0 when there is no --count (the timeout is the end).
func TestConsumeTimeout(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	k.publish("--exchange", "", "--routing-key", "q", "only")
	start := time.Now()
	r := k.run("consume", "--queue", "q", "--count", "2", "--timeout", "500ms")
	if r.code != 3 || len(lines(r.stderr)) != 1 || !strings.Contains(r.stderr, "kombu consume: timeout ran out before --count messages were handled (1 of 2)") {
		t.Fatalf("exit %d, stderr %q; want 3 and one line", r.code, r.stderr)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", d)
	}
	equal(t, "bodies", bodies(messages(t, r.stdout)), []any{"only"})
	if r := k.run("consume", "--queue", "q", "--timeout", "300ms"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("no --count: exit %d, stdout %q, stderr %q; want 0", r.code, r.stdout, r.stderr)
	}
}

// TestConsumeModes proves each --mode settles as named: ack and reject
// remove the message (nothing unacked), requeue puts it back at the end of
// its queue, no-ack never records it as unacked; and that messages a
// --prefetch above --count took are given back, in order, when consume
// stops.
func TestConsumeModes(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	k.runIn("m1\nm2\nm3\nm4\nm5\n", "publish", "--exchange", "", "--routing-key", "q", "-")
	take := func(mode string) string {
		ms := messages(t, k.ok("consume", "--queue", "q", "--count", "1", "--mode", mode, "--timeout", "30s"))
		if len(ms) != 1 {
			t.Fatalf("mode %s: %v", mode, ms)
		}
		return ms[0]["body"].(string)
	}
	equal(t, "requeue takes", take("requeue"), "m1")
	equal(t, "order after requeue", bodies(messages(t, k.ok("peek", "--queue", "q"))), []any{"m2", "m3", "m4", "m5", "m1"})
	equal(t, "ack takes", take("ack"), "m2")
	equal(t, "reject takes", take("reject"), "m3")
	equal(t, "no-ack takes", take("no-ack"), "m4")
	if v := k.inspect("--queue", "q"); v.Queues[0].Total != 2 || v.Unacked.Count != 0 {
		t.Fatalf("after the modes: %+v", v)
	}
	// Prefetch 5, count 1: m5 is handled, m1 was prefetched and comes back.
	equal(t, "prefetch takes", bodies(messages(t, k.ok("consume", "--queue", "q", "--count", "1", "--prefetch", "5", "--timeout", "30s"))), []any{"m5"})
	if v := k.inspect("--queue", "q"); v.Queues[0].Total != 1 || v.Unacked.Count != 0 {
		t.Fatalf("after prefetch: %+v", v)
	}
	equal(t, "left", bodies(messages(t, k.ok("peek", "--queue", "q"))), []any{"m1"})
}

// TestInspectPriorities proves inspect shows the length of every priority
// list and the total, in JSON and in the text table, for a queue bound to
// an exchange (listed without --queue) and one on the default exchange
// (listed with --queue).
func TestInspectPriorities(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	for _, p := range []string{"0", "3", "9", "9", "7"} { // 7 goes to the 6 list (Kombu's steps 0, 3, 6, 9)
		k.publish("--exchange", "ex", "--routing-key", "rk", "--declare-queue", "bound", "--priority", p, "m")
	}
	k.publish("--exchange", "", "--routing-key", "plain", "--priority", "9", "m")
	v := k.inspect()
	if len(v.Queues) != 1 || v.Queues[0].Name != "bound" {
		t.Fatalf("inspect without --queue: %+v", v.Queues)
	}
	equal(t, "priorities", v.Queues[0].Priorities, map[string]int{"0": 1, "3": 1, "6": 1, "9": 2})
	equal(t, "total", v.Queues[0].Total, int64(5))
	v = k.inspect("--queue", "plain", "--queue", "bound")
	if len(v.Queues) != 2 || v.Queues[0].Name != "plain" || v.Queues[0].Total != 1 || v.Queues[0].Priorities["9"] != 1 {
		t.Fatalf("inspect --queue plain --queue bound: %+v", v.Queues)
	}
	text := k.ok("inspect", "--queue", "bound", "--queue", "plain")
	want := "QUEUE  PRIORITY LISTS (step=length)  TOTAL\n" +
		"bound  0=1 3=1 6=1 9=2               5\n" +
		"plain  0=0 3=0 6=0 9=1               1\n" +
		"\n" +
		"EXCHANGE  ROUTING KEY  PATTERN  QUEUE\n" +
		"ex        rk                    bound\n" +
		"\n" +
		"unacked: 0\n"
	equal(t, "inspect text", text, want)
}

// TestInspectTopicBindings proves inspect lists every exchange with its
// bindings: routing key, the regular expression Kombu stores for a topic
// binding, and the queue; and that bind without --type on an exchange
// whose bindings are topic patterns binds as topic too.
func TestInspectTopicBindings(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	k.ok("bind", "--exchange", "logs", "--type", "topic", "--queue", "errors", "--routing-key", "*.error")
	k.ok("bind", "--exchange", "logs", "--queue", "all", "--routing-key", "#")
	k.ok("bind", "--exchange", "direct", "--queue", "d", "--routing-key", "k")
	v := k.inspect()
	type row = struct {
		RoutingKey string `json:"routing_key"`
		Pattern    string `json:"pattern"`
		Queue      string `json:"queue"`
	}
	equal(t, "logs bindings (sorted by queue)", v.Exchanges["logs"], []row{{"#", `^.*?$`, "all"}, {"*.error", `^.*?[^\.]\.error$`, "errors"}})
	equal(t, "direct bindings", v.Exchanges["direct"], []row{{"k", "", "d"}})
	var names []string
	for _, q := range v.Queues {
		names = append(names, q.Name)
	}
	equal(t, "queues", names, []string{"all", "d", "errors"})
	want := "QUEUE   PRIORITY LISTS (step=length)  TOTAL\n" +
		"all     0=0 3=0 6=0 9=0               0\n" +
		"d       0=0 3=0 6=0 9=0               0\n" +
		"errors  0=0 3=0 6=0 9=0               0\n" +
		"\n" +
		"EXCHANGE  ROUTING KEY  PATTERN            QUEUE\n" +
		"direct    k                               d\n" +
		"logs      #            ^.*?$              all\n" +
		"logs      *.error      ^.*?[^\\.]\\.error$  errors\n" +
		"\n" +
		"unacked: 0\n"
	equal(t, "inspect text", k.ok("inspect"), want)
	// Routing follows the patterns, with or without --type on publish.
	k.publish("--exchange", "logs", "--routing-key", "app.error", "e1")
	k.publish("--exchange", "logs", "--type", "topic", "--routing-key", "app.info", "i1")
	equal(t, "errors", k.total("errors"), int64(1))
	equal(t, "all", k.total("all"), int64(2))
}

// TestBindUnbind proves bind makes a publish route to the queue and unbind
// stops it (publish then warns that the message matched no queue, and
// still exits 0 as Kombu drops it); unbinding a missing binding fails; and
// that consume --exchange declares and binds its queue before consuming.
func TestBindUnbind(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	pub := func(body string) result {
		return k.run("publish", "--exchange", "ex", "--routing-key", "rk", body)
	}
	if r := pub("dropped"); r.code != 0 || len(lines(r.stdout)) != 1 ||
		r.stderr != "kombu publish: warning: 1 message(s) matched no queue (exchange \"ex\", routing key \"rk\") and were dropped\n" {
		t.Fatalf("publish with no binding: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	k.ok("bind", "--exchange", "ex", "--queue", "q", "--routing-key", "rk")
	if r := pub("routed"); r.code != 0 || r.stderr != "" {
		t.Fatalf("publish after bind: exit %d, stderr %q", r.code, r.stderr)
	}
	equal(t, "after bind", k.total("q"), int64(1))
	k.ok("unbind", "--exchange", "ex", "--queue", "q", "--routing-key", "rk")
	if r := pub("dropped again"); r.code != 0 || !strings.Contains(r.stderr, "matched no queue") {
		t.Fatalf("publish after unbind: exit %d, stderr %q", r.code, r.stderr)
	}
	equal(t, "after unbind", k.total("q"), int64(1))
	equal(t, "exchanges after unbind", len(k.inspect().Exchanges["ex"]), 0)
	if r := k.run("unbind", "--exchange", "ex", "--queue", "q", "--routing-key", "rk"); r.code != 1 || r.stderr != "kombu unbind: no such binding\n" {
		t.Fatalf("unbind twice: exit %d, stderr %q", r.code, r.stderr)
	}
	equal(t, "queue", bodies(messages(t, k.ok("peek", "--queue", "q"))), []any{"routed"})

	// consume --exchange: declares and binds, then gets what is published.
	cmd := exec.Command(kombuBin, k.connArgs([]string{"consume", "--queue", "tq", "--exchange", "tx", "--type", "topic",
		"--routing-key", "a.*", "--count", "1", "--timeout", "30s"})...)
	cmd.Env = append(os.Environ(), binEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(k.inspect().Exchanges["tx"]) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("consume --exchange did not bind within 20s: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	k.publish("--exchange", "tx", "--type", "topic", "--routing-key", "a.b", "via topic")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consume --exchange: %v\n%s", err, errb.String())
	}
	ms := messages(t, out.String())
	if len(ms) != 1 || ms[0]["body"] != "via topic" || ms[0]["exchange"] != "tx" || ms[0]["routing_key"] != "a.b" {
		t.Fatalf("consume --exchange printed %s", out.String())
	}
}

// TestPeekOrder proves peek prints messages in delivery order (priority
// step-major: every step-0 message first, FIFO within a step), honours
// -n, removes nothing, and that consume then delivers in the same order.
func TestPeekOrder(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	for _, m := range [][2]string{{"9", "a"}, {"0", "b"}, {"9", "c"}, {"0", "d"}, {"3", "e"}} {
		k.publish("--exchange", "", "--routing-key", "q", "--priority", m[0], m[1])
	}
	want := []any{"b", "d", "e", "a", "c"}
	peeked := messages(t, k.ok("peek", "--queue", "q"))
	equal(t, "peek", bodies(peeked), want)
	equal(t, "peek -n 2", bodies(messages(t, k.ok("peek", "--queue", "q", "-n", "2"))), want[:2])
	equal(t, "peek twice", bodies(messages(t, k.ok("peek", "--queue", "q"))), want)
	if v := k.inspect("--queue", "q"); v.Queues[0].Total != 5 || v.Unacked.Count != 0 {
		t.Fatalf("peek removed or took something: %+v", v)
	}
	consumed := messages(t, k.ok("consume", "--queue", "q", "--count", "5", "--timeout", "30s"))
	equal(t, "consume", bodies(consumed), want)
	for i := range peeked {
		equal(t, "peek line = consume line", peeked[i], consumed[i])
	}
	if out := k.ok("peek", "--queue", "q"); out != "" {
		t.Fatalf("peek of an empty queue printed %q", out)
	}
}

// TestPurge proves purge empties every priority list of the queue and
// prints how many messages it removed, and touches no other queue.
func TestPurge(t *testing.T) {
	t.Parallel()
	k := newKT(t)
	for _, p := range []string{"0", "3", "9"} {
		k.publish("--exchange", "", "--routing-key", "q", "--priority", p, "m")
	}
	k.publish("--exchange", "", "--routing-key", "other", "m")
	equal(t, "purge", k.ok("purge", "--queue", "q"), "3\n")
	equal(t, "purge again", k.ok("purge", "--queue", "q"), "0\n")
	equal(t, "q", k.total("q"), int64(0))
	equal(t, "other", k.total("other"), int64(1))
}
