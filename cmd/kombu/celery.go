package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kombu-go/kombu/celery"
)

// celerySubcommands are `kombu celery <sub>`.
var celerySubcommands = []struct {
	name, summary string
	run           func(context.Context, *env, []string) error
}{
	{"send", "send a task (and wait for its result)", runCelerySend},
	{"canvas", "send a chain, group or chord given as JSON and print its result", runCeleryCanvas},
	{"inspect", "ask workers (Python or Go) what `celery inspect` asks", runCeleryInspect},
	{"control", "steer workers as `celery control` does (revoke, rate_limit, ...)", runCeleryControl},
	{"events", "watch workers and tasks from the event stream", runCeleryEvents},
}

func runCelery(ctx context.Context, e *env, args []string) error {
	names := make([]string, len(celerySubcommands))
	for i, c := range celerySubcommands {
		names[i] = c.name
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		if len(args) == 0 {
			return usageError{"missing subcommand: " + strings.Join(names, ", ")}
		}
		fmt.Fprintln(e.stdout, "usage: kombu celery SUBCOMMAND [flags]")
		for _, c := range celerySubcommands {
			fmt.Fprintf(e.stdout, "  %-8s %s\n", c.name, c.summary)
		}
		return nil
	}
	for _, c := range celerySubcommands {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	return usageError{fmt.Sprintf("unknown subcommand %q (want %s)", args[0], strings.Join(names, ", "))}
}

func runCelerySend(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "celery send", "--task NAME [flags]", "Sends a Celery task (protocol 2, as Celery 5 writes it) and prints its id; with --wait, prints its result as JSON.")
	var cf connFlags
	cf.register(fs)
	task := fs.String("task", "", "task `name`, e.g. tasks.add (required)")
	argsJSON := fs.String("args", "", "positional arguments as a JSON array")
	kwargsJSON := fs.String("kwargs", "", "keyword arguments as a JSON object")
	queue := fs.String("queue", "celery", "queue")
	priority := fs.Int("priority", 0, "priority 0..9 (on Redis, 0 is consumed first)")
	countdown := fs.Float64("countdown", 0, "run no sooner than this many `seconds` from now")
	wait := fs.Duration("wait", 0, "wait this long for the result and print it as JSON (exit status 1 if the task failed, 3 if no result came in time)")
	backendURL := fs.String("result-backend", "", "result backend URL (default: the broker URL)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *task == "" {
		return usageError{"--task is required"}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	taskArgs, err := celery.ParseArgs(*argsJSON)
	if err != nil {
		return usageError{fmt.Sprintf("--args: %v", err)}
	}
	taskKwargs, err := celery.ParseKwargs(*kwargsJSON)
	if err != nil {
		return usageError{fmt.Sprintf("--kwargs: %v", err)}
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var backend *celery.Backend
	if *wait > 0 {
		u := *backendURL
		if u == "" {
			u = cf.url
		}
		if backend, err = celery.OpenBackend(u); err != nil {
			return err
		}
		defer backend.Close()
	}
	opts := []celery.SendOption{celery.WithQueue(*queue), celery.WithPriority(*priority)}
	if *countdown > 0 {
		opts = append(opts, celery.WithCountdown(time.Duration(*countdown*float64(time.Second))))
	}
	res, err := celery.NewClient(conn, backend).SendTask(ctx, *task, taskArgs, taskKwargs, opts...)
	if err != nil {
		return err
	}
	if *wait <= 0 {
		fmt.Fprintln(e.stdout, res.ID)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	v, err := res.Get(wctx)
	out := map[string]any{"id": res.ID}
	var te *celery.TaskError
	switch {
	case err == nil:
		out["state"], out["result"] = "SUCCESS", v
	case errors.As(err, &te):
		out["state"] = string(te.State)
		out["exc_type"], out["exc_message"], out["exc_module"] = te.Type, te.Message(), te.Module
		if te.Traceback != "" {
			out["traceback"] = te.Traceback
		}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("task %s: no result within %s: %w", res.ID, *wait, errTimeout)
	default:
		return err
	}
	b, jerr := json.Marshal(out)
	if jerr != nil {
		return jerr
	}
	fmt.Fprintln(e.stdout, string(b))
	if te != nil {
		return fmt.Errorf("task %s failed: %s: %s", res.ID, te.Type, te.Message())
	}
	return nil
}
