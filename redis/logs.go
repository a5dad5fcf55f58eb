package redis

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// RouteClientLogs sends go-redis's own log lines (for example "connection
// pool: failed to dial") to logger at Warn level, or discards them when
// logger is nil. go-redis writes them to stderr by default through one
// process-wide logger, so this changes that logger for every go-redis
// client in the process; kombu-go never calls it itself. Programs that
// must keep stderr clean (the kombu command does) call it once at start.
func RouteClientLogs(logger *slog.Logger) {
	goredis.SetLogger(clientLogs{logger})
}

type clientLogs struct{ l *slog.Logger }

func (c clientLogs) Printf(ctx context.Context, format string, v ...any) {
	if c.l == nil {
		return
	}
	c.l.WarnContext(ctx, "go-redis: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}
