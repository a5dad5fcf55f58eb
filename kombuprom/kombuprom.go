// Package kombuprom exports a kombu-go Connection's message metrics to
// Prometheus: it is a kombu.Observer (give it to kombu.Dial with
// kombu.WithObserver) and a prometheus.Collector (register it). Counters
// and histograms follow the events as they happen (publishes, fetches,
// deliveries, and how each delivered message ended: acked, requeued,
// rejected, dead-lettered, restored); queue depth per priority and the
// unacked records are read from the broker at scrape time for the queues
// given to WatchQueues.
//
// The metrics, with the default namespace "kombu":
//
//	kombu_published_total{exchange}                 messages published
//	kombu_publish_errors_total{exchange}            publishes that failed
//	kombu_publish_duration_seconds{exchange}        histogram of publish round trips
//	kombu_fetched_total                             messages taken from the broker
//	kombu_fetch_duration_seconds                    histogram of fetch round trips (a blocking fetch includes its wait)
//	kombu_delivered_total{queue}                    messages handed to consumers
//	kombu_settled_total{queue,outcome}              outcome: acked, requeued, rejected, dead_lettered, restored
//	kombu_in_flight{queue}                          delivered and not yet settled (prefetch in use)
//	kombu_restored_expired_total                    unacked messages restored after their visibility timeout
//	kombu_queue_length{queue,priority}              waiting messages per priority list, read at scrape
//	kombu_unacked                                   unacked records on the broker, read at scrape
//	kombu_unacked_oldest_age_seconds                age of the oldest unacked record, read at scrape
//
// For Celery's own metrics (celery_task_*, celery_worker_*) with the names
// celery-exporter uses, see package celeryprom.
package kombuprom

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kombu-go/kombu"
)

// Options configure Metrics. The zero value works.
type Options struct {
	// Namespace prefixes every metric name; "" means "kombu".
	Namespace string
	// ConstLabels are added to every metric (e.g. the service name).
	ConstLabels prometheus.Labels
	// Buckets are the duration histograms' buckets; nil means
	// prometheus.DefBuckets.
	Buckets []float64
	// ScrapeTimeout bounds the broker reads of a scrape (queue lengths,
	// unacked records); zero means 5 s.
	ScrapeTimeout time.Duration
}

// Metrics is a kombu.Observer and a prometheus.Collector. It is safe for
// concurrent use.
type Metrics struct {
	published, publishErrors *prometheus.CounterVec
	publishDuration          *prometheus.HistogramVec
	fetched                  prometheus.Counter
	fetchDuration            prometheus.Histogram
	delivered                *prometheus.CounterVec
	settled                  *prometheus.CounterVec
	inFlight                 *prometheus.GaugeVec
	restoredExpired          prometheus.Counter

	queueLength  *prometheus.Desc
	unacked      *prometheus.Desc
	unackedAge   *prometheus.Desc
	scrapeErrors prometheus.Counter
	timeout      time.Duration

	mu     sync.Mutex
	conn   *kombu.Connection // WatchQueues
	queues []string
}

var _ kombu.Observer = (*Metrics)(nil)
var _ prometheus.Collector = (*Metrics)(nil)

