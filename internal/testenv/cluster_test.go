package testenv

import (
	"strings"
	"testing"
)

// TestStartCluster proves the cluster harness: six nodes on ports below the
// bus limit, all reporting cluster_state:ok, three of them masters serving
// every slot and three replicas; MasterOf names a master.
func TestStartCluster(t *testing.T) {
	c := StartCluster(t)
	masters, replicas := 0, 0
	for _, p := range c.Ports {
		if p > maxClusterPort {
			t.Errorf("port %d above %d", p, maxClusterPort)
		}
		m, err := c.Info(p)
		if err != nil {
			t.Fatal(err)
		}
		if m["cluster_state"] != "ok" {
			t.Errorf("node %d: cluster_state %q", p, m["cluster_state"])
		}
		role, err := c.cli(p, "ROLE")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(role, "master"):
			masters++
		case strings.HasPrefix(role, "slave"):
			replicas++
		}
	}
	if masters != 3 || replicas != 3 {
		t.Fatalf("%d masters, %d replicas; want 3 and 3", masters, replicas)
	}
	p, err := c.MasterOf("{tag}x")
	if err != nil {
		t.Fatal(err)
	}
	if role, _ := c.cli(p, "ROLE"); !strings.HasPrefix(role, "master") {
		t.Fatalf("MasterOf returned %d, whose role is %q", p, role)
	}
	t.Logf("cluster on %v; {tag} is served by %d", c.Ports, p)
}
