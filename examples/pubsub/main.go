// Command pubsub is RabbitMQ tutorial 3, "Publish/Subscribe", done the
// Kombu way: a producer broadcasts log lines on the fanout exchange "logs"
// and every subscriber, each with its own queue, receives all of them.
//
//	go run ./examples/pubsub
//	go run ./examples/pubsub --subscribers 3 --count 10
//
// On Redis, Kombu implements fanout with PUBLISH and PSUBSCRIBE, not with
// lists: a subscriber hears only what is published while it is subscribed,
// and a message nobody hears is gone (at-most-once). So before sending the
// real messages the producer broadcasts probes until every subscriber has
// heard one.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: pubsub [--url URL] [--exchange NAME] [--subscribers N] [--count N] [--timeout DURATION]")
	flag.PrintDefaults()
}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	exchange := flag.String("exchange", "logs", "fanout exchange")
	subscribers := flag.Int("subscribers", 2, "number of subscribers")
	count := flag.Int("count", 3, "log lines to broadcast")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *exchange, *subscribers, *count, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pubsub:", err)
		os.Exit(1)
	}
}

// heard is a subscriber's report of one message; probe marks a probe.
type heard struct {
	subscriber int
	line       string
	probe      bool
}

// run starts the subscribers, waits until they listen, broadcasts count log
// lines and prints what each subscriber heard.
func run(ctx context.Context, url, exchange string, subscribers, count int, out io.Writer) error {
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	logs := kombu.Exchange{Name: exchange, Type: kombu.Fanout}

	got := make(chan heard)
	subCtx, stopSubscribers := context.WithCancel(ctx)
	defer stopSubscribers()
	stopped := make(chan error, subscribers)
	for i := 1; i <= subscribers; i++ {
		// Each subscriber binds its own fresh queue to the exchange. Like
		// Kombu's unnamed queues it is called "amq.gen-<uuid>"; the routing
		// key of a fanout binding is ignored. Exclusive and AutoDelete say
		// what the queue is for; Redis keeps no such queues, so we delete
		// it (and its binding) ourselves when done.
		q := kombu.Queue{Name: "amq.gen-" + uuid.NewString(), Exchange: logs, Exclusive: true, AutoDelete: true}
		defer conn.DeleteQueue(context.WithoutCancel(ctx), q.Name)
		go func() {
			stopped <- conn.Consumer([]kombu.Queue{q}).Consume(subCtx, func(ctx context.Context, m *kombu.Message) error {
				var line string
				if err := m.Decode(&line); err != nil {
					return err
				}
				select {
				case got <- heard{subscriber: i, line: line, probe: m.Headers["probe"] == true}:
				case <-subCtx.Done():
				}
				return nil // ack
			})
		}()
	}

	// The producer publishes to the exchange; Publish declares it (as
	// fanout) in this process first.
	p := conn.Producer(kombu.WithExchange(logs))

	// Probe until every subscriber has heard a probe: then each is listening.
	listening := map[int]bool{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(listening) < subscribers {
		if _, err := p.Publish(ctx, "probe", kombu.WithHeader("probe", true)); err != nil {
			return fmt.Errorf("publish probe: %w", err)
		}
		for waiting := true; waiting; {
			select {
			case h := <-got:
				if h.probe {
					listening[h.subscriber] = true
				}
			case <-tick.C:
				waiting = false
			case err := <-stopped: // Consume failed (or ctx is done: it returned nil)
				return fmt.Errorf("subscriber stopped: %w", cmp.Or(err, ctx.Err()))
			case <-ctx.Done():
				return fmt.Errorf("waiting for the subscribers to listen: %w", ctx.Err())
			}
		}
	}

	// Broadcast the real messages. Every subscriber gets each one.
	for n := 1; n <= count; n++ {
		line := fmt.Sprintf("log line %d", n)
		if _, err := p.Publish(ctx, line); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(out, " [x] Sent %q\n", line)
	}
	for want := count * subscribers; want > 0; {
		select {
		case h := <-got:
			if !h.probe { // a late probe is not a log line
				fmt.Fprintf(out, " [subscriber-%d] %q\n", h.subscriber, h.line)
				want--
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for the log lines: %w", ctx.Err())
		}
	}
	stopSubscribers()
	for range subscribers {
		if err := <-stopped; err != nil {
			return err
		}
	}
	return nil
}
