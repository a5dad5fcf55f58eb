package transport

import (
	"errors"
	"fmt"

	"github.com/kombu-go/kombu/envelope"
)

// Errors of the virtual transport. Backends return them (wrapped with %w
// where they add detail) so callers can branch with errors.Is.
var (
	// ErrEmpty means a non-blocking get found no message. It is not a failure.
	ErrEmpty = errors.New("kombu: queue is empty")
	// ErrClosed means the transport, channel or consumer was closed.
	ErrClosed = errors.New("kombu: closed")
	// ErrUnsupported means the backend lacks a capability (for example
	// fanout). It is errors.ErrUnsupported, so either can be tested.
	ErrUnsupported = errors.ErrUnsupported
	// ErrNotFound means a passive declare found no such queue or exchange
	// (Kombu's 404 channel error).
	ErrNotFound = errors.New("kombu: not found")
	// ErrNoRoute means a publish matched no queue and the publisher asked to
	// be told (Kombu drops such messages silently).
	ErrNoRoute = errors.New("kombu: message is unroutable")
	// ErrMalformed means a message could not be parsed as a Kombu envelope
	// (envelope.ErrMalformed).
	ErrMalformed = envelope.ErrMalformed
	// ErrUnknownScheme means no backend is registered for a URL scheme.
	ErrUnknownScheme = errors.New("kombu: unknown transport")
	// ErrBadURL means a URL could not be parsed or has unknown options.
	ErrBadURL = errors.New("kombu: bad URL")
	// ErrExchangeType means an exchange was redeclared with another type,
	// or declared with a type the transport does not implement.
	ErrExchangeType = errors.New("kombu: exchange type mismatch")
	// ErrNotReplicated means a publish was written but fewer replicas than
	// asked for confirmed it in time (a backend option, e.g. the Redis
	// backend's publish_wait_replicas): the message is published, and may
	// be lost if the server is lost before it replicates. Publishing it
	// again would duplicate it, so retry policies do not.
	ErrNotReplicated = errors.New("kombu: publish not confirmed by enough replicas")
)

// MalformedError describes a message that could not be parsed. Raw holds the
// bytes as read, so nothing is lost; Queue says where they came from and
// Where where they are kept now (a dead-letter key, or "unacked").
type MalformedError struct {
	Queue string
	Raw   []byte
	Where string
	Err   error
}

func (e *MalformedError) Error() string {
	msg := fmt.Sprintf("kombu: malformed message from queue %q", e.Queue)
	if e.Where != "" {
		msg += " (kept in " + e.Where + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause and ErrMalformed.
func (e *MalformedError) Unwrap() []error { return []error{envelope.ErrMalformed, e.Err} }

// NoRouteError says which publish matched no queue. It matches ErrNoRoute.
type NoRouteError struct {
	Exchange   string
	RoutingKey string
}

func (e *NoRouteError) Error() string {
	return fmt.Sprintf("kombu: no queue bound to exchange %q matches routing key %q", e.Exchange, e.RoutingKey)
}

// Unwrap returns ErrNoRoute.
func (e *NoRouteError) Unwrap() error { return ErrNoRoute }
