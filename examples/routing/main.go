// Command routing is RabbitMQ tutorial 4, "Routing", done the Kombu way:
// log lines go to the direct exchange "direct_logs" with their severity as
// routing key, and each consumer's queue is bound to the severities it wants.
//
//	go run ./examples/routing
//	go run ./examples/routing "error:Disk full" "info:All good"
//
// A direct exchange compares the routing key with each binding key exactly.
// A message that matches no binding is dropped, as in Kombu (publish with
// kombu.WithMandatory to get an error instead).
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
	fmt.Fprintln(os.Stderr, "Usage: routing [--url URL] [--exchange NAME] [--timeout DURATION] [SEVERITY:MESSAGE...]")
	flag.PrintDefaults()
}

var defaultLogs = []string{
	"info:Kernel loaded", "warning:Disk 85% full", "error:Disk full",
	"debug:Cache miss", "info:User logged in", "error:Out of memory",
}

// consumers say which severities each consumer's queue is bound to.
var consumers = []struct {
	name       string
	severities []string
}{
	{"error-log", []string{"error"}},                  // tutorial: receive_logs_direct.py error
	{"console", []string{"info", "warning", "error"}}, // tutorial: receive_logs_direct.py info warning error
}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	exchange := flag.String("exchange", "direct_logs", "direct exchange")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()
	logs := defaultLogs
	if flag.NArg() > 0 {
		logs = flag.Args()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *exchange, logs, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "routing:", err)
		os.Exit(1)
	}
}

// delivery is a consumer's report of one message.
type delivery struct{ consumer, severity, text string }

func run(ctx context.Context, url, exchange string, logs []string, out io.Writer) error {
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ex := kombu.Exchange{Name: exchange, Type: kombu.Direct}

	got := make(chan delivery)
	subCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	stopped := make(chan error, len(consumers))
	var queues []kombu.Queue
	for _, c := range consumers {
		// One queue per consumer, with one binding per severity: the first
		// through Exchange and RoutingKey, the others in Bindings.
		q := kombu.Queue{Name: exchange + "." + c.name, Exchange: ex, RoutingKey: c.severities[0]}
		for _, s := range c.severities[1:] {
			q.Bindings = append(q.Bindings, kombu.Binding{Exchange: ex, RoutingKey: s})
		}
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
				case got <- delivery{c.name, m.DeliveryInfo.RoutingKey, text}:
				case <-subCtx.Done():
				}
				return nil // ack
			})
		}()
	}

	// WithDeclare binds the queues before the first publish (Kombu's
	// declare=[...]): a message published before a binding exists is lost.
	p := conn.Producer(kombu.WithExchange(ex), kombu.WithDeclare(queues...))
	want := 0
	for _, l := range logs {
		severity, text, ok := strings.Cut(l, ":")
		if !ok {
			return fmt.Errorf("log %q is not SEVERITY:MESSAGE", l)
		}
		res, err := p.Publish(ctx, text, kombu.WithRoutingKey(severity))
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		// Routed says how many queues the message was put on.
		fmt.Fprintf(out, " [x] Sent %s:%q to %d queue(s)\n", severity, text, res.Routed)
		want += res.Routed
	}

	for ; want > 0; want-- {
		select {
		case d := <-got:
			fmt.Fprintf(out, " [%s] %s:%q\n", d.consumer, d.severity, d.text)
		case err := <-stopped: // Consume failed (or ctx is done: it returned nil)
			return fmt.Errorf("consumer stopped: %w", cmp.Or(err, ctx.Err()))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the consumers: %w", ctx.Err())
		}
	}
	stopConsumers()
	for range consumers {
		if err := <-stopped; err != nil {
			return err
		}
	}
	return nil
}
