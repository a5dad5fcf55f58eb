package redis

import (
	_ "embed"
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

// publishSrc is the text of publishScript, and publishSHA its SHA1 boxed
// once for Backend.Publish's EVALSHA arguments.
var (
	publishSrc     = topicMatchLua + "\n" + publishLua
	publishSHA any = publishScript.Hash()
)

var (
	getScript          = goredis.NewScript(getLua)
	publishScript      = goredis.NewScript(publishSrc)
	publishBatchScript = goredis.NewScript(stripComments(topicMatchLua + "\n" + publishBatchLua))
	restoreScript      = goredis.NewScript(restoreLua)
	releaseLockScript  = goredis.NewScript(releaseLockLua)

	allScripts = []*goredis.Script{getScript, publishScript, publishBatchScript, restoreScript, releaseLockScript}
)

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
