package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/kombu-go/kombu"
)

func runPublish(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "publish", "--exchange NAME [flags] BODY", "Publishes BODY (\"-\": one message per line of stdin) and prints each message's delivery tag.")
	var cf connFlags
	cf.register(fs)
	exchange := fs.String("exchange", "", "exchange `name` (\"\" is the default exchange: the routing key names the queue)")
	typ := fs.String("type", "", "exchange type: direct, topic or fanout (default: topic if the exchange's bindings hold topic patterns, else direct; fanout is never guessed)")
	rk := fs.String("routing-key", "", "routing key")
	priority := fs.Int("priority", 0, "priority 0..9 (on Redis, 0 is consumed first)")
	serializer := fs.String("serializer", "", "json (BODY is JSON text, sent as that value) or raw (bytes as is); default: text/plain string")
	contentType := fs.String("content-type", "", "send BODY as is with this content type")
	compression := fs.String("compression", "", "compression: zlib")
	var headers multiFlag
	fs.Var(&headers, "header", "header `k=v` (v parsed as JSON if it is JSON, else a string; repeatable)")
	replyTo := fs.String("reply-to", "", "reply_to property")
	corrID := fs.String("correlation-id", "", "correlation_id property")
	declareQ := fs.String("declare-queue", "", "declare this `queue` bound to the exchange with the routing key first")
	count := fs.Int("count", 1, "publish each body this many times")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{"want exactly one BODY argument (\"-\" for stdin)"}
	}
	if *count < 1 {
		return usageError{"--count must be at least 1"}
	}
	switch *serializer {
	case "", "json", "raw":
	default:
		return usageError{fmt.Sprintf("--serializer %q: want json or raw", *serializer)}
	}
	if err := checkType(*typ); err != nil {
		return err
	}
	var hopts []kombu.PublishOption
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return usageError{fmt.Sprintf("--header %q: want k=v", h)}
		}
		// A JSON value goes in as its text, written as Python's json.dumps
		// would (integers stay integers, object keys keep their order).
		var val any = v
		if json.Valid([]byte(v)) {
			val = json.RawMessage(v)
		}
		hopts = append(hopts, kombu.WithHeader(k, val))
	}
	if *serializer == "json" && *contentType == "" && fs.Arg(0) != "-" && !json.Valid([]byte(fs.Arg(0))) {
		return notJSON(fs.Arg(0))
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ex := kombu.Exchange{Name: *exchange}
	if *exchange != "" {
		if ex.Type, err = exchangeType(ctx, conn, *exchange, *typ); err != nil {
			return err
		}
		if err := conn.DeclareExchange(ctx, ex); err != nil {
			return err
		}
	}
	opts := []kombu.PublishOption{kombu.WithExchange(ex), kombu.WithRoutingKey(*rk), kombu.WithPriority(*priority)}
	if *declareQ != "" {
		q := kombu.Queue{Name: *declareQ}
		if *exchange != "" {
			q.Exchange, q.RoutingKey = ex, *rk
		}
		opts = append(opts, kombu.WithDeclare(q))
	}
	if *compression != "" {
		opts = append(opts, kombu.WithCompression(*compression))
	}
	if *replyTo != "" {
		opts = append(opts, kombu.WithReplyTo(*replyTo))
	}
	if *corrID != "" {
		opts = append(opts, kombu.WithCorrelationID(*corrID))
	}
	prod := conn.Producer(append(opts, hopts...)...)
	unrouted := 0
	prepare := func(text string) (any, []kombu.PublishOption, error) {
		var body any = text
		var popts []kombu.PublishOption
		switch {
		case *contentType != "":
			body = []byte(text)
			popts = append(popts, kombu.WithContentType(*contentType, ""))
		case *serializer == "json":
			// Sent as json.dumps(json.loads(BODY)) would send it: the value
			// re-encoded in Python's style, integers and key order kept.
			if !json.Valid([]byte(text)) {
				return nil, nil, notJSON(text)
			}
			body = json.RawMessage(text)
			popts = append(popts, kombu.WithSerializer("json"))
		case *serializer == "raw":
			body = []byte(text)
			popts = append(popts, kombu.WithSerializer("raw"))
		}
		return body, popts, nil
	}
	send := func(text string) error {
		body, popts, err := prepare(text)
		if err != nil {
			return err
		}
		for i := 0; i < *count; i++ {
			res, err := prod.Publish(ctx, body, popts...)
			if err != nil {
				return err
			}
			if res.Routed == 0 {
				unrouted++
			}
			fmt.Fprintln(e.stdout, res.DeliveryTag)
		}
		return nil
	}
	// Kombu drops a message no binding matches; say so (exit status 0).
	defer func() {
		if unrouted > 0 {
			fmt.Fprintf(e.stderr, "kombu publish: warning: %d message(s) matched no queue (exchange %q, routing key %q) and were dropped\n", unrouted, *exchange, *rk)
		}
	}()
	if fs.Arg(0) != "-" {
		return send(fs.Arg(0))
	}
	return publishLines(ctx, e, prod, prepare, *count, &unrouted) // publish_stdin.go
}

