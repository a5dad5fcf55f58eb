// Command bench is the Go side of `make bench`: it measures kombu-go with
// testing.Benchmark (every kombu-go figure is a testing.B measurement,
// with allocations per message as -benchmem reports them), runs
// redis-benchmark and Python Kombu (bench/kombu_bench.py, Debian's
// python3-kombu) on the same workloads against the same redis-server in
// the same run, and prints one Markdown table of msg/s with the ratios to
// raw Redis and to Kombu.
//
// Usage (scripts/bench.sh starts a private redis-server and calls this
// from the repository root):
//
//	go run ./bench -url redis://127.0.0.1:PORT/0 [-out bench/results] [-python /usr/bin/python3]
//
// Ratios are taken only between figures of one run. The target rows are
// measured -reps times, each time right after the raw Redis figure they
// are compared with, and the medians are used: the machine's noise hits
// both sides alike.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/envelope"
	_ "github.com/kombu-go/kombu/redis"
)

var (
	flagURL     = flag.String("url", "", "redis URL of the server to measure (required)")
	flagOut     = flag.String("out", "bench/results", "directory for the results file (empty: do not save)")
	flagPython  = flag.String("python", "/usr/bin/python3", "Python with Debian's python3-kombu (empty: skip Python)")
	flagReps    = flag.Int("reps", 3, "repetitions of the target rows (medians are used)")
	flagTime    = flag.Duration("benchtime", time.Second, "testing.B benchtime of each kombu-go measurement")
	flagQuick   = flag.Bool("quick", false, "one repetition, short runs, fewer rows (a smoke test of the harness)")
	flagGroups  = flag.String("groups", "targets,bodies,queues,clients,heap,celery,limits,pipeline,obs,cluster", "the groups of rows to measure, comma-separated (also: profile, which writes CPU profiles of the target workloads to -profile-dir)")
	flagProfDir = flag.String("profile-dir", "bench/profiles", "where the profile group writes its CPU profiles")
)

func main() {
	testing.Init()
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if *flagURL == "" {
		log.Fatal("-url is required")
	}
	u, err := url.Parse(*flagURL)
	if err != nil {
		log.Fatal(err)
	}
	r := &runner{url: *flagURL, host: u.Hostname(), port: u.Port(), ctx: context.Background()}
	if r.port == "" {
		r.port = "6379"
	}
	r.admin = goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, Protocol: 2})
	defer r.admin.Close()
	if err := r.admin.Ping(r.ctx).Err(); err != nil {
		log.Fatalf("redis: %v", err)
	}
	r.run()
}

type runner struct {
	url, host, port string
	ctx             context.Context
	admin           *goredis.Client
	rows            []*row
	notes           []string
	// observer, when set, is given to every connection dial opens (the
	// obs group's kombuprom rows).
	observer kombu.Observer
}

// row is one line of the table.
type row struct {
	group, name string
	goRate      float64 // msg/s, kombu-go (0: not measured)
	allocs      int64   // allocations per message
	bytes       int64   // bytes allocated per message
	rawName     string  // the redis-benchmark figure compared with
	rawRate     float64
	pyRate      float64 // Python Kombu msg/s (0: none)
	server      float64 // Redis CPU µs per message, kombu-go
	rawTarget   float64 // minimum kombu-go/raw (0: no target)
	pyTarget    float64 // minimum kombu-go/Python (0: no target)
	external    bool    // kombu-go ran in another process: no allocation figures
}

func (r *runner) add(x row) {
	r.rows = append(r.rows, &x)
	log.Printf("%-7s %-62s kombu-go %9.0f  raw %9.0f  python %6.0f", x.group, x.name, x.goRate, x.rawRate, x.pyRate)
}

