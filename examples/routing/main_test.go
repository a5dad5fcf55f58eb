package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestRouting proves direct-exchange routing by exact routing key: the
// consumer bound to "error" gets only the errors, the one bound to info,
// warning and error gets those three severities and not debug, and a
// message no queue is bound for (debug) is routed to 0 queues.
func TestRouting(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("direct_logs"), defaultLogs, &out); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + out.String())
		got := map[string][]string{}
		for _, l := range extest.Lines(out.String()) {
			who, what, _ := strings.Cut(strings.TrimPrefix(l, " ["), "] ")
			got[who] = append(got[who], what)
		}
		// Each consumer takes its own queue in order, so its lines are in
		// publish order.
		want := map[string][]string{
			"error-log": {`error:"Disk full"`, `error:"Out of memory"`},
			"console": {`info:"Kernel loaded"`, `warning:"Disk 85% full"`, `error:"Disk full"`,
				`info:"User logged in"`, `error:"Out of memory"`},
		}
		for who, w := range want {
			if !slices.Equal(got[who], w) {
				t.Errorf("%s got %q, want %q", who, got[who], w)
			}
		}
		if sent := got["x"]; !slices.Contains(sent, `Sent debug:"Cache miss" to 0 queue(s)`) {
			t.Errorf("debug was not reported as routed to 0 queues: %q", sent)
		}
	})
}