// notJSON is the usage error for a --serializer json BODY that is not JSON.
func notJSON(text string) error {
	var v any
	err := json.Unmarshal([]byte(text), &v)
	return usageError{fmt.Sprintf("BODY is not JSON: %v", err)}
}

// checkType checks a --type value ("" means: see exchangeType).
func checkType(typ string) error {
	switch typ {
	case "", "direct", "topic", "fanout":
		return nil
	}
	return usageError{fmt.Sprintf("--type %q: want direct, topic or fanout", typ)}
}

// exchangeType returns typ, or when it is "" the type the exchange's
// binding table shows: topic if a row holds a topic pattern, else direct.
// (Kombu keeps exchange types in each process, not on Redis, so a fanout
// exchange cannot be told from a direct one by its table.)
func exchangeType(ctx context.Context, conn *kombu.Connection, exchange, typ string) (kombu.ExchangeType, error) {
	if typ != "" {
		return kombu.ExchangeType(typ), nil
	}
	rows, err := conn.Bindings(ctx, exchange)
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		if r.Pattern != "" {
			return kombu.Topic, nil
		}
	}
	return kombu.Direct, nil
}

// messageJSON is the line format of consume and peek.
type messageJSON struct {
	Body            any            `json:"body"`
	BodyBase64      string         `json:"body_base64"`
	ContentType     string         `json:"content_type"`
	ContentEncoding string         `json:"content_encoding"`
	Headers         map[string]any `json:"headers"`
	Properties      map[string]any `json:"properties"`
	Exchange        string         `json:"exchange"`
	RoutingKey      string         `json:"routing_key"`
	Priority        int            `json:"priority"`
	DeliveryTag     string         `json:"delivery_tag"`
	Redelivered     bool           `json:"redelivered"`
}

func toJSON(m *kombu.Message) messageJSON {
	out := messageJSON{
		BodyBase64:      base64.StdEncoding.EncodeToString(m.Body),
		ContentType:     m.ContentType,
		ContentEncoding: m.ContentEncoding,
		Headers:         m.Headers,
		Exchange:        m.DeliveryInfo.Exchange,
		RoutingKey:      m.DeliveryInfo.RoutingKey,
		Priority:        m.Properties.Priority,
		DeliveryTag:     m.DeliveryTag,
		Redelivered:     m.Redelivered,
	}
	if out.Headers == nil {
		out.Headers = map[string]any{}
	}
	// JSON is printed as it came (numbers and key order untouched); a JSON
	// body that is not valid JSON (Python's NaN, say) is printed as text.
	if m.ContentType == "application/json" && json.Valid(m.Body) && utf8.Valid(m.Body) {
		out.Body = json.RawMessage(m.Body)
	}
	if out.Body == nil && utf8.Valid(m.Body) {
		out.Body = string(m.Body)
	}
	p := map[string]any{}
	for k, v := range m.Properties.Extra {
		p[k] = v
	}
	if m.Properties.CorrelationID != "" {
		p["correlation_id"] = m.Properties.CorrelationID
	}
	if m.Properties.ReplyTo != "" {
		p["reply_to"] = m.Properties.ReplyTo
	}
	if m.Properties.DeliveryMode != 0 {
		p["delivery_mode"] = int(m.Properties.DeliveryMode)
	}
	if m.Properties.Expiration != "" {
		p["expiration"] = m.Properties.Expiration
	}
	p["priority"] = m.Properties.Priority
	out.Properties = p
	return out
}

