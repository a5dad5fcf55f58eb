package celery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The worker's bookkeeping that remote control reads and changes, as
// celery/worker/state.py keeps it: revoked ids, the requests reserved
// (prefetched) and active (running), per-task totals, and the Lamport clock
// (kombu.clocks.LamportClock).

// Revoked-set limits, as Celery's REVOKES_MAX and REVOKE_EXPIRES.
const (
	RevokesMax    = 50000
	RevokeExpires = 3 * time.Hour
)

// ErrTerminated is the cause a task handler's context is cancelled with
// when an operator revokes the running task with terminate=True
// (`celery control revoke --terminate`). The task is stored as REVOKED
// ("terminated"), as Celery stores it.
var ErrTerminated = errors.New("celery: task terminated by remote control (revoke --terminate)")

// revokedSet is Celery's LimitedSet of revoked ids: at most RevokesMax,
// each kept RevokeExpires.
type revokedSet struct {
	mu   sync.Mutex
	ids  map[string]time.Time
	max  int
	keep time.Duration
}

func newRevokedSet() *revokedSet {
	return &revokedSet{ids: map[string]time.Time{}, max: RevokesMax, keep: RevokeExpires}
}

func (s *revokedSet) add(now time.Time, ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.ids[id] = now
	}
	s.purgeLocked(now)
}

// update merges a {id: timestamp} map (mingle's revoked data).
func (s *revokedSet) update(data map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range data {
		ts, ok := toFloat(v)
		t := time.Now()
		if ok {
			t = time.Unix(0, int64(ts*float64(time.Second)))
		}
		if cur, has := s.ids[id]; !has || t.After(cur) {
			s.ids[id] = t
		}
	}
	s.purgeLocked(time.Now())
}

func (s *revokedSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.ids[id]
	if ok && s.keep > 0 && time.Since(t) > s.keep {
		delete(s.ids, id)
		return false
	}
	return ok
}

func (s *revokedSet) purgeLocked(now time.Time) {
	if s.keep > 0 {
		for id, t := range s.ids {
			if now.Sub(t) > s.keep {
				delete(s.ids, id)
			}
		}
	}
	if len(s.ids) <= s.max {
		return
	}
	type e struct {
		id string
		t  time.Time
	}
	all := make([]e, 0, len(s.ids))
	for id, t := range s.ids {
		all = append(all, e{id, t})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
	for _, x := range all[:len(all)-s.max] {
		delete(s.ids, x.id)
	}
}

// list returns the revoked ids, oldest first.
func (s *revokedSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(time.Now())
	out := make([]string, 0, len(s.ids))
	for id := range s.ids {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return s.ids[out[i]].Before(s.ids[out[j]]) })
	return out
}

// data is LimitedSet._data as mingle sends it: {id: unix time}.
func (s *revokedSet) data() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(time.Now())
	out := make(map[string]any, len(s.ids))
	for id, t := range s.ids {
		out[id] = float64(t.UnixNano()) / 1e9
	}
	return out
}

// lamport is kombu's LamportClock.
type lamport struct{ v atomic.Int64 }

func (c *lamport) forward() int64 { return c.v.Add(1) }

func (c *lamport) adjust(other int64) int64 {
	for {
		cur := c.v.Load()
		next := max(cur, other) + 1
		if c.v.CompareAndSwap(cur, next) {
			return next
		}
	}
}

// workerState is what the worker tracks for inspect and revoke.
type workerState struct {
	started  time.Time
	revoked  *revokedSet
	clock    lamport
	mu       sync.Mutex
	reserved map[string]*request // received, waiting for a pool slot or running
	active   map[string]*activeTask
	total    map[string]int
	// processed counts the tasks started (Celery's all_total_count).
	processed int
	// hardTimeouts counts tasks stopped by their hard time limit.
	hardTimeouts int
	// memSamples are the RSS samples memsample took, for memdump.
	memSamples []string
	// stamps are the stamps revoked by revoke_by_stamped_headers.
	stamps revokedStamps
}

