// Command celery-canvas sends Celery canvas from Go: a chain, a group and a
// chord of the tasks tasks.add and tasks.echo, prints each result, and
// exits 1 if any result is wrong. The tasks may be served by the Go example
// worker (examples/celery-worker) or by a Python Celery worker with tasks
// of the same names:
//
//	go run ./examples/celery-worker --url redis://localhost:6379/0 &
//	go run ./examples/celery-canvas --url redis://localhost:6379/0
//
// It builds the canvas as Celery's Python would:
//
//	chain(add.s(1, 2), add.s(10), add.s(100))        -> 113
//	group(add.s(1, 1), add.s(2, 2), add.s(3, 3))     -> [2, 4, 6]
//	chord([add.s(1, 2), add.s(3, 4)], echo.s('sum')) -> {'args': [[3, 7], 'sum'], 'kwargs': {}}
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	_ "github.com/kombu-go/kombu/redis" // registers redis://, rediss://, sentinel://
)

type config struct {
	url, backend, queue string
	timeout             time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "url", cmp.Or(os.Getenv("KOMBU_URL"), "redis://localhost:6379/0"), "broker URL; $KOMBU_URL sets the default")
	flag.StringVar(&cfg.backend, "backend", "", "result backend URL (default: the broker URL without its options)")
	flag.StringVar(&cfg.queue, "queue", celery.DefaultQueue, "queue the tasks go to")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "give up waiting for a result after this long")
	flag.Parse()
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "celery-canvas:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	conn, err := kombu.Dial(ctx, cfg.url)
	if err != nil {
		return err
	}
	defer conn.Close()
	backendURL := cmp.Or(cfg.backend, strings.SplitN(cfg.url, "?", 2)[0])
	backend, err := celery.OpenBackend(backendURL)
	if err != nil {
		return err
	}
	defer backend.Close()
	client := celery.NewClient(conn, backend, celery.WithDefaultQueue(cfg.queue))

	add := func(args ...any) celery.Signature { return celery.NewSignature("tasks.add", args, nil) }
	echo := func(args ...any) celery.Signature { return celery.NewSignature("tasks.echo", args, nil) }
	canvases := []struct {
		name string
		sig  celery.Signature
		want string
	}{
		{"chain(add(1, 2), add(10), add(100))", celery.Chain(add(1, 2), add(10), add(100)), `113`},
		{"group(add(1, 1), add(2, 2), add(3, 3))", celery.Group(add(1, 1), add(2, 2), add(3, 3)), `[2,4,6]`},
		{"chord([add(1, 2), add(3, 4)], echo('sum'))", celery.Chord(celery.Group(add(1, 2), add(3, 4)), echo("sum")), `{"args":[[3,7],"sum"],"kwargs":{}}`},
	}
	wrong := 0
	for _, c := range canvases {
		res, err := client.Apply(ctx, c.sig)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		wctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		v, err := res.Get(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		b, _ := json.Marshal(v)
		mark := "ok"
		if string(b) != c.want {
			mark, wrong = "WRONG (want "+c.want+")", wrong+1
		}
		fmt.Fprintf(out, "%s = %s %s\n", c.name, b, mark)
	}
	if wrong > 0 {
		return fmt.Errorf("%d wrong result(s)", wrong)
	}
	return nil
}
