package redis

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
)

// masterLoad is what INFO says a master has done so far.
type masterLoad struct {
	cmds int64
	cpu  float64
}

// clusterMasters returns the ports of the cluster's masters.
func clusterMasters(t *testing.T, c *testenv.Cluster) []int {
	t.Helper()
	var masters []int
	for _, p := range c.Ports {
		cl := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + strconv.Itoa(p), Protocol: 2})
		if role, _ := cl.Do(bg, "ROLE").Slice(); len(role) > 0 && role[0] == "master" {
			masters = append(masters, p)
		}
		_ = cl.Close()
	}
	return masters
}

// readLoad reads total_commands_processed and used_cpu_sys+user of a node.
func readLoad(port int) masterLoad {
	cl := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Protocol: 2})
	defer cl.Close()
	var s masterLoad
	for _, line := range strings.Split(cl.Info(bg, "stats", "cpu").Val(), "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "total_commands_processed":
			s.cmds, _ = strconv.ParseInt(v, 10, 64)
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			s.cpu += f
		}
	}
	return s
}

// spreadQueues returns per queues for each master, named prefix+i, found by
// asking the cluster which master serves each name's slot.
func spreadQueues(t *testing.T, c *testenv.Cluster, masters []int, prefix string, per int) (queues []string, owner map[string]int) {
	t.Helper()
	owner = map[string]int{}
	count := map[int]int{}
	for i := 0; len(queues) < per*len(masters) && i < 1000; i++ {
		q := prefix + strconv.Itoa(i)
		m, err := c.MasterOf("{" + q + "}")
		if err != nil {
			t.Fatal(err)
		}
		if count[m] < per {
			count[m]++
			owner[q] = m
			queues = append(queues, q)
		}
	}
	if len(queues) < per*len(masters) {
		t.Fatalf("found queues on %d masters only: %v", len(count), count)
	}
	return queues, owner
}

// loadRun publishes n messages round robin over queues through b and
// takes and acks them all, one GetWait and one Ack per message (batch 1)
// or GetBatch of up to batch messages with the previous batch's acks
// riding along; it returns each master's work over the run.
func loadRun(t *testing.T, b *Backend, masters []int, queues []string, n, batch int, perQueue bool) (map[int]masterLoad, time.Duration) {
	t.Helper()
	before := map[int]masterLoad{}
	for _, p := range masters {
		before[p] = readLoad(p)
	}
	start := time.Now()
	for i := range n {
		if _, err := b.Publish(bg, "", entity.Direct, queues[i%len(queues)], 0, faultEnvelope(fmt.Sprintf("m%d-%d", batch, i))); err != nil {
			t.Fatal(err)
		}
	}
	got, turn := 0, 0
	var settle []string
	for got < n {
		if batch == 1 {
			d, err := shardWait(bg, b, queues, time.Second)
			if err != nil {
				t.Fatalf("take %d: %v", got, err)
			}
			if err := shardAckTags(bg, b, deliveryTag(d.Envelope)); err != nil {
				t.Fatal(err)
			}
			got++
			continue
		}
		from := queues
		if perQueue {
			// A batch from one queue at a time (as a consumer per queue
			// takes them), the queues in turn.
			from = []string{queues[turn%len(queues)]}
			turn++
		}
		ds, err := shardFetch(bg, b, transport.FetchRequest{Queues: from, Ack: true, Max: batch, Rotate: true, Settle: settle})
		if errors.Is(err, transport.ErrEmpty) && perQueue {
			continue
		}
		if err != nil {
			t.Fatalf("take %d: %v", got, err)
		}
		settle = settle[:0]
		for _, d := range ds {
			settle = append(settle, deliveryTag(d.Envelope))
		}
		got += len(ds)
	}
	if err := shardAckTags(bg, b, settle...); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	out := map[int]masterLoad{}
	for _, p := range masters {
		a := readLoad(p)
		out[p] = masterLoad{cmds: a.cmds - before[p].cmds, cpu: a.cpu - before[p].cpu}
	}
	return out, took
}

