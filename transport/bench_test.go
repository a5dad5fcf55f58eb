package transport

import (
	"fmt"
	"testing"

	"github.com/kombu-go/kombu/entity"
)

// Benchmarks of the per-message work the core does on the CPU: encoding
// and decoding envelopes, topic matching and routing lookups. Run with
//
//	go test -run '^$' -bench . -benchmem ./transport/

// benchEnvelopes are a Kombu envelope (the wire spec's §3.1 capture) and a
// Celery task envelope.
var benchEnvelopes = map[string]string{
	"kombu":  envelopeShapes[0],
	"celery": `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen8300@vm", "ignore_result": false}, "properties": {"correlation_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "reply_to": "d5383031-2891-32bb-af8f-30b85c08aa1b", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776-9637-4984-9ad5-2979fc98b1e4"}}`,
}

func BenchmarkEnvelopeMarshal(b *testing.B) {
	for name, raw := range benchEnvelopes {
		env, err := ParseEnvelope([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := env.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				var err error
				if buf, err = env.AppendMarshal(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	for name, raw := range benchEnvelopes {
		data := []byte(raw)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ParseEnvelope(data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/maps", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := parseEnvelopeMaps(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkMarkRedelivered(b *testing.B) {
	data := []byte(benchEnvelopes["celery"])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarkRedelivered(data); err != nil {
			b.Fatal(err)
		}
	}
}

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

func BenchmarkNewDeliveryTag(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewDeliveryTag()
	}
}
