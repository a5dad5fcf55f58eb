package celery

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
)

// Events, the worker's side (celery/events/dispatcher.py,
// celery/worker/heartbeat.py, celery/worker/request.py): event dicts
// published on the "celeryev" exchange (fanout on Redis, as Celery makes it
// there, so on the wire a PUBLISH to /<db>.celeryev/<routing key>) with
// the routing key "worker.heartbeat", "task.succeeded"... and the header
// hostname. Worker events (online, heartbeat every HeartbeatInterval,
// offline) are sent always, as a Celery worker does without -E; task
// events only when enabled (WithEvents, or the enable_events command).

// EventExchange is Celery's event exchange.
const EventExchange = "celeryev"

// HeartbeatInterval is how often the worker sends worker-heartbeat
// (Celery's default 2 s).
var HeartbeatInterval = 2 * time.Second

// WithEvents makes the worker send task events (Celery's worker -E /
// worker_send_task_events).
func WithEvents() WorkerOption { return func(o *workerOptions) { o.taskEvents = true } }

// WithoutHeartbeat stops the worker-online/heartbeat/offline events
// (Celery's --without-heartbeat).
func WithoutHeartbeat() WorkerOption { return func(o *workerOptions) { o.noHeartbeat = true } }

// eventer publishes events from a bounded queue on its own goroutine:
// events are best effort (at most once, as on Celery's Redis transport) and
// never hold up a task.
type eventer struct {
	w    *Worker
	ch   chan map[string]any
	stop chan struct{}
	done chan struct{}
}

func (w *Worker) startEvents(ctx context.Context) *eventer {
	e := &eventer{w: w, ch: make(chan map[string]any, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		p := w.conn.Producer()
		for {
			var ev map[string]any
			select {
			case ev = <-e.ch:
			case <-e.stop:
				select {
				case ev = <-e.ch: // drain what was queued before the stop
				default:
					return
				}
			}
			typ, _ := ev["type"].(string)
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := publishEvent(pctx, p, w.opts.hostname, ev)
			cancel()
			if err != nil {
				w.log.Debug("celery: event not sent", "type", typ, "error", err)
			}
		}
	}()
	return e
}

// close sends what is queued and stops.
func (e *eventer) close() {
	if e == nil {
		return
	}
	close(e.stop)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
	}
}

// send queues an event with Celery's common fields.
func (e *eventer) send(typ string, fields map[string]any) {
	if e == nil {
		return
	}
	w := e.w
	ev := newEvent(typ, w.opts.hostname, w.state.clock.forward(), fields)
	select {
	case e.ch <- ev:
	default:
		w.log.Debug("celery: event dropped: queue full", "type", typ)
	}
}

// newEvent returns an event dict with the fields celery.events.Event and
// EventDispatcher.publish give every event.
func newEvent(typ, hostname string, clock int64, fields map[string]any) map[string]any {
	now := time.Now()
	_, off := now.Zone()
	ev := map[string]any{
		"hostname": hostname, "utcoffset": -off / 3600, "pid": os.Getpid(),
		"clock": clock, "timestamp": float64(now.UnixNano()) / 1e9, "type": typ,
	}
	for k, v := range fields {
		ev[k] = v
	}
	return ev
}

// publishEvent publishes one event on the celeryev exchange, as
// EventDispatcher._publish does: routing key the type with dots, header
// hostname, transient.
func publishEvent(ctx context.Context, p *kombu.Producer, hostname string, ev map[string]any) error {
	typ, _ := ev["type"].(string)
	_, err := p.Publish(ctx, ev, kombu.WithExchange(kombu.Exchange{Name: EventExchange, Type: kombu.Fanout, Durable: true}),
		kombu.WithRoutingKey(strings.ReplaceAll(typ, "-", ".")),
		kombu.WithHeaders(map[string]any{"hostname": hostname}), kombu.WithDeliveryMode(entity.Transient))
	return err
}

func (w *Worker) taskEventsOn() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.eventsOn && w.events != nil
}

// taskEvent sends a task event (uuid added) when task events are on.
func (w *Worker) taskEvent(typ string, req *request, fields map[string]any) {
	if req == nil || req.tm == nil || !w.taskEventsOn() {
		return
	}
	if fields == nil {
		fields = map[string]any{}
	}
	fields["uuid"] = req.tm.ID
	w.events.send(typ, fields)
}

// workerEvent sends worker-online, -heartbeat or -offline with what
// Celery's Heart sends.
func (w *Worker) workerEvent(typ string) {
	if w.events == nil {
		return
	}
	w.state.mu.Lock()
	active := len(w.state.active)
	processed := w.state.processed
	w.state.mu.Unlock()
	w.events.send(typ, map[string]any{
		"freq": HeartbeatInterval.Seconds(), "active": active, "processed": processed, "loadavg": loadAvg(),
		"sw_ident": SoftwareIdent, "sw_ver": Version, "sw_sys": runtime.GOOS,
	})
}

// runHeart sends worker-online, a heartbeat every HeartbeatInterval, and
// worker-offline when ctx ends.
func (w *Worker) runHeart(ctx context.Context, stopped chan<- struct{}) {
	defer close(stopped)
	w.workerEvent("worker-online")
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.workerEvent("worker-offline")
			return
		case <-t.C:
			w.workerEvent("worker-heartbeat")
		}
	}
}

// loadAvg is os.getloadavg() rounded as Celery's load_average does.
func loadAvg() []any {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return []any{0.0, 0.0, 0.0}
	}
	f := strings.Fields(string(b))
	out := []any{0.0, 0.0, 0.0}
	for i := 0; i < 3 && i < len(f); i++ {
		if v, err := strconv.ParseFloat(f[i], 64); err == nil {
			out[i] = float64(int(v*100+0.5)) / 100
		}
	}
	return out
}

func orRepr(s string, f func() string) string {
	if s != "" {
		return s
	}
	return f()
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func isoOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return formatISO(t)
}

// normalizeExc is an exception as a decoded result dict, for pyExcRepr.
func normalizeExc(e *TaskError) any {
	if e == nil {
		return nil
	}
	return map[string]any{"exc_type": e.Type, "exc_module": e.Module, "exc_message": e.Args}
}

// signumOf is the signal number Celery reports in task-revoked (SIGTERM's
// for a terminate, none otherwise).
func signumOf(reason string) any {
	if reason == "terminated" {
		return 15
	}
	return nil
}
