package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	_ "github.com/kombu-go/kombu/redis"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestChaosKill publishes KOMBU_CHAOS_MESSAGES messages (default 10,000)
// while consumer processes are killed with SIGKILL at random moments and
// restarted. Each consumer records a message (HINCRBY on its delivery tag)
// before acking it. At the end every message was handled at least once,
// and every duplicate is a message whose unacked record was in Redis when
// a consumer was killed.
//
// "In flight at a kill" is counted two ways: every unacked record in Redis
// right after the killed process was reaped (all consumers'), and those of
// them still unchanged 1.5 s later (the killed consumer's: the survivors
// ack theirs within milliseconds, the dead one's stay until the visibility
// timeout restores them).
func TestChaosKill(t *testing.T) {
	n := envInt("KOMBU_CHAOS_MESSAGES", 10000)
	helpers := envInt("KOMBU_CHAOS_CONSUMERS", 4)
	seed := uint64(envInt("KOMBU_CHAOS_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("messages %d, consumer processes %d, seed %d (KOMBU_CHAOS_SEED)", n, helpers, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	srv := startRedis(t)
	rc := client(t, srv)
	bin := chaosConsumer(t)
	const prefix, queue, record = "chaos:", "chaos", "chaos.handled"
	// A short visibility timeout and restore interval so that what a
	// killed consumer held comes back within seconds; a short restore mutex
	// expiry because a consumer killed while restoring leaves the mutex
	// held until it expires (Kombu's default is 300 s).
	url := srv.URL(0) + "?global_keyprefix=" + prefix +
		"&visibility_timeout=5&unacked_restore_interval=1&unacked_mutex_expire=2"

	logs := &testenv.LockedBuffer{}
	type proc struct {
		cmd    *exec.Cmd
		done   chan struct{}
		killed bool
	}
	var unexpected []string
	var umu sync.Mutex
	start := func(i int) *proc {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(),
			"CHAOS_URL="+url, "CHAOS_QUEUE="+queue,
			"CHAOS_RECORD_URL="+srv.URL(0), "CHAOS_RECORD_KEY="+record,
			"CHAOS_CONCURRENCY=4", "CHAOS_HANDLER_US=2000")
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() {
			err := cmd.Wait()
			umu.Lock()
			if !p.killed {
				unexpected = append(unexpected, fmt.Sprintf("consumer %d exited by itself: %v", i, err))
			}
			umu.Unlock()
			close(p.done)
		}()
		return p
	}
	kill := func(p *proc, sig syscall.Signal) {
		umu.Lock()
		p.killed = true
		umu.Unlock()
		_ = p.cmd.Process.Signal(sig)
		<-p.done
	}
	procs := make([]*proc, helpers)
	for i := range procs {
		procs[i] = start(i)
	}
	t.Cleanup(func() {
		for _, p := range procs {
			if p != nil {
				kill(p, syscall.SIGKILL)
			}
		}
	})

	// The producer runs in the test process, concurrently with the kills.
	conn, err := kombu.Dial(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	prod := conn.Producer(kombu.WithRoutingKey(queue))
	var pubWG sync.WaitGroup
	pubErrs := make(chan error, 4)
	const publishers = 4
	for g := 0; g < publishers; g++ {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for i := g; i < n; i += publishers {
				if _, err := prod.Publish(bg, map[string]any{"i": i}, kombu.WithDeliveryTag(tagOf(i))); err != nil {
					pubErrs <- err
					return
				}
			}
		}()
	}

	handled := func() int64 { return rc.HLen(bg, record).Val() }
	// A take is one (tag, receive time) unacked record: the same record
	// stays in Redis across several kills until it is restored, and is
	// counted once.
	type snapshot struct {
		all  []string
		held []string
	}
	var (
		snaps  []*snapshot
		snapMu sync.Mutex
		snapWG sync.WaitGroup
	)
	kills := 0
	began := time.Now()
	maxKills := envInt("KOMBU_CHAOS_MAX_KILLS", 100000)
	for kills < maxKills && handled() < int64(n) && time.Since(began) < 10*time.Minute {
		time.Sleep(time.Duration(10+rng.IntN(190)) * time.Millisecond)
		i := rng.IntN(helpers)
		kill(procs[i], syscall.SIGKILL)
		// The dead process's records are frozen now: read them all.
		zs, err := rc.ZRangeWithScores(bg, prefix+"unacked_index", 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = start(i)
		kills++
		s := &snapshot{}
		for _, z := range zs {
			s.all = append(s.all, takeKey(z))
		}
		snapMu.Lock()
		snaps = append(snaps, s)
		snapMu.Unlock()
		snapWG.Add(1)
		time.AfterFunc(1500*time.Millisecond, func() {
			defer snapWG.Done()
			cmds, _ := rc.Pipelined(bg, func(p goredis.Pipeliner) error {
				for _, z := range zs {
					p.ZScore(bg, prefix+"unacked_index", z.Member.(string))
				}
				return nil
			})
			snapMu.Lock()
			defer snapMu.Unlock()
			for j, c := range cmds {
				if sc, err := c.(*goredis.FloatCmd).Result(); err == nil && sc == zs[j].Score {
					s.held = append(s.held, takeKey(zs[j]))
				}
			}
		})
	}
	pubWG.Wait()
	close(pubErrs)
	for err := range pubErrs {
		t.Fatalf("publish: %v", err)
	}
	killPhase := time.Since(began)

	// Quiesce: everything handled, nothing waiting, nothing unacked (what
	// the last killed consumers held comes back after the visibility
	// timeout).
	quiet := func() bool {
		return handled() == int64(n) &&
			rc.LLen(bg, prefix+queue).Val() == 0 &&
			rc.ZCard(bg, prefix+"unacked_index").Val() == 0 &&
			rc.HLen(bg, prefix+"unacked").Val() == 0
	}
	deadline := time.Now().Add(90 * time.Second)
	for !quiet() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for i, p := range procs {
		kill(p, syscall.SIGTERM)
		procs[i] = nil
	}
	snapWG.Wait()
	umu.Lock()
	if len(unexpected) > 0 {
		t.Errorf("%v\nconsumer logs:\n%s", unexpected, logs.Tail(8000))
	}
	umu.Unlock()

	counts, err := rc.HGetAll(bg, record).Result()
	if err != nil {
		t.Fatal(err)
	}
	allTakes, heldTakes, heldSet := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, s := range snaps {
		for _, k := range s.all {
			allTakes[k] = true
		}
		for _, k := range s.held {
			heldTakes[k] = true
			heldSet[k[:strings.IndexByte(k, ' ')]] = true
		}
	}
	inFlightAll, inFlightHeld := len(allTakes), len(heldTakes)
	lost, dups := 0, 0
	var badDups []string
	for i := 0; i < n; i++ {
		c, _ := strconv.Atoi(counts[tagOf(i)])
		if c == 0 {
			lost++
			continue
		}
		if c > 1 {
			dups += c - 1
			if !heldSet[tagOf(i)] {
				badDups = append(badDups, tagOf(i))
			}
		}
	}
	left := rc.LLen(bg, prefix+queue).Val() + rc.HLen(bg, prefix+"unacked").Val()
	addFault(t, faultRow{
		Fault:    "consumer SIGKILL (chaos)",
		Injected: fmt.Sprintf("%d kills of %d consumer processes over %v", kills, helpers, killPhase.Round(time.Second)),
		Sent:     n, Handled: len(counts), Lost: lost, Dups: dups,
		InFlight: fmt.Sprintf("%d held by the killed consumers (%d unacked records of all consumers at the kills)", inFlightHeld, inFlightAll),
		Notes:    fmt.Sprintf("seed %d", seed),
	})
	if lost > 0 {
		t.Errorf("%d of %d messages were never handled (queue+unacked left: %d)\nconsumer logs:\n%s", lost, n, left, logs.Tail(8000))
	}
	if left != 0 {
		t.Errorf("%d messages still waiting or unacked after quiescence", left)
	}
	if dups > inFlightHeld {
		t.Errorf("%d duplicates but only %d messages were in flight in the killed consumers", dups, inFlightHeld)
	}
	if len(badDups) > 0 {
		t.Errorf("%d duplicated messages were not in flight in a killed consumer: %v", len(badDups), badDups[:min(len(badDups), 10)])
	}
}

func tagOf(i int) string { return fmt.Sprintf("chaos-%07d", i) }

func takeKey(z goredis.Z) string {
	return z.Member.(string) + " " + strconv.FormatFloat(z.Score, 'f', -1, 64)
}
