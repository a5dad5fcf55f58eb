// Package examples holds runnable programs, one per RabbitMQ tutorial,
// written the Kombu way with this library:
//
//   - hello: a message through the default exchange (tutorial 1)
//   - workqueue: tasks shared fairly by two workers with acks and prefetch 1 (2)
//   - pubsub: a fanout exchange broadcasting to every subscriber (3)
//   - routing: a direct exchange routing log lines by severity (4)
//   - topics: a topic exchange with Kombu's pattern semantics (5)
//   - rpc: request and reply with reply_to and correlation_id (6)
//
// and beyond the tutorials:
//
//   - demo: `make demo`, a producer and consumer over the Redis transport
//     on an embedded miniredis
//   - celery-worker: a Go Celery worker (tasks.add, tasks.echo, tasks.fail)
//     that Python's apply_async reaches
//   - celery-client: sends tasks a Python Celery worker runs, and reads
//     their results
//   - celery-canvas: sends a chain, a group and a chord of tasks.add and
//     tasks.echo, served by celery-worker or a Python worker, and checks
//     their results
//   - celery-metrics: serves /metrics for Prometheus with celery-exporter's
//     metrics, from the events of Go and Python workers (package celeryprom)
//
// Each runs its producer and consumers in one process and works with no
// setup on memory://; give --url (or $KOMBU_URL) to use a real broker:
//
//	go run ./examples/hello
//	go run ./examples/topics --url redis://localhost:6379/0
package examples
