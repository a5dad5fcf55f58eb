package testenv

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cluster is a private Redis Cluster of three masters and three replicas on
// loopback ports, started by StartCluster and stopped when the test ends.
type Cluster struct {
	t     testing.TB
	Dir   string
	Ports []int // every node's port, the masters first (as created)
	procs map[int]*exec.Cmd
	// exited is closed when the node's process has exited and been reaped
	// (by the one goroutine that waits for it).
	exited map[int]chan struct{}
}

// Cluster nodes take ports in [minClusterPort, maxClusterPort]: Redis puts
// the cluster bus on port+10000, and this range keeps both the port and
// its bus below Linux's ephemeral range (32768 up), where the client
// connections of tests running in parallel would otherwise take them
// between the check below and redis-server's bind.
const (
	minClusterPort = 10000
	maxClusterPort = 22767
)

// clusterPorts picks n ports in the cluster range such that each port and
// its bus port (port+10000) are free on 127.0.0.1 right now.
func clusterPorts(t testing.TB, n int) []int {
	t.Helper()
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
		p := minClusterPort + rand.IntN(maxClusterPort-minClusterPort+1)
		if seen[p] || seen[p+10000] || seen[p-10000] {
			continue
		}
		if free(p) && free(p+10000) {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) < n {
		t.Fatalf("testenv: found only %d free port pairs for a cluster", len(out))
	}
	return out
}

// StartCluster starts six redis-server processes in cluster mode (no
// persistence), joins them with `redis-cli --cluster create
// --cluster-replicas 1` (three masters, one replica each) and waits until
// every node reports cluster_state:ok and knows all six nodes. The servers
// are killed and their directory removed when the test ends. A missing
// redis-server or redis-cli fails the test under KOMBU_REQUIRE_INTEGRATION
// and skips it otherwise.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			Missing(t, bin+" (for a local Redis Cluster)", "apt-get install redis-server (redis-cli comes with it, in redis-tools)")
		}
	}
	c := &Cluster{t: t, Dir: t.TempDir(), Ports: clusterPorts(t, 6), procs: map[int]*exec.Cmd{}, exited: map[int]chan struct{}{}}
	t.Cleanup(c.stopAll)
	for i := range c.Ports {
		// Another process may take a port between the check and the
		// bind (tests start servers in parallel): then the node gets
		// another one.
		for attempt := 1; ; attempt++ {
			err := c.startNode(c.Ports[i])
			if err == nil {
				break
			}
			if attempt == 5 {
				t.Fatalf("testenv: %v", err)
			}
			t.Logf("testenv: %v; trying another port", err)
			for {
				p := clusterPorts(t, 1)[0]
				if !slices.Contains(c.Ports, p) && !slices.Contains(c.Ports, p-10000) && !slices.Contains(c.Ports, p+10000) {
					c.Ports[i] = p
					break
				}
			}
		}
	}
	args := []string{"--cluster", "create"}
	for _, p := range c.Ports {
		args = append(args, "127.0.0.1:"+strconv.Itoa(p))
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(30 * time.Second)
	return c
}

// Addrs returns every node's address, host:port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		out[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return out
}

// URL returns rediscluster://host:port,host:port,... naming every node.
func (c *Cluster) URL() string {
	return "rediscluster://" + strings.Join(c.Addrs(), ",")
}

// StartNode starts (or restarts, keeping its nodes.conf) the node on port
// and waits until it answers PING.
func (c *Cluster) StartNode(port int) {
	c.t.Helper()
	if err := c.startNode(port); err != nil {
		c.t.Fatalf("testenv: %v", err)
	}
}

