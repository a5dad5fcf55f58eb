package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/kombu-go/kombu"
)

// maxStdinBatch caps the messages of one PublishBatch of `kombu publish -`.
const maxStdinBatch = 1000

// publishLines publishes one message per line of e.stdin (count times
// each), batching what stdin has ready: a reader hands lines over as they
// come, and every time the publisher finds no line waiting (input paused,
// or ended) it sends the lines taken so far in one PublishBatch (one
// pipeline on Redis) and prints their delivery tags in order once the
// backend has confirmed them. A slow producer on the other end of the pipe
// therefore still sees each line confirmed as soon as it was published;
// a file is sent maxStdinBatch messages per round trip. Order within a
// queue is the order of the lines.
//
// A line prepare refuses (a --serializer json line that is not JSON) ends
// the command with its error after the lines before it were published. A
// message the backend refused is reported on stderr with its line number;
// the command then stops with the first such error (the other messages of
// that batch were published and their tags printed).
func publishLines(ctx context.Context, e *env, prod *kombu.Producer, prepare func(string) (any, []kombu.PublishOption, error), count int, unrouted *int) error {
	type line struct {
		text string
		err  error // the scanner's error, last
	}
	lines := make(chan line, maxStdinBatch)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
		for sc.Scan() {
			lines <- line{text: sc.Text()}
		}
		if err := sc.Err(); err != nil {
			lines <- line{err: err}
		}
	}()

	var batch []kombu.Outgoing
	var lineNo []int // batch[i] comes from line lineNo[i]
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := prod.PublishBatch(ctx, batch)
		var be *kombu.BatchError
		if err != nil && !errors.As(err, &be) {
			return err // nothing was sent
		}
		var first error
		for i, r := range res {
			if be != nil && be.Errs[i] != nil {
				fmt.Fprintf(e.stderr, "kombu publish: line %d: %v\n", lineNo[i], be.Errs[i])
				first = cmp.Or(first, be.Errs[i])
				continue
			}
			if r.Routed == 0 {
				*unrouted++
			}
			fmt.Fprintln(e.stdout, r.DeliveryTag)
		}
		batch, lineNo = batch[:0], lineNo[:0]
		return first
	}
	for {
		var l line
		var ok bool
		select {
		case l, ok = <-lines:
		default:
			// Nothing ready: send what was taken, then wait.
			if err := flush(); err != nil {
				return err
			}
			select {
			case l, ok = <-lines:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			return flush()
		}
		if l.err != nil {
			if err := flush(); err != nil {
				return err
			}
			return l.err
		}
		n++
		body, popts, err := prepare(l.text)
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		for range count {
			batch = append(batch, kombu.Outgoing{Body: body, Options: popts})
			lineNo = append(lineNo, n)
		}
		if len(batch) >= maxStdinBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
