package main

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/examples/internal/extest"
)

// TestTopics proves Kombu's topic semantics, which differ from AMQP's: "#"
// gets everything, and "*" matches one or more words, so "kern.*" and
// "*.critical" both get "kern.disk.critical" (RabbitMQ would deliver it to
// neither), while "kern.*" does not get the bare "kern".
func TestTopics(t *testing.T) {
	extest.ForEachBroker(t, func(t *testing.T, ctx context.Context, url string) {
		var out strings.Builder
		if err := run(ctx, url, extest.Unique("topic_logs"), defaultKeys, &out); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + out.String())
		got := map[string][]string{}
		for _, l := range extest.Lines(out.String()) {
			f := strings.Fields(l)
			if len(f) >= 3 && f[1] == "got" {
				binding := strings.Trim(f[0], "[]")
				got[binding] = append(got[binding], f[2])
			}
		}
		for _, keys := range got {
			slices.Sort(keys)
		}
		want := map[string][]string{
			"#":          {"app.critical", "cron.warning", "kern", "kern.critical", "kern.disk.critical", "kern.info"},
			"kern.*":     {"kern.critical", "kern.disk.critical", "kern.info"},
			"*.critical": {"app.critical", "kern.critical", "kern.disk.critical"},
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("got %v\nwant %v", got, want)
		}
	})
}
