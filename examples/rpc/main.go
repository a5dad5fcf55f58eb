// Command rpc is RabbitMQ tutorial 6, "RPC", done the Kombu way: a server
// consumes requests {"n": N} from the queue "rpc_queue" and replies
// {"result": fib(N)}; a client sends each request with reply_to set to its
// own queue and a fresh correlation_id, and waits for the reply that
// carries that id.
//
//	go run ./examples/rpc
//	go run ./examples/rpc 1 2 30
//
// Requests and replies go through the default exchange: the routing key is
// the queue name. A Python Kombu client (kombu's examples/rpc-tut6) can call
// this server, and this client a Python server, since the JSON bodies and
// the reply_to and correlation_id properties are the same.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: rpc [--url URL] [--queue NAME] [--timeout DURATION] [N...]")
	flag.PrintDefaults()
}

func main() {
	url := flag.String("url", cmp.Or(os.Getenv("KOMBU_URL"), "memory://"), "broker URL; $KOMBU_URL sets the default")
	queue := flag.String("queue", "rpc_queue", "the server's request queue")
	timeout := flag.Duration("timeout", 10*time.Second, "give up after this long")
	flag.Usage = usage
	flag.Parse()
	ns := []int{10, 30}
	if flag.NArg() > 0 {
		ns = ns[:0]
		for _, a := range flag.Args() {
			n, err := strconv.Atoi(a)
			if err != nil || n < 0 || n > 90 {
				fmt.Fprintf(os.Stderr, "rpc: %q is not a number from 0 to 90\n", a)
				os.Exit(2)
			}
			ns = append(ns, n)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	err := run(ctx, *url, *queue, ns, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rpc:", err)
		os.Exit(1)
	}
}

func fib(n int) int {
	a, b := 0, 1
	for range n {
		a, b = b, a+b
	}
	return a
}

// The message bodies, JSON-encoded as in the Python tutorial.
type request struct {
	N int `json:"n"`
}
type reply struct {
	Result int `json:"result"`
}

// run starts the server, then calls it once per n.
func run(ctx context.Context, url, queue string, ns []int, out io.Writer) error {
	conn, err := kombu.Dial(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Server and client both print; a log.Logger serializes their lines.
	say := log.New(out, "", 0)

	// The server: one request at a time (prefetch 1), reply, then ack.
	serverCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	stopped := make(chan error, 1)
	server := conn.Consumer([]kombu.Queue{{Name: queue}}, kombu.WithPrefetch(1))
	replies := conn.Producer() // the default exchange
	go func() {
		stopped <- server.Consume(serverCtx, func(ctx context.Context, m *kombu.Message) error {
			var req request
			if err := m.Decode(&req); err != nil {
				return fmt.Errorf("%w: bad request: %v", kombu.ErrReject, err) // drop it
			}
			if m.Properties.ReplyTo == "" {
				return fmt.Errorf("%w: request without reply_to", kombu.ErrReject)
			}
			say.Printf(" [.] server: fib(%d)", req.N)
			_, err := replies.Publish(ctx, reply{Result: fib(req.N)},
				kombu.WithRoutingKey(m.Properties.ReplyTo),
				kombu.WithCorrelationID(m.Properties.CorrelationID))
			return err // nil acks the request; an error requeues it
		})
	}()

	// The client's own reply queue: Kombu names such a queue by a uuid.
	// Nothing but the default exchange routes to it; Redis has no exclusive
	// queues, so the client deletes it when done.
	callback := kombu.Queue{Name: "amq.gen-" + uuid.NewString(), Exclusive: true, AutoDelete: true}
	defer conn.DeleteQueue(context.WithoutCancel(ctx), callback.Name)
	requests := conn.Producer(kombu.WithRoutingKey(queue), kombu.WithDeclare(callback))

	for _, n := range ns {
		say.Printf(" [x] Requesting fib(%d)", n)
		result, err := call(ctx, conn, requests, callback.Name, n)
		if err != nil {
			select { // if the server failed, say why
			case serr := <-stopped:
				return fmt.Errorf("server stopped: %w", cmp.Or(serr, err))
			default:
				return err
			}
		}
		say.Printf(" [.] Got fib(%d) = %d", n, result)
	}
	stopServer()
	return <-stopped
}

// call sends a request for fib(n) and waits for the reply that carries the
// request's correlation id.
func call(ctx context.Context, conn *kombu.Connection, requests *kombu.Producer, replyTo string, n int) (int, error) {
	id := uuid.NewString()
	if _, err := requests.Publish(ctx, request{N: n},
		kombu.WithReplyTo(replyTo), kombu.WithCorrelationID(id)); err != nil {
		return 0, fmt.Errorf("publish request: %w", err)
	}
	for {
		// Get is Kombu's Queue.get: take one message, waiting up to a second.
		// No ack: a lost reply is not worth restoring.
		m, err := conn.Get(ctx, replyTo, kombu.GetNoAck(), kombu.GetWait(time.Second))
		if errors.Is(err, kombu.ErrEmpty) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for the reply to fib(%d): %w", n, err)
		}
		if m.Properties.CorrelationID != id {
			continue // a stale reply to an earlier call: not ours
		}
		var r reply
		return r.Result, m.Decode(&r)
	}
}