// startNode starts the node on port and waits until it answers PING. It
// returns an error, with the end of the node's log, when the server exits
// (a port taken meanwhile) or does not answer within 30 s.
func (c *Cluster) startNode(port int) error {
	ps := strconv.Itoa(port)
	cmd := exec.Command("redis-server",
		"--port", ps, "--bind", "127.0.0.1", "--dir", c.Dir,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+ps+".conf",
		"--cluster-node-timeout", "1000",
		// A replica can be promoted only after its first sync; Redis
		// otherwise waits 5 s before a diskless sync starts.
		"--repl-diskless-sync-delay", "0",
		"--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(c.Dir, "redis-"+ps+".log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server on %d: %w", port, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.procs[port] = cmd
	c.exited[port] = exited
	logTail := func() string {
		b, _ := os.ReadFile(filepath.Join(c.Dir, "redis-"+ps+".log"))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return strings.Join(lines[max(0, len(lines)-3):], "\n")
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			delete(c.procs, port)
			return fmt.Errorf("cluster node on port %d exited at start: %s", port, logTail())
		default:
		}
		if out, err := c.cli(port, "PING"); err == nil && out == "PONG" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cluster node on port %d did not answer within 30s: %s", port, logTail())
}

// Kill sends SIGKILL to the node on port (an abrupt crash) and waits for
// it to exit.
func (c *Cluster) Kill(port int) {
	cmd := c.procs[port]
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited[port]
	delete(c.procs, port)
}

func (c *Cluster) stopAll() {
	for p := range c.procs {
		c.Kill(p)
	}
}

// cli runs redis-cli against one node and returns its trimmed output.
func (c *Cluster) cli(port int, args ...string) (string, error) {
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	out, err := exec.Command("redis-cli", all...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Info returns CLUSTER INFO of the node on port as a map.
func (c *Cluster) Info(port int) (map[string]string, error) {
	out, err := c.cli(port, "CLUSTER", "INFO")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok {
			m[k] = v
		}
	}
	return m, nil
}

// WaitOK waits until every running node reports cluster_state:ok, knows
// all nodes and sees every slot served, and every replica's link to its
// master is up (a replica that never synced cannot be promoted).
func (c *Cluster) WaitOK(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for _, p := range c.Ports {
			if c.procs[p] == nil {
				continue
			}
			m, err := c.Info(p)
			if err != nil || m["cluster_state"] != "ok" || m["cluster_slots_ok"] != "16384" || m["cluster_known_nodes"] != strconv.Itoa(len(c.Ports)) {
				ok = false
				last = fmt.Sprintf("node %d: %v %v", p, m, err)
				break
			}
			repl, err := c.cli(p, "INFO", "replication")
			if err != nil || strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				ok = false
				last = fmt.Sprintf("node %d: replication %q %v", p, repl, err)
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("testenv: the cluster did not reach cluster_state:ok within %v; last: %s", timeout, last)
}

// MasterOf returns the port of the master serving key's slot, as a running
// node reports it (CLUSTER KEYSLOT, then CLUSTER NODES).
func (c *Cluster) MasterOf(key string) (int, error) {
	var from int
	for _, p := range c.Ports {
		if c.procs[p] != nil {
			from = p
			break
		}
	}
	s, err := c.cli(from, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return 0, fmt.Errorf("keyslot: %v: %s", err, s)
	}
	slot, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("keyslot: %q", s)
	}
	nodes, err := c.cli(from, "CLUSTER", "NODES")
	if err != nil {
		return 0, fmt.Errorf("nodes: %v: %s", err, nodes)
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		for _, r := range lineRanges(f) {
			if slot >= r[0] && slot <= r[1] {
				addr, _, _ := strings.Cut(f[1], "@")
				_, ps, _ := strings.Cut(addr, ":")
				return strconv.Atoi(ps)
			}
		}
	}
	return 0, fmt.Errorf("no master serves slot %d", slot)
}

// Log returns the tail of a node's log, for failure messages.
func (c *Cluster) Log(port int) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "redis-"+strconv.Itoa(port)+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// CLI runs redis-cli against the node on port (for tests that steer the
// cluster: CLUSTER SETSLOT, MIGRATE, ...) and returns its trimmed output.
// An error reply comes back as output starting with "ERR" or the error's
// code, not as an error: redis-cli exits 0 for those.
func (c *Cluster) CLI(port int, args ...string) (string, error) {
	return c.cli(port, args...)
}

// NodeID returns the cluster node ID of the node on port (CLUSTER MYID).
func (c *Cluster) NodeID(port int) (string, error) {
	id, err := c.cli(port, "CLUSTER", "MYID")
	if err != nil || len(id) != 40 {
		return "", fmt.Errorf("cluster myid of %d: %v: %q", port, err, id)
	}
	return id, nil
}

// Masters returns the ports of the running masters that serve slots, as
// the node on from reports them (CLUSTER NODES).
func (c *Cluster) Masters(from int) ([]int, error) {
	nodes, err := c.cli(from, "CLUSTER", "NODES")
	if err != nil {
		return nil, fmt.Errorf("nodes: %v: %s", err, nodes)
	}
	var out []int
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		_, ps, _ := strings.Cut(addr, ":")
		p, err := strconv.Atoi(ps)
		if err != nil {
			return nil, fmt.Errorf("nodes: bad address %q", f[1])
		}
		out = append(out, p)
	}
	return out, nil
}

// Reshard runs `redis-cli --cluster reshard` to move slots from the master
// on port from to the master on port to, as many as it takes for slot to
// be among them: redis-cli moves a source's slots in ascending order and
// takes no slot number, so it moves every slot of from up to slot (slot
// last). It returns how many slots moved, once every node agrees that to
// serves slot.
func (c *Cluster) Reshard(slot, from, to int) (int, error) {
	fromID, err := c.NodeID(from)
	if err != nil {
		return 0, err
	}
	toID, err := c.NodeID(to)
	if err != nil {
		return 0, err
	}
	nodes, err := c.cli(from, "CLUSTER", "NODES")
	if err != nil {
		return 0, fmt.Errorf("nodes: %v: %s", err, nodes)
	}
	n := 0
	for _, r := range slotRanges(nodes, fromID) {
		if r[0] <= slot {
			n += min(r[1], slot) - r[0] + 1
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("the node on %d does not serve slot %d", from, slot)
	}
	out, err := exec.Command("redis-cli", "--cluster", "reshard", "127.0.0.1:"+strconv.Itoa(from),
		"--cluster-from", fromID, "--cluster-to", toID, "--cluster-slots", strconv.Itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-cli --cluster reshard: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		agreed := true
		for _, p := range c.Ports {
			if c.procs[p] == nil {
				continue
			}
			nodes, err := c.cli(p, "CLUSTER", "NODES")
			if err != nil || !servesSlot(nodes, toID, slot) {
				agreed = false
				break
			}
		}
		if agreed {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("redis-cli --cluster reshard ended but not every node sees slot %d on %d:\n%s", slot, to, out)
		}
	}
}

// servesSlot reports whether CLUSTER NODES output says node id serves slot.
func servesSlot(nodes, id string, slot int) bool {
	for _, r := range slotRanges(nodes, id) {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// slotRanges returns the slot ranges, [first, last], that CLUSTER NODES
// output says node id serves (migration markers such as [5->-id] are
// left out).
func slotRanges(nodes, id string) [][2]int {
	var out [][2]int
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != id {
			continue
		}
		out = append(out, lineRanges(f)...)
	}
	return out
}

// lineRanges parses the slot ranges of one CLUSTER NODES line, split into
// fields (the ninth field on), leaving out migration markers such as
// [5->-id].
func lineRanges(f []string) [][2]int {
	var out [][2]int
	for _, r := range f[8:] {
		lo, hi, found := strings.Cut(r, "-")
		if !found {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 == nil && err2 == nil {
			out = append(out, [2]int{l, h})
		}
	}
	return out
}
