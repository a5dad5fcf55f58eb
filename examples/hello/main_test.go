package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestHello proves that a message published to the default exchange with a
// queue's name as routing key reaches that queue's consumer unchanged, and
// that run returns (rather than hangs) once it has.
func TestHello(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("hello"), "Hello World!", &out); err != nil {
			t.Fatal(err)
		}
		want := []string{` [x] Sent "Hello World!"`, ` [x] Received "Hello World!"`}
		if got := extest.Lines(out.String()); !slices.Equal(got, want) {
			t.Errorf("output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
		}
	})
}
