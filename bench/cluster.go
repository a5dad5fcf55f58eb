package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
)

// The cluster group (issue 16): throughput and Redis CPU per message of a
// steady produce + consume + ack workload over 12 queues on Redis Clusters
// of 1, 2 and 3 masters (no replicas), started by the bench itself, with
// each master's share of the Redis CPU (INFO cpu of each master). This
// machine may have 2 cores: the measure of scaling is how evenly the Redis
// work splits over the masters, not wall-clock speed-up.
//
// Each layout is a row per cluster size. The compatible layout (hash_tag,
// Kombu PR 2204) puts every key in one slot, so one master does all the
// work by design. The sharded layout (cluster_layout=sharded, queues
// spread over the masters) is measured when the redis package accepts the
// option; until then its rows say "not implemented".

// clusterLayout is one key layout measured by the cluster group.
type clusterLayout struct {
	name, opts, note string
}

var clusterLayouts = []clusterLayout{
	{"compatible", "hash_tag=kombu", "one slot: every key on one master, by design"},
	{"sharded", "cluster_layout=sharded", "queues spread over the masters"},
}

const (
	clusterQueues    = 12
	clusterProducers = 4
	clusterConsumers = 4
)

func (r *runner) cluster() {
	n := 20000
	if *flagQuick {
		n = 4000
	}
	// The same workload on the single redis-server of -url, for reference.
	conn := r.dial("")
	res, _ := r.clusterWorkload(conn, func() []float64 { return []float64{r.serverCPU()} }, n)
	conn.Close()
	r.add(row{group: "cluster", name: "reference: one redis-server (redis://), no cluster", goRate: res.rate, server: res.server, allocs: res.allocs, bytes: res.bytes})
	for _, masters := range []int{1, 2, 3} {
		c := startBenchCluster(masters)
		for _, l := range clusterLayouts {
			r.clusterRow(c, l, n)
		}
		c.stop()
	}
	r.notes = append(r.notes, fmt.Sprintf("Cluster rows: a local Redis Cluster of 1, 2 or 3 masters without replicas (one redis-server each, cluster mode, slots split evenly; "+
		"the reference row runs on the -url server instead). Each row: %d queues, %d producers (Publish through the default exchange, round robin over the queues) and %d consumers (each consuming every queue, prefetch 4, acks awaited) running together; "+
		"msg/s counts messages published, consumed and acked; Redis µs/msg sums every master's main-thread CPU; the split is each master's share of it. "+
		"allocs/msg and B/msg are of producers and consumers together.", clusterQueues, clusterProducers, clusterConsumers))
}

// clusterRow measures one layout on cluster c with n messages and adds its
// row (or a "not implemented" row when Dial refuses the layout's option).
func (r *runner) clusterRow(c *benchCluster, l clusterLayout, n int) {
	name := fmt.Sprintf("%s layout, %d master%s", l.name, len(c.ports), plural(len(c.ports)))
	conn, err := kombu.Dial(r.ctx, c.url()+"?"+l.opts)
	if err != nil {
		if l.name == "compatible" {
			log.Fatalf("cluster: %v", err)
		}
		r.add(row{group: "cluster", name: name + ": not implemented (Dial refuses " + l.opts + ")"})
		return
	}
	defer conn.Close()
	res, shares := r.clusterWorkload(conn, c.cpu, n)
	r.add(row{group: "cluster", name: fmt.Sprintf("%s; Redis CPU split %s (%s)", name, shares, l.note),
		goRate: res.rate, server: res.server, allocs: res.allocs, bytes: res.bytes})
}

