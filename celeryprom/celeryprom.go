// Package celeryprom exports Prometheus metrics of a Celery estate built
// from its event stream, as danihodovic/celery-exporter does (its
// src/exporter.py), with the same metric names, types, labels and buckets,
// so the dashboards and alerts written for celery-exporter serve Go and
// Python workers alike:
//
//	celery_task_sent_total, celery_task_received_total,
//	celery_task_started_total, celery_task_succeeded_total,
//	celery_task_rejected_total, celery_task_revoked_total,
//	celery_task_retried_total       counters {name, hostname, queue_name}
//	celery_task_failed_total        counter  {name, hostname, exception, queue_name}
//	celery_task_runtime             histogram {name, hostname, queue_name}
//	celery_worker_up                gauge {hostname}
//	celery_worker_tasks_active      gauge {hostname}
//	celery_queue_length             gauge {queue_name}
//	celery_active_worker_count      gauge {queue_name}
//	celery_active_process_count     gauge {queue_name}
//
// hostname is the host part of the node name ("celery@web-1" counts as
// "web-1"), queue_name the queue of the task-sent event ("celery" when the
// exporter saw none: workers' task-received events do not name the
// queue), exception the class name of the exception repr. A task event
// also makes the other task counters of its labels visible at zero
// (task-sent excepted), as celery-exporter does.
//
// Workers must send events (celery.WithEvents for a Go worker, -E for
// Python's); task-sent needs celery.WithSentEvents (Celery's
// task_send_sent_event). The queue gauges are read at each scrape, as
// celery-exporter reads them: the length of every queue known (WithQueues,
// and those the workers report through active_queues), and the workers and
// pool processes consuming each. Unlike celery-exporter, which reads the
// priority 0 list of a Redis queue only, queue_length counts all its
// priorities. celery_active_consumer_count, which celery-exporter only sets
// for AMQP brokers, is not exported.
//
// Prometheus rather than OTel metrics: the metrics are celery-exporter's,
// whose users scrape them with Prometheus.
package celeryprom

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/celery"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBuckets are celery_task_runtime's buckets, prometheus_client's
// Histogram.DEFAULT_BUCKETS (celery-exporter's default).
var DefaultBuckets = []float64{.005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10}

// Option configures an Exporter.
type Option func(*config)

type config struct {
	buckets       []float64
	workerTimeout time.Duration
	purgeAfter    time.Duration
	genericSent   bool
	queues        []string
	prefix        string
	static        prometheus.Labels
	inspect       time.Duration
	maxTasks      int
	now           func() time.Time
}

// WithBuckets sets celery_task_runtime's buckets (--buckets; default
// DefaultBuckets).
func WithBuckets(b ...float64) Option { return func(c *config) { c.buckets = b } }

// WithWorkerTimeout sets after how long without a heartbeat a worker is
// reported down (--worker-timeout; default 5 minutes; 0 never).
func WithWorkerTimeout(d time.Duration) Option { return func(c *config) { c.workerTimeout = d } }

// WithPurgeOfflineWorkerMetrics sets after how long without a heartbeat a
// worker's series are removed (--purge-offline-worker-metrics; default 10
// minutes; 0 never).
func WithPurgeOfflineWorkerMetrics(d time.Duration) Option {
	return func(c *config) { c.purgeAfter = d }
}

// WithGenericHostnameTaskSent labels celery_task_sent_total with hostname
// "generic" (--generic-hostname-task-sent-metric), since the hosts that
// send tasks are many.
func WithGenericHostnameTaskSent() Option { return func(c *config) { c.genericSent = true } }

// WithQueues names queues whose length is exported even when no worker
// reports consuming them (--queues).
func WithQueues(q ...string) Option { return func(c *config) { c.queues = append(c.queues, q...) } }

// WithMetricPrefix replaces the "celery_" prefix of the metric names
// (--metric-prefix).
func WithMetricPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithStaticLabels adds labels with fixed values to every metric
// (--static-label).
func WithStaticLabels(l map[string]string) Option {
	return func(c *config) { c.static = prometheus.Labels(l) }
}

// WithInspectTimeout sets how long a scrape waits for the workers'
// stats and active_queues replies (default 1 s, celery inspect's).
func WithInspectTimeout(d time.Duration) Option { return func(c *config) { c.inspect = d } }

