package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestPubSub proves that a fanout exchange gives every subscriber its own
// copy of every message: with 2 subscribers and 5 log lines, each
// subscriber prints all 5, in the order they were sent, and no probe
// leaks into the output.
func TestPubSub(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		const subscribers, count = 2, 5
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("logs"), subscribers, count, &out); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + out.String())
		got := map[string][]string{}
		sent := 0
		for _, l := range extest.Lines(out.String()) {
			if strings.HasPrefix(l, " [x] Sent ") {
				sent++
				continue
			}
			sub, line, ok := strings.Cut(strings.TrimPrefix(l, " ["), "] ")
			if !ok {
				t.Fatalf("unexpected line %q", l)
			}
			got[sub] = append(got[sub], line)
		}
		var want []string
		for n := 1; n <= count; n++ {
			want = append(want, fmt.Sprintf("%q", fmt.Sprintf("log line %d", n)))
		}
		if sent != count || len(got) != subscribers {
			t.Fatalf("sent %d lines, %d subscribers printed; want %d and %d", sent, len(got), count, subscribers)
		}
		for sub, lines := range got {
			if !slices.Equal(lines, want) {
				t.Errorf("%s got %q, want %q", sub, lines, want)
			}
		}
	})
}
