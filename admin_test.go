package kombu_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
)

// Proves the operator methods on the memory backend: Peek returns the
// waiting messages decoded, in delivery order, without taking them, and
// reports a malformed envelope (errors.Is ErrMalformed) while returning
// the good ones; PublishRaw sends an envelope byte for byte; Bindings,
// RemoveBinding and ExchangeType read and change the binding table;
// Unacked/UnackedCount see a delivered message and RestoreUnacked(all)
// puts it back.
func TestOperatorMethods(t *testing.T) {
	ctx := context.Background()
	conn, err := kombu.Dial(ctx, "memory://"+uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := kombu.Queue{Name: "q", Exchange: kombu.Exchange{Name: "ex", Type: kombu.Topic}, RoutingKey: "a.*"}
	if _, err := conn.DeclareQueue(ctx, q); err != nil {
		t.Fatal(err)
	}
	p := conn.Producer()
	for _, body := range []string{"one", "two"} {
		if _, err := p.Publish(ctx, body, kombu.WithExchange(q.Exchange), kombu.WithRoutingKey("a.b")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := conn.PublishRaw(ctx, "", "q", 0, []byte("not an envelope")); err != nil || n != 1 {
		t.Fatalf("PublishRaw: %d %v", n, err)
	}
	msgs, err := conn.Peek(ctx, "q", 10)
	if !errors.Is(err, kombu.ErrMalformed) {
		t.Errorf("Peek's error %v, want one wrapping ErrMalformed", err)
	}
	var got []string
	for _, m := range msgs {
		var s string
		if err := m.Decode(&s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s)
	}
	if len(got) != 2 || got[0] != "one" || got[1] != "two" {
		t.Errorf("Peek: %v, want [one two]", got)
	}
	if n, _ := conn.Len(ctx, "q"); n != 3 {
		t.Errorf("Peek took messages: %d left, want 3", n)
	}
	rows, err := conn.Bindings(ctx, "ex")
	if err != nil || len(rows) != 1 || rows[0].RoutingKey != "a.*" || rows[0].Pattern == "" || rows[0].Queue != "q" {
		t.Fatalf("Bindings: %+v %v", rows, err)
	}
	if conn.ExchangeType("ex") != kombu.Topic || conn.ExchangeType("never") != kombu.Direct {
		t.Errorf("ExchangeType: %s %s", conn.ExchangeType("ex"), conn.ExchangeType("never"))
	}
	m, err := conn.Get(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	if n, since, err := conn.UnackedCount(ctx); err != nil || n != 1 || time.Since(since) > time.Minute {
		t.Errorf("UnackedCount: %d %v %v", n, since, err)
	}
	if u, err := conn.Unacked(ctx, 0); err != nil || len(u) != 1 || u[0].Tag != m.DeliveryTag {
		t.Errorf("Unacked: %+v %v", u, err)
	}
	if per, err := conn.RestoreUnacked(ctx, false); err != nil || len(per) != 0 {
		t.Errorf("RestoreUnacked before the visibility timeout: %v %v", per, err)
	}
	if per, err := conn.RestoreUnacked(ctx, true); err != nil || per["q"] != 1 {
		t.Errorf("RestoreUnacked(all): %v %v", per, err)
	}
	if n, _ := conn.Len(ctx, "q"); n != 3 {
		t.Errorf("after restore %d waiting, want 3", n)
	}
	if err := conn.RemoveBinding(ctx, "ex", rows[0]); err != nil {
		t.Fatal(err)
	}
	if rows, _ := conn.Bindings(ctx, "ex"); len(rows) != 0 {
		t.Errorf("after RemoveBinding: %+v", rows)
	}
}
