// Command hello is RabbitMQ tutorial 1, "Hello World!", done the Kombu way:
// a producer puts one message on the queue "hello" through the default
// exchange and a consumer prints it.
//
// Both sides run in this one process, so it needs no setup:
//
//	go run ./examples/hello
//	go run ./examples/hello --url redis://localhost:6379/0 Hi there
//
// The default exchange is the exchange with the empty name: it puts a
// message straight on the queue named by the routing key, with no binding.
// A Python Kombu peer publishes the same message with
//
//	producer.publish("Hello World!", exchange="", routing_key="hello")
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
	fmt.Fprintln(os.Stderr, "Usage: hello [--url URL] [--queue NAME] [--timeout DURATION] [MESSAGE...]")
	flag.PrintDefaults()
}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	queue := flag.String("queue", "hello", "queue to send to and receive from")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()
	text := "Hello World!"
	if flag.NArg() > 0 {
		text = strings.Join(flag.Args(), " ")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *queue, text, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

// run sends text to queue and prints it when the consumer receives it.
func run(ctx context.Context, url, queue, text string, out io.Writer) error {
	// One Connection per process, shared by every goroutine.
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()

	// A queue with no exchange: only the default exchange reaches it.
	q := kombu.Queue{Name: queue}

	// The consumer runs in its own goroutine, as it would run in its own
	// process. Its handler hands each body to this goroutine, which does all
	// the printing, so the output comes out in order.
	received := make(chan string, 1)
	consumeCtx, stopConsuming := context.WithCancel(ctx)
	defer stopConsuming()
	consumed := make(chan error, 1)
	go func() {
		c := conn.Consumer([]kombu.Queue{q})
		// Consume blocks until consumeCtx is cancelled.
		consumed <- c.Consume(consumeCtx, func(ctx context.Context, m *kombu.Message) error {
			var s string // a Go string is sent as text/plain, as in Kombu
			if err := m.Decode(&s); err != nil {
				return err // an error requeues the message
			}
			select {
			case received <- s:
				return nil // nil acks the message: it is gone for good
			case <-consumeCtx.Done():
				return consumeCtx.Err()
			}
		})
	}()

	// The producer publishes to the default exchange (no WithExchange) with
	// the queue's name as routing key.
	p := conn.Producer(kombu.WithRoutingKey(queue))
	if _, err := p.Publish(ctx, text); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	fmt.Fprintf(out, " [x] Sent %q\n", text)

	select {
	case s := <-received:
		fmt.Fprintf(out, " [x] Received %q\n", s)
	case err := <-consumed: // Consume failed (or ctx is done: it returned nil)
		return fmt.Errorf("consumer stopped: %w", cmp.Or(err, ctx.Err()))
	case <-ctx.Done():
		return fmt.Errorf("waiting for the message: %w", ctx.Err())
	}
	// Cancelling the context is how a consumer is stopped; Consume then
	// returns nil.
	stopConsuming()
	return <-consumed
}
