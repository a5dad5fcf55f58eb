package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// Integration tests run against the real redis-server named by
// KOMBU_TEST_REDIS_URL (for example redis://127.0.0.1:16399/0). Without it
// they are skipped, unless KOMBU_REQUIRE_INTEGRATION is set, which makes a
// missing server a failure. Each test works under a fresh key prefix and
// deletes its keys afterwards; nothing flushes the database.

func integrationURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("KOMBU_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("KOMBU_REQUIRE_INTEGRATION") != "" {
			t.Fatal("KOMBU_REQUIRE_INTEGRATION is set but KOMBU_TEST_REDIS_URL is not: run `make test`, which starts a private redis-server and sets both")
		}
		t.Skip("KOMBU_TEST_REDIS_URL is not set (run `make test` for the integration tests)")
	}
	return url
}

func integrationEnv(t *testing.T) *env {
	t.Helper()
	opt, err := goredis.ParseURL(integrationURL(t))
	if err != nil {
		t.Fatalf("KOMBU_TEST_REDIS_URL: %v", err)
	}
	opt.Protocol = 2
	c := goredis.NewClient(opt)
	if err := c.Ping(bg).Err(); err != nil {
		t.Fatalf("KOMBU_TEST_REDIS_URL: %v", err)
	}
	e := &env{t: t, client: c, prefix: uniquePrefix()}
	t.Cleanup(func() {
		var keys []string
		iter := c.Scan(bg, 0, escapeGlob(e.prefix)+"*", 1000).Iterator()
		for iter.Next(bg) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(bg, keys...)
		}
		_ = c.Close()
	})
	return e
}

// TestIntegrationShared runs every shared test on the real server: key
// names and contents, scripts (cjson, the Lua matcher, the release
// script), WATCH transactions, pub/sub and blocking waits.
func TestIntegrationShared(t *testing.T) {
	integrationURL(t)
	for _, tc := range sharedTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, integrationEnv(t)) })
	}
}

// TestIntegrationRestoreCAS runs the restore tests on the real server
// through the compare-and-set path.
func TestIntegrationRestoreCAS(t *testing.T) {
	integrationURL(t)
	runRestoreCAS(t, integrationEnv)
}

// TestIntegrationGetWaitLatency measures how soon a waiting GetWait returns
// a message after LPUSH on a real server, and requires every wake-up to be
// well under the 1 s Kombu polls with.
func TestIntegrationGetWaitLatency(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	const rounds = 50
	var lats []time.Duration
	for i := 0; i < rounds; i++ {
		got := make(chan time.Time, 1)
		go func() {
			if _, err := transporttest.FetchOne(bg, b, []string{"lat1", "lat2", "lat3"}, true, 5*time.Second); err != nil {
				t.Error(err)
			}
			got <- time.Now()
		}()
		time.Sleep(20 * time.Millisecond)
		sent := time.Now()
		if err := e.client.LPush(bg, e.key("lat3\x06\x166"), testEnvelope(fmt.Sprint("l", i), "", "lat3", 6)).Err(); err != nil {
			t.Fatal(err)
		}
		lats = append(lats, (<-got).Sub(sent))
	}
	slices.Sort(lats)
	t.Logf("GetWait wake-up after LPUSH over %d rounds: min %v, median %v, p90 %v, max %v",
		rounds, lats[0], lats[rounds/2], lats[rounds*9/10], lats[rounds-1])
	if lats[rounds/2] > 20*time.Millisecond || lats[rounds-1] > 200*time.Millisecond {
		t.Fatalf("slow wake-ups: median %v, max %v", lats[rounds/2], lats[rounds-1])
	}
}