func (r *runner) run() {
	start := time.Now()
	info, _ := r.admin.Info(r.ctx, "server").Result()
	redisVersion := infoField(info, "redis_version")
	log.Printf("redis-server %s, %d cores; envelope of a 100-byte body: %d bytes", redisVersion, runtime.NumCPU(), envSize(100))
	groups := map[string]func(){"targets": r.targets, "bodies": r.bodies, "queues": r.queues, "clients": r.concurrency, "heap": r.heap, "profile": r.profile, "celery": r.celery, "limits": r.limits, "pipeline": r.pipeline, "obs": r.obs, "cluster": r.cluster}
	for _, g := range strings.Split(*flagGroups, ",") {
		f, ok := groups[strings.TrimSpace(g)]
		if !ok {
			log.Fatalf("-groups: unknown group %q (targets, bodies, queues, clients, heap, celery, limits, pipeline, obs, cluster, profile)", g)
		}
		f()
	}
	table := r.table(redisVersion, time.Since(start))
	fmt.Print(table)
	if *flagOut != "" {
		if err := os.MkdirAll(*flagOut, 0o755); err != nil {
			log.Fatal(err)
		}
		name := fmt.Sprintf("%s-%dcores-redis-%s.md", time.Now().UTC().Format("2006-01-02T1504Z"), runtime.NumCPU(), redisVersion)
		path := filepath.Join(*flagOut, name)
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("saved %s", path)
	}
}

// --- workloads -------------------------------------------------------------

// body returns a JSON body of exactly size bytes as json.dumps writes it,
// {"data": "xxx"}: the body kombu_bench.py publishes.
func body(size int) map[string]any {
	return map[string]any{"data": strings.Repeat("x", max(0, size-12))}
}

// envSize is the size of the envelope kombu-go (and Kombu) writes for
// body(size) published to exchange "bench" with routing key "bench": the
// data size given to redis-benchmark.
func envSize(size int) int {
	env := &envelope.Envelope{
		Body:        []byte(`{"data": "` + strings.Repeat("x", max(0, size-12)) + `"}`),
		ContentType: "application/json", ContentEncoding: "utf-8", Headers: map[string]any{},
		Exchange: "bench", RoutingKey: "bench", DeliveryTag: uuid.NewString(),
	}
	raw, err := env.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	return len(raw)
}

// names returns n fresh queue names.
func names(n int) []string {
	prefix := "kgb-" + uuid.NewString()[:8] + "-"
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// dial opens a kombu-go connection with extra URL options.
func (r *runner) dial(opts string) *kombu.Connection {
	u := r.url
	if opts != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + opts
	}
	var opts2 []kombu.Option
	if r.observer != nil {
		opts2 = append(opts2, kombu.WithObserver(r.observer))
	}
	conn, err := kombu.Dial(r.ctx, u, opts2...)
	if err != nil {
		log.Fatal(err)
	}
	return conn
}

