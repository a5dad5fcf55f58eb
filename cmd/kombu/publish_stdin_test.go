package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
	kredis "github.com/kombu-go/kombu/redis"
)

// pipeCounter counts the round trips a client makes.
type pipeCounter struct {
	mu    sync.Mutex
	trips int
}

func (c *pipeCounter) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (c *pipeCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error { c.add(); return next(ctx, cmd) }
}

func (c *pipeCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error { c.add(); return next(ctx, cmds) }
}

func (c *pipeCounter) add() { c.mu.Lock(); c.trips++; c.mu.Unlock() }

func (c *pipeCounter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.trips }

// stdinConn is a connection on miniredis whose round trips are counted.
func stdinConn(t *testing.T) (*kombu.Connection, *pipeCounter) {
	mr := miniredis.RunT(t)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	pc := &pipeCounter{}
	c.AddHook(pc)
	b, err := kredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := kombu.NewConnection(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, pc
}

func textPrepare(text string) (any, []kombu.PublishOption, error) { return text, nil, nil }

// TestPublishLinesBatches proves: 2,500 lines that stdin has ready at once
// go out in a few round trips (batches of up to maxStdinBatch messages, not
// one per line), every line gets its delivery tag printed, in order, and
// the queue holds the lines in that order.
func TestPublishLinesBatches(t *testing.T) {
	conn, pc := stdinConn(t)
	const n = 2500
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "line %d\n", i)
	}
	out := &testenv.LockedBuffer{}
	e := &env{stdin: strings.NewReader(in.String()), stdout: out, stderr: io.Discard}
	prod := conn.Producer(kombu.WithRoutingKey("q"))
	before := pc.count()
	unrouted := 0
	if err := publishLines(context.Background(), e, prod, textPrepare, 1, &unrouted); err != nil {
		t.Fatal(err)
	}
	trips := pc.count() - before
	tags := strings.Fields(out.String())
	if len(tags) != n || unrouted != 0 {
		t.Fatalf("%d tags printed, %d unrouted; want %d, 0", len(tags), unrouted, n)
	}
	if trips > n/10 {
		t.Errorf("%d round trips for %d lines ready at once; want batches", trips, n)
	}
	for i := range n {
		m, err := conn.Get(context.Background(), "q", kombu.GetNoAck())
		if err != nil {
			t.Fatal(err)
		}
		var body string
		if err := m.Decode(&body); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("line %d", i); body != want || m.DeliveryTag != tags[i] {
			t.Fatalf("message %d: %q tag %s; want %q tag %s", i, body, m.DeliveryTag, want, tags[i])
		}
	}
}

// TestPublishLinesFlushOnPause proves: a line is published and its tag
// printed while stdin stays open with nothing more to read (the batch is
// flushed when input pauses, not when it ends).
func TestPublishLinesFlushOnPause(t *testing.T) {
	conn, _ := stdinConn(t)
	r, w := io.Pipe()
	out := &testenv.LockedBuffer{}
	e := &env{stdin: r, stdout: out, stderr: io.Discard}
	done := make(chan error, 1)
	unrouted := 0
	go func() {
		done <- publishLines(context.Background(), e, conn.Producer(kombu.WithRoutingKey("q")), textPrepare, 2, &unrouted)
	}()
	if _, err := io.WriteString(w, "first\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(strings.Fields(out.String())) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no tags printed for a line while stdin stays open (stdout %q)", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, err := conn.Len(context.Background(), "q"); err != nil || n != 2 {
		t.Fatalf("queue length %d (%v) after the first line with --count 2; want 2", n, err)
	}
	_, _ = io.WriteString(w, "second\n")
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if tags := strings.Fields(out.String()); len(tags) != 4 {
		t.Fatalf("tags %q; want 4", tags)
	}
}