// TestIntegrationWatcherBesideBRPOPPeer proves that a Kombu peer blocked in
// BRPOP on the same list as our watcher still gets the message, and that
// the message is delivered exactly once (to the peer or to us), a
// one-element list included.
func TestIntegrationWatcherBesideBRPOPPeer(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	peer := goredis.NewClient(e.client.Options())
	defer peer.Close()
	for round := 0; round < 20; round++ {
		ctx, cancel := context.WithCancel(bg)
		ours := make(chan string, 1)
		go func() {
			d, err := transporttest.FetchOne(ctx, b, []string{"shared"}, true, 3*time.Second)
			if err != nil {
				ours <- ""
				return
			}
			tag, _ := envelope.ExtractTag(d.Envelope)
			ours <- tag
		}()
		theirs := make(chan string, 1)
		go func() {
			r, err := peer.BRPop(bg, 3*time.Second, e.key("shared")).Result()
			if err != nil {
				theirs <- ""
				return
			}
			tag, _ := envelope.ExtractTag([]byte(r[1]))
			theirs <- tag
		}()
		time.Sleep(30 * time.Millisecond)
		tag := fmt.Sprintf("peer-%d", round)
		e.lpush(e.key("shared"), testEnvelope(tag, "", "shared", 0))
		var got []string
		oursDone, theirsDone := false, false
		deadline := time.After(200 * time.Millisecond)
	collect:
		for !oursDone || !theirsDone {
			select {
			case x := <-ours:
				oursDone = true
				if x != "" {
					got = append(got, x)
				}
			case x := <-theirs:
				theirsDone = true
				if x != "" {
					got = append(got, x)
				}
			case <-deadline:
				break collect
			}
		}
		cancel()
		if len(got) != 1 || got[0] != tag {
			t.Fatalf("round %d: deliveries %q, want exactly %q once", round, got, tag)
		}
		if n, _ := e.client.LLen(bg, e.key("shared")).Result(); n != 0 {
			t.Fatalf("round %d: %d messages left", round, n)
		}
		if !oursDone {
			if x := <-ours; x != "" { // cancelled: returns at once
				t.Fatalf("late delivery %q", x)
			}
		}
		if !theirsDone {
			// Release the peer's BRPOP, which is still blocked.
			e.lpush(e.key("shared"), "drain")
			<-theirs
		}
		e.client.Del(bg, e.key("shared"))
	}
}

// TestIntegrationKilledWaitConnection proves that killing the connections
// blocked in the watchers' BLMOVE (as a failover or proxy reset would)
// loses nothing and GetWait still receives the next message.
func TestIntegrationKilledWaitConnection(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	e.lpush(e.key("kill"), testEnvelope("before", "", "kill", 0))
	d := make(chan string, 1)
	go func() {
		// Take the waiting message, then wait for the next one.
		_, _ = transporttest.FetchOne(bg, b, []string{"kill"}, true, time.Second)
		x, err := transporttest.FetchOne(bg, b, []string{"kill"}, true, 10*time.Second)
		if err != nil {
			d <- err.Error()
			return
		}
		tag, _ := envelope.ExtractTag(x.Envelope)
		d <- tag
	}()
	time.Sleep(200 * time.Millisecond)
	list, err := e.client.ClientList(bg).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "cmd=blmove") {
			for _, f := range strings.Fields(line) {
				if id, ok := strings.CutPrefix(f, "id="); ok {
					if e.client.Do(bg, "CLIENT", "KILL", "ID", id).Err() == nil {
						killed++
					}
				}
			}
		}
	}
	if killed == 0 {
		t.Fatal("no blocked BLMOVE connection found")
	}
	time.Sleep(100 * time.Millisecond)
	e.lpush(e.key("kill"), testEnvelope("after", "", "kill", 0))
	select {
	case got := <-d:
		if got != "after" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery after the wait connections were killed")
	}
}

