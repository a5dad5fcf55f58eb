package celery

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// formatISO writes t as Python's datetime.isoformat() writes an aware
// datetime: microseconds only when non-zero, and the UTC offset as +HH:MM.
// Celery writes eta and expires this way ("2026-11-24T20:47:46.801444+00:00").
func formatISO(t time.Time) string {
	b := appendNaiveISO(nil, t)
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b = append(b, sign)
	b = append2(b, off/3600)
	b = append(b, ':')
	b = append2(b, off%3600/60)
	if s := off % 60; s != 0 {
		b = append(b, ':')
		b = append2(b, s)
	}
	return string(b)
}

// formatNaiveUTC writes t in UTC without an offset, as
// datetime.utcnow().isoformat() does: Celery's date_done.
func formatNaiveUTC(t time.Time) string { return string(appendNaiveISO(nil, t.UTC())) }

func appendNaiveISO(b []byte, t time.Time) []byte {
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		s := strconv.Itoa(us)
		for i := len(s); i < 6; i++ {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	return b
}

func append2(b []byte, n int) []byte {
	if n < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, int64(n), 10)
}

// parseISO reads the ISO 8601 date-times Celery and Python write: with or
// without fractional seconds, with an offset, "Z", or none. A time without
// an offset is taken as UTC when utc is true (Celery's default, enable_utc),
// else as local time.
func parseISO(s string, utc bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty date-time", ErrInvalidMessage)
	}
	norm := strings.Replace(s, " ", "T", 1)
	if t, err := time.Parse(time.RFC3339Nano, norm); err == nil {
		return t, nil
	}
	// Offsets without a colon (+0000), which Python also accepts.
	if t, err := time.Parse("2006-01-02T15:04:05.999999999Z0700", norm); err == nil {
		return t, nil
	}
	loc := time.UTC
	if !utc {
		loc = time.Local
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, norm, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: cannot parse date-time %q", ErrInvalidMessage, s)
}
