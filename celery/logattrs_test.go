package celery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTaskLogAttributes proves: the worker's records about a task carry
// its queue and delivery tag beside the task name and id (here "task
// failed" and "task succeeded").
func TestTaskLogAttributes(t *testing.T) {
	e := newTestEnv(t)
	tags := make(chan string, 2)
	e.worker(t, func(w *Worker) {
		w.Register("boom", func(_ context.Context, t *Task) (any, error) {
			tags <- t.DeliveryTag
			return nil, NewError("ValueError", "no")
		})
		w.Register("ok", func(_ context.Context, t *Task) (any, error) {
			tags <- t.DeliveryTag
			return 1, nil
		})
	})
	for _, c := range []struct{ name, msg string }{{"boom", "celery: task failed"}, {"ok", "celery: task succeeded"}} {
		r := e.send(t, c.name, nil, nil)
		_, _ = get(t, r)
		tag := <-tags
		want := []string{fmt.Sprintf("msg=%q", c.msg), "queue=" + e.queue, "delivery_tag=" + tag, "task=" + c.name, "id=" + r.ID}
		var line string
		for range 100 {
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(l, "id="+r.ID) && strings.Contains(l, want[0]) {
					line = l
				}
			}
			if line != "" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("%s record %q lacks %s", c.name, line, w)
			}
		}
	}
}
