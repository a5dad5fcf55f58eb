package envelope

import (
	"testing"
)

// Benchmarks of encoding and decoding envelopes. Run with
//
//	go test -run '^$' -bench . -benchmem ./envelope/

// benchEnvelopes are a Kombu envelope (the wire spec's §3.1 capture) and a
// Celery task envelope.
var benchEnvelopes = map[string]string{
	"kombu":  envelopeShapes[0],
	"celery": `{"body": "W1syLCAzXSwge30sIHsiY2FsbGJhY2tzIjogbnVsbCwgImVycmJhY2tzIjogbnVsbCwgImNoYWluIjogbnVsbCwgImNob3JkIjogbnVsbH1d", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "tasks.add", "id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "parent_id": null, "argsrepr": "(2, 3)", "kwargsrepr": "{}", "origin": "gen8300@vm", "ignore_result": false}, "properties": {"correlation_id": "7677e5d9-750f-4830-9a65-bfd803dbaf47", "reply_to": "d5383031-2891-32bb-af8f-30b85c08aa1b", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 7, "body_encoding": "base64", "delivery_tag": "94d8b776-9637-4984-9ad5-2979fc98b1e4"}}`,
}

func BenchmarkEnvelopeMarshal(b *testing.B) {
	for name, raw := range benchEnvelopes {
		env, err := Parse([]byte(raw))
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
				if _, err := Parse(data); err != nil {
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

func BenchmarkNewDeliveryTag(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = NewDeliveryTag()
	}
}