// TestIntegrationWireCommands proves with MONITOR that the restore sweep
// sends Kombu's exact lock commands (SET <mutex> <32 hex> PX 300000 NX and
// EVALSHA of redis-py's release script c3f8721c...) and that the
// watcher's wait is "BLMOVE <list> <list> RIGHT RIGHT".
func TestIntegrationWireCommands(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	if err := b.LoadScripts(bg); err != nil {
		t.Fatal(err)
	}
	// MONITOR on a raw connection (go-redis's Monitor helper races with
	// its own pool under -race).
	lines := monitor(t, e.client.Options().Addr)
	time.Sleep(100 * time.Millisecond)
	if _, err := b.RestoreExpired(bg, time.Now(), staticRoute(nil)); err != nil {
		t.Fatal(err)
	}
	_, _ = transporttest.FetchOne(bg, b, []string{"mon"}, true, 1500*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	var set, evalsha, blmove bool
	mutex := fmt.Sprintf("%q", e.key("unacked_mutex"))
	for done := false; !done; {
		select {
		case l := <-lines:
			switch {
			case strings.Contains(l, `"SET" `+mutex) || strings.Contains(l, `"set" `+mutex):
				f := strings.Fields(l)
				tok := strings.Trim(f[len(f)-4], `"`)
				set = len(tok) == 32 && strings.HasSuffix(l, `"PX" "300000" "NX"`)
				if !set {
					t.Errorf("SET line %s", l)
				}
			case strings.Contains(strings.ToLower(l), `"evalsha" "c3f8721cbb97f72bc19e972846bd7aaf91901658" "1" `+strings.ToLower(mutex)):
				evalsha = true
			case strings.Contains(strings.ToLower(l), `"blmove" `+strings.ToLower(fmt.Sprintf("%q %q", e.key("mon"), e.key("mon")))+` "right" "right"`):
				blmove = true
			}
		default:
			done = true
		}
	}
	if !set || !evalsha || !blmove {
		t.Fatalf("SET %v, EVALSHA %v, BLMOVE %v", set, evalsha, blmove)
	}
}

// TestIntegrationOpenURL proves Open with a Kombu URL: options by Kombu
// name (global_keyprefix, priority_steps, sep, core options accepted),
// the database from the path, a working backend, and Close closing the
// client it opened.
func TestIntegrationOpenURL(t *testing.T) {
	e := integrationEnv(t)
	base := integrationURL(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	u := base + sep + "global_keyprefix=" + e.prefix + "&priority_steps=[0,5]&sep=:&visibility_timeout=60&polling_interval=0.5"
	b, err := Open(bg, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(bg, "oq", 7, []byte(kombuEnvelope)); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.client.LLen(bg, e.key("oq:5")).Result(); n != 1 {
		t.Fatal("not in oq:5")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.client.Ping(bg).Err(); err == nil {
		t.Fatal("Close left its own client open")
	}
	// Through the registry, as kombu.Dial does.
	be, _, err := transport.OpenURL(bg, u)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if err := be.(transport.Pinger).Ping(bg); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationCJSONPythonTokens proves real Redis's cjson accepts the
// NaN/Infinity tokens Python's json.dumps can write into headers, so such
// messages are delivered, not dead-lettered (miniredis's cjson refuses
// them, hence integration only).
func TestIntegrationCJSONPythonTokens(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	raw := `{"body": "e30=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"a": NaN, "b": Infinity, "c": -Infinity}, "properties": {"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "nan"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "nan-tag"}}`
	e.lpush(e.key("nan"), raw)
	d, err := transporttest.FetchOne(bg, b, []string{"nan"}, true, 0)
	if err != nil || string(d.Envelope) != raw {
		t.Fatalf("%v", err)
	}
	if v, _ := e.hget(e.key("unacked"), "nan-tag"); v != "["+raw+`, "", "nan"]` {
		t.Fatalf("record %q", v)
	}
}

// TestIntegrationCrashAfterPopLosesNothing proves the atomic pop+record:
// a consumer whose connection dies right after the script (simulated by
// never acking and dropping the backend) leaves an unacked record that a
// second backend's RestoreExpired brings back.
func TestIntegrationCrashAfterPopLosesNothing(t *testing.T) {
	e := integrationEnv(t)
	clock := newFakeClock(time.Unix(1795550400, 0))
	crashed := e.backend(WithClock(clock))
	mustPut(t, crashed, "crash", 0, kombuEnvelope)
	if _, err := transporttest.FetchOne(bg, crashed, []string{"crash"}, true, 0); err != nil {
		t.Fatal(err)
	}
	_ = crashed.Close()
	other := e.backend()
	route := staticRoute(map[string][]string{"ex_direct|rk.direct": {"crash"}})
	n, err := other.RestoreExpired(bg, time.Unix(1795550400, 0).Add(time.Hour), route)
	if err != nil || n != 1 {
		t.Fatalf("restored %d %v", n, err)
	}
	if d := mustGet(t, other, []string{"crash"}, false); !strings.Contains(string(d.Envelope), kombuTag) {
		t.Fatal("wrong message")
	}
}

// TestIntegrationConcurrentRestore proves the WATCH transaction and its
// compare-and-set fallback: many goroutines restoring the same tag at once,
// while other consumers keep writing the unacked hash, push it exactly
// once.
func TestIntegrationConcurrentRestore(t *testing.T) {
	e := integrationEnv(t)
	b := e.backend()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // unrelated deliveries and acks: the WATCH keeps failing
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprint("noise-", i%50)
			_ = b.RecordUnacked(bg, tag, []byte(testEnvelope(tag, "", "noise", 0)), "", "noise")
			_ = b.Ack(bg, tag)
		}
	}()
	for round := 0; round < 10; round++ {
		tag := fmt.Sprint("cr-", round)
		if err := b.RecordUnacked(bg, tag, []byte(testEnvelope(tag, "", "cr", 0)), "", "cr"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.Restore(bg, tag, false, staticRoute(nil)); err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if n, _ := e.client.LLen(bg, e.key("cr")).Result(); n != 10 {
		t.Fatalf("%d restored copies, want 10", n)
	}
}

// monitor streams MONITOR lines from addr until the test ends.
func monitor(t *testing.T, addr string) <-chan string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
		t.Fatalf("MONITOR: %q %v", l, err)
	}
	out := make(chan string, 10000)
	go func() {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case out <- strings.TrimRight(strings.TrimPrefix(l, "+"), "\r\n"):
			default:
			}
		}
	}()
	return out
}
