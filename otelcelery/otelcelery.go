// Package otelcelery traces Celery tasks sent and run by kombu-go's celery
// package with OpenTelemetry, as Python's opentelemetry-instrumentation-celery
// traces them, so one trace crosses Go and Python clients and workers. The
// celery package imports no OTel package: this one plugs into its hooks
// (celery.WithSendMiddleware, celery.WithTaskMiddleware).
//
// Sending a task starts a producer span "apply_async/<task>" and injects the
// W3C trace context (traceparent, tracestate, and baggage with the default
// composite propagator) into the task message's protocol 2 headers, the
// headers Python's before_task_publish handler injects into. Running a task
// extracts that context from the task's headers and runs it in a consumer
// span "run/<task>", a child of the sender's span; the retries, chain steps,
// callbacks and errbacks the task sends are children of the run span, as in
// Python, where they are sent while the run span is active.
//
// Attributes are those Python sets: celery.action ("apply_async" or "run"),
// celery.task_name, messaging.message.id (the task id),
// messaging.destination (the routing key), celery.exchange, celery.retries
// (when not 0), celery.hostname (the sender's node name, as Python's
// origin-over-hostname), messaging.conversation_id (correlation id),
// celery.reply_to, celery.state (the outcome: SUCCESS, FAILURE, RETRY,
// REJECTED, IGNORED), celery.retry.reason; plus messaging.system "redis"
// and messaging.destination.name of OTel's messaging conventions. A failed
// task's span has status Error with the error as description and an
// exception event; a retry, a rejection or an ignore is no failure, as in
// Python (no task_failure signal). A task that retries past its
// max_retries fails, but its run span shows the retry its handler asked
// for.
//
// A TracerProvider and a propagator may be passed as options; the globals
// are the default. Nothing is started behind the user's back.
package otelcelery

