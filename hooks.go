package kombu

import (
	"context"
	"errors"

	"github.com/kombu-go/kombu/envelope"
)

// OutgoingMessage is what a PublishMiddleware sees of a message about to be
// published. A middleware may add to Headers (they become the message's
// application headers, as Python's before_publish hooks add to theirs); the
// other fields are for reading.
type OutgoingMessage struct {
	// Exchange is the exchange name ("" for the default exchange).
	Exchange string
	// RoutingKey is the routing key (the queue name on the default exchange).
	RoutingKey string
	// DeliveryTag is the tag the message will carry, "" when the transport
	// generates it at publish (the result's DeliveryTag then has it).
	DeliveryTag string
	// Headers are the message's application headers; never nil.
	Headers map[string]any
}

// PublishFunc publishes one message (the core publish, or the next
// middleware).
type PublishFunc func(ctx context.Context, m *OutgoingMessage) (PublishResult, error)

// PublishMiddleware wraps a publish: it may add headers before calling next
// and observe the result and error after (watermill's and asynq's middleware
// style). It must call next at most once.
type PublishMiddleware func(next PublishFunc) PublishFunc

// HandlerMiddleware wraps a consumer's Handler: it sees each delivered
// message before the handler and the handler's error after it. With the
// default automatic acks that error decides the settlement: nil acks,
// ErrReject (wrapped) rejects, any other error requeues.
type HandlerMiddleware func(next Handler) Handler

// WithPublishMiddleware adds middleware around every Producer.Publish and
// PublishBatch message of the connection (the first given is the outermost).
// Instrumentation (package otelkombu) uses it to inject trace context.
func WithPublishMiddleware(mw ...PublishMiddleware) Option {
	return func(o *Options) error {
		for _, m := range mw {
			if m == nil {
				return errors.New("kombu: nil publish middleware")
			}
		}
		o.PublishMiddleware = append(o.PublishMiddleware, mw...)
		return nil
	}
}

// WithHandlerMiddleware adds middleware around the Handler of every Consumer
// of the connection (the first given is the outermost).
func WithHandlerMiddleware(mw ...HandlerMiddleware) Option {
	return func(o *Options) error {
		for _, m := range mw {
			if m == nil {
				return errors.New("kombu: nil handler middleware")
			}
		}
		o.HandlerMiddleware = append(o.HandlerMiddleware, mw...)
		return nil
	}
}

// hooks are a connection's middleware chains.
type hooks struct {
	publish []PublishMiddleware
	handler []HandlerMiddleware
}

func newHooks(o *Options) hooks {
	return hooks{publish: o.PublishMiddleware, handler: o.HandlerMiddleware}
}

// wrapPublish returns core wrapped in the publish middleware.
func (h *hooks) wrapPublish(core PublishFunc) PublishFunc {
	for i := len(h.publish) - 1; i >= 0; i-- {
		core = h.publish[i](core)
	}
	return core
}

// wrapHandler returns hd wrapped in the handler middleware.
func (h *hooks) wrapHandler(hd Handler) Handler {
	for i := len(h.handler) - 1; i >= 0; i-- {
		hd = h.handler[i](hd)
	}
	return hd
}

// publishHooked is Publish's last step through the publish middleware.
func (p *Producer) publishHooked(ctx context.Context, env *envelope.Envelope, exchange, routingKey string, mandatory bool, policy *RetryPolicy) (PublishResult, error) {
	if env.Headers == nil {
		env.Headers = map[string]any{}
	}
	t := p.conn.t
	core := func(ctx context.Context, m *OutgoingMessage) (PublishResult, error) {
		env.Headers = m.Headers
		var n int
		err := retry(ctx, policy, t.Logger(), func() error {
			var err error
			n, err = t.Publish(ctx, exchange, routingKey, env, mandatory)
			return err
		})
		return PublishResult{DeliveryTag: env.DeliveryTag, Routed: n}, err
	}
	m := &OutgoingMessage{Exchange: exchange, RoutingKey: routingKey, DeliveryTag: env.DeliveryTag, Headers: env.Headers}
	return p.conn.hooks.wrapPublish(core)(ctx, m)
}