// clusterWorkload runs the cluster group's workload of n messages on conn
// and returns its figures and the split of the Redis CPU over the nodes
// cpu reports (each node's main-thread CPU seconds).
func (r *runner) clusterWorkload(conn *kombu.Connection, cpu func() []float64, n int) (result, string) {
	qs := names(clusterQueues)
	queues := make([]kombu.Queue, len(qs))
	for i, q := range qs {
		queues[i] = kombu.Queue{Name: q}
	}
	bd := body(100)

	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	var handled atomic.Int64
	done := make(chan struct{})
	consErrs := make(chan error, clusterConsumers)
	pubErrs := make(chan error, clusterProducers)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu0 := cpu()
	start := time.Now()
	for range clusterConsumers {
		cons := conn.Consumer(queues, kombu.WithoutDeclare())
		go func() {
			consErrs <- cons.Consume(ctx, func(context.Context, *kombu.Message) error {
				if handled.Add(1) == int64(n) {
					close(done)
				}
				return nil
			})
		}()
	}
	p := conn.Producer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range clusterProducers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if _, err := p.Publish(r.ctx, bd, kombu.WithRoutingKey(qs[int(i)%len(qs)])); err != nil {
					pubErrs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case err := <-pubErrs:
		log.Fatalf("cluster: publish: %v", err)
	case err := <-consErrs:
		log.Fatalf("cluster: consume: %v", err)
	case <-time.After(2 * time.Minute):
		log.Fatalf("cluster: %d of %d messages handled after 2 minutes", handled.Load(), n)
	}
	cancel()
	for range clusterConsumers {
		if err := <-consErrs; err != nil {
			log.Fatalf("cluster: consume: %v", err)
		}
	}
	took := time.Since(start)
	cpu1 := cpu()
	runtime.ReadMemStats(&ms1)
	for _, q := range qs {
		_ = conn.DeleteQueue(r.ctx, q)
	}

	total := 0.0
	for i := range cpu0 {
		total += cpu1[i] - cpu0[i]
	}
	shares := make([]string, len(cpu0))
	for i := range cpu0 {
		shares[i] = fmt.Sprintf("%.0f%%", 100*(cpu1[i]-cpu0[i])/max(total, 1e-9))
	}
	return result{rate: float64(n) / took.Seconds(), server: total * 1e6 / float64(n),
		allocs: int64(ms1.Mallocs-ms0.Mallocs) / int64(n), bytes: int64(ms1.TotalAlloc-ms0.TotalAlloc) / int64(n)}, strings.Join(shares, " / ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// benchCluster is a local Redis Cluster of masters only, each slot range
// assigned by hand (redis-cli --cluster create wants at least 3 masters).
type benchCluster struct {
	dir    string
	ports  []int
	procs  []*exec.Cmd
	admins []*goredis.Client
}

// startBenchCluster starts n redis-server processes in cluster mode on
// free loopback ports (each with its bus port, port+10000, free), gives
// node i the i-th of n even slot ranges, joins them with CLUSTER MEET and
// waits until every node reports cluster_state:ok.
func startBenchCluster(n int) *benchCluster {
	dir, err := os.MkdirTemp("", "kombu-bench-cluster-")
	if err != nil {
		log.Fatal(err)
	}
	c := &benchCluster{dir: dir}
	ctx := context.Background()
	for _, p := range benchClusterPorts(n) {
		ps := strconv.Itoa(p)
		cmd := exec.Command("redis-server", "--port", ps, "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+ps+".conf", "--cluster-node-timeout", "2000",
			"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis-"+ps+".log"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			c.stop()
			log.Fatalf("cluster: start redis-server: %v", err)
		}
		c.ports = append(c.ports, p)
		c.procs = append(c.procs, cmd)
		c.admins = append(c.admins, goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + ps, Protocol: 2, MaxRetries: -1}))
	}
	c.waitFor(10*time.Second, "PING", func(a *goredis.Client) bool { return a.Ping(ctx).Err() == nil })
	for i, a := range c.admins {
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := a.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			c.stop()
			log.Fatalf("cluster: addslots %d-%d: %v", lo, hi, err)
		}
		if i > 0 {
			if err := c.admins[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(c.ports[i])).Err(); err != nil {
				c.stop()
				log.Fatalf("cluster: meet: %v", err)
			}
		}
	}
	c.waitFor(30*time.Second, "cluster_state:ok", func(a *goredis.Client) bool {
		info, err := a.ClusterInfo(ctx).Result()
		return err == nil && infoField(info, "cluster_state") == "ok" &&
			infoField(info, "cluster_known_nodes") == strconv.Itoa(n) && infoField(info, "cluster_slots_ok") == "16384"
	})
	return c
}

// benchClusterPorts picks n ports below 55536 whose bus ports are free too.
func benchClusterPorts(n int) []int {
	free := func(p int) bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		_ = l.Close()
		return true
	}
	seen := map[int]bool{}
	var out []int
	for tries := 0; len(out) < n && tries < 10000; tries++ {
		p := 20000 + rand.IntN(35535)
		if !seen[p] && !seen[p+10000] && !seen[p-10000] && free(p) && free(p+10000) {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) < n {
		log.Fatalf("cluster: found only %d free port pairs", len(out))
	}
	return out
}

// waitFor waits until ok holds for every node.
func (c *benchCluster) waitFor(d time.Duration, what string, ok func(*goredis.Client) bool) {
	deadline := time.Now().Add(d)
	for _, a := range c.admins {
		for !ok(a) {
			if time.Now().After(deadline) {
				c.stop()
				log.Fatalf("cluster: node %s: no %s within %v", a.Options().Addr, what, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// url returns rediscluster://host:port,... naming every node.
func (c *benchCluster) url() string {
	addrs := make([]string, len(c.ports))
	for i, p := range c.ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return "rediscluster://" + strings.Join(addrs, ",")
}

// cpu returns each master's main-thread CPU seconds (INFO cpu, user +
// system), in the order of c.ports.
func (c *benchCluster) cpu() []float64 {
	out := make([]float64, len(c.admins))
	for i, a := range c.admins {
		info, err := a.Info(context.Background(), "cpu").Result()
		if err != nil {
			log.Fatalf("cluster: INFO cpu of %s: %v", a.Options().Addr, err)
		}
		for _, f := range []string{"used_cpu_user_main_thread", "used_cpu_sys_main_thread"} {
			v, _ := strconv.ParseFloat(infoField(info, f), 64)
			out[i] += v
		}
	}
	return out
}

// stop kills the nodes and removes their directory.
func (c *benchCluster) stop() {
	for _, a := range c.admins {
		_ = a.Close()
	}
	for _, p := range c.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
	}
	_ = os.RemoveAll(c.dir)
}