import (
	"context"
	"errors"
	"strconv"

	"github.com/kombu-go/kombu/celery"
	"github.com/kombu-go/kombu/otelkombu"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer.
const ScopeName = "github.com/kombu-go/kombu/otelcelery"

// Option configures the instrumentation.
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider sets the TracerProvider (default: otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithPropagator sets the propagator (default: otel.GetTextMapPropagator()).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

func newConfig(opts []Option) config {
	var c config
	for _, f := range opts {
		f(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.prop == nil {
		c.prop = otel.GetTextMapPropagator()
	}
	return c
}

// ClientOptions returns the client options that trace every task the
// client sends: pass them to celery.NewClient.
func ClientOptions(opts ...Option) []celery.ClientOption {
	c := newConfig(opts)
	return []celery.ClientOption{celery.WithSendMiddleware(sendMiddleware(c.tp.Tracer(ScopeName), c.prop))}
}

// WorkerOptions returns the worker options that trace every task the
// worker runs and every task it sends (retries, chain steps, callbacks):
// pass them to celery.NewWorker.
func WorkerOptions(opts ...Option) []celery.WorkerOption {
	c := newConfig(opts)
	tr := c.tp.Tracer(ScopeName)
	return []celery.WorkerOption{
		celery.WithTaskMiddleware(taskMiddleware(tr, c.prop)),
		celery.WithClientOptions(celery.WithSendMiddleware(sendMiddleware(tr, c.prop))),
	}
}

// HeaderCarrier adapts task message headers to OTel's TextMapCarrier
// (string values only, as Python's instrumentation writes them): the
// message headers otelkombu's carrier adapts.
type HeaderCarrier = otelkombu.HeaderCarrier

// Attribute keys Python's instrumentation sets.
const (
	keyAction      = "celery.action"
	keyTaskName    = "celery.task_name"
	keyRetryReason = "celery.retry.reason"
	keyState       = "celery.state"
	keyMessageID   = "messaging.message.id"
	keyDestination = "messaging.destination"
	keyConversion  = "messaging.conversation_id"
)

func sendMiddleware(tr trace.Tracer, prop propagation.TextMapPropagator) celery.SendMiddleware {
	return func(next celery.SendFunc) celery.SendFunc {
		return func(ctx context.Context, o *celery.OutgoingTask) error {
			m := o.Message
			attrs := []attribute.KeyValue{
				attribute.String(keyAction, "apply_async"),
				attribute.String(keyMessageID, m.ID),
				attribute.String(keyTaskName, m.Task),
				attribute.String(keyDestination, o.RoutingKey),
				attribute.String("messaging.system", "redis"),
				attribute.String("messaging.destination.name", destination(o)),
			}
			if o.Exchange != "" {
				attrs = append(attrs, attribute.String("celery.exchange", o.Exchange))
			}
			ctx, span := tr.Start(ctx, "apply_async/"+m.Task, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
			defer span.End()
			prop.Inject(ctx, HeaderCarrier(m.Headers))
			err := next(ctx, o)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return err
		}
	}
}

func destination(o *celery.OutgoingTask) string {
	if o.Exchange == "" {
		return o.RoutingKey
	}
	return o.Exchange
}

func taskMiddleware(tr trace.Tracer, prop propagation.TextMapPropagator) celery.TaskMiddleware {
	return func(next celery.TaskFunc) celery.TaskFunc {
		return func(ctx context.Context, t *celery.Task) (any, error) {
			ctx = prop.Extract(ctx, HeaderCarrier(t.Headers))
			ctx, span := tr.Start(ctx, "run/"+t.Task, trace.WithSpanKind(trace.SpanKindConsumer))
			defer span.End()
			result, err := next(ctx, t)
			if span.IsRecording() {
				span.SetAttributes(runAttributes(t)...)
				state := "SUCCESS"
				var rerr *celery.RetryError
				var rej *celery.RejectError
				switch {
				case err == nil:
				case errors.As(err, &rerr):
					state = "RETRY"
					reason := rerr.Error()
					if rerr.Err != nil {
						reason = rerr.Err.Error()
					}
					span.SetAttributes(attribute.String(keyRetryReason, reason))
				case errors.As(err, &rej), errors.Is(err, celery.ErrReject):
					state = "REJECTED"
				case errors.Is(err, celery.ErrIgnore):
					state = "IGNORED"
				default:
					state = "FAILURE"
					span.RecordError(err)
					span.SetStatus(codes.Error, err.Error())
				}
				span.SetAttributes(attribute.String(keyState, state))
			}
			return result, err
		}
	}
}

// runAttributes are the attributes Python's postrun handler takes from the
// task request.
func runAttributes(t *celery.Task) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String(keyAction, "run"),
		attribute.String(keyTaskName, t.Task),
		attribute.String(keyMessageID, t.ID),
		attribute.String(keyDestination, t.RoutingKey),
		attribute.String("messaging.system", "redis"),
		attribute.String("messaging.destination.name", t.Queue),
	}
	// Celery's correlation_id is the task id.
	attrs = append(attrs, attribute.String(keyConversion, t.ID))
	if t.Exchange != "" {
		attrs = append(attrs, attribute.String("celery.exchange", t.Exchange))
	}
	if t.Retries != 0 {
		attrs = append(attrs, attribute.Int("celery.retries", t.Retries))
	}
	if t.ReplyTo != "" {
		attrs = append(attrs, attribute.String("celery.reply_to", t.ReplyTo))
	}
	if t.Priority != 0 {
		attrs = append(attrs, attribute.String("celery.priority", strconv.Itoa(t.Priority)))
	}
	// Python maps origin onto celery.hostname, after the request's
	// hostname (the worker's), so the sender's name wins when known.
	host := t.Origin
	if host == "" {
		host = t.Hostname
	}
	if host != "" {
		attrs = append(attrs, attribute.String("celery.hostname", host))
	}
	return attrs
}