// Exporter turns Celery events into Prometheus metrics. It is a
// prometheus.Collector: register it, feed it events (Run, or Handle), and
// serve the registry. It is safe for concurrent use.
type Exporter struct {
	cfg  config
	conn *kombu.Connection
	// ctl sends a scrape's stats and active_queues broadcasts (at once:
	// a Control is safe for concurrent use).
	ctl *celery.Control

	counters   map[string]*prometheus.CounterVec
	runtime    *prometheus.HistogramVec
	workerUp   *prometheus.GaugeVec
	active     *prometheus.GaugeVec
	queueLen   *prometheus.GaugeVec
	queueWork  *prometheus.GaugeVec
	queueProcs *prometheus.GaugeVec

	mu       sync.Mutex
	tasks    map[string]*task
	order    []string // task ids, oldest first, to bound tasks
	lastSeen map[string]*seen
	queues   map[string]bool
}

// task is what the exporter keeps of a task (Celery State's Task fields
// celery-exporter reads).
type task struct {
	name, hostname, queue string
	// pastReceived: the task's state is past RECEIVED (and not RETRY).
	pastReceived bool
}

type seen struct {
	at        time.Time
	forgotten bool
}

// counterEvents are the task events with a counter, in celery-exporter's
// order.
var counterEvents = []string{"task-sent", "task-received", "task-started", "task-succeeded", "task-failed",
	"task-rejected", "task-revoked", "task-retried"}

var help = map[string]string{
	"task-sent":      "Sent when a task message is published.",
	"task-received":  "Sent when the worker receives a task.",
	"task-started":   "Sent just before the worker executes the task.",
	"task-succeeded": "Sent if the task executed successfully.",
	"task-failed":    "Sent if the execution of the task failed.",
	"task-rejected":  "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue.",
	"task-revoked":   "Sent if the task has been revoked.",
	"task-retried":   "Sent if the task failed, but will be retried in the future.",
}

// NewExporter returns an exporter of the estate on conn's broker (conn
// serves the queue lengths and the inspect broadcasts of each scrape, and
// Run's event stream).
func NewExporter(conn *kombu.Connection, opts ...Option) *Exporter {
	cfg := config{buckets: DefaultBuckets, workerTimeout: 5 * time.Minute, purgeAfter: 10 * time.Minute,
		prefix: "celery_", inspect: time.Second, maxTasks: 10000, now: time.Now}
	for _, f := range opts {
		f(&cfg)
	}
	e := &Exporter{cfg: cfg, conn: conn, ctl: celery.NewControl(conn), counters: map[string]*prometheus.CounterVec{},
		tasks: map[string]*task{}, lastSeen: map[string]*seen{}, queues: map[string]bool{}}
	for _, q := range cfg.queues {
		e.queues[q] = true
	}
	p, cl := cfg.prefix, cfg.static
	for _, ev := range counterEvents {
		labels := []string{"name", "hostname", "queue_name"}
		if ev == "task-failed" {
			labels = []string{"name", "hostname", "exception", "queue_name"}
		}
		e.counters[ev] = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: p + "task_" + strings.TrimPrefix(ev, "task-") + "_total", Help: help[ev], ConstLabels: cl,
		}, labels)
	}
	e.workerUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "worker_up",
		Help: "Indicates if a worker has recently sent a heartbeat.", ConstLabels: cl}, []string{"hostname"})
	e.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "worker_tasks_active",
		Help: "The number of tasks the worker is currently processing", ConstLabels: cl}, []string{"hostname"})
	e.runtime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "task_runtime",
		Help: "Histogram of task runtime measurements.", ConstLabels: cl, Buckets: cfg.buckets},
		[]string{"name", "hostname", "queue_name"})
	e.queueLen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "queue_length",
		Help: "The number of message in broker queue.", ConstLabels: cl}, []string{"queue_name"})
	e.queueWork = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "active_worker_count",
		Help: "The number of active workers in broker queue.", ConstLabels: cl}, []string{"queue_name"})
	e.queueProcs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: p + "active_process_count",
		Help: "The number of active processes in broker queue.", ConstLabels: cl}, []string{"queue_name"})
	return e
}

func (e *Exporter) collectors() []prometheus.Collector {
	out := []prometheus.Collector{e.runtime, e.workerUp, e.active, e.queueLen, e.queueWork, e.queueProcs}
	for _, ev := range counterEvents {
		out = append(out, e.counters[ev])
	}
	return out
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range e.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector: it first does what
// celery-exporter's scrape does (time out silent workers, read the queue
// gauges), then collects every metric.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.inspect+5*time.Second)
	defer cancel()
	e.Scrape(ctx)
	for _, c := range e.collectors() {
		c.Collect(ch)
	}
}

