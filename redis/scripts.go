package redis

import (
	"context"
	_ "embed"
	"errors"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Each Lua script is one atomic operation in scripts/<op>.lua, with its
// KEYS, ARGV and return values described at the top of the file.

//go:embed scripts/get.lua
var getLua string

//go:embed scripts/topic_match.lua
var topicMatchLua string

//go:embed scripts/publish.lua
var publishLua string

//go:embed scripts/publish_batch.lua
var publishBatchLua string

//go:embed scripts/restore.lua
var restoreLua string

// releaseLockLua is redis-py's Lock release script, byte for byte (so its
// SHA1 is c3f8721cbb97f72bc19e972846bd7aaf91901658, the EVALSHA Python
// Kombu sends, and both share one cached script). It carries no header
// comment for that reason:
//
//	KEYS[1]  the lock key (P+unacked_mutex)
//	ARGV[1]  the token the lock was taken with
//	returns  1 if the key held the token and was deleted, else 0
//
//go:embed scripts/release_lock.lua
var releaseLockLua string

var (
	getScript          = newScript(getLua)
	publishScript      = newScript(topicMatchLua + "\n" + publishLua)
	publishBatchScript = newScript(stripComments(topicMatchLua + "\n" + publishBatchLua))
	restoreScript      = newScript(restoreLua)
	releaseLockScript  = newScript(releaseLockLua)

	allScripts = []*script{getScript, publishScript, publishBatchScript, restoreScript, releaseLockScript}
)

// script is one Lua script and the one way the backend calls a script:
// the caller builds the command's arguments with args (or in a buffer of
// its own with the same layout, as runPublish does to save allocations),
// and run sends it as EVALSHA, then as EVAL with the script's text if the
// server's cache lacks it (NOSCRIPT), as go-redis's Script.Run does; in a
// pipeline, where a NOSCRIPT reply cannot be retried in order, queue sends
// the pipeline's first call as EVAL (which caches the script for the
// EVALSHAs behind it).
type script struct {
	src string
	sha any // the SHA1 as a string, boxed once
}

func newScript(src string) *script {
	return &script{src: src, sha: goredis.NewScript(src).Hash()}
}

// args returns the command [evalsha sha numkeys keys... args...].
func (s *script) args(keys []string, args ...any) []any {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", s.sha, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return append(a, args...)
}

// run sends the command built by args through process (the client's
// Process, or one that also queues a WAIT), and again as EVAL if the server
// lacks the script. It may change cmdArgs[0:2].
func (s *script) run(ctx context.Context, process func(context.Context, goredis.Cmder), cmdArgs []any) *goredis.Cmd {
	cmdArgs[0], cmdArgs[1] = "evalsha", s.sha
	cmd := goredis.NewCmd(ctx, cmdArgs...)
	cmd.SetFirstKeyPos(3)
	process(ctx, cmd)
	if err := cmd.Err(); err != nil && isNoScript(err) {
		cmdArgs[0], cmdArgs[1] = "eval", s.src
		cmd = goredis.NewCmd(ctx, cmdArgs...)
		cmd.SetFirstKeyPos(3)
		process(ctx, cmd)
	}
	return cmd
}

// call is run through a client.
func (s *script) call(ctx context.Context, c goredis.UniversalClient, keys []string, args ...any) *goredis.Cmd {
	return s.run(ctx, func(ctx context.Context, cmd goredis.Cmder) { _ = c.Process(ctx, cmd) }, s.args(keys, args...))
}

// queue adds the command built by args to a pipeline: as EVAL when first
// (the pipeline's first call of the script), else as EVALSHA.
func (s *script) queue(ctx context.Context, pipe goredis.Pipeliner, first bool, cmdArgs []any) *goredis.Cmd {
	cmdArgs[0], cmdArgs[1] = "evalsha", s.sha
	if first {
		cmdArgs[0], cmdArgs[1] = "eval", s.src
	}
	cmd := goredis.NewCmd(ctx, cmdArgs...)
	cmd.SetFirstKeyPos(3)
	_ = pipe.Process(ctx, cmd)
	return cmd
}

// load puts the script in the server's cache.
func (s *script) load(ctx context.Context, c goredis.UniversalClient) error {
	return c.ScriptLoad(ctx, s.src).Err()
}

// isNoScript reports whether err means the server's script cache lacks
// the script.
func isNoScript(err error) bool {
	return errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT")
}

// stripComments removes the lines that hold only a Lua comment, blank
// lines and indentation (the scripts have no multi-line strings or block
// comments): the text of a script sent whole with every batch (EVAL) is
// less than half the size.
func stripComments(src string) string {
	var b strings.Builder
	for line := range strings.Lines(src) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		b.WriteString(t)
		b.WriteByte('\n')
	}
	return b.String()
}
