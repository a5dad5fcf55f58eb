// Command celery-worker is a Celery worker written in Go: it takes the tasks
// that Python code sends with task.delay() or apply_async() from a Celery
// queue on Redis, runs them, and stores results that Python's
// AsyncResult.get() reads.
//
//	go run ./examples/celery-worker --url redis://localhost:6379/0 --queue celery --concurrency 4
//
// It registers three tasks, with the names and behaviour of these Python
// ones:
//
//	@app.task(name='tasks.add')
//	def add(x, y): return x + y
//
//	@app.task(name='tasks.echo')
//	def echo(*args, **kwargs): return {'args': list(args), 'kwargs': kwargs}
//
//	@app.task(name='tasks.fail')
//	def fail(message): raise ValueError(message)
//
// so from Python, with the same broker and result backend:
//
//	>>> app.send_task('tasks.add', (2, 3)).get()
//	5
//	>>> app.send_task('tasks.fail', ('boom',)).get()
//	Traceback (most recent call last):
//	...
//	ValueError: boom
//
// It runs Celery canvas (chains, groups, chords) that pass through it,
// answers `celery inspect`/`celery control` as node -n (revoke included),
// and with -E sends task events for Flower and `celery events`.
//
// Results go to the Redis result backend at --backend (by default the broker
// URL). SIGINT or SIGTERM starts a warm shutdown: running tasks finish,
// messages the worker held go back to the queue.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/memory" // registers memory://
	_ "github.com/kombu-go/kombu/redis"  // registers redis://, rediss://, sentinel://
)

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: celery-worker [--url URL] [--backend URL] [--queue NAME[,NAME...]] [--concurrency N] [-n NODE] [-E] [--statedb FILE]")
	flag.PrintDefaults()
}

// config is the command line.
type config struct {
	url, backend, queue string
	concurrency         int
	prefetch            int
	acksLate            bool
	hostname            string
	events              bool
	statedb             string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "url", cmp.Or(os.Getenv("KOMBU_URL"), "redis://localhost:6379/0"), "broker URL (Celery's broker_url); $KOMBU_URL sets the default")
	flag.StringVar(&cfg.backend, "backend", "", "result backend URL (Celery's result_backend); default: the broker URL when it is redis://, else none")
	flag.StringVar(&cfg.queue, "queue", celery.DefaultQueue, "queues to consume, comma-separated (celery worker -Q)")
	flag.IntVar(&cfg.concurrency, "concurrency", runtime.NumCPU(), "tasks run at once (celery worker --concurrency)")
	flag.IntVar(&cfg.prefetch, "prefetch-multiplier", celery.DefaultPrefetchMultiplier, "worker_prefetch_multiplier (0: no limit)")
	flag.BoolVar(&cfg.acksLate, "acks-late", false, "acknowledge after the task ran (task_acks_late)")
	flag.StringVar(&cfg.hostname, "n", "", "node name, e.g. go1@%h (celery worker -n; %h is the host name, %n its first label, %d its domain; default celery@<host>)")
	flag.BoolVar(&cfg.events, "E", false, "send task events (celery worker -E), for Flower, celery events and celery-exporter")
	flag.StringVar(&cfg.statedb, "statedb", "", "file that keeps revoked task ids across restarts (celery worker --statedb; kombu-go's JSON, not a Python shelve)")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() > 0 {
		usage()
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(context.Background(), cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, "celery-worker:", err)
		os.Exit(1)
	}
}

// run serves tasks until ctx is cancelled or SIGINT/SIGTERM arrives.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	conn, err := kombu.Dial(ctx, cfg.url, kombu.WithLogger(log))
	if err != nil {
		return err
	}
	defer conn.Close()

	backendURL := cfg.backend
	if backendURL == "" && (strings.HasPrefix(cfg.url, "redis://") || strings.HasPrefix(cfg.url, "rediss://")) {
		backendURL = brokerToBackend(cfg.url)
	}
	var backend *celery.Backend
	if backendURL != "" {
		if backend, err = celery.OpenBackend(backendURL); err != nil {
			return err
		}
		defer backend.Close()
	} else {
		log.Warn("no result backend: results are not stored")
	}

	opts := []celery.WorkerOption{
		celery.WithQueues(strings.Split(cfg.queue, ",")...),
		celery.WithConcurrency(cfg.concurrency),
		celery.WithPrefetchMultiplier(cfg.prefetch),
		celery.WithAcksLate(cfg.acksLate),
		celery.WithLogger(log),
	}
	if cfg.hostname != "" {
		opts = append(opts, celery.WithHostname(celery.ExpandNodeName(cfg.hostname)))
	}
	if cfg.statedb != "" {
		opts = append(opts, celery.WithStateDB(celery.FileStateDB(cfg.statedb)))
	}
	if cfg.events {
		opts = append(opts, celery.WithEvents())
	}
	w := celery.NewWorker(conn, backend, opts...)
	register(w)
	return w.Run(ctx)
}

// brokerToBackend drops the broker's transport options (global_keyprefix,
// ...) from the query: the result backend has none of them.
func brokerToBackend(url string) string {
	if i := strings.IndexByte(url, '?'); i >= 0 {
		return url[:i]
	}
	return url
}

// register adds the example's tasks.
func register(w *celery.Worker) {
	w.Register("tasks.add", add)
	w.Register("tasks.echo", echo)
	w.Register("tasks.fail", fail)
}

// add(x, y) returns x + y. Integers stay integers, as in Python; other
// numbers are added as floats.
func add(_ context.Context, t *celery.Task) (any, error) {
	var x, y float64
	if err := t.Bind(&x, &y); err != nil {
		return nil, err
	}
	var xi, yi int64
	if t.Bind(&xi, &yi) == nil {
		return xi + yi, nil
	}
	return x + y, nil
}

// echo(*args, **kwargs) returns {"args": args, "kwargs": kwargs}.
func echo(_ context.Context, t *celery.Task) (any, error) {
	return map[string]any{"args": t.Args, "kwargs": t.Kwargs}, nil
}

// fail(message) fails with ValueError(message): Python's AsyncResult.get()
// raises ValueError with that message.
func fail(_ context.Context, t *celery.Task) (any, error) {
	var msg string
	if err := t.Bind(&msg); err != nil {
		return nil, err
	}
	return nil, celery.NewError("ValueError", msg)
}