// Run feeds the exporter the events of conn's broker until ctx ends (a
// celery.EventReceiver). ready, if set, is called once it listens.
func (e *Exporter) Run(ctx context.Context, ready func()) error {
	return celery.NewEventReceiver(e.conn).Run(ctx, e.Handle, ready, nil)
}

// Handle updates the metrics with one event (celery-exporter's event
// handlers): task events with a counter, worker-heartbeat, worker-online
// and worker-offline; other events are ignored.
func (e *Exporter) Handle(ev celery.Event) {
	switch ev.Type {
	case "worker-heartbeat":
		e.heartbeat(ev)
	case "worker-online":
		e.workerStatus(ev, true)
	case "worker-offline":
		e.workerStatus(ev, false)
	default:
		if _, ok := e.counters[ev.Type]; ok && ev.UUID != "" {
			e.taskEvent(ev)
		}
	}
}

// taskEvent is celery-exporter's track_task_event.
func (e *Exporter) taskEvent(ev celery.Event) {
	e.mu.Lock()
	t := e.tasks[ev.UUID]
	if t == nil {
		// A task first seen here has no name yet: celery-exporter's
		// labels then read Python's None.
		t = &task{name: "None"}
		e.tasks[ev.UUID] = t
		e.order = append(e.order, ev.UUID)
		if len(e.order) > e.cfg.maxTasks {
			delete(e.tasks, e.order[0])
			e.order = e.order[1:]
		}
	}
	// Celery's State (Task.event) merges the event's fields into the
	// task, except that a task-received arriving after a later state (not
	// a retry) keeps only name, args and the like.
	if n, ok := ev.Fields["name"].(string); ok && n != "" {
		t.name = n
	}
	if ev.Type != "task-received" || !t.pastReceived {
		if q, ok := ev.Fields["queue"].(string); ok && q != "" {
			t.queue = q
		}
		t.hostname = ev.Hostname
	}
	switch ev.Type {
	case "task-retried":
		t.pastReceived = false
	case "task-sent", "task-received":
		// PENDING and RECEIVED never move the state forward from a later one.
	default:
		t.pastReceived = true
	}
	queue := t.queue
	if queue == "" {
		queue = "celery"
	}
	name, host := t.name, hostOf(t.hostname)
	e.mu.Unlock()

	if ev.Type == "task-sent" && e.cfg.genericSent {
		host = "generic"
	}
	for _, typ := range counterEvents {
		c := e.counters[typ]
		values := []string{name, host, queue}
		if typ == "task-failed" {
			exc := ""
			if typ == ev.Type {
				s, _ := ev.Fields["exception"].(string)
				exc = exceptionClass(s)
			}
			values = []string{name, host, exc, queue}
		}
		switch {
		case typ == ev.Type:
			c.WithLabelValues(values...).Inc()
		case ev.Type != "task-sent":
			// Other counters of these labels become visible at zero.
			c.WithLabelValues(values...).Add(0)
		}
	}
	if ev.Type == "task-succeeded" {
		rt, _ := number(ev.Fields["runtime"])
		e.runtime.WithLabelValues(name, host, queue).Observe(rt)
	}
}

// heartbeat is celery-exporter's track_worker_heartbeat: up while the
// heartbeat is within twice its frequency (Celery's Worker.alive), active
// as the heartbeat says.
func (e *Exporter) heartbeat(ev celery.Event) {
	host := hostOf(ev.Hostname)
	e.mu.Lock()
	e.lastSeen[host] = &seen{at: ev.Timestamp}
	e.mu.Unlock()
	freq, _ := number(ev.Fields["freq"])
	if freq <= 0 {
		freq = 2
	}
	up := 0.0
	if e.cfg.now().Before(ev.Timestamp.Add(time.Duration(2 * freq * float64(time.Second)))) {
		up = 1
	}
	active, _ := number(ev.Fields["active"])
	e.workerUp.WithLabelValues(host).Set(up)
	e.active.WithLabelValues(host).Set(active)
}

