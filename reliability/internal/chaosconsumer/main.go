// Command chaosconsumer is the consumer process the reliability tests kill
// with SIGKILL. It consumes one queue with acks and, for every message it
// handles, increments the message's counter in a Redis hash BEFORE the
// message is acknowledged, so a kill between the two shows up as a
// duplicate, never as a loss.
//
// Environment:
//
//	CHAOS_URL          broker URL (kombu.Dial)
//	CHAOS_QUEUE        queue to consume
//	CHAOS_RECORD_URL   redis:// URL of the server holding the counters
//	CHAOS_RECORD_KEY   hash: delivery tag -> times handled
//	CHAOS_CONCURRENCY  handler goroutines (default 4)
//	CHAOS_HANDLER_US   upper bound of a random handler delay, microseconds
//
// SIGTERM or SIGINT stops it gracefully (handlers finish, the rest is
// restored). It prints "ready" on stdout once it consumes.
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/redis"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaosconsumer:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conc, _ := strconv.Atoi(os.Getenv("CHAOS_CONCURRENCY"))
	if conc <= 0 {
		conc = 4
	}
	delayUS, _ := strconv.Atoi(os.Getenv("CHAOS_HANDLER_US"))
	opt, err := goredis.ParseURL(os.Getenv("CHAOS_RECORD_URL"))
	if err != nil {
		return err
	}
	rc := goredis.NewClient(opt)
	defer rc.Close()
	key := os.Getenv("CHAOS_RECORD_KEY")

	conn, err := kombu.Dial(ctx, os.Getenv("CHAOS_URL"))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := conn.Consumer([]kombu.Queue{{Name: os.Getenv("CHAOS_QUEUE")}},
		kombu.WithConcurrency(conc),
		kombu.WithShutdownTimeout(2*time.Second),
		kombu.WithReady(func() { fmt.Println("ready") }),
		kombu.WithErrorHandler(func(err error) { fmt.Fprintln(os.Stderr, "consumer error:", err) }))
	return c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
		if delayUS > 0 {
			time.Sleep(time.Duration(rand.IntN(delayUS)) * time.Microsecond)
		}
		// Recorded before the ack that follows the handler's return.
		return rc.HIncrBy(ctx, key, m.DeliveryTag, 1).Err()
	})
}
