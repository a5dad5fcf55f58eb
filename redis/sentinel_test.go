package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/envelope"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// startProc starts bin with args (a redis-server or redis-sentinel that
// belongs to the test) and kills it by its pid when the test ends.
func startProc(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		testenv.Missing(t, bin, "apt-get install "+bin)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestIntegrationSentinelFailover consumes and publishes (with retries)
// through sentinel://...?master_name=mymaster while redis-sentinel fails
// the master over to its replica (SENTINEL FAILOVER), twice: once as
// Kombu does, once with publish_wait_replicas=1.
//
// Caveat: Redis replication is asynchronous. A write the old master
// acknowledged in the last instant before it was demoted, and that had
// not reached the replica yet, is lost with the old master's data set
// when it resynchronises as a replica of the new one. On loopback the
// replica trails by well under a millisecond, so the first run rarely
// sees such a loss, and tolerates it inside the switch's window (counted
// in the output), as with any Kombu or Celery deployment on Redis
// Sentinel.
// Proves: every publish that returned nil outside that window is
// consumed; with publish_wait_replicas=1, every publish that returned nil
// is consumed, the window included (a write the old master took after
// the replica stopped following it returns ErrNotReplicated instead).
func TestIntegrationSentinelFailover(t *testing.T) {
	integrationURL(t)
	t.Run("kombu", func(t *testing.T) { sentinelFailover(t, false) })
	t.Run("publish_wait_replicas", func(t *testing.T) { sentinelFailover(t, true) })
}

func sentinelFailover(t *testing.T, wait bool) {
	dir := t.TempDir()
	mport, rport, sport := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	common := func(port int, name string) []string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "no"}
	}
	startProc(t, "redis-server", common(mport, "master")...)
	waitPing(t, mport)
	startProc(t, "redis-server", append(common(rport, "replica"), "--replicaof", "127.0.0.1", strconv.Itoa(mport))...)
	waitPing(t, rport)
	replica := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport), Protocol: 2})
	defer replica.Close()
	waitUntil(t, 10*time.Second, "the replica's link to the master", func() bool {
		return strings.Contains(replica.Info(bg, "replication").Val(), "master_link_status:up")
	})
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"sentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 3000\n", mport)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProc(t, "redis-sentinel", conf, "--port", strconv.Itoa(sport), "--bind", "127.0.0.1", "--dir", dir)
	waitPing(t, sport)
	sentinel := goredis.NewSentinelClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", sport), Protocol: 2})
	defer sentinel.Close()
	waitUntil(t, 15*time.Second, "sentinel to know the replica", func() bool {
		rs, err := sentinel.Replicas(bg, "mymaster").Result()
		return err == nil && len(rs) > 0
	})

	url := fmt.Sprintf("sentinel://127.0.0.1:%d/0?master_name=mymaster&visibility_timeout=10&unacked_restore_interval=1", sport)
	if wait {
		url += "&publish_wait_replicas=1&publish_wait_timeout=0.5"
	}
	cons, err := Open(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	prod, err := Open(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	var mu sync.Mutex
	sent, got, sentAt := map[string]bool{}, map[string]int{}, map[string]time.Time{}
	failed, unconfirmed := 0, 0
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // consumer: take, record, ack
		defer wg.Done()
		for ctx.Err() == nil {
			d, err := transporttest.FetchOne(ctx, cons, []string{"fq"}, true, 200*time.Millisecond)
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			e, err := envelope.Parse(d.Envelope)
			if err != nil {
				t.Errorf("parse: %v", err)
				continue
			}
			mu.Lock()
			got[e.DeliveryTag]++
			mu.Unlock()
			for cons.Ack(ctx, e.DeliveryTag) != nil && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	stop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() { // producer: retries connection errors for up to 10 s
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tag := fmt.Sprintf("f-%06d", i)
			env := strings.Replace(kombuEnvelope, kombuTag, tag, 1)
			var err error
			for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(100 * time.Millisecond) {
				if err = prod.Put(bg, "fq", 0, []byte(env)); err == nil || !retryable(err) {
					break
				}
			}
			mu.Lock()
			switch {
			case err == nil:
				sent[tag] = true
				sentAt[tag] = time.Now()
			case errors.Is(err, ErrNotReplicated):
				unconfirmed++ // on the master only: may be lost
			default:
				failed++
			}
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()

	time.Sleep(time.Second)
	mu.Lock()
	failoverAt := time.Now()
	mu.Unlock()
	if err := sentinel.Failover(bg, "mymaster").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitUntil(t, 20*time.Second, "the failover to the replica", func() bool {
		addr, err := sentinel.GetMasterAddrByName(bg, "mymaster").Result()
		return err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(rport)
	})
	t.Logf("sentinel switched the master to the replica in %v", time.Since(start).Round(time.Millisecond))
	mu.Lock()
	switchedAt := time.Now()
	mu.Unlock()
	// Redis replication is asynchronous: a write the old master accepted
	// after the replica was promoted, and before sentinel demoted it, is
	// dropped when it resyncs as a replica. Such a publish returned success
	// yet cannot be delivered by any client; only publishes inside that
	// window may be missing (counted and reported, see the closing log).
	inWindow := func(tag string) bool {
		if wait {
			return false // a confirmed publish is on the replica
		}
		at := sentAt[tag]
		return !at.Before(failoverAt) && at.Before(switchedAt.Add(500*time.Millisecond))
	}
	time.Sleep(2 * time.Second) // keep publishing on the new master
	close(stop)
	<-pubDone
	master := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", mport), Protocol: 2})
	defer master.Close()
	defer func() {
		if t.Failed() {
			mu.Lock()
			missing := 0
			for tag := range sent {
				if got[tag] == 0 {
					missing++
				}
			}
			mu.Unlock()
			t.Logf("sent %d, consumed %d, missing %d; new master: fq %d unacked %d; old master: fq %d unacked %d",
				len(sent), len(got), missing, replica.LLen(bg, "fq").Val(), replica.HLen(bg, "unacked").Val(),
				master.LLen(bg, "fq").Val(), master.HLen(bg, "unacked").Val())
		}
	}()
	waitUntil(t, 30*time.Second, "every sent message to be consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for tag := range sent {
			if got[tag] == 0 && !inWindow(tag) {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	dups, windowLost := 0, 0
	for _, n := range got {
		dups += n - 1
	}
	for tag := range sent {
		if got[tag] == 0 {
			windowLost++
		}
	}
	if windowLost > 0 {
		t.Logf("%d publish(es) acknowledged by the old master during the switch were lost to asynchronous replication (Redis's documented failover window)", windowLost)
	}
	mode := "SENTINEL FAILOVER"
	if wait {
		mode += ", publish_wait_replicas=1"
	}
	t.Logf("FAULT | sentinel failover (%s) | sent %d | consumed %d | lost in the replication window %d | duplicated %d | publishes given up %d | on the master only %d", mode, len(sent), len(got), windowLost, dups, failed, unconfirmed)
	if failed > 0 {
		t.Errorf("%d publishes failed after 10 s of retries", failed)
	}
	if len(sent) < 100 {
		t.Errorf("only %d messages sent", len(sent))
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
