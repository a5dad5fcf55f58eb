package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestRPC proves the request/reply round trip: each request carries
// reply_to and a fresh correlation_id, the server replies to that queue
// with that id, and the client matches each reply to its call, so
// fib(10)=55 and the other answers come back right and in turn.
func TestRPC(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("rpc_queue"), []int{10, 0, 1, 30}, &out); err != nil {
			t.Fatal(err)
		}
		want := []string{
			" [x] Requesting fib(10)", " [.] server: fib(10)", " [.] Got fib(10) = 55",
			" [x] Requesting fib(0)", " [.] server: fib(0)", " [.] Got fib(0) = 0",
			" [x] Requesting fib(1)", " [.] server: fib(1)", " [.] Got fib(1) = 1",
			" [x] Requesting fib(30)", " [.] server: fib(30)", " [.] Got fib(30) = 832040",
		}
		if got := extest.Lines(out.String()); !slices.Equal(got, want) {
			t.Errorf("output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
		}
	})
}
