package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/transport"
)

func runPublish(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "publish", "--exchange NAME [flags] BODY", "Publishes BODY (\"-\": one message per line of stdin) and prints each message's delivery tag.")
	var cf connFlags
	cf.register(fs)
	exchange := fs.String("exchange", "", "exchange `name` (\"\" is the default exchange: the routing key names the queue)")
	typ := fs.String("type", "direct", "exchange type: direct, topic or fanout")
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
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ex := kombu.Exchange{Name: *exchange, Type: kombu.ExchangeType(*typ)}
	if *exchange != "" {
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
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return usageError{fmt.Sprintf("--header %q: want k=v", h)}
		}
		var val any
		if json.Unmarshal([]byte(v), &val) != nil {
			val = v
		}
		opts = append(opts, kombu.WithHeader(k, val))
	}
	prod := conn.Producer(opts...)
	send := func(text string) error {
		var body any = text
		var popts []kombu.PublishOption
		switch {
		case *contentType != "":
			body = []byte(text)
			popts = append(popts, kombu.WithContentType(*contentType, ""))
		case *serializer == "json":
			var v any
			if err := json.Unmarshal([]byte(text), &v); err != nil {
				return usageError{fmt.Sprintf("BODY is not JSON: %v", err)}
			}
			body = v
			popts = append(popts, kombu.WithSerializer("json"))
		case *serializer == "raw":
			body = []byte(text)
			popts = append(popts, kombu.WithSerializer("raw"))
		}
		for i := 0; i < *count; i++ {
			res, err := prod.Publish(ctx, body, popts...)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, res.DeliveryTag)
		}
		return nil
	}
	if fs.Arg(0) != "-" {
		return send(fs.Arg(0))
	}
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		if err := send(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
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
	if m.ContentType == "application/json" {
		var v any
		if json.Unmarshal(m.Body, &v) == nil {
			out.Body = v
		}
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
	b, err := json.Marshal(toJSON(m))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, string(b))
	return err
}