// New returns the metrics, registered with nothing yet.
func New(o Options) *Metrics {
	ns := o.Namespace
	if ns == "" {
		ns = "kombu"
	}
	buckets := o.Buckets
	if buckets == nil {
		buckets = prometheus.DefBuckets
	}
	cl := o.ConstLabels
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl}, labels)
	}
	m := &Metrics{
		published:     counter("published_total", "Messages published.", "exchange"),
		publishErrors: counter("publish_errors_total", "Publishes that failed.", "exchange"),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "publish_duration_seconds",
			Help: "Publish round trips to the broker.", Buckets: buckets, ConstLabels: cl}, []string{"exchange"}),
		fetched: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "fetched_total", Help: "Messages taken from the broker by consumers.", ConstLabels: cl}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "fetch_duration_seconds",
			Help: "Fetch round trips that took messages (a blocking fetch includes its wait for the first).", Buckets: buckets, ConstLabels: cl}),
		delivered: counter("delivered_total", "Messages handed to consumers.", "queue"),
		settled:   counter("settled_total", "Delivered messages by how they ended: acked, requeued, rejected, dead_lettered, restored.", "queue", "outcome"),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "in_flight",
			Help: "Messages delivered and not yet settled (prefetch in use).", ConstLabels: cl}, []string{"queue"}),
		restoredExpired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "restored_expired_total",
			Help: "Unacked messages restored after their visibility timeout.", ConstLabels: cl}),
		queueLength: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "queue_length"),
			"Messages waiting in a queue's priority list (read from the broker at scrape).", []string{"queue", "priority"}, cl),
		unacked: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "unacked"),
			"Unacked records on the broker (read at scrape).", nil, cl),
		unackedAge: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "unacked_oldest_age_seconds"),
			"Age of the oldest unacked record (read at scrape; 0 when none).", nil, cl),
		scrapeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "scrape_errors_total",
			Help: "Broker reads of a scrape that failed.", ConstLabels: cl}),
		timeout: o.ScrapeTimeout,
	}
	if m.timeout <= 0 {
		m.timeout = 5 * time.Second
	}
	return m
}

// WatchQueues makes every scrape read the length of each priority list of
// the queues on conn, and conn's unacked records (a broker that cannot be
// inspected counts a scrape error instead). A later call replaces the
// earlier one.
func (m *Metrics) WatchQueues(conn *kombu.Connection, queues ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conn, m.queues = conn, append([]string(nil), queues...)
}

// Published implements kombu.Observer.
func (m *Metrics) Published(exchange, _ string, _ int, d time.Duration, err error) {
	if err != nil {
		m.publishErrors.WithLabelValues(exchange).Inc()
		return
	}
	m.published.WithLabelValues(exchange).Inc()
	m.publishDuration.WithLabelValues(exchange).Observe(d.Seconds())
}

// Fetched implements kombu.Observer.
func (m *Metrics) Fetched(n int, d time.Duration) {
	m.fetched.Add(float64(n))
	m.fetchDuration.Observe(d.Seconds())
}

// Delivered implements kombu.Observer.
func (m *Metrics) Delivered(queue string) {
	m.delivered.WithLabelValues(queue).Inc()
	m.inFlight.WithLabelValues(queue).Inc()
}

// Settled implements kombu.Observer.
func (m *Metrics) Settled(queue string, s kombu.Settlement) {
	m.settled.WithLabelValues(queue, s.String()).Inc()
	if s != kombu.DeadLettered { // a dead-lettered message was never delivered
		m.inFlight.WithLabelValues(queue).Dec()
	}
}

// RestoredExpired implements kombu.Observer.
func (m *Metrics) RestoredExpired(n int) { m.restoredExpired.Add(float64(n)) }

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.publishErrors, m.publishDuration, m.fetched, m.fetchDuration,
		m.delivered, m.settled, m.inFlight, m.restoredExpired, m.scrapeErrors}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- m.queueLength
	ch <- m.unacked
	ch <- m.unackedAge
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	conn, queues := m.conn, m.queues
	m.mu.Unlock()
	if conn != nil {
		m.collectBroker(conn, queues, ch)
	}
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// collectBroker reads queue lengths and unacked records from the broker.
func (m *Metrics) collectBroker(conn *kombu.Connection, queues []string, ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	for _, q := range queues {
		lens, err := conn.QueueLengths(ctx, q)
		if err != nil {
			m.scrapeErrors.Inc()
			continue
		}
		for _, l := range lens {
			ch <- prometheus.MustNewConstMetric(m.queueLength, prometheus.GaugeValue, float64(l.Length), q, strconv.Itoa(l.Step))
		}
	}
	n, oldest, err := conn.UnackedCount(ctx)
	if err != nil {
		m.scrapeErrors.Inc()
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(m.unacked, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.unackedAge, prometheus.GaugeValue, age)
}