func printMessage(e *env, m *kombu.Message) error {
	enc := json.NewEncoder(e.stdout) // one line per message
	enc.SetEscapeHTML(false)
	return enc.Encode(toJSON(m))
}

func runConsume(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "consume", "--queue Q [flags]", "Consumes from Q (declaring and binding it when --exchange is given) and prints one JSON object per message.")
	var cf connFlags
	cf.register(fs)
	queue := fs.String("queue", "", "queue `name` (required)")
	exchange := fs.String("exchange", "", "bind the queue to this exchange first")
	typ := fs.String("type", "", "exchange type: direct, topic or fanout (default: topic if the exchange's bindings hold topic patterns, else direct; fanout is never guessed)")
	rk := fs.String("routing-key", "", "binding key")
	count := fs.Int("count", 0, "stop after this many messages (0: until --timeout or a signal)")
	timeout := fs.Duration("timeout", 0, "give up after this long (exit status 3 if --count was not reached)")
	prefetch := fs.Int("prefetch", 1, "prefetch count")
	mode := fs.String("mode", "ack", "ack, no-ack, reject or requeue")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queue == "" {
		return usageError{"--queue is required"}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	switch *mode {
	case "ack", "no-ack", "reject", "requeue":
	default:
		return usageError{fmt.Sprintf("--mode %q: want ack, no-ack, reject or requeue", *mode)}
	}
	if err := checkType(*typ); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := kombu.Queue{Name: *queue}
	if *exchange != "" {
		q.Exchange = kombu.Exchange{Name: *exchange}
		if q.Exchange.Type, err = exchangeType(ctx, conn, *exchange, *typ); err != nil {
			return err
		}
		q.RoutingKey = *rk
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	if *timeout > 0 {
		t := time.AfterFunc(*timeout, func() { timedOut.Store(true); cancel() })
		defer t.Stop()
	}
	handled := 0
	// handle prints and settles one message; it reports whether --count
	// is reached. The last message stops the consumer before it is
	// settled, so that no further message is taken (and then given back).
	handle := func(ctx context.Context, m *kombu.Message) (bool, error) {
		if err := printMessage(e, m); err != nil {
			return true, err
		}
		handled++
		done := *count > 0 && handled >= *count
		if done {
			cancel()
		}
		switch *mode {
		case "ack":
			return done, m.Ack(ctx)
		case "reject":
			return done, m.Reject(ctx)
		case "requeue":
			return done, m.Requeue(ctx)
		}
		return done, nil
	}
	if *mode == "no-ack" && q.Exchange.Type != kombu.Fanout {
		// One Get at a time: a no-ack Consumer may already have taken the
		// next message when --count is reached, and it could only put it
		// back at the end of the queue.
		if _, err := conn.DeclareQueue(ctx, q); err != nil {
			return err
		}
		for cctx.Err() == nil {
			m, err := conn.Get(cctx, *queue, kombu.GetNoAck(), kombu.GetBlock())
			if err != nil {
				if cctx.Err() != nil {
					break
				}
				return err
			}
			if done, err := handle(ctx, m); err != nil || done {
				if err != nil {
					return err
				}
				break
			}
		}
	} else {
		opts := []kombu.ConsumerOption{kombu.WithPrefetch(*prefetch), kombu.WithManualAck(),
			kombu.WithShutdownTimeout(5 * time.Second),
			kombu.WithErrorHandler(func(err error) { fmt.Fprintf(e.stderr, "kombu consume: %s\n", oneLine(err)) })}
		if *mode == "no-ack" {
			opts = append(opts, kombu.WithNoAck())
		}
		var handlerErr error
		err = conn.Consumer([]kombu.Queue{q}, opts...).Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
			if handlerErr != nil || (*count > 0 && handled >= *count) {
				return nil // left unsettled: restored when the consumer stops
			}
			if _, err := handle(ctx, m); err != nil {
				handlerErr = err
				cancel()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if handlerErr != nil {
			return handlerErr
		}
	}
	if *count > 0 && handled < *count && timedOut.Load() {
		return fmt.Errorf("%w before --count messages were handled (%d of %d)", errTimeout, handled, *count)
	}
	return nil
}

type queueReport struct {
	Name       string         `json:"name"`
	Priorities map[string]int `json:"priorities"`
	Total      int64          `json:"total"`
}

type bindingReport struct {
	RoutingKey string `json:"routing_key"`
	Pattern    string `json:"pattern"`
	Queue      string `json:"queue"`
}

type inspectReport struct {
	Queues    []queueReport              `json:"queues"`
	Exchanges map[string][]bindingReport `json:"exchanges"`
	Unacked   struct {
		Count            int64   `json:"count"`
		OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	} `json:"unacked"`
}

func runInspect(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "inspect", "[--queue Q]... [--json]", "Shows every queue's length per priority list, every exchange's bindings, and the unacked messages.")
	var cf connFlags
	cf.register(fs)
	var queues multiFlag
	fs.Var(&queues, "queue", "queue to show (repeatable; default: every queue named in a binding)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var rep inspectReport
	rep.Exchanges = map[string][]bindingReport{}
	exchanges, err := conn.Exchanges(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, q := range queues {
		seen[q] = true
	}
	names := append([]string(nil), queues...)
	for _, ex := range exchanges {
		rows, err := conn.Bindings(ctx, ex)
		if err != nil {
			return err
		}
		list := []bindingReport{}
		for _, r := range rows {
			list = append(list, bindingReport{r.RoutingKey, r.Pattern, r.Queue})
			if len(queues) == 0 && !seen[r.Queue] {
				seen[r.Queue] = true
				names = append(names, r.Queue)
			}
		}
		// A binding table is a Redis set: sort its rows for a stable output.
		sort.Slice(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.Queue != b.Queue {
				return a.Queue < b.Queue
			}
			if a.RoutingKey != b.RoutingKey {
				return a.RoutingKey < b.RoutingKey
			}
			return a.Pattern < b.Pattern
		})
		rep.Exchanges[ex] = list
	}
	if len(queues) == 0 {
		sort.Strings(names)
	}
	for _, q := range names {
		lens, err := conn.QueueLengths(ctx, q)
		if err != nil {
			return err
		}
		qr := queueReport{Name: q, Priorities: map[string]int{}}
		for _, l := range lens {
			qr.Priorities[fmt.Sprint(l.Step)] = int(l.Length)
			qr.Total += l.Length
		}
		rep.Queues = append(rep.Queues, qr)
	}
	n, oldest, err := conn.UnackedCount(ctx)
	if err != nil {
		return err
	}
	rep.Unacked.Count = n
	if !oldest.IsZero() {
		rep.Unacked.OldestAgeSeconds = time.Since(oldest).Seconds()
	}
	if *asJSON {
		if rep.Queues == nil {
			rep.Queues = []queueReport{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tPRIORITY LISTS (step=length)\tTOTAL")
	for _, q := range rep.Queues {
		var parts []string
		for _, k := range sortedKeysNumeric(q.Priorities) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, q.Priorities[k]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", q.Name, strings.Join(parts, " "), q.Total)
	}
	tw.Flush()
	fmt.Fprintln(e.stdout)
	tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXCHANGE\tROUTING KEY\tPATTERN\tQUEUE")
	for _, ex := range sortedKeys(rep.Exchanges) {
		for _, r := range rep.Exchanges[ex] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ex, r.RoutingKey, r.Pattern, r.Queue)
		}
	}
	tw.Flush()
	fmt.Fprintln(e.stdout)
	if rep.Unacked.Count == 0 {
		fmt.Fprintln(e.stdout, "unacked: 0")
	} else {
		fmt.Fprintf(e.stdout, "unacked: %d, oldest %s ago\n", rep.Unacked.Count, time.Duration(rep.Unacked.OldestAgeSeconds*float64(time.Second)).Round(time.Second))
	}
	return nil
}

func sortedKeysNumeric(m map[string]int) []string {
	keys := sortedKeys(m)
	sort.Slice(keys, func(i, j int) bool {
		a, _ := strconv.Atoi(keys[i])
		b, _ := strconv.Atoi(keys[j])
		return a < b
	})
	return keys
}

func runPeek(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "peek", "--queue Q [-n N]", "Prints the next N messages of Q in delivery order, as consume does, without removing them.")
	var cf connFlags
	cf.register(fs)
	queue := fs.String("queue", "", "queue `name` (required)")
	n := fs.Int("n", 10, "how many messages")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queue == "" {
		return usageError{"--queue is required"}
	}
	if *n < 1 {
		return usageError{"-n must be at least 1"}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	msgs, err := conn.Peek(ctx, *queue, *n)
	if err != nil && !errors.Is(err, kombu.ErrMalformed) {
		return err
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, bad := range joined.Unwrap() {
			fmt.Fprintf(e.stderr, "kombu peek: skipping malformed message: %s\n", oneLine(bad))
		}
	}
	for _, m := range msgs {
		if err := printMessage(e, m); err != nil {
			return err
		}
	}
	return nil
}

func runRestore(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "restore", "[--all]", "Puts back unacked messages whose visibility timeout has passed (--all: every unacked message) at the front of their queues, and prints how many per queue.")
	var cf connFlags
	cf.register(fs)
	all := fs.Bool("all", false, "restore every unacked message, expired or not")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	perQueue, err := conn.RestoreUnacked(ctx, *all)
	if err != nil {
		return err
	}
	total := 0
	for _, q := range sortedKeys(perQueue) {
		fmt.Fprintf(e.stdout, "%s\t%d\n", q, perQueue[q])
		total += perQueue[q]
	}
	fmt.Fprintf(e.stdout, "restored %d\n", total)
	return nil
}

func runPurge(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "purge", "--queue Q", "Removes every waiting message of Q (all priority lists) and prints how many.")
	var cf connFlags
	cf.register(fs)
	queue := fs.String("queue", "", "queue `name` (required)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *queue == "" {
		return usageError{"--queue is required"}
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	n, err := conn.Purge(ctx, *queue)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, n)
	return nil
}

func bindFlags(e *env, name, summary string, args []string) (*connFlags, string, string, string, string, error) {
	fs := newFlags(e, name, "--exchange E --queue Q --routing-key RK [--type T]", summary)
	var cf connFlags
	cf.register(fs)
	ex := fs.String("exchange", "", "exchange `name` (required)")
	q := fs.String("queue", "", "queue `name` (required)")
	rk := fs.String("routing-key", "", "routing (binding) key")
	typ := fs.String("type", "", "exchange type: direct, topic or fanout (bind: default topic if the exchange's bindings hold topic patterns, else direct; unbind: default any)")
	if err := parse(fs, args); err != nil {
		return nil, "", "", "", "", err
	}
	if *ex == "" || *q == "" {
		return nil, "", "", "", "", usageError{"--exchange and --queue are required"}
	}
	if err := noArgs(fs); err != nil {
		return nil, "", "", "", "", err
	}
	if err := checkType(*typ); err != nil {
		return nil, "", "", "", "", err
	}
	return &cf, *ex, *q, *rk, *typ, nil
}

func runBind(ctx context.Context, e *env, args []string) error {
	cf, ex, q, rk, typ, err := bindFlags(e, "bind", "Binds queue Q to exchange E with the routing key (a topic pattern is stored for --type topic).", args)
	if err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	t, err := exchangeType(ctx, conn, ex, typ)
	if err != nil {
		return err
	}
	return conn.Bind(ctx, q, kombu.Exchange{Name: ex, Type: t}, rk)
}

func runUnbind(ctx context.Context, e *env, args []string) error {
	cf, ex, q, rk, typ, err := bindFlags(e, "unbind", "Removes the binding of queue Q to exchange E with the routing key.", args)
	if err != nil {
		return err
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.Bindings(ctx, ex)
	if err != nil {
		return err
	}
	removed := 0
	for _, r := range rows {
		if r.Queue != q || r.RoutingKey != rk {
			continue
		}
		if typ == "topic" && r.Pattern == "" || (typ == "direct" || typ == "fanout") && r.Pattern != "" {
			continue
		}
		if err := conn.RemoveBinding(ctx, ex, r); err != nil {
			return err
		}
		removed++
	}
	if removed == 0 {
		return errors.New("no such binding")
	}
	return nil
}
