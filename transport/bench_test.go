package transport

import (
	"fmt"
	"testing"

	"github.com/kombu-go/kombu/entity"
)

// Benchmarks of the per-message work the core does on the CPU: topic
// matching and routing lookups. Run with
//
//	go test -run '^$' -bench . -benchmem ./transport/

func BenchmarkKeyToPattern(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = KeyToPattern("stock.*.nyse.#")
	}
}

func BenchmarkMatchTopic(b *testing.B) {
	for _, c := range []struct{ key, rk string }{
		{"stock.*.nyse.#", "stock.ibm.nyse.trade"},
		{"#", "a.b.c"},
		{"celery.pidbox.*", "celery.pidbox.worker1"},
	} {
		row := BindingRow{RoutingKey: c.key, Pattern: KeyToPattern(c.key), Queue: "q"}
		b.Run(c.key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := MatchTopic(row, c.rk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLookup routes one routing key through binding tables of 1, 10
// and 1,000 rows, one queue per row, a tenth of them matching.
func BenchmarkLookup(b *testing.B) {
	for _, typ := range []entity.ExchangeType{entity.Direct, entity.Topic, entity.Fanout} {
		for _, n := range []int{1, 10, 1000} {
			table := make([]BindingRow, n)
			for i := range table {
				key := fmt.Sprintf("k%d", i%10)
				if typ == entity.Topic {
					key = fmt.Sprintf("k%d.*.#", i%10)
				}
				table[i] = BindingRow{RoutingKey: key, Queue: fmt.Sprintf("q%d", i)}
				if typ == entity.Topic {
					table[i].Pattern = KeyToPattern(key)
				}
			}
			rk := "k0"
			if typ == entity.Topic {
				rk = "k0.a.b"
			}
			b.Run(fmt.Sprintf("%s/%d", typ, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Lookup(table, string(typ), rk, ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
