package celery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
)

// Event is one Celery event (celery.events.Event): its type
// ("worker-heartbeat", "task-succeeded"...), the common fields, and every
// field as sent.
type Event struct {
	Type      string
	Hostname  string
	Timestamp time.Time
	Clock     int64
	// UUID is the task id of a task event ("" for worker events).
	UUID string
	// Fields holds every field of the event as decoded JSON.
	Fields map[string]any
}

// EventReceiver receives the events Celery workers (Python or Go) send, as
// Celery's app.events.Receiver does: from its own queue bound to the
// celeryev exchange with the routing key "#".
type EventReceiver struct {
	conn *kombu.Connection
}

// NewEventReceiver returns a receiver over a broker connection.
func NewEventReceiver(conn *kombu.Connection) *EventReceiver { return &EventReceiver{conn: conn} }

// Run calls handle for every event until ctx ends. A message that is not
// an event (not a JSON object with a type) is dropped and reported to
// onBad, if set; it never stops the stream. ready, if set, is called once
// the receiver listens.
func (r *EventReceiver) Run(ctx context.Context, handle func(Event), ready func(), onBad func(error)) error {
	q := kombu.Queue{
		Name:     "celeryev." + uuid.NewString(),
		Exchange: kombu.Exchange{Name: EventExchange, Type: kombu.Fanout, Durable: true}, RoutingKey: "#",
		AutoDelete: true, Exclusive: true,
	}
	opts := []kombu.ConsumerOption{kombu.WithNoAck(), kombu.WithAccept("json")}
	if ready != nil {
		opts = append(opts, kombu.WithReady(ready))
	}
	err := r.conn.Consumer([]kombu.Queue{q}, opts...).Consume(ctx, func(_ context.Context, m *kombu.Message) error {
		evs, err := ParseEvents(m)
		if err != nil && onBad != nil {
			onBad(err)
		}
		for _, ev := range evs {
			handle(ev)
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ParseEvents reads an event message: one event, or a list of them (a
// Celery worker with a buffered task group sends "task.multi" lists). The
// events that can be read are returned with an error for the others.
func ParseEvents(m *kombu.Message) ([]Event, error) {
	var body any
	if err := m.Decode(&body); err != nil {
		return nil, fmt.Errorf("celery: malformed event: %w", err)
	}
	items, isList := body.([]any)
	if !isList {
		items = []any{body}
	}
	var out []Event
	var bad error
	for _, it := range items {
		ev, err := eventFrom(it)
		if err != nil {
			bad = err
			continue
		}
		out = append(out, ev)
	}
	return out, bad
}

func eventFrom(v any) (Event, error) {
	f, ok := v.(map[string]any)
	if !ok {
		return Event{}, fmt.Errorf("celery: malformed event: %T, not a dict", v)
	}
	typ, _ := f["type"].(string)
	if typ == "" {
		return Event{}, fmt.Errorf("celery: malformed event: no type in %v", f)
	}
	ev := Event{Type: typ, Fields: f}
	ev.Hostname, _ = f["hostname"].(string)
	ev.UUID, _ = f["uuid"].(string)
	if ts, ok := toFloat(f["timestamp"]); ok {
		ev.Timestamp = time.Unix(0, int64(ts*1e9))
	}
	if c, ok := toInt(f["clock"]); ok {
		ev.Clock = int64(c)
	}
	return ev, nil
}

// WorkerInfo is what EventState knows of a worker.
type WorkerInfo struct {
	Hostname      string
	Online        bool
	LastHeartbeat time.Time
	Freq          float64
	Processed     int
	Active        int
	SwIdent       string
	SwVer         string
	LoadAvg       []any
}

// Alive reports whether the worker is online and heard from within twice
// its heartbeat interval (Celery's heartbeat_expires with the default
// 200% window).
func (w WorkerInfo) Alive(now time.Time) bool {
	if !w.Online || w.LastHeartbeat.IsZero() {
		return false
	}
	freq := w.Freq
	if freq <= 0 {
		freq = 2
	}
	return now.Before(w.LastHeartbeat.Add(time.Duration(freq * 2 * float64(time.Second))))
}

// TaskInfo is what EventState knows of a task.
type TaskInfo struct {
	UUID, Name, State       string
	Worker                  string
	Args, Kwargs            string
	Result, Exception       string
	Retries                 int
	Received, Started, Done time.Time
	Runtime                 float64
}

// EventState keeps, from the event stream, the workers and tasks, as
// Celery's celery.events.state.State does for Flower. It is safe for
// concurrent use.
type EventState struct {
	mu      sync.Mutex
	workers map[string]*WorkerInfo
	tasks   map[string]*TaskInfo
	counts  map[string]int // events seen per type
}

// NewEventState returns an empty state.
func NewEventState() *EventState {
	return &EventState{workers: map[string]*WorkerInfo{}, tasks: map[string]*TaskInfo{}, counts: map[string]int{}}
}

var taskStates = map[string]string{
	"task-sent": "PENDING", "task-received": "RECEIVED", "task-started": "STARTED", "task-succeeded": "SUCCESS",
	"task-failed": "FAILURE", "task-retried": "RETRY", "task-revoked": "REVOKED", "task-rejected": "REJECTED",
}

// Apply updates the state with one event.
func (s *EventState) Apply(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[ev.Type]++
	if ev.Hostname != "" {
		w := s.workers[ev.Hostname]
		if w == nil {
			w = &WorkerInfo{Hostname: ev.Hostname}
			s.workers[ev.Hostname] = w
		}
		switch ev.Type {
		case "worker-online", "worker-heartbeat":
			w.Online = true
			w.LastHeartbeat = ev.Timestamp
			w.Freq, _ = toFloat(ev.Fields["freq"])
			w.Processed, _ = toInt(ev.Fields["processed"])
			w.Active, _ = toInt(ev.Fields["active"])
			w.SwIdent, _ = ev.Fields["sw_ident"].(string)
			w.SwVer, _ = ev.Fields["sw_ver"].(string)
			w.LoadAvg, _ = ev.Fields["loadavg"].([]any)
		case "worker-offline":
			w.Online = false
		}
	}
	st, isTask := taskStates[ev.Type]
	if !isTask || ev.UUID == "" {
		return
	}
	t := s.tasks[ev.UUID]
	if t == nil {
		t = &TaskInfo{UUID: ev.UUID}
		s.tasks[ev.UUID] = t
	}
	// A late event never moves a task back from a ready state.
	if !(State(t.State).Ready() && !State(st).Ready()) {
		t.State = st
	}
	if ev.Type != "task-sent" {
		t.Worker = ev.Hostname
	}
	if n, ok := ev.Fields["name"].(string); ok && n != "" {
		t.Name = n
	}
	switch ev.Type {
	case "task-received":
		t.Received = ev.Timestamp
		t.Args, _ = ev.Fields["args"].(string)
		t.Kwargs, _ = ev.Fields["kwargs"].(string)
		t.Retries, _ = toInt(ev.Fields["retries"])
	case "task-started":
		t.Started = ev.Timestamp
	case "task-succeeded":
		t.Done = ev.Timestamp
		t.Result = fmt.Sprint(ev.Fields["result"])
		t.Runtime, _ = toFloat(ev.Fields["runtime"])
	case "task-failed", "task-retried":
		t.Done = ev.Timestamp
		t.Exception, _ = ev.Fields["exception"].(string)
	case "task-revoked", "task-rejected":
		t.Done = ev.Timestamp
	}
}

// Workers returns a copy of every worker seen.
func (s *EventState) Workers() []WorkerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerInfo, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, *w)
	}
	return out
}

// Worker returns what is known of one worker.
func (s *EventState) Worker(hostname string) (WorkerInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workers[hostname]
	if !ok {
		return WorkerInfo{}, false
	}
	return *w, true
}

// Task returns what is known of one task.
func (s *EventState) Task(id string) (TaskInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return TaskInfo{}, false
	}
	return *t, true
}

// Tasks returns a copy of every task seen.
func (s *EventState) Tasks() []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TaskInfo, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, *t)
	}
	return out
}

// Counts returns how many events of each type were seen.
func (s *EventState) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}
