// Command workqueue is RabbitMQ tutorial 2, "Work Queues", done the Kombu
// way: a producer puts tasks on one queue and two workers share them. Each
// dot in a task costs a worker one unit of (simulated) work.
//
//	go run ./examples/workqueue
//	go run ./examples/workqueue --workers 3 --dot 200ms "A..." "B." "C....."
//
// Two settings make this a work queue rather than a plain queue:
//
//   - Acknowledgements: a worker acks a task only when it is done. Until
//     then the task is recorded as unacked; if the worker dies, Kombu
//     restores it for another worker (after the visibility timeout on Redis).
//   - Prefetch 1 (Kombu's prefetch_count=1): a worker holds at most one
//     unacked task, so a busy worker takes no more and the idle one gets the
//     next: fair dispatch, even when tasks differ in length.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: workqueue [--url URL] [--queue NAME] [--workers N] [--dot DURATION] [--timeout DURATION] [TASK...]")
	flag.PrintDefaults()
}

// defaultTasks alternate light and heavy work, so that plain round-robin
// would leave one worker with every heavy task.
var defaultTasks = []string{
	"First message.", "Second message.....", "Third message.",
	"Fourth message.....", "Fifth message.", "Sixth message.....",
}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	queue := flag.String("queue", "task_queue", "the work queue")
	workers := flag.Int("workers", 2, "number of workers")
	dot := flag.Duration("dot", 50*time.Millisecond, "work time per dot in a task")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()
	tasks := defaultTasks
	if flag.NArg() > 0 {
		tasks = flag.Args()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *queue, *workers, *dot, tasks, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "workqueue:", err)
		os.Exit(1)
	}
}

// done is a worker's report of one finished task.
type done struct {
	worker string
	task   string
	took   time.Duration
}

// run publishes tasks, lets the workers do them and prints who did what.
func run(ctx context.Context, url, queue string, workers int, dot time.Duration, tasks []string, out io.Writer) error {
	if workers < 1 {
		return fmt.Errorf("need at least 1 worker, not %d", workers)
	}
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := kombu.Queue{Name: queue, Durable: true}

	// Start the workers. Each Consumer gets its own channel, so each has
	// its own prefetch window.
	finished := make(chan done, len(tasks))
	workCtx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	stopped := make(chan error, workers)
	for i := 1; i <= workers; i++ {
		name := fmt.Sprintf("worker-%d", i)
		c := conn.Consumer([]kombu.Queue{q},
			kombu.WithPrefetch(1), // at most one unacked task per worker
			kombu.WithManualAck(), // we call m.Ack ourselves, like Kombu's message.ack()
			kombu.WithConsumerTag(name))
		go func() {
			stopped <- c.Consume(workCtx, func(ctx context.Context, m *kombu.Message) error {
				var task string
				if err := m.Decode(&task); err != nil {
					return m.Reject(ctx) // drop what we cannot read
				}
				start := time.Now()
				select { // the work: one dot, one unit
				case <-time.After(time.Duration(strings.Count(task, ".")) * dot):
				case <-ctx.Done(): // shutting down: leave it unacked, it is restored
					return ctx.Err()
				}
				// Ack only now that the work is done. (Without WithManualAck,
				// returning nil would ack it for us.)
				if err := m.Ack(ctx); err != nil {
					return err
				}
				select {
				case finished <- done{worker: name, task: task, took: time.Since(start).Round(dot)}:
				case <-workCtx.Done():
				}
				return nil
			})
		}()
	}

	// The producer: tasks go through the default exchange to the queue.
	// Messages are persistent (delivery mode 2) by default.
	p := conn.Producer(kombu.WithRoutingKey(queue))
	for _, task := range tasks {
		if _, err := p.Publish(ctx, task); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(out, " [x] Sent %q\n", task)
	}

	// Print each task as it is done, until every task is done.
	count := map[string]int{}
	for range tasks {
		select {
		case d := <-finished:
			count[d.worker]++
			fmt.Fprintf(out, " [%s] Done %q in %v\n", d.worker, d.task, d.took)
		case err := <-stopped: // Consume failed (or ctx is done: it returned nil)
			return fmt.Errorf("worker stopped: %w", cmp.Or(err, ctx.Err()))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the workers: %w", ctx.Err())
		}
	}
	for i := 1; i <= workers; i++ {
		name := fmt.Sprintf("worker-%d", i)
		fmt.Fprintf(out, " %s did %d of %d tasks\n", name, count[name], len(tasks))
	}
	stopWorkers()
	for range workers {
		if err := <-stopped; err != nil {
			return err
		}
	}
	return nil
}