// TestShardedLoadSpread measures where the work of the sharded layout
// goes, against the compatible layout (Kombu's single-instance scripts,
// every key on one master) on the same cluster: 6 queues spread evenly
// over 1, 2 or 3 masters, 3,000 messages published, taken and acked in
// three ways: one message per take and ack (GetWait over the 6 queues);
// batches of 16 from one queue at a time with the acks riding the next
// take; batches of 16 round robin over the 6 queues.
// Proves: in the sharded layout the masters holding the queues share the
// work evenly (each at least 80% of an even share of the commands) while
// the compatible layout puts it all on one; one message per take, and
// batches from one queue, cost no more Redis commands per message than
// the single-instance path (at most 10% more); a batch round robin over k
// queues costs up to k script calls where one instance needs one (at most
// 2.5 times the commands here, with 16 messages over 6 queues). The
// figures (commands, each master's CPU, messages per second) are logged;
// on 2 shared cores the measure of scaling is the even split of the
// Redis work, not wall-clock speed.
func TestShardedLoadSpread(t *testing.T) {
	c := startCluster(t)
	masters := clusterMasters(t, c)
	if len(masters) != 3 {
		t.Fatalf("masters %v", masters)
	}
	const n = 3000
	queues, owner := spreadQueues(t, c, masters, "load.", 2)
	// 6 queues on the first k masters (k = 1, 2; 3 is queues).
	on := map[int][]string{3: queues}
	for k := 1; k <= 2; k++ {
		per := map[int]int{}
		for i := 0; len(on[k]) < 6 && i < 2000; i++ {
			q := "on" + strconv.Itoa(k) + "." + strconv.Itoa(i)
			m, err := c.MasterOf("{" + q + "}")
			if err != nil {
				t.Fatal(err)
			}
			if slices.Index(masters, m) < k && per[m] < 6/k {
				per[m]++
				on[k] = append(on[k], q)
				owner[q] = m
			}
		}
	}
	sum := func(m map[int]masterLoad) (cmds int64, cpu float64) {
		for _, l := range m {
			cmds += l.cmds
			cpu += l.cpu
		}
		return
	}
	for i, mode := range []struct {
		name     string
		batch    int
		perQueue bool
		maxRatio float64
		spread   int // the 6 queues on this many masters
	}{
		{"one per take, 1 master", 1, false, 1.1, 1},
		{"one per take, 2 masters", 1, false, 1.1, 2},
		{"one per take, 3 masters", 1, false, 1.1, 3},
		{"batches of 16 from one queue, 1 master", 16, true, 1.1, 1},
		{"batches of 16 from one queue, 2 masters", 16, true, 1.1, 2},
		{"batches of 16 from one queue, 3 masters", 16, true, 1.1, 3},
		{"batches of 16 round robin over 6 queues, 3 masters", 16, false, 2.5, 3},
	} {
		prefix := "?global_keyprefix=m" + strconv.Itoa(i) + "."
		sh, err := Open(bg, c.URL()+prefix+"&cluster_layout=sharded")
		if err != nil {
			t.Fatal(err)
		}
		co, err := Open(bg, c.URL()+prefix+"&hash_tag=kombu")
		if err != nil {
			t.Fatal(err)
		}
		qs := on[mode.spread]
		coLoad, coTook := loadRun(t, co, masters, qs, n, mode.batch, mode.perQueue)
		shLoad, shTook := loadRun(t, sh, masters, qs, n, mode.batch, mode.perQueue)
		_ = sh.Close()
		_ = co.Close()
		shCmds, shCPU := sum(shLoad)
		coCmds, coCPU := sum(coLoad)
		for _, p := range masters {
			var mine []string
			for _, q := range qs {
				if owner[q] == p {
					mine = append(mine, q)
				}
			}
			t.Logf("%s, master %d (queues %v): sharded %d commands (%.0f%%), %.3f s CPU; compatible %d commands (%.0f%%), %.3f s CPU",
				mode.name, p, mine, shLoad[p].cmds, 100*float64(shLoad[p].cmds)/float64(shCmds), shLoad[p].cpu,
				coLoad[p].cmds, 100*float64(coLoad[p].cmds)/float64(coCmds), coLoad[p].cpu)
		}
		t.Logf("%s, per message: sharded %.2f commands, %.1f µs CPU (all masters), %.0f msg/s; compatible %.2f commands, %.1f µs CPU, %.0f msg/s",
			mode.name, float64(shCmds)/n, 1e6*shCPU/n, n/shTook.Seconds(), float64(coCmds)/n, 1e6*coCPU/n, n/coTook.Seconds())
		for _, p := range masters[:mode.spread] {
			// The spread masters share the work evenly (each at least
			// 80% of an even share).
			if share := float64(shLoad[p].cmds) / float64(shCmds); share < 0.8/float64(mode.spread) {
				t.Errorf("%s: master %d ran %.0f%% of the sharded layout's commands, want at least %.0f%%", mode.name, p, 100*share, 80/float64(mode.spread))
			}
		}
		if float64(shCmds) > mode.maxRatio*float64(coCmds) {
			t.Errorf("%s: the sharded layout ran %d commands, the single-instance path %d: more than %.1f times", mode.name, shCmds, coCmds, mode.maxRatio)
		}
	}
}
