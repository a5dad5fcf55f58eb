package kombu

import (
	"context"
	"errors"
	"time"

	"github.com/kombu-go/kombu/transport/virtual"
)

// SimpleQueue is a queue used like a Go channel, as kombu.simple.SimpleQueue:
// Put publishes to a direct exchange of the same name, Get takes the next
// message. It is interoperable with Python's SimpleQueue of the same name.
type SimpleQueue struct {
	conn   *Connection
	queue  Queue
	prod   *Producer
	ch     *virtual.Channel
	noAck  bool
	accept []string
}

// SimpleOption configures a SimpleQueue.
type SimpleOption func(*SimpleQueue)

// SimpleNoAck gets messages without acknowledgements.
func SimpleNoAck() SimpleOption { return func(q *SimpleQueue) { q.noAck = true } }

// SimpleAccept sets the accepted serializers or content types.
func SimpleAccept(accept ...string) SimpleOption {
	return func(q *SimpleQueue) { q.accept = accept }
}

// SimpleQueue declares a queue bound to a direct exchange of the same name
// with the name as routing key, and returns it.
func (c *Connection) SimpleQueue(ctx context.Context, name string, opts ...SimpleOption) (*SimpleQueue, error) {
	ex := Exchange{Name: name, Type: Direct, Durable: true}
	q := &SimpleQueue{conn: c, queue: Queue{Name: name, Exchange: ex, RoutingKey: name, Durable: true}}
	for _, f := range opts {
		f(q)
	}
	if _, err := c.t.DeclareQueue(ctx, q.queue); err != nil {
		return nil, err
	}
	ch, err := c.t.Channel()
	if err != nil {
		return nil, err
	}
	q.ch = ch
	q.prod = c.Producer(WithExchange(ex), WithRoutingKey(name))
	return q, nil
}

// Put publishes body to the queue.
func (q *SimpleQueue) Put(ctx context.Context, body any, opts ...PublishOption) error {
	_, err := q.prod.Publish(ctx, body, opts...)
	return err
}

// Get waits for the next message until ctx is done. Unless the queue was
// made with SimpleNoAck, settle the message with Ack, Reject or Requeue.
func (q *SimpleQueue) Get(ctx context.Context) (*Message, error) {
	for {
		m, err := q.ch.GetWait(ctx, q.queue.Name, q.noAck, q.accept, time.Second)
		if errors.Is(err, ErrEmpty) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		return m, err
	}
}

// GetNowait returns the next message or ErrEmpty at once.
func (q *SimpleQueue) GetNowait(ctx context.Context) (*Message, error) {
	return q.ch.Get(ctx, q.queue.Name, q.noAck, q.accept)
}

// Len returns the number of waiting messages.
func (q *SimpleQueue) Len(ctx context.Context) (int64, error) {
	return q.conn.t.QueueSize(ctx, q.queue.Name)
}

// Clear removes the waiting messages and returns how many.
func (q *SimpleQueue) Clear(ctx context.Context) (int64, error) {
	return q.conn.t.PurgeQueue(ctx, q.queue.Name)
}

// Close restores the messages gotten and not settled. It does not close
// the connection.
func (q *SimpleQueue) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return q.ch.Close(ctx)
}