// workerStatus is celery-exporter's track_worker_status.
func (e *Exporter) workerStatus(ev celery.Event, online bool) {
	host := hostOf(ev.Hostname)
	if online {
		e.workerUp.WithLabelValues(host).Set(1)
		e.mu.Lock()
		e.lastSeen[host] = &seen{at: ev.Timestamp}
		e.mu.Unlock()
		return
	}
	e.workerUp.WithLabelValues(host).Set(0)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forget(host)
}

// forget is celery-exporter's forget_worker (e.mu held).
func (e *Exporter) forget(host string) {
	s, ok := e.lastSeen[host]
	if !ok {
		return
	}
	e.workerUp.WithLabelValues(host).Set(0)
	e.active.WithLabelValues(host).Set(0)
	s.forgotten = true
	if e.cfg.purgeAfter == 0 {
		delete(e.lastSeen, host)
	}
}

// Scrape does what celery-exporter does before each scrape: report
// workers silent for longer than the worker timeout as down, remove the
// series of those silent for longer than the purge delay, and read the
// queue gauges (queue lengths, and the workers and processes of each
// queue from the workers' stats and active_queues replies). Collect calls
// it; errors reading the broker leave the queue gauges as they were.
func (e *Exporter) Scrape(ctx context.Context) {
	e.timeOutWorkers()
	e.queueMetrics(ctx)
}

func (e *Exporter) timeOutWorkers() {
	now := e.cfg.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for host, s := range e.lastSeen {
		since := now.Sub(s.at)
		if e.cfg.workerTimeout > 0 && since > e.cfg.workerTimeout && !s.forgotten {
			e.forget(host)
		}
		if e.cfg.purgeAfter > 0 && since > e.cfg.purgeAfter {
			e.purge(host)
		}
	}
}

// purge removes every series of a host (e.mu held).
func (e *Exporter) purge(host string) {
	l := prometheus.Labels{"hostname": host}
	e.workerUp.DeletePartialMatch(l)
	e.active.DeletePartialMatch(l)
	e.runtime.DeletePartialMatch(l)
	for _, c := range e.counters {
		c.DeletePartialMatch(l)
	}
	delete(e.lastSeen, host)
}

func (e *Exporter) queueMetrics(ctx context.Context) {
	var stats, queues []celery.Reply
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		stats, _ = e.ctl.Stats(ctx, celery.WithReplyTimeout(e.cfg.inspect))
	}()
	go func() {
		defer wg.Done()
		queues, _ = e.ctl.Broadcast(ctx, "active_queues", nil, celery.WithReplyTimeout(e.cfg.inspect))
	}()
	wg.Wait()
	procs := map[string]int{}
	for _, r := range stats {
		m, _ := r.Value.(map[string]any)
		pool, _ := m["pool"].(map[string]any)
		p, _ := pool["processes"].([]any)
		procs[r.Hostname] = len(p)
	}
	workers, processes := map[string]int{}, map[string]int{}
	e.mu.Lock()
	for _, r := range queues {
		list, _ := r.Value.([]any)
		for _, qi := range list {
			m, _ := qi.(map[string]any)
			name, _ := m["name"].(string)
			if name == "" {
				continue
			}
			e.queues[name] = true
			workers[name]++
			processes[name] += procs[r.Hostname]
		}
	}
	names := make([]string, 0, len(e.queues))
	for q := range e.queues {
		names = append(names, q)
	}
	e.mu.Unlock()
	for _, q := range names {
		e.queueProcs.WithLabelValues(q).Set(float64(processes[q]))
		e.queueWork.WithLabelValues(q).Set(float64(workers[q]))
		n, err := e.conn.Len(ctx, q)
		if err != nil && !errors.Is(err, context.Canceled) {
			continue
		}
		if err == nil {
			e.queueLen.WithLabelValues(q).Set(float64(n))
		}
	}
}

// hostOf is celery-exporter's get_hostname: the host part of a node name
// (Celery's nodesplit: "name@host" gives host, a name without @ itself).
func hostOf(node string) string {
	if _, host, ok := strings.Cut(node, "@"); ok {
		return host
	}
	return node
}

var exceptionPattern = regexp.MustCompile(`^(\w+)\(`)

// exceptionClass is celery-exporter's get_exception_class_name: the class
// name of an exception repr ("ValueError('x')"), else "UnknownException".
func exceptionClass(repr string) string {
	if m := exceptionPattern.FindStringSubmatch(repr); m != nil {
		return m[1]
	}
	return "UnknownException"
}

// number reads a JSON number of an event field.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