func runConsume(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "consume", "--queue Q [flags]", "Consumes from Q (declaring and binding it when --exchange is given) and prints one JSON object per message.")
	var cf connFlags
	cf.register(fs)
	queue := fs.String("queue", "", "queue `name` (required)")
	exchange := fs.String("exchange", "", "bind the queue to this exchange first")
	typ := fs.String("type", "direct", "exchange type: direct, topic or fanout")
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
	if fs.NArg() != 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	switch *mode {
	case "ack", "no-ack", "reject", "requeue":
	default:
		return usageError{fmt.Sprintf("--mode %q: want ack, no-ack, reject or requeue", *mode)}
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	q := kombu.Queue{Name: *queue}
	if *exchange != "" {
		q.Exchange = kombu.Exchange{Name: *exchange, Type: kombu.ExchangeType(*typ)}
		q.RoutingKey = *rk
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timedOut := false
	if *timeout > 0 {
		t := time.AfterFunc(*timeout, func() { timedOut = true; cancel() })
		defer t.Stop()
	}
	opts := []kombu.ConsumerOption{kombu.WithPrefetch(*prefetch), kombu.WithManualAck(),
		kombu.WithShutdownTimeout(5 * time.Second),
		kombu.WithErrorHandler(func(err error) { fmt.Fprintf(e.stderr, "kombu consume: %s\n", oneLine(err)) })}
	if *mode == "no-ack" {
		opts = append(opts, kombu.WithNoAck())
	}
	handled := 0
	var handlerErr error
	c := conn.Consumer([]kombu.Queue{q}, opts...)
	err = c.Consume(cctx, func(ctx context.Context, m *kombu.Message) error {
		if *count > 0 && handled >= *count {
			return nil // left unsettled: restored when the consumer stops
		}
		if err := printMessage(e, m); err != nil {
			handlerErr = err
			cancel()
			return nil
		}
		var serr error
		switch *mode {
		case "ack":
			serr = m.Ack(ctx)
		case "reject":
			serr = m.Reject(ctx)
		case "requeue":
			serr = m.Requeue(ctx)
		}
		if serr != nil {
			handlerErr = serr
			cancel()
			return nil
		}
		handled++
		if *count > 0 && handled >= *count {
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
	if *count > 0 && handled < *count && timedOut {
		return fmt.Errorf("%w (%d of %d)", errTimeout, handled, *count)
	}
	return nil
}

func inspector(conn *kombu.Connection) (transport.Inspector, error) {
	in, ok := conn.Transport().Backend().(transport.Inspector)
	if !ok {
		return nil, fmt.Errorf("this transport cannot be inspected: %w", transport.ErrUnsupported)
	}
	return in, nil
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
	if fs.NArg() != 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	in, err := inspector(conn)
	if err != nil {
		return err
	}
	b := conn.Transport().Backend()
	var rep inspectReport
	rep.Exchanges = map[string][]bindingReport{}
	exchanges, err := in.Exchanges(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, q := range queues {
		seen[q] = true
	}
	names := append([]string(nil), queues...)
	for _, ex := range exchanges {
		rows, err := b.Bindings(ctx, ex)
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
		rep.Exchanges[ex] = list
	}
	if len(queues) == 0 {
		sort.Strings(names)
	}
	for _, q := range names {
		lens, err := in.QueueLengths(ctx, q)
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
	n, oldest, err := in.Unacked(ctx)
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
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	in, err := inspector(conn)
	if err != nil {
		return err
	}
	ds, err := in.Peek(ctx, *queue, *n)
	if err != nil {
		return err
	}
	for _, d := range ds {
		env, err := transport.ParseEnvelope(d.Envelope)
		if err != nil {
			fmt.Fprintf(e.stderr, "kombu peek: skipping malformed message: %s\n", oneLine(err))
			continue
		}
		m := &kombu.Message{Body: env.Body, ContentType: env.ContentType, ContentEncoding: env.ContentEncoding,
			Headers: env.Headers, Properties: env.Properties, DeliveryTag: env.DeliveryTag, Redelivered: env.Redelivered}
		m.DeliveryInfo.Exchange, m.DeliveryInfo.RoutingKey = env.Exchange, env.RoutingKey
		if env.Compression != "" {
			if body, err := conn.Transport().Options().Serializers.Decompress(env.Compression, env.Body); err == nil {
				m.Body = body
			}
		}
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
	conn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	in, err := inspector(conn)
	if err != nil {
		return err
	}
	t := conn.Transport()
	entries, err := in.UnackedEntries(ctx, 0)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(-t.Options().VisibilityTimeout)
	perQueue := map[string]int{}
	// Newest first, each to the front: the oldest is consumed first again.
	for i := len(entries) - 1; i >= 0; i-- {
		u := entries[i]
		if !*all && u.Since.After(deadline) {
			continue
		}
		var routed []string
		route := func(ctx context.Context, ex, rk string) ([]string, error) {
			qs, err := t.Route(ctx, ex, rk)
			routed = qs
			return qs, err
		}
		if err := t.Backend().Restore(ctx, u.Tag, false, route); err != nil {
			return err
		}
		for _, q := range routed {
			perQueue[q]++
		}
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
	typ := fs.String("type", "", "exchange type: direct, topic or fanout (bind: default direct; unbind: default the binding's own)")
	if err := parse(fs, args); err != nil {
		return nil, "", "", "", "", err
	}
	if *ex == "" || *q == "" {
		return nil, "", "", "", "", usageError{"--exchange and --queue are required"}
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
	return conn.Bind(ctx, q, kombu.Exchange{Name: ex, Type: kombu.ExchangeType(typ)}, rk)
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
	b := conn.Transport().Backend()
	rows, err := b.Bindings(ctx, ex)
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
		if err := b.Unbind(ctx, ex, r); err != nil {
			return err
		}
		removed++
	}
	if removed == 0 {
		return errors.New("no such binding")
	}
	return nil
}
