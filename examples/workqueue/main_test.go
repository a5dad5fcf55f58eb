package main

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestWorkQueue proves that with acks and prefetch 1 two workers share one
// queue: every task is done exactly once, and both workers do some of
// them even though the heavy tasks alternate with light ones (fair
// dispatch: a busy worker takes nothing more until it acks).
func TestWorkQueue(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		tasks := []string{"t1.", "t2.....", "t3.", "t4.....", "t5.", "t6....."}
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("task_queue"), 2, 20*time.Millisecond, tasks, &out); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + out.String())
		doneRe := regexp.MustCompile(`^ \[(worker-\d)\] Done "(.*)" in `)
		var done []string
		perWorker := map[string]int{}
		for _, l := range extest.Lines(out.String()) {
			if m := doneRe.FindStringSubmatch(l); m != nil {
				done = append(done, m[2])
				perWorker[m[1]]++
			}
		}
		slices.Sort(done)
		if !slices.Equal(done, tasks) {
			t.Errorf("tasks done %q, want each of %q once", done, tasks)
		}
		for _, w := range []string{"worker-1", "worker-2"} {
			if perWorker[w] == 0 {
				t.Errorf("%s did no task: no fair dispatch (%v)", w, perWorker)
			}
			summary := fmt.Sprintf(" %s did %d of %d tasks", w, perWorker[w], len(tasks))
			if !strings.Contains(out.String(), summary+"\n") {
				t.Errorf("output lacks %q", summary)
			}
		}
	})
}
