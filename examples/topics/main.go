// Command topics is RabbitMQ tutorial 5, "Topics", done the Kombu way: log
// lines go to the topic exchange "topic_logs" with a "<facility>.<severity>"
// routing key, and each consumer's queue is bound with a pattern.
//
//	go run ./examples/topics
//	go run ./examples/topics kern.critical cron.info.daily
//
// Kombu's topic matching is not AMQP's. Kombu turns a binding key into a
// regular expression: "#" becomes `.*?` and "*" becomes `.*?[^\.]`, so in
// Kombu "*" matches one OR MORE words, dots included. Here "kern.*" matches
// "kern.disk.critical" and "*.critical" matches it too; on RabbitMQ
// neither would (there "*" is exactly one word). Kombu's "a.#" does not
// match "a" either. Go and Python peers route alike, since both use
// Kombu's rules over the same binding table.
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

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: topics [--url URL] [--exchange NAME] [--timeout DURATION] [ROUTING_KEY...]")
	flag.PrintDefaults()
}

var defaultKeys = []string{
	"kern.critical", "kern.info", "app.critical",
	"kern.disk.critical", "cron.warning", "kern",
}

// bindings are the consumers, named by their binding key, as in the
// tutorial's receive_logs_topic.py runs.
var bindings = []string{"#", "kern.*", "*.critical"}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	exchange := flag.String("exchange", "topic_logs", "topic exchange")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()
	keys := defaultKeys
	if flag.NArg() > 0 {
		keys = flag.Args()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *exchange, keys, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "topics:", err)
		os.Exit(1)
	}
}

// delivery is a consumer's report of one message.
type delivery struct{ binding, routingKey, text string }

func run(ctx context.Context, url, exchange string, keys []string, out io.Writer) error {
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ex := kombu.Exchange{Name: exchange, Type: kombu.Topic}

	got := make(chan delivery)
	subCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	stopped := make(chan error, len(bindings))
	var queues []kombu.Queue
	for i, key := range bindings {
		// The binding key is stored in the exchange's binding table with
		// its regex; publishers on any process match against it.
		q := kombu.Queue{Name: fmt.Sprintf("%s.consumer-%d", exchange, i+1), Exchange: ex, RoutingKey: key}
		queues = append(queues, q)
		// Bindings live in Redis until deleted: remove ours when done.
		defer conn.DeleteQueue(context.WithoutCancel(ctx), q.Name)
		go func() {
			stopped <- conn.Consumer([]kombu.Queue{q}).Consume(subCtx, func(ctx context.Context, m *kombu.Message) error {
				var text string
				if err := m.Decode(&text); err != nil {
					return err
				}
				select {
				case got <- delivery{key, m.DeliveryInfo.RoutingKey, text}:
				case <-subCtx.Done():
				}
				return nil // ack
			})
		}()
	}

	// WithDeclare binds the queues before the first publish, so no message
	// is published before its bindings exist.
	p := conn.Producer(kombu.WithExchange(ex), kombu.WithDeclare(queues...))
	want := 0
	for _, key := range keys {
		text := "about " + key
		res, err := p.Publish(ctx, text, kombu.WithRoutingKey(key))
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		fmt.Fprintf(out, " [x] Sent %-18s to %d queue(s)\n", key, res.Routed)
		want += res.Routed
	}

	for ; want > 0; want-- {
		select {
		case d := <-got:
			fmt.Fprintf(out, " %-12s got %-18s %q\n", "["+d.binding+"]", d.routingKey, d.text)
		case err := <-stopped: // Consume failed (or ctx is done: it returned nil)
			return fmt.Errorf("consumer stopped: %w", cmp.Or(err, ctx.Err()))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the consumers: %w", ctx.Err())
		}
	}
	stopConsumers()
	for range bindings {
		if err := <-stopped; err != nil {
			return err
		}
	}
	return nil
}