// fill publishes n messages of body(size), round robin over queues,
// through the default exchange with PublishBatch (not measured).
func (r *runner) fill(conn *kombu.Connection, queues []string, n, size int) {
	p := conn.Producer()
	b := body(size)
	chunk := max(1, min(500, (4<<20)/max(size, 1)))
	batch := make([]kombu.Outgoing, 0, chunk)
	for i := 0; i < n; i++ {
		batch = append(batch, kombu.Outgoing{Body: b, Options: []kombu.PublishOption{kombu.WithRoutingKey(queues[i%len(queues)])}})
		if len(batch) == chunk || i == n-1 {
			if _, err := p.PublishBatch(r.ctx, batch); err != nil {
				log.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// result is one testing.Benchmark measurement.
type result struct {
	rate          float64 // msg/s
	allocs, bytes int64   // per message
	server        float64 // Redis main-thread CPU µs per message (INFO cpu)
}

// measure runs f with testing.Benchmark for about d, or exactly n
// iterations if n > 0.
func measure(d time.Duration, n int, f func(b *testing.B)) result {
	bt := d.String()
	if n > 0 {
		bt = strconv.Itoa(n) + "x"
	}
	if err := flag.Set("test.benchtime", bt); err != nil {
		log.Fatal(err)
	}
	res := testing.Benchmark(f)
	if res.N == 0 || res.T <= 0 {
		log.Fatal("a benchmark failed (see above)")
	}
	return result{float64(res.N) / res.T.Seconds(), res.AllocsPerOp(), res.AllocedBytesPerOp(), lastServer}
}

// lastServer is the Redis CPU time per message of the last benchmark run
// (the one testing.Benchmark reports), set by serverStop.
var lastServer float64

// serverCPU0 is Redis's main-thread CPU time at serverStart.
var serverCPU0 float64

// serverCPU returns the CPU seconds (user + system) Redis's main thread has
// used: everything it did for the clients, commands, scripts and socket
// I/O alike (INFO commandstats would count a script's inner commands twice).
func (r *runner) serverCPU() float64 {
	info, err := r.admin.Info(r.ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, f := range []string{"used_cpu_user_main_thread", "used_cpu_sys_main_thread"} {
		v, _ := strconv.ParseFloat(infoField(info, f), 64)
		total += v
	}
	return total
}

// serverStart notes Redis's CPU time.
func (r *runner) serverStart() { serverCPU0 = r.serverCPU() }

// serverStop sets lastServer: Redis's main-thread CPU time since
// serverStart over n messages, in µs.
func (r *runner) serverStop(n int) {
	cpu := r.serverCPU()
	if n <= 0 || cpu == 0 {
		lastServer = 0
		return
	}
	lastServer = (cpu - serverCPU0) * 1e6 / float64(n)
}

// publishBench publishes b.N messages of body(size) from producers
// goroutines through a direct or topic exchange bound to one queue, on a
// connection of conns connections.
func (r *runner) publishBench(size, producers, conns int, typ kombu.ExchangeType) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial(fmt.Sprintf("max_connections=%d", conns))
		defer conn.Close()
		q := names(1)[0]
		ex := kombu.Exchange{Name: q + "-ex", Type: typ}
		key, rk := "bench", "bench"
		if typ == kombu.Topic {
			key, rk = "bench.#", "bench.one.two"
		}
		if err := conn.Bind(r.ctx, q, ex, key); err != nil {
			b.Fatal(err)
		}
		p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey(rk))
		bd := body(size)
		var next atomic.Int64
		var wg sync.WaitGroup
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for range producers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if _, err := p.Publish(r.ctx, bd); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		r.serverStop(b.N)
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// batchPublishBench publishes b.N messages of body(size) with
// PublishBatch, batch messages per call, from one goroutine on one
// connection, through a direct exchange.
func (r *runner) batchPublishBench(size, batch int) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial("max_connections=1")
		defer conn.Close()
		q := names(1)[0]
		ex := kombu.Exchange{Name: q + "-ex", Type: kombu.Direct}
		if err := conn.Bind(r.ctx, q, ex, "bench"); err != nil {
			b.Fatal(err)
		}
		p := conn.Producer(kombu.WithExchange(ex), kombu.WithRoutingKey("bench"))
		msgs := make([]kombu.Outgoing, batch)
		for i := range msgs {
			msgs[i].Body = body(size)
		}
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for done := 0; done < b.N; done += batch {
			if _, err := p.PublishBatch(r.ctx, msgs[:min(batch, b.N-done)]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		r.serverStop(b.N)
		_ = conn.DeleteQueue(r.ctx, q)
	}
}

// consumeCfg describes a consume workload.
type consumeCfg struct {
	size        int  // body bytes
	queues      int  // queues consumed, the messages spread round robin
	consumers   int  // Consume loops (each its own Consumer)
	concurrency int  // handlers per consumer
	prefetch    int  // 0: the default (4 × concurrency)
	batch       int  // 0: the default
	deferred    bool // WithDeferredAcks
	conns       int  // max_connections of the pool
}

// consumeBench fills b.N messages (not measured), then measures from the
// consumers' start until every message was handled and acked and the
// consumers stopped (so deferred acks are flushed inside the timing).
// peak, if not nil, receives the most server connections seen meanwhile
// beyond those open before.
func (r *runner) consumeBench(cfg consumeCfg, peak *int) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		conn := r.dial(fmt.Sprintf("max_connections=%d", cfg.conns))
		defer conn.Close()
		qs := names(cfg.queues)
		r.fill(conn, qs, b.N, cfg.size)
		queues := make([]kombu.Queue, len(qs))
		for i, q := range qs {
			queues[i] = kombu.Queue{Name: q}
		}
		opts := []kombu.ConsumerOption{kombu.WithoutDeclare(), kombu.WithConcurrency(max(1, cfg.concurrency))}
		if cfg.prefetch != 0 {
			opts = append(opts, kombu.WithPrefetch(cfg.prefetch))
		}
		if cfg.batch != 0 {
			opts = append(opts, kombu.WithBatchSize(cfg.batch))
		}
		if cfg.deferred {
			opts = append(opts, kombu.WithDeferredAcks(10*time.Millisecond))
		}
		consumers := max(1, cfg.consumers)
		var handled atomic.Int64
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(r.ctx)
		defer cancel()
		var stopWatch func() int
		if peak != nil {
			stopWatch = r.watchConnections()
		}
		errs := make(chan error, consumers)
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for range consumers {
			c := conn.Consumer(queues, opts...)
			go func() {
				errs <- c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
					if handled.Add(1) == int64(b.N) {
						close(done)
					}
					return nil
				})
			}()
		}
		<-done
		cancel()
		for range consumers {
			if err := <-errs; err != nil {
				b.Error(err)
			}
		}
		b.StopTimer()
		r.serverStop(b.N)
		if stopWatch != nil {
			*peak = max(*peak, stopWatch())
		}
		for _, q := range qs {
			_ = conn.DeleteQueue(r.ctx, q)
		}
	}
}

