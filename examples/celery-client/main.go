// Command celery-client sends a Celery task from Go, as Python's
// app.send_task(name, args, kwargs, queue=..., priority=..., countdown=...)
// does, and waits for its result in the Redis result backend: a Python
// Celery worker runs it (or a Go one, see examples/celery-worker).
//
//	go run ./examples/celery-client --url redis://localhost:6379/0 tasks.add '[2, 3]'
//	go run ./examples/celery-client --queue celery --priority 0 --countdown 5s tasks.echo '[1, "a"]' '{"k": true}'
//	go run ./examples/celery-client tasks.fail '["boom"]'     # prints ValueError: boom, exits 1
//
// Arguments are JSON: a list of positional arguments, then an object of
// keyword arguments. With --wait=false it prints the task id and returns.
// The Python worker side is any Celery 5 app with the same broker and
// result backend, e.g.
//
//	app = Celery('tasks', broker='redis://localhost:6379/0', backend='redis://localhost:6379/0')
//
//	@app.task(name='tasks.add')
//	def add(x, y): return x + y
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
	"github.com/kombu-go/kombu/serialization"
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: celery-client [flags] TASK [ARGS_JSON [KWARGS_JSON]]")
	flag.PrintDefaults()
}

// config is the command line.
type config struct {
	url, backend, queue string
	priority            int
	countdown           time.Duration
	expires             time.Duration
	wait                bool
	timeout             time.Duration
	task                string
	args, kwargs        string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "url", cmp.Or(os.Getenv("KOMBU_URL"), "redis://localhost:6379/0"), "broker URL (Celery's broker_url); $KOMBU_URL sets the default")
	flag.StringVar(&cfg.backend, "backend", "", "result backend URL; default: the broker URL when it is redis://")
	flag.StringVar(&cfg.queue, "queue", celery.DefaultQueue, "queue to send the task to")
	flag.IntVar(&cfg.priority, "priority", 0, "message priority 0..9 (on Redis, 0 runs first)")
	flag.DurationVar(&cfg.countdown, "countdown", 0, "run the task no earlier than this from now")
	flag.DurationVar(&cfg.expires, "expires", 0, "revoke the task if it has not started by then (0: never)")
	flag.BoolVar(&cfg.wait, "wait", true, "wait for the result and print it")
	flag.DurationVar(&cfg.timeout, "timeout", 60*time.Second, "give up waiting after this long")
	flag.Usage = usage
	flag.Parse()
	switch flag.NArg() {
	case 3:
		cfg.kwargs = flag.Arg(2)
		fallthrough
	case 2:
		cfg.args = flag.Arg(1)
		fallthrough
	case 1:
		cfg.task = flag.Arg(0)
	default:
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, cfg, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "celery-client:", err)
		os.Exit(1)
	}
}

// run sends the task, then (with wait) prints its result as JSON. A task
// failure is returned as the error, e.g. "ValueError: boom".
func run(ctx context.Context, cfg config, out io.Writer) error {
	args, err := celery.ParseArgs(cfg.args)
	if err != nil {
		return err
	}
	kwargs, err := celery.ParseKwargs(cfg.kwargs)
	if err != nil {
		return err
	}
	conn, err := kombu.Dial(ctx, cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	backendURL := cfg.backend
	if backendURL == "" && (strings.HasPrefix(cfg.url, "redis://") || strings.HasPrefix(cfg.url, "rediss://")) {
		backendURL, _, _ = strings.Cut(cfg.url, "?") // drop broker-only options
	}
	var backend *celery.Backend
	if backendURL != "" {
		if backend, err = celery.OpenBackend(backendURL); err != nil {
			return err
		}
		defer backend.Close()
	}

	client := celery.NewClient(conn, backend)
	opts := []celery.SendOption{celery.WithQueue(cfg.queue), celery.WithPriority(cfg.priority)}
	if cfg.countdown > 0 {
		opts = append(opts, celery.WithCountdown(cfg.countdown))
	}
	if cfg.expires > 0 {
		opts = append(opts, celery.WithExpiresIn(cfg.expires))
	}
	res, err := client.SendTask(ctx, cfg.task, args, kwargs, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "sent %s[%s] to %s\n", cfg.task, res.ID, cfg.queue)
	if !cfg.wait {
		return nil
	}
	if backend == nil {
		return errors.New("no result backend to wait on (give --backend or --wait=false)")
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	v, err := res.Get(wctx)
	if err != nil {
		return err
	}
	enc, err := serialization.Encode(v, "json") // JSON as Python writes it
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\n", enc.Body)
	return nil
}
