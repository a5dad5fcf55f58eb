// Package otelkombu traces kombu-go publishes and deliveries with
// OpenTelemetry, outside the core (which imports no OTel package).
//
// The W3C trace context (traceparent, tracestate, baggage) travels in the
// message's application headers, where Python's
// opentelemetry-instrumentation-celery puts it, so a trace crosses Go and
// Python. Spans follow OTel's messaging semantic conventions: system
// "redis", destination the exchange (or the routing key on the default
// exchange) for publishes and the queue for deliveries, message id the
// delivery tag.
//
// A TracerProvider and a propagator may be passed as options; the globals
// are the default. Nothing is started behind the user's back.
package otelkombu

import (
	"context"
	"errors"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/serialization"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer.
const ScopeName = "github.com/kombu-go/kombu/otelkombu"

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

// HeaderCarrier adapts a message's application headers to OTel's
// TextMapCarrier (string values only, as Python's instrumentation writes).
type HeaderCarrier map[string]any

// Get returns the string value of key, "" if absent or not a string.
func (h HeaderCarrier) Get(key string) string {
	s, _ := h[key].(string)
	return s
}

// Set sets key to value.
func (h HeaderCarrier) Set(key, value string) { h[key] = value }

// Keys lists the header names.
func (h HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// Options returns the connection options that trace every publish and
// delivery: pass them to kombu.Dial or kombu.NewConnection.
func Options(opts ...Option) []kombu.Option {
	c := newConfig(opts)
	tr := c.tp.Tracer(ScopeName)
	return []kombu.Option{
		kombu.WithPublishMiddleware(publishMiddleware(tr, c.prop)),
		kombu.WithHandlerMiddleware(handlerMiddleware(tr, c.prop)),
	}
}

func destination(exchange, routingKey string) string {
	if exchange == "" {
		return routingKey
	}
	return exchange
}

func publishMiddleware(tr trace.Tracer, prop propagation.TextMapPropagator) kombu.PublishMiddleware {
	return func(next kombu.PublishFunc) kombu.PublishFunc {
		return func(ctx context.Context, m *kombu.OutgoingMessage) (kombu.PublishResult, error) {
			dest := destination(m.Exchange, m.RoutingKey)
			ctx, span := tr.Start(ctx, "send "+dest, trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithAttributes(
					attribute.String("messaging.system", "redis"),
					attribute.String("messaging.operation.type", "send"),
					attribute.String("messaging.destination.name", dest),
					attribute.String("messaging.rabbitmq.destination.routing_key", m.RoutingKey),
				))
			defer span.End()
			prop.Inject(ctx, HeaderCarrier(m.Headers))
			r, err := next(ctx, m)
			span.SetAttributes(attribute.String("messaging.message.id", r.DeliveryTag))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			return r, err
		}
	}
}

func handlerMiddleware(tr trace.Tracer, prop propagation.TextMapPropagator) kombu.HandlerMiddleware {
	return func(next kombu.Handler) kombu.Handler {
		return func(ctx context.Context, m *kombu.Message) error {
			ctx = prop.Extract(ctx, HeaderCarrier(m.Headers))
			ctx, span := tr.Start(ctx, "process "+m.DeliveryInfo.Queue, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "redis"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", m.DeliveryInfo.Queue),
					attribute.String("messaging.message.id", m.DeliveryTag),
					attribute.Bool("messaging.redis.redelivered", m.Redelivered),
				))
			defer span.End()
			err := next(ctx, m)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				span.SetAttributes(attribute.String("kombu.settlement", settlement(err)))
			}
			return err
		}
	}
}

// settlement names what automatic acks do with a handler error (a body that
// cannot be decoded goes to the dead-letter list, counted here as reject).
func settlement(err error) string {
	if errors.Is(err, kombu.ErrReject) || errors.As(err, new(*serialization.DecodeError)) {
		return "reject"
	}
	return "requeue"
}