// watchConnections samples the server's connected clients until the
// returned function is called, which returns the peak above the count
// when watching started.
func (r *runner) watchConnections() func() int {
	base := r.clients()
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		p := 0
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				peak <- max(p, r.clients()-base)
				return
			case <-t.C:
				p = max(p, r.clients()-base)
			}
		}
	}()
	return func() int { close(stop); return <-peak }
}

func (r *runner) clients() int {
	info, err := r.admin.Info(r.ctx, "clients").Result()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(infoField(info, "connected_clients"))
	return n
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// goFloor measures go-redis alone: one LPUSH (or LPOP) of an envelope per
// message on one connection, the floor of any Go client of go-redis.
func (r *runner) goFloor(pop bool) func(b *testing.B) {
	return func(b *testing.B) {
		b.StopTimer()
		c := goredis.NewClient(&goredis.Options{Addr: r.host + ":" + r.port, Protocol: 2, PoolSize: 1, MaxRetries: -1})
		defer c.Close()
		key := names(1)[0]
		v := strings.Repeat("x", envSize(100))
		if pop {
			for done := 0; done < b.N; done += 1000 {
				vals := make([]any, min(1000, b.N-done))
				for i := range vals {
					vals[i] = v
				}
				c.LPush(r.ctx, key, vals...)
			}
		}
		r.serverStart()
		b.ReportAllocs()
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			var err error
			if pop {
				err = c.RPop(r.ctx, key).Err()
			} else {
				err = c.LPush(r.ctx, key, v).Err()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		r.serverStop(b.N)
		c.Del(r.ctx, key)
	}
}

// --- redis-benchmark and Python -------------------------------------------

// raw runs redis-benchmark's LPUSH then LPOP tests (-t lpush,lpop: one
// list, values of size bytes) and returns their rates (requests/s, one
// message each).
func (r *runner) raw(size, clients, pipeline, n int) (push, pop float64) {
	args := []string{"-h", r.host, "-p", r.port, "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n),
		"-d", strconv.Itoa(size), "-P", strconv.Itoa(pipeline), "-t", "lpush,lpop", "--csv"}
	r.admin.Del(r.ctx, "mylist")
	out, err := exec.Command("redis-benchmark", args...).Output()
	if err != nil {
		log.Fatalf("redis-benchmark %v: %v", args, err)
	}
	r.admin.Del(r.ctx, "mylist")
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		log.Fatalf("redis-benchmark output %q: %v", out, err)
	}
	for _, rec := range recs {
		if len(rec) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil {
			continue
		}
		switch rec[0] {
		case "LPUSH":
			push = v
		case "LPOP":
			pop = v
		}
	}
	if push == 0 || pop == 0 {
		log.Fatalf("redis-benchmark: no LPUSH/LPOP rates in %q", out)
	}
	return push, pop
}

// python runs bench/kombu_bench.py: n messages of body(size) published
// through a direct exchange, then consumed with acks (prefetch 1).
func (r *runner) python(n, size int) (publish, consume float64) {
	if *flagPython == "" {
		return 0, 0
	}
	cmd := exec.Command(*flagPython, "-I", "bench/kombu_bench.py", r.url, strconv.Itoa(n), strconv.Itoa(size), "kgb-py-"+uuid.NewString()[:8]+".")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		log.Printf("Python Kombu: %v (its figures are left out)", err)
		return 0, 0
	}
	var res struct {
		Publish    float64 `json:"publish"`
		ConsumeAck float64 `json:"consume_ack"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		log.Printf("Python Kombu: output %q: %v", out, err)
	}
	return res.Publish, res.ConsumeAck
}

// --- the rows --------------------------------------------------------------

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// pair collects repeated measurements of a kombu-go figure and the raw
// figure it is compared with.
type pair struct {
	goRates, rawRates []float64
	last              result
}

func (p *pair) addGo(res result) { p.goRates = append(p.goRates, res.rate); p.last = res }
func (p *pair) addRaw(v float64) { p.rawRates = append(p.rawRates, v) }

func (p *pair) row(x row) row {
	x.goRate, x.rawRate = median(p.goRates), median(p.rawRates)
	x.allocs, x.bytes, x.server = p.last.allocs, p.last.bytes, p.last.server
	return x
}

func (r *runner) benchtime() time.Duration {
	if *flagQuick {
		return 300 * time.Millisecond
	}
	return *flagTime
}

// targets measures the rows the issue sets targets for, 100-byte bodies.
func (r *runner) targets() {
	d := r.benchtime()
	reps, n := max(1, *flagReps), 50000
	if *flagQuick {
		reps, n = 1, 10000
	}
	es := envSize(100)
	var pub, pubTopic, con, con64, con64d, bpub, bcon, bconH, floorPush, floorPop pair
	one := func(cfg consumeCfg) consumeCfg {
		cfg.size, cfg.queues, cfg.conns = 100, 1, max(cfg.conns, 1)
		return cfg
	}
	for range reps {
		push, pop := r.raw(es, 1, 1, n)
		for _, p := range []*pair{&pub, &pubTopic, &floorPush} {
			p.addRaw(push)
		}
		for _, p := range []*pair{&con, &con64, &con64d, &floorPop} {
			p.addRaw(pop)
		}
		pub.addGo(measure(d, 0, r.publishBench(100, 1, 1, kombu.Direct)))
		pubTopic.addGo(measure(d, 0, r.publishBench(100, 1, 1, kombu.Topic)))
		floorPush.addGo(measure(d, 0, r.goFloor(false)))
		con.addGo(measure(d, 0, r.consumeBench(one(consumeCfg{concurrency: 1}), nil)))
		con64.addGo(measure(d, 0, r.consumeBench(one(consumeCfg{concurrency: 1, prefetch: 64}), nil)))
		con64d.addGo(measure(d, 0, r.consumeBench(one(consumeCfg{concurrency: 1, prefetch: 64, deferred: true}), nil)))
		floorPop.addGo(measure(d, 0, r.goFloor(true)))

		push, pop = r.raw(es, 50, 64, 20*n)
		bpub.addRaw(push)
		bcon.addRaw(pop)
		bconH.addRaw(pop)
		bpub.addGo(measure(d, 0, r.batchPublishBench(100, 100)))
		bcon.addGo(measure(d, 0, r.consumeBench(one(consumeCfg{concurrency: 1, prefetch: 1000, batch: 256, deferred: true}), nil)))
		bconH.addGo(measure(d, 0, r.consumeBench(one(consumeCfg{concurrency: 64, prefetch: 1000, batch: 256, conns: 4}), nil)))
	}
	pushP1, popP1 := r.raw(es, 1, 64, 10*n)
	pyN := 3000
	if *flagQuick {
		pyN = 500
	}
	pyPub, pyCon := r.python(pyN, 100)
	r.add(pub.row(row{group: "target", name: "publish, direct exchange, 1 goroutine, 1 connection", rawName: "LPUSH -c 1", pyRate: pyPub, rawTarget: 0.8, pyTarget: 5}))
	r.add(pubTopic.row(row{group: "target", name: "publish, topic exchange, 1 goroutine, 1 connection", rawName: "LPUSH -c 1", pyRate: pyPub, rawTarget: 0.8, pyTarget: 5}))
	r.add(con.row(row{group: "target", name: "consume + ack, 1 consumer, 1 connection, defaults (prefetch 4, acks awaited)", rawName: "LPOP -c 1", pyRate: pyCon, rawTarget: 0.5, pyTarget: 5}))
	r.add(con64.row(row{group: "target", name: "consume + ack, 1 consumer, 1 connection, prefetch 64, acks awaited", rawName: "LPOP -c 1", pyRate: pyCon, rawTarget: 0.5, pyTarget: 5}))
	r.add(con64d.row(row{group: "target", name: "consume + ack, 1 consumer, 1 connection, prefetch 64, deferred acks", rawName: "LPOP -c 1", pyRate: pyCon, rawTarget: 0.5, pyTarget: 5}))
	r.add(bpub.row(row{group: "target", name: "PublishBatch of 100, 1 goroutine, 1 connection", rawName: "LPUSH -c 50 -P 64", pyRate: pyPub, rawTarget: 0.3, pyTarget: 5}))
	r.add(bcon.row(row{group: "target", name: "consume + ack, prefetch 1000, batches of 256, deferred acks, 1 connection", rawName: "LPOP -c 50 -P 64", pyRate: pyCon, rawTarget: 0.3, pyTarget: 5}))
	r.add(bconH.row(row{group: "target", name: "consume + ack, prefetch 1000, batches of 256, 64 handlers, acks awaited, 4 connections", rawName: "LPOP -c 50 -P 64", pyRate: pyCon, rawTarget: 0.3, pyTarget: 5}))
	r.add(floorPush.row(row{group: "floor", name: "go-redis alone: LPUSH of a 426-byte value, 1 connection", rawName: "LPUSH -c 1"}))
	r.add(floorPop.row(row{group: "floor", name: "go-redis alone: RPOP, 1 connection", rawName: "LPOP -c 1"}))
	r.add(row{group: "raw", name: "redis-benchmark LPUSH, 1 client pipelining 64", rawName: "LPUSH -c 1 -P 64", rawRate: pushP1})
	r.add(row{group: "raw", name: "redis-benchmark LPOP, 1 client pipelining 64", rawName: "LPOP -c 1 -P 64", rawRate: popP1})
}

// profile writes a CPU profile of the kombu-go side of each target workload
// to *flagProfDir (go tool pprof -top FILE reads it), and adds the rows.
func (r *runner) profile() {
	if err := os.MkdirAll(*flagProfDir, 0o755); err != nil {
		log.Fatal(err)
	}
	one := consumeCfg{size: 100, queues: 1, conns: 1, concurrency: 1}
	batched := one
	batched.prefetch, batched.batch, batched.deferred = 1000, 256, true
	for _, w := range []struct {
		file, name string
		f          func(b *testing.B)
	}{
		{"publish-direct", "publish, direct exchange, 1 goroutine, 1 connection", r.publishBench(100, 1, 1, kombu.Direct)},
		{"publish-topic", "publish, topic exchange, 1 goroutine, 1 connection", r.publishBench(100, 1, 1, kombu.Topic)},
		{"consume-default", "consume + ack, 1 consumer, 1 connection, defaults (prefetch 4, acks awaited)", r.consumeBench(one, nil)},
		{"consume-batched", "consume + ack, prefetch 1000, batches of 256, deferred acks, 1 connection", r.consumeBench(batched, nil)},
		{"floor-lpush", "go-redis alone: LPUSH of a 426-byte value, 1 connection", r.goFloor(false)},
		{"publish-shared-64", "publish, direct exchange, 64 goroutines, 1 Connection (auto-pipelined)", r.sharedPublishBench("", 64)},
	} {
		path := filepath.Join(*flagProfDir, w.file+".pprof")
		f, err := os.Create(path)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		res := measure(r.benchtime(), 0, w.f)
		pprof.StopCPUProfile()
		f.Close()
		r.add(row{group: "profile", name: w.name + " (profiled: " + path + ")", goRate: res.rate, allocs: res.allocs, bytes: res.bytes, server: res.server})
	}
}

// bodies: publish and consume with acks of 10 KB and 1 MB bodies.
func (r *runner) bodies() {
	d := r.benchtime()
	for _, c := range []struct {
		size, n, goN, pyN int
		label             string
	}{{10 << 10, 20000, 0, 1000, "10 KB"}, {1 << 20, 200, 100, 30, "1 MB"}} {
		if *flagQuick && c.size > 10<<10 {
			c.n, c.goN, c.pyN = 50, 20, 5
		}
		es := envSize(c.size)
		push, pop := r.raw(es, 1, 1, c.n)
		pubRes := measure(d, c.goN, r.publishBench(c.size, 1, 1, kombu.Direct))
		conRes := measure(d, c.goN, r.consumeBench(consumeCfg{size: c.size, queues: 1, concurrency: 1, conns: 1}, nil))
		pyPub, pyCon := r.python(c.pyN, c.size)
		target := 0.0
		if c.size == 1<<20 {
			target = 0.5 // the goal of issue #15 for 1 MB bodies, both ways
		}
		r.add(row{group: "body", name: "publish, direct exchange, " + c.label + " body", goRate: pubRes.rate, allocs: pubRes.allocs, bytes: pubRes.bytes, server: pubRes.server,
			rawName: fmt.Sprintf("LPUSH -c 1 -d %d", es), rawRate: push, pyRate: pyPub, rawTarget: target})
		r.add(row{group: "body", name: "consume + ack, prefetch 4, " + c.label + " body", goRate: conRes.rate, allocs: conRes.allocs, bytes: conRes.bytes, server: conRes.server,
			rawName: fmt.Sprintf("LPOP -c 1 -d %d", es), rawRate: pop, pyRate: pyCon, rawTarget: target})
	}
}

// queues: one consumer of 100 and 1,000 queues, messages spread evenly.
func (r *runner) queues() {
	d := r.benchtime()
	es := envSize(100)
	_, pop := r.raw(es, 1, 1, 20000)
	for _, nq := range []int{100, 1000} {
		peak := 0
		res := measure(d, 0, r.consumeBench(consumeCfg{size: 100, queues: nq, concurrency: 1, conns: 10}, &peak))
		target := 0.0
		if nq == 1000 {
			target = 0.5 // the goal of issue #15
		}
		r.add(row{group: "queues", name: fmt.Sprintf("consume + ack, 1 consumer of %d queues, prefetch 4", nq), goRate: res.rate,
			allocs: res.allocs, bytes: res.bytes, server: res.server, rawName: "LPOP -c 1 (one list)", rawRate: pop, rawTarget: target})
		r.notes = append(r.notes, fmt.Sprintf("One consumer of %d queues: at most %d Redis connections open at once beyond those before it started "+
			"(bound: max_connections of the pool, 10 here, plus wait_connections, 16 by default, for the blocking waits).", nq, peak))
	}
}

// concurrency: N producers (N connections) and N consumers.
func (r *runner) concurrency() {
	d := r.benchtime()
	es := envSize(100)
	levels := []int{4, 16, 64}
	if *flagQuick {
		levels = []int{4}
	}
	for _, n := range levels {
		push, pop := r.raw(es, n, 1, 50000)
		pubRes := measure(d, 0, r.publishBench(100, n, n, kombu.Direct))
		conRes := measure(d, 0, r.consumeBench(consumeCfg{size: 100, queues: 1, consumers: n, concurrency: 1, conns: 2 * n}, nil))
		r.add(row{group: "clients", name: fmt.Sprintf("publish, %d goroutines, %d connections", n, n), goRate: pubRes.rate,
			allocs: pubRes.allocs, bytes: pubRes.bytes, server: pubRes.server, rawName: fmt.Sprintf("LPUSH -c %d", n), rawRate: push})
		r.add(row{group: "clients", name: fmt.Sprintf("consume + ack, %d consumers, prefetch 4 each", n), goRate: conRes.rate,
			allocs: conRes.allocs, bytes: conRes.bytes, server: conRes.server, rawName: fmt.Sprintf("LPOP -c %d", n), rawRate: pop})
	}
}

// heap measures the Go heap of a consumer holding 10,000 prefetched,
// unacked messages of 100-byte bodies.
func (r *runner) heap() {
	const n = 10000
	conn := r.dial("")
	defer conn.Close()
	q := names(1)[0]
	r.fill(conn, []string{q}, n, 100)
	var got atomic.Int64
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(r.ctx)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	errc := make(chan error, 1)
	c := conn.Consumer([]kombu.Queue{{Name: q}}, kombu.WithoutDeclare(), kombu.WithPrefetch(n), kombu.WithManualAck())
	var kept sync.Map // the handler keeps what it got, so none is freed
	go func() {
		errc <- c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
			kept.Store(m, true)
			got.Add(1)
			<-release
			return nil
		})
	}()
	// The consumer takes messages until its prefetch is full (the last
	// fetch may stop up to a batch short of it); it then holds one in its
	// handler and the rest in its prefetch buffer.
	deadline := time.Now().Add(time.Minute)
	left, stable := int64(n), 0
	for stable < 10 {
		l, err := conn.Len(r.ctx, q)
		if err != nil {
			log.Fatal(err)
		}
		if l == left && got.Load() == 1 {
			stable++
		} else {
			stable = 0
		}
		left = l
		if time.Now().After(deadline) {
			log.Fatalf("heap: the consumer did not settle (%d left, %d handled)", l, got.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	held := int64(n) - left
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	close(release)
	cancel()
	<-errc
	_ = conn.DeleteQueue(r.ctx, q)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	r.notes = append(r.notes, fmt.Sprintf("Heap of a consumer with prefetch %d holding %d prefetched, unacked messages (100-byte bodies, %d-byte envelopes): "+
		"%.1f MB, %d bytes per message (runtime.MemStats.HeapAlloc after GC, minus before the consumer started).",
		n, held, envSize(100), float64(grown)/(1<<20), grown/max(held, 1)))
}

// --- output ----------------------------------------------------------------

func rate(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func (r *runner) table(redisVersion string, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## kombu-go throughput\n\n")
	fmt.Fprintf(&b, "Measured %s on %d cores (%s/%s, %s), one redis-server %s on loopback (--save '' --appendonly no), "+
		"in one run of `make bench` (%s). kombu-go figures are testing.B measurements (allocations per message as -benchmem reports them); "+
		"raw figures are redis-benchmark `--csv` with `-d` equal to the envelope size of the row's body (%d bytes for 100-byte bodies); "+
		"Python figures are Debian's python3-kombu running bench/kombu_bench.py (publish through a direct exchange; consume with acks, prefetch 1), "+
		"in the celery group Debian's python3-celery running bench/celery_bench.py (apply_async; a Celery worker with the pool named). "+
		"Target rows: median of %d runs, each right after its raw figure. Redis µs/msg: CPU time of Redis's main thread (INFO cpu, user + system) per message, socket I/O included.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version(), redisVersion,
		took.Round(time.Second), envSize(100), max(1, *flagReps))
	b.WriteString("| group | workload | kombu-go msg/s | raw Redis | raw msg/s | kombu-go / raw | Python msg/s | kombu-go / Python | allocs/msg | B/msg | Redis µs/msg | target |\n")
	b.WriteString("|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, x := range r.rows {
		target := ""
		if x.rawTarget > 0 {
			ok := x.goRate >= x.rawTarget*x.rawRate
			target = fmt.Sprintf("≥ %.1f× raw: %s", x.rawTarget, yes(ok))
		}
		if x.pyTarget > 0 && x.pyRate > 0 {
			ok := x.goRate >= x.pyTarget*x.pyRate
			if target != "" {
				target += "; "
			}
			target += fmt.Sprintf("≥ %.0f× Python: %s", x.pyTarget, yes(ok))
		}
		allocs, by, srv := "–", "–", "–"
		if x.goRate > 0 {
			if !x.external {
				allocs, by = strconv.FormatInt(x.allocs, 10), strconv.FormatInt(x.bytes, 10)
			}
			srv = fmt.Sprintf("%.1f", x.server)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.group, x.name, rate(x.goRate), cmp.Or(x.rawName, "–"),
			rate(x.rawRate), ratio(x.goRate, x.rawRate), rate(x.pyRate), ratio(x.goRate, x.pyRate), allocs, by, srv, target)
	}
	b.WriteString("\n")
	for _, n := range r.notes {
		b.WriteString("- " + n + "\n")
	}
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
