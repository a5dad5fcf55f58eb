package redis

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// conformance runs the backend conformance suite with backends on client
// under prefix; every backend of one run shares the prefix, so a second
// backend sees what the first stored (Persistent).
//
// Each backend gets its own restore mutex: the parallel cases' consumers
// sweep too, and with one shared mutex (as Kombu shares it) a case's sweep
// may find it held and restore nothing, which the suite counts as a
// failure.
func conformance(t *testing.T, client goredis.UniversalClient, prefix string, f transporttest.Features, opts ...Option) {
	f.Fanout, f.Persistent = true, true
	switch f.DeadLetterQueue {
	case "":
		f.DeadLetterQueue = DefaultMalformedKey
	case "-":
		f.DeadLetterQueue = "" // not a queue: the suite checks the error only
	}
	transporttest.Run(t, f, func(t *testing.T, clock transport.Clock) transport.Backend {
		all := append([]Option{WithKeyPrefix(prefix), WithClock(clock),
			WithUnackedKeys("", "", "unacked_mutex."+uuid.NewString())}, opts...)
		b, err := New(client, all...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestConformance runs transporttest on miniredis, restarting it mid-stream
// for the RestartBroker case (miniredis keeps its data across a restart).
// miniredis's cjson refuses NaN/Infinity, so that envelope is left to the
// integration run. GetWait polls here (no watchers): miniredis wakes every
// blocked command on every write under one lock, which with the suite's
// dozens of parallel consumers costs more CPU than the test machine has;
// the watchers run the suite on the real server.
func TestConformance(t *testing.T) {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	conformance(t, c, "conf:", transporttest.Features{
		NoNonFiniteJSON: true,
		RestartBroker: func(t *testing.T) {
			mr.Close()
			time.Sleep(100 * time.Millisecond)
			if err := mr.Restart(); err != nil {
				t.Fatalf("restart miniredis: %v", err)
			}
		},
	}, WithWaitConnections(0))
}

// TestIntegrationConformance runs transporttest on the real server of
// KOMBU_TEST_REDIS_URL under a fresh key prefix (no restart: the server is
// shared).
func TestIntegrationConformance(t *testing.T) {
	e := integrationEnv(t)
	conformance(t, e.client, e.prefix, transporttest.Features{})
}

// TestIntegrationConformanceRestart runs transporttest on a private
// redis-server with an append-only file, which the RestartBroker case
// restarts mid-stream (SHUTDOWN, then a new process on the same port and
// data directory): consumers reconnect and every message is acked.
func TestIntegrationConformanceRestart(t *testing.T) {
	integrationURL(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: run `make deps`")
	}
	dir := t.TempDir()
	port := testenv.FreePort(t)
	start := func() {
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "always",
			"--daemonize", "yes", "--pidfile", filepath.Join(dir, "redis.pid"), "--logfile", filepath.Join(dir, "redis.log"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("redis-server: %v: %s", err, out)
		}
		waitPing(t, port)
	}
	start()
	admin := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Protocol: 2})
	t.Cleanup(func() {
		_ = admin.Close()
		// Stop the private server by the pid it wrote (the latest start).
		if b, err := os.ReadFile(filepath.Join(dir, "redis.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	})
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	conformance(t, c, "conf:", transporttest.Features{
		RestartBroker: func(t *testing.T) {
			_ = admin.Shutdown(bg).Err()
			if _, err := os.Stat(filepath.Join(dir, "redis.pid")); err == nil {
				time.Sleep(200 * time.Millisecond)
			}
			start()
		},
	})
}

func waitPing(t *testing.T, port int) {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), MaxRetries: -1})
	defer c.Close()
	for i := 0; i < 100; i++ {
		if c.Ping(bg).Err() == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redis-server on port %d does not answer", port)
}