// memSample is the memsample command (celery.utils.debug.sample_mem): the
// process's resident set size, humanized, kept for memdump.
func (s *workerState) memSample() any {
	rss, ok := residentBytes()
	if !ok {
		return nil // as Celery without psutil
	}
	h := humanBytes(rss)
	s.mu.Lock()
	s.memSamples = append(s.memSamples, h)
	s.mu.Unlock()
	return h
}

// memDump is the memdump command (celery.utils.debug.memdump): up to
// samples of the memsample values (10 by default), then the RSS after a
// garbage collection.
func (s *workerState) memDump(samples any) any {
	n, given := toInt(samples)
	if !given || n <= 0 {
		n = 10
	}
	s.mu.Lock()
	prev := s.memSamples
	s.memSamples = nil
	s.mu.Unlock()
	if len(prev) > n { // every len/n-th, as celery.utils.debug.sample
		step, picked := len(prev)/n, make([]string, 0, n)
		for i := 0; i < n; i++ {
			picked = append(picked, prev[i*step])
		}
		prev = picked
	}
	runtime.GC()
	rss, ok := residentBytes()
	if !ok {
		return "- rss: (psutil not installed).\n"
	}
	var b strings.Builder
	if len(prev) > 0 {
		b.WriteString("- rss (sample):\n")
		for _, m := range prev {
			fmt.Fprintf(&b, "-    > %s,\n", m)
		}
	}
	fmt.Fprintf(&b, "- rss (end): %s.\n", humanBytes(rss))
	return b.String()
}

// residentBytes is the process's resident set size (from /proc).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// humanBytes is celery.utils.debug.humanbytes: "12.5MB", "512b".
func humanBytes(n int64) string {
	f := float64(n)
	for _, u := range []struct {
		div  float64
		unit string
	}{{1 << 40, "TB"}, {1 << 30, "GB"}, {1 << 20, "MB"}, {1 << 10, "KB"}} {
		if f >= u.div {
			v := f / u.div
			if v == float64(int64(v)) {
				return strconv.FormatInt(int64(v), 10) + u.unit
			}
			return strconv.FormatFloat(v, 'g', 5, 64) + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + "b"
}

func (s *workerState) countHardTimeout() {
	s.mu.Lock()
	s.hardTimeouts++
	s.mu.Unlock()
}

type activeTask struct {
	req       *request
	started   time.Time
	terminate context.CancelCauseFunc
}

func newWorkerState() *workerState {
	return &workerState{started: time.Now(), revoked: newRevokedSet(),
		reserved: map[string]*request{}, active: map[string]*activeTask{}, total: map[string]int{}}
}

func (s *workerState) reserve(r *request) {
	if r.tm == nil {
		return
	}
	s.mu.Lock()
	s.reserved[r.tm.ID] = r
	s.mu.Unlock()
}

// start moves a request to the active set; the returned context is
// cancelled with ErrTerminated by a revoke with terminate.
func (s *workerState) start(ctx context.Context, r *request) (context.Context, func()) {
	cctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	s.active[r.tm.ID] = &activeTask{req: r, started: time.Now(), terminate: cancel}
	s.processed++
	s.mu.Unlock()
	return cctx, func() {
		cancel(nil)
		s.mu.Lock()
		delete(s.active, r.tm.ID)
		delete(s.reserved, r.tm.ID)
		s.total[r.tm.Task]++
		s.mu.Unlock()
	}
}

func (s *workerState) release(r *request) {
	if r.tm == nil {
		return
	}
	s.mu.Lock()
	delete(s.reserved, r.tm.ID)
	s.mu.Unlock()
}

// terminate cancels the running tasks among ids and returns their ids.
func (s *workerState) terminate(ids []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []string
	for _, id := range ids {
		if a, ok := s.active[id]; ok {
			a.terminate(ErrTerminated)
			done = append(done, id)
		}
	}
	return done
}
