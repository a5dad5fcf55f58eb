package celery

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/entity"
)

// Remote control, the worker's side (celery/worker/control.py and
// pidbox.py over kombu/pidbox.py): the worker listens on its
// "<hostname>.celery.pidbox" queue, bound to the "celery.pidbox" fanout
// exchange, answers the commands Celery's worker answers, and replies
// through the "reply.celery.pidbox" direct exchange to the caller's
// routing key with the caller's ticket, so `celery inspect`, `celery
// control`, Flower and celery-exporter see a Go worker as a Python one.

// Pidbox names Celery uses (control_exchange "celery").
const (
	PidboxExchange      = "celery.pidbox"
	PidboxReplyExchange = "reply.celery.pidbox"
)

// pidboxQueue is the worker's mailbox queue.
func pidboxQueue(hostname string) kombu.Queue {
	return kombu.Queue{
		Name:       hostname + "." + PidboxExchange,
		Exchange:   kombu.Exchange{Name: PidboxExchange, Type: kombu.Fanout, Durable: false},
		AutoDelete: true,
	}
}

// controlReply is one reply waiting to be sent.
type controlReply struct {
	body                 map[string]any
	exchange, routingKey string
	ticket               string
}

// runPidbox consumes the mailbox until ctx ends. Replies go out through a
// bounded queue on their own goroutine, so a slow broker or a flood of
// commands never holds up tasks; a reply that does not fit is dropped and
// logged.
func (w *Worker) runPidbox(ctx context.Context, ready func()) {
	replies := make(chan controlReply, 64)
	go func() {
		p := w.conn.Producer()
		for {
			select {
			case <-ctx.Done():
				return
			case r := <-replies:
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_, err := p.Publish(pctx, r.body,
					kombu.WithExchange(kombu.Exchange{Name: r.exchange, Type: kombu.Direct, Durable: false}),
					kombu.WithRoutingKey(r.routingKey),
					kombu.WithHeaders(map[string]any{"ticket": r.ticket, "clock": w.state.clock.forward()}),
					kombu.WithDeliveryMode(entity.Transient))
				cancel()
				if err != nil {
					w.log.Warn("celery: control reply", "exchange", r.exchange, "routing_key", r.routingKey, "error", err)
				}
			}
		}
	}()
	q := pidboxQueue(w.opts.hostname)
	for ctx.Err() == nil {
		err := w.conn.Consumer([]kombu.Queue{q}, kombu.WithNoAck(), kombu.WithAccept("json"), kombu.WithReady(ready)).Consume(ctx, func(_ context.Context, m *kombu.Message) error {
			w.onControl(ctx, m, replies)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("celery: control mailbox stopped; listening again", "queue", q.Name, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// onControl handles one mailbox message as kombu's Node.handle_message:
// destination, or pattern and matcher, decide whether it is for this node;
// a message with a ticket and reply_to gets a reply {hostname: reply}.
func (w *Worker) onControl(ctx context.Context, m *kombu.Message, replies chan<- controlReply) {
	if c, ok := toInt(m.Headers["clock"]); ok {
		w.state.clock.adjust(int64(c))
	} else {
		w.state.clock.forward()
	}
	var body map[string]any
	if err := m.Decode(&body); err != nil {
		w.log.Warn("celery: malformed control message dropped", "error", err)
		return
	}
	if exp, ok := toFloat(m.Headers["expires"]); ok && exp > 0 && float64(time.Now().UnixNano())/1e9 > exp {
		w.log.Debug("celery: expired control message dropped", "method", body["method"])
		return
	}
	if !w.controlForMe(body) {
		return
	}
	method, _ := body["method"].(string)
	args, _ := body["arguments"].(map[string]any)
	w.log.Debug("celery: control command", "method", method, "arguments", args)
	reply, shutdown := w.controlCommand(ctx, method, args)
	ticket, _ := body["ticket"].(string)
	replyTo, _ := body["reply_to"].(map[string]any)
	if replyTo != nil && ticket != "" && !shutdown {
		ex, _ := replyTo["exchange"].(string)
		rk, _ := replyTo["routing_key"].(string)
		select {
		case replies <- controlReply{body: map[string]any{w.opts.hostname: reply}, exchange: ex, routingKey: rk, ticket: ticket}:
		default:
			w.log.Warn("celery: control reply dropped: too many pending", "method", method)
		}
	}
	if shutdown {
		w.log.Warn("celery: shutdown requested by remote control")
		go w.Shutdown()
	}
}

func (w *Worker) controlForMe(body map[string]any) bool {
	host := w.opts.hostname
	if dest, ok := body["destination"].([]any); ok && len(dest) > 0 {
		for _, d := range dest {
			if d == host {
				return true
			}
		}
		return false
	}
	pattern, _ := body["pattern"].(string)
	matcher, _ := body["matcher"].(string)
	if pattern != "" && matcher != "" {
		switch matcher {
		case "glob":
			ok, _ := globMatch(pattern, host)
			return ok
		case "pcre":
			re, err := regexp.Compile(pattern)
			return err == nil && re.MatchString(host)
		}
		return false
	}
	return true
}

// globMatch is fnmatch for node names.
func globMatch(pattern, name string) (bool, error) {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return false, err
	}
	return re.MatchString(name), nil
}

// controlAliases are the old names Celery's Panel still answers to.
var controlAliases = map[string]string{
	"dump_conf": "conf", "dump_schedule": "scheduled", "dump_reserved": "reserved",
	"dump_active": "active", "dump_revoked": "revoked", "dump_tasks": "registered",
}

func ok(v any) map[string]any  { return map[string]any{"ok": v} }
func nok(v any) map[string]any { return map[string]any{"error": v} }

// controlCommand runs one command and returns its reply (and whether the
// worker must shut down, which, as in Celery, sends no reply).
func (w *Worker) controlCommand(ctx context.Context, method string, a map[string]any) (reply any, shutdown bool) {
	str := func(k string) string { s, _ := a[k].(string); return s }
	if m, ok := controlAliases[method]; ok {
		method = m
	}
	switch method {
	case "ping":
		return ok("pong"), false
	case "clock":
		return map[string]any{"clock": w.state.clock.v.Load()}, false
	case "hello":
		if from := str("from_node"); from != w.opts.hostname {
			if r, isMap := a["revoked"].(map[string]any); isMap {
				w.state.revoked.update(r)
				w.stateChanged()
			}
			w.log.Info("celery: sync with", "node", from)
			return map[string]any{"revoked": w.state.revoked.data(), "clock": w.state.clock.forward()}, false
		}
		return nil, false
	case "stats":
		return w.stats(), false
	case "registered":
		names := w.Tasks()
		sort.Strings(names)
		out := make([]any, len(names))
		for i, n := range names {
			out[i] = n
		}
		return out, false
	case "active":
		w.state.mu.Lock()
		defer w.state.mu.Unlock()
		out := []any{}
		for _, at := range w.state.active {
			out = append(out, w.requestInfo(at.req, &at.started))
		}
		return out, false
	case "reserved":
		w.state.mu.Lock()
		defer w.state.mu.Unlock()
		out := []any{}
		for id, r := range w.state.reserved {
			if _, active := w.state.active[id]; active || w.isScheduled(r) {
				continue
			}
			out = append(out, w.requestInfo(r, nil))
		}
		return out, false
	case "scheduled":
		w.mu.Lock()
		held := make([]*request, 0, len(w.timers))
		for r := range w.timers {
			held = append(held, r)
		}
		w.mu.Unlock()
		out := []any{}
		for _, r := range held {
			out = append(out, map[string]any{"eta": r.tm.ETA.Format("2006-01-02T15:04:05.999999-07:00"),
				"priority": r.tm.Priority, "request": w.requestInfo(r, nil)})
		}
		return out, false
	case "revoked":
		out := []any{}
		for _, id := range w.state.revoked.list() {
			out = append(out, id)
		}
		return out, false
	case "query_task":
		ids := stringList(a["ids"])
		out := map[string]any{}
		w.state.mu.Lock()
		for _, id := range ids {
			if at, ok := w.state.active[id]; ok {
				out[id] = []any{"active", w.requestInfo(at.req, &at.started)}
			} else if r, ok := w.state.reserved[id]; ok {
				out[id] = []any{"reserved", w.requestInfo(r, nil)}
			}
		}
		w.state.mu.Unlock()
		return out, false
	case "revoke":
		ids := stringList(a["task_id"])
		w.state.revoked.add(time.Now(), ids...)
		w.stateChanged()
		w.cancelHeld(ctx, ids)
		if t, _ := a["terminate"].(bool); t {
			done := w.state.terminate(ids)
			if len(done) == 0 {
				return ok("terminate: tasks unknown"), false
			}
			return ok("terminate: " + strings.Join(done, ", ")), false
		}
		w.log.Info("celery: tasks flagged as revoked", "ids", ids)
		return ok("tasks " + strings.Join(ids, ", ") + " flagged as revoked"), false
	case "terminate":
		ids := stringList(a["task_id"])
		w.state.revoked.add(time.Now(), ids...)
		w.stateChanged()
		done := w.state.terminate(ids)
		if len(done) == 0 {
			return ok("terminate: tasks unknown"), false
		}
		return ok("terminate: " + strings.Join(done, ", ")), false
	case "revoke_by_stamped_headers":
		t, _ := a["terminate"].(bool)
		return w.controlRevokeByStamps(a["headers"], t), false
	case "rate_limit":
		return w.controlRateLimit(str("task_name"), a["rate_limit"]), false
	case "time_limit":
		return w.controlTimeLimit(str("task_name"), a["hard"], a["soft"]), false
	case "conf":
		return map[string]any{
			"worker_concurrency": w.opts.concurrency, "worker_prefetch_multiplier": w.opts.prefetchMult,
			"task_acks_late": w.opts.acksLate, "accept_content": stringsToAny(w.opts.accept),
			"task_queues": stringsToAny(w.opts.queues), "include": stringsToAny(w.Tasks()),
		}, false
	case "report":
		return ok(fmt.Sprintf("software -> kombu-go:%s go:%s\nplatform -> system:%s arch:%s\n",
			Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)), false
	case "enable_events", "disable_events":
		return w.controlEvents(method), false
	case "heartbeat":
		w.workerEvent("worker-heartbeat")
		return nil, false
	case "election":
		return nok("election: a kombu-go worker takes no part in elections (it has no gossip, as a Python worker --without-gossip)"), false
	case "memsample":
		return w.state.memSample(), false
	case "memdump":
		return w.state.memDump(a["samples"]), false
	case "objgraph":
		return nok("NotImplementedError('objgraph graphs Python objects; a kombu-go worker has none')"), false
	case "active_queues":
		out := []any{}
		for _, q := range w.activeQueues() {
			out = append(out, queueDict(q))
		}
		return out, false
	case "pool_grow", "pool_shrink":
		n, given := toInt(a["n"])
		if !given {
			n = 1
		}
		if method == "pool_grow" {
			w.growPool(n)
			return ok("pool will grow"), false
		}
		w.shrinkPool(n)
		return ok("pool will shrink"), false
	case "autoscale":
		return nok("ValueError('Autoscale not enabled')"), false
	case "add_consumer":
		if err := w.addConsumer(ctx, str("queue")); err != nil {
			return nok(fmt.Sprintf("add consumer %s: %v", str("queue"), err)), false
		}
		return ok("add consumer " + str("queue")), false
	case "cancel_consumer":
		if err := w.cancelConsumer(str("queue")); err != nil {
			return nok(err.Error()), false
		}
		return ok("no longer consuming from " + str("queue")), false
	case "pool_restart":
		return nok("ValueError('Pool restarts not enabled')"), false // Go code cannot be reloaded
	case "shutdown":
		return nil, true
	}
	return map[string]any{"error": fmt.Sprintf("KeyError('%s')", method)}, false
}

// cancelHeld revokes, at once, eta tasks held in timers among ids (Celery
// discards them when they fall due; the result is the same, sooner).
func (w *Worker) cancelHeld(ctx context.Context, ids []string) {
	var hit []*request
	w.mu.Lock()
	for r, t := range w.timers {
		if slices.Contains(ids, r.tm.ID) {
			t.Stop()
			delete(w.timers, r)
			w.qos.Decrement(1)
			hit = append(hit, r)
		}
	}
	w.mu.Unlock()
	for _, r := range hit {
		w.revokeRequest(context.WithoutCancel(ctx), r, "revoked")
	}
}

func (w *Worker) isScheduled(r *request) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.timers[r]
	return ok
}

// requestInfo is Celery's Request.info().
func (w *Worker) requestInfo(r *request, started *time.Time) map[string]any {
	tm := r.tm
	var ts any
	if started != nil {
		ts = float64(started.UnixNano()) / 1e9
	}
	args := tm.Args
	if args == nil {
		args = []any{}
	}
	kwargs := tm.Kwargs
	if kwargs == nil {
		kwargs = map[string]any{}
	}
	return map[string]any{
		"id": tm.ID, "name": tm.Task, "args": args, "kwargs": kwargs, "type": tm.Task,
		"hostname": w.opts.hostname, "time_start": ts, "acknowledged": r.msg.Acknowledged(),
		"delivery_info": map[string]any{"exchange": r.msg.DeliveryInfo.Exchange, "routing_key": r.msg.DeliveryInfo.RoutingKey,
			"priority": tm.Priority, "redelivered": r.msg.Redelivered},
		"worker_pid": os.Getpid(),
	}
}

// stats is the reply to `celery inspect stats`, shaped as a Python
// worker's (Flower and celery-exporter read pool, total, rusage, broker).
func (w *Worker) stats() map[string]any {
	w.state.mu.Lock()
	total := map[string]any{}
	for k, v := range w.state.total {
		total[k] = v
	}
	w.state.mu.Unlock()
	pid := os.Getpid()
	limit := w.poolSize() * w.opts.prefetchMult
	out := map[string]any{
		"total":  total,
		"pid":    pid,
		"clock":  strconv.FormatInt(w.state.clock.v.Load(), 10),
		"uptime": int(time.Since(w.state.started).Seconds()),
		"pool": map[string]any{
			"implementation": "kombu-go:goroutines", "max-concurrency": w.poolSize(),
			"processes": []any{pid}, "max-tasks-per-child": "N/A", "put-guarded-by-semaphore": false,
			"timeouts": []any{0, 0},
		},
		"prefetch_count": limit,
		"broker":         w.brokerInfo(),
		"sw_ident":       SoftwareIdent, "sw_ver": Version, "sw_sys": runtime.GOOS,
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		out["rusage"] = map[string]any{
			"utime": float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6, "stime": float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6,
			"maxrss": ru.Maxrss, "ixrss": ru.Ixrss, "idrss": ru.Idrss, "isrss": ru.Isrss, "minflt": ru.Minflt, "majflt": ru.Majflt,
			"nswap": ru.Nswap, "inblock": ru.Inblock, "oublock": ru.Oublock, "msgsnd": ru.Msgsnd, "msgrcv": ru.Msgrcv,
			"nsignals": ru.Nsignals, "nvcsw": ru.Nvcsw, "nivcsw": ru.Nivcsw,
		}
	} else {
		out["rusage"] = "N/A"
	}
	return out
}

func (w *Worker) brokerInfo() map[string]any {
	u := w.conn.URL() // redacted
	info := map[string]any{"transport": "redis", "hostname": "", "port": nil, "virtual_host": "", "ssl": false,
		"userid": nil, "insist": false, "connect_timeout": 4, "heartbeat": 120.0, "login_method": nil,
		"uri_prefix": nil, "failover_strategy": "round-robin", "transport_options": map[string]any{}, "alternates": []any{}}
	if scheme, rest, found := strings.Cut(u, "://"); found {
		info["transport"] = scheme
		hostport := rest
		if at := strings.LastIndex(hostport, "@"); at >= 0 {
			hostport = hostport[at+1:]
		}
		hostport, vhost, _ := strings.Cut(hostport, "/")
		vhost, _, _ = strings.Cut(vhost, "?")
		info["virtual_host"] = vhost
		if h, p, ok := strings.Cut(hostport, ":"); ok {
			info["hostname"] = h
			if n, err := strconv.Atoi(p); err == nil {
				info["port"] = n
			}
		} else {
			info["hostname"] = hostport
		}
		info["ssl"] = scheme == "rediss"
	}
	return info
}

// queueDict is kombu's Queue.as_dict(recurse=True) for a Celery queue.
func queueDict(name string) map[string]any {
	return map[string]any{
		"name": name,
		"exchange": map[string]any{"name": name, "type": "direct", "arguments": nil, "durable": true, "passive": false,
			"auto_delete": false, "delivery_mode": nil, "no_declare": false},
		"routing_key": name, "queue_arguments": nil, "binding_arguments": nil, "consumer_arguments": nil,
		"durable": true, "exclusive": false, "auto_delete": false, "no_ack": false, "alias": nil, "bindings": []any{},
		"no_declare": nil, "expires": nil, "message_ttl": nil, "max_length": nil, "max_length_bytes": nil, "max_priority": nil,
	}
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func stringsToAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// rateLimitRE is Celery's rate limit syntax: "10", "10/s", "100/m", "1000/h".
var rateLimitRE = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([smh]))?\s*$`)

// ParseRateLimit reads Celery's rate limit syntax ("10/s", "100/m",
// "1000/h", a plain number is per second) into tasks per second; "" or 0
// means no limit (0).
func ParseRateLimit(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	m := rateLimitRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("celery: invalid rate limit %q", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("celery: invalid rate limit %q", s)
	}
	switch m[2] {
	case "m":
		n /= 60
	case "h":
		n /= 3600
	}
	return n, nil
}

func (w *Worker) controlRateLimit(task string, v any) any {
	spec := ""
	switch x := v.(type) {
	case string:
		spec = x
	case nil:
	default:
		spec = fmt.Sprint(x)
	}
	per, err := ParseRateLimit(spec)
	if err != nil {
		return nok(fmt.Sprintf("Invalid rate limit string: ValueError(%s)", pyRepr(err.Error())))
	}
	if w.lookup(task) == nil {
		return nok("unknown task")
	}
	w.setRateLimit(task, per)
	_, isStr := v.(string)
	if f, isNum := toFloat(v); spec == "" || (!isStr && isNum && f == 0) {
		// Celery tests the argument's truth, not the rate: "0" (a string,
		// as the command line sends it) disables the limit but answers
		// "new rate limit set".
		return ok("rate limit disabled successfully")
	}
	return ok("new rate limit set successfully")
}

func (w *Worker) controlTimeLimit(task string, hard, soft any) any {
	reg := w.lookup(task)
	if reg == nil {
		return nok("unknown task")
	}
	h, _ := toFloat(hard)
	s, _ := toFloat(soft)
	// A new registration: tasks already running keep the one they read.
	n := *reg
	n.cfg.timeLimit = time.Duration(h * float64(time.Second))
	n.cfg.softTimeLimit = time.Duration(s * float64(time.Second))
	w.mu.Lock()
	w.handlers[task] = &n
	w.mu.Unlock()
	return ok("time limits set successfully")
}

func pyRepr(s string) string { return quoteRepr(s, 1<<20) }

// WithMingle makes the worker sync with the other workers when it starts,
// as Celery's mingle does (on by default in Celery, off here unless asked,
// because it costs a one-second wait at every start): it broadcasts hello
// with its revoked ids and, from every reply, takes the other node's
// revoked ids and adjusts its clock.
func WithMingle() WorkerOption { return func(o *workerOptions) { o.mingle = true } }

// mingle is Celery's Mingle.sync.
func (w *Worker) mingle(ctx context.Context) {
	replies, err := NewControl(w.conn).Broadcast(ctx, "hello",
		map[string]any{"from_node": w.opts.hostname, "revoked": w.state.revoked.data()}, WithReplyTimeout(time.Second))
	if err != nil {
		w.log.Warn("celery: mingle", "error", err)
		return
	}
	n := 0
	for _, r := range replies {
		if r.Hostname == w.opts.hostname {
			continue
		}
		m, ok := r.Value.(map[string]any)
		if !ok {
			continue
		}
		if rv, ok := m["revoked"].(map[string]any); ok {
			w.state.revoked.update(rv)
			w.stateChanged()
		}
		if c, ok := toInt(m["clock"]); ok {
			w.state.clock.adjust(int64(c))
		}
		n++
	}
	w.log.Info("celery: mingle: synced", "nodes", n)
}

// ExpandNodeName expands a node name as `celery worker -n` does
// (default_nodename, then host_format): a name without "@" is a host
// name, given the node name "celery" ("w1" is "celery@w1"); then %h is
// this machine's host name, %n its first label, %d the rest (the domain),
// %i the process index ("0": a Go worker is one process), %I the same with
// a dash prefix ("" for process 0), %% a percent sign.
func ExpandNodeName(pattern string) string {
	host, _ := os.Hostname()
	return expandNodeName(pattern, host)
}

func expandNodeName(pattern, host string) string {
	if !strings.Contains(pattern, "@") {
		pattern = "celery@" + pattern
	}
	name, domain, _ := strings.Cut(host, ".")
	return strings.NewReplacer("%%", "%", "%h", host, "%n", name, "%d", domain, "%i", "0", "%I", "").Replace(pattern)
}
