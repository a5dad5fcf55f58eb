package serialization

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// Kombu 5.3+ JSON type markers (kombu/utils/json.py): a value Python's
// json cannot hold is written as {"__type__": T, "__value__": V}:
//
//	T          Python            V                          Go
//	datetime   datetime          isoformat()                time.Time
//	date       date              isoformat()                Date
//	time       time              isoformat()                TimeOfDay
//	decimal    Decimal           str()                      Decimal
//	uuid       uuid.UUID         {"hex": "..."}             uuid.UUID
//	bytes      bytes (UTF-8)     the text                   []byte
//	base64     bytes (other)     base64                     []byte
//
// Decoding JSON always reads them into the Go types, as Kombu 5.5's loads
// does; an object of exactly those two keys with an unknown type is a
// DecodeError, as it is a ValueError in Kombu 5.5 (Kombu 5.2 passes every
// such object through as a dict). Encoding writes them only when asked
// (Registry.EnableTypeMarkers): Kombu 5.2 peers cannot read them.

// Date is a calendar date as ISO 8601 text ("2024-05-06"), Python's
// datetime.date.
type Date string

// TimeOfDay is a time of day as ISO 8601 text ("07:08:09.123456"),
// Python's datetime.time.
type TimeOfDay string

// Decimal is a decimal number as its exact text ("1.50"), Python's
// decimal.Decimal.
type Decimal string

// ErrUnknownTypeMarker is wrapped by the DecodeError for a
// {"__type__", "__value__"} object of a type Kombu does not register.
var ErrUnknownTypeMarker = fmt.Errorf("unsupported JSON type marker")

// fromMarkers replaces type-marker objects in a decoded JSON value.
func fromMarkers(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 2 {
			if t, ok := x["__type__"].(string); ok {
				if val, ok := x["__value__"]; ok {
					return decodeMarker(t, val)
				}
			}
		}
		for k, e := range x {
			d, err := fromMarkers(e)
			if err != nil {
				return nil, err
			}
			x[k] = d
		}
		return x, nil
	case []any:
		for i, e := range x {
			d, err := fromMarkers(e)
			if err != nil {
				return nil, err
			}
			x[i] = d
		}
		return x, nil
	}
	return v, nil
}

func decodeMarker(t string, v any) (any, error) {
	s, isStr := v.(string)
	bad := func() (any, error) { return nil, fmt.Errorf("type marker %q with value %v", t, v) }
	switch t {
	case "datetime":
		if !isStr {
			return bad()
		}
		tm, err := parseISODateTime(s)
		if err != nil {
			return nil, fmt.Errorf("type marker datetime %q: %w", s, err)
		}
		return tm, nil
	case "date":
		if !isStr {
			return bad()
		}
		if _, err := time.Parse("2006-01-02", s[:min(len(s), 10)]); err != nil {
			return nil, fmt.Errorf("type marker date %q: %w", s, err)
		}
		return Date(s[:min(len(s), 10)]), nil
	case "time":
		if !isStr {
			return bad()
		}
		return TimeOfDay(s), nil
	case "decimal":
		if !isStr {
			return bad()
		}
		return Decimal(s), nil
	case "uuid":
		m, ok := v.(map[string]any)
		hex, _ := m["hex"].(string)
		if !ok || hex == "" {
			return bad()
		}
		u, err := uuid.Parse(hex)
		if err != nil {
			return nil, fmt.Errorf("type marker uuid %q: %w", hex, err)
		}
		return u, nil
	case "bytes":
		if !isStr {
			return bad()
		}
		return []byte(s), nil
	case "base64":
		if !isStr {
			return bad()
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("type marker base64: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownTypeMarker, t)
}

// parseISODateTime reads Python's datetime.isoformat() output, with or
// without an offset (a naive datetime is taken as UTC).
func parseISODateTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not an ISO 8601 date and time")
}

func marker(t string, v any) pyjson.Object {
	return pyjson.Object{{Key: "__type__", Value: t}, {Key: "__value__", Value: v}}
}

// toMarkers replaces Go values Kombu 5.5 writes as type markers.
func toMarkers(v any) any {
	switch x := v.(type) {
	case time.Time:
		return marker("datetime", pyISO(x))
	case *time.Time:
		if x == nil {
			return nil
		}
		return marker("datetime", pyISO(*x))
	case Date:
		return marker("date", string(x))
	case TimeOfDay:
		return marker("time", string(x))
	case Decimal:
		return marker("decimal", string(x))
	case uuid.UUID:
		return marker("uuid", map[string]any{"hex": strings.ReplaceAll(x.String(), "-", "")})
	case []byte:
		if utf8.Valid(x) {
			return marker("bytes", string(x))
		}
		return marker("base64", base64.StdEncoding.EncodeToString(x))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = toMarkers(e)
		}
		return out
	case pyjson.Object:
		out := make(pyjson.Object, len(x))
		for i, kv := range x {
			out[i] = pyjson.Member{Key: kv.Key, Value: toMarkers(kv.Value)}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toMarkers(e)
		}
		return out
	}
	return v
}

// pyISO is Python's datetime.isoformat(): microseconds only when not zero,
// the offset as +HH:MM.
func pyISO(t time.Time) string {
	layout := "2006-01-02T15:04:05"
	if t.Nanosecond()/1000 != 0 {
		layout += ".000000"
	}
	return t.Format(layout) + t.Format("-07:00")
}

// markerJSONCodec is json writing Kombu 5.5's type markers.
type markerJSONCodec struct{ jsonCodec }

func (markerJSONCodec) Marshal(v any) ([]byte, error) { return pyjson.Marshal(toMarkers(v)) }

// EnableTypeMarkers makes the registry's json serializer write Kombu 5.3+
// type markers for time.Time, Date, TimeOfDay, Decimal, uuid.UUID and
// []byte values inside a body, as Kombu 5.5's dumps does, so that Python
// peers on Kombu 5.3 or later read datetime, date, time, Decimal, UUID and
// bytes. Kombu 5.2 peers read those as plain dicts: enable it only when
// every consumer runs Kombu 5.3 or later.
func (r *Registry) EnableTypeMarkers() {
	r.Register("json", markerJSONCodec{})
}
