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

	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// startPrivate starts a redis-server (or, with sentinel, a redis-sentinel)
// that belongs to the test, on a free port, and stops it by its pid when
// the test ends.
func startPrivate(t *testing.T, sentinelConf string) int {
	t.Helper()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	pidfile := filepath.Join(dir, "redis.pid")
	common := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--daemonize", "yes", "--pidfile", pidfile, "--logfile", filepath.Join(dir, "redis.log")}
	bin, args := "redis-server", append(common, "--save", "", "--appendonly", "no")
	if sentinelConf != "" {
		conf := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(conf, []byte(sentinelConf), 0o600); err != nil {
			t.Fatal(err)
		}
		bin, args = "redis-sentinel", append([]string{conf}, common...)
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s is not installed: run `make deps`", bin)
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", bin, err, out)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(pidfile)
		if err != nil {
			return
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	})
	waitPing(t, port)
	return port
}

// TestIntegrationSentinel proves the sentinel:// scheme: the master is
// found through a private redis-sentinel by master_name, the database comes
// from the path, messages flow (GetWait's watchers run on a pool cloned
// from the failover client's settings), and the fanout prefix is filled in
// (Kombu 5.4+) unless fanout_prefix=/{{db}}. asks for Kombu ≤5.3's literal
// "/{db}.".
func TestIntegrationSentinel(t *testing.T) {
	integrationURL(t)
	master := startPrivate(t, "")
	sport := startPrivate(t, fmt.Sprintf("sentinel monitor kgo 127.0.0.1 %d 1\n", master))
	b, err := Open(bg, fmt.Sprintf("sentinel://127.0.0.1:%d;sentinel://127.0.0.1:1/2?master_name=kgo", sport))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan error, 1)
	go func() {
		d, err := transporttest.FetchOne(bg, b, []string{"sq"}, true, 10*time.Second)
		if err == nil && string(d.Envelope) != kombuEnvelope {
			err = fmt.Errorf("got %q", d.Envelope)
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := b.Put(bg, "sq", 0, []byte(kombuEnvelope)); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if n, _ := b.client.HLen(bg, "unacked").Result(); n != 1 {
		t.Fatalf("unacked has %d", n)
	}
	if got := b.k.fanoutChannel("fx", ""); got != "/2.fx" {
		t.Fatalf("fanout channel %q", got)
	}
	old, err := Open(bg, fmt.Sprintf("sentinel://127.0.0.1:%d/2?master_name=kgo&fanout_prefix=/{{db}}.", sport))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if got := old.k.fanoutChannel("fx", ""); got != "/{db}.fx" {
		t.Fatalf("Kombu ≤5.3 sentinel channel %q", got)
	}
	if _, err := Open(bg, fmt.Sprintf("sentinel://127.0.0.1:%d/2", sport)); err == nil || !strings.Contains(err.Error(), "master_name") {
		t.Fatalf("missing master_name: %v", err)
	}
}
