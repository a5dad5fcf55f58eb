package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kombu-go/kombu/entity"
	"github.com/kombu-go/kombu/internal/pyjson"
)

// ErrMalformed means a message could not be parsed as a Kombu envelope.
var ErrMalformed = errors.New("kombu: malformed message")

// Envelope is the JSON object Kombu stores in a queue list, sends by
// PUBLISH and keeps in the unacked hash (wire spec §3).
type Envelope struct {
	// Body is the payload after body_encoding was undone; still compressed
	// if Headers say so.
	Body []byte
	// ContentType and ContentEncoding are the serializer's MIME type and
	// charset. Empty means JSON null on the wire.
	ContentType, ContentEncoding string
	// Headers are the application headers. On encode they are written in
	// sorted key order, followed by "compression" when Compression is set.
	Headers map[string]any
	// Compression is the headers.compression value ("application/x-gzip").
	Compression string
	// Properties are the message properties (priority, correlation id, ...).
	Properties entity.Properties
	// Exchange and RoutingKey are properties.delivery_info.
	Exchange, RoutingKey string
	// Redelivered is delivery_info.redelivered (or headers.redelivered, or
	// the top-level "redelivered" of Kombu's ack_emulation=False restore).
	Redelivered bool
	// BodyEncoding is properties.body_encoding; "base64" by default.
	BodyEncoding string
	// DeliveryTag is properties.delivery_tag, a uuid4 string.
	DeliveryTag string
}

// Kombu's property names that Envelope maps to fields; anything else found
// in "properties" lands in Properties.Extra.
var knownProps = map[string]bool{
	"correlation_id": true, "reply_to": true, "delivery_mode": true,
	"expiration": true, "delivery_info": true, "priority": true,
	"body_encoding": true, "delivery_tag": true,
}

// Marshal returns the envelope as Kombu writes it, byte for byte: top-level
// keys body, content-encoding, content-type, headers, properties; properties
// in Kombu's order (user properties, delivery_mode, expiration,
// delivery_info, priority, body_encoding, delivery_tag); Python's json.dumps
// spacing and escaping.
func (e *Envelope) Marshal() ([]byte, error) {
	return e.AppendMarshal(make([]byte, 0, 320+base64.StdEncoding.EncodedLen(len(e.Body))))
}

// AppendMarshal appends the envelope's encoding (see Marshal) to dst.
func (e *Envelope) AppendMarshal(dst []byte) ([]byte, error) {
	var err error
	enc := e.BodyEncoding
	if enc == "" {
		enc = "base64"
	}
	dst = append(dst, `{"body": `...)
	switch enc {
	case "base64":
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, e.Body)
		dst = append(dst, '"')
	default:
		dst = pyjson.AppendString(dst, string(e.Body))
	}
	dst = append(dst, `, "content-encoding": `...)
	dst = appendNullableString(dst, e.ContentEncoding)
	dst = append(dst, `, "content-type": `...)
	dst = appendNullableString(dst, e.ContentType)
	dst = append(dst, `, "headers": {`...)
	n := 0
	for _, k := range sortedKeys(e.Headers) {
		if k == "compression" && e.Compression != "" {
			continue
		}
		if dst, err = appendMember(dst, n, k, e.Headers[k]); err != nil {
			return nil, fmt.Errorf("kombu: header %q: %w", k, err)
		}
		n++
	}
	if e.Compression != "" {
		dst, _ = appendMember(dst, n, "compression", e.Compression)
	}
	dst = append(dst, `}, "properties": {`...)
	n = 0
	p := &e.Properties
	if p.CorrelationID != "" {
		dst, _ = appendMember(dst, n, "correlation_id", p.CorrelationID)
		n++
	}
	if p.ReplyTo != "" {
		dst, _ = appendMember(dst, n, "reply_to", p.ReplyTo)
		n++
	}
	for _, k := range sortedKeys(p.Extra) {
		if knownProps[k] {
			continue
		}
		if dst, err = appendMember(dst, n, k, p.Extra[k]); err != nil {
			return nil, fmt.Errorf("kombu: property %q: %w", k, err)
		}
		n++
	}
	mode := p.DeliveryMode
	if mode == 0 {
		mode = entity.Persistent
	}
	dst = appendSep(dst, n)
	dst = append(dst, `"delivery_mode": `...)
	dst = strconv.AppendInt(dst, int64(mode), 10)
	if p.Expiration != "" {
		dst = append(dst, `, "expiration": `...)
		dst = pyjson.AppendString(dst, p.Expiration)
	}
	dst = append(dst, `, "delivery_info": {"exchange": `...)
	dst = pyjson.AppendString(dst, e.Exchange)
	dst = append(dst, `, "routing_key": `...)
	dst = pyjson.AppendString(dst, e.RoutingKey)
	if e.Redelivered {
		dst = append(dst, `, "redelivered": true`...)
	}
	dst = append(dst, `}, "priority": `...)
	dst = strconv.AppendInt(dst, int64(p.Priority), 10)
	dst = append(dst, `, "body_encoding": `...)
	dst = pyjson.AppendString(dst, enc)
	dst = append(dst, `, "delivery_tag": `...)
	dst = pyjson.AppendString(dst, e.DeliveryTag)
	dst = append(dst, "}}"...)
	return dst, nil
}

func appendNullableString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return pyjson.AppendString(dst, s)
}

func appendSep(dst []byte, n int) []byte {
	if n > 0 {
		dst = append(dst, ", "...)
	}
	return dst
}

func appendMember(dst []byte, n int, k string, v any) ([]byte, error) {
	dst = appendSep(dst, n)
	dst = pyjson.AppendString(dst, k)
	dst = append(dst, ": "...)
	return pyjson.Append(dst, v)
}

func sortedKeys(m map[string]any) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParseEnvelope reads an envelope written by any Kombu version or by this
// package. It accepts any key order and extra keys, a missing or null
// body_encoding and "utf-8" (the body is then plain text), padded or
// unpadded standard base64, and a missing delivery_info (empty exchange and
// routing key). It fails with an error wrapping ErrMalformed when the text
// is not a JSON object, the body cannot be decoded, or the delivery tag is
// missing.
//
// It walks the JSON once without building maps for the envelope itself
// (only headers and unknown properties become maps and values, as
// pyjson.Unmarshal makes them); the result is what the reference parser
// in the tests, which unmarshals the whole text first, returns
// (FuzzParseEnvelopeFast checks that).
func Parse(raw []byte) (*Envelope, error) {
	w := pyjson.NewWalker(raw)
	defer w.Release()
	if w.Kind() != '{' {
		if _, err := pyjson.Unmarshal(raw); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("%w: envelope is not a JSON object", ErrMalformed)
	}
	e := &Envelope{}
	var p envelopeParse
	if err := p.walk(&w, e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	p.strings(e)
	e.Redelivered = p.hdrRed || p.topRed || p.infoRed
	switch {
	case p.bodyIsStr:
		switch e.BodyEncoding {
		case "base64":
			var err error
			if p.bodyRaw != nil {
				e.Body, err = decodeBase64Bytes(p.bodyRaw)
			} else {
				e.Body, err = decodeBase64(p.bodyStr)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: body_encoding base64: %w", ErrMalformed, err)
			}
		case "", "utf-8", "utf8":
			if p.bodyRaw != nil {
				e.Body = bytes.Clone(p.bodyRaw)
			} else {
				e.Body = []byte(p.bodyStr)
			}
		default:
			return nil, fmt.Errorf("%w: unknown body_encoding %q", ErrMalformed, e.BodyEncoding)
		}
	case p.body == nil:
		if !p.hasBody {
			return nil, fmt.Errorf("%w: envelope has no body", ErrMalformed)
		}
	default:
		// A JSON value where Kombu writes a string: keep its JSON text.
		var err error
		if e.Body, err = pyjson.Marshal(p.body); err != nil {
			return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
		}
	}
	if e.DeliveryTag == "" {
		return nil, fmt.Errorf("%w: envelope has no properties.delivery_tag", ErrMalformed)
	}
	return e, nil
}

// envelopeParse is ParseEnvelope's state while it walks the text. A key
// that repeats is read each time and the last one wins, as in the map
// that json.loads builds.
type envelopeParse struct {
	body                    any    // a non-string body
	bodyRaw                 []byte // a string body without escapes (into the text)
	bodyStr                 string // a string body with escapes
	bodyIsStr, hasBody      bool
	hdrRed, topRed, infoRed bool
	raw                     [nFields][]byte // string fields read as bytes, see str
	pending                 bool            // raw has some
}

func (p *envelopeParse) walk(w *pyjson.Walker, e *Envelope) error {
	if err := w.Enter(); err != nil {
		return err
	}
	for {
		key, ok, err := w.Next()
		if err != nil {
			return err
		}
		if !ok {
			return w.End()
		}
		switch string(key) {
		case "body":
			p.hasBody = true
			p.body, p.bodyRaw, p.bodyStr, p.bodyIsStr = nil, nil, "", false
			if w.Kind() == '"' {
				p.bodyIsStr = true
				p.bodyStr, p.bodyRaw, err = w.String()
			} else {
				p.body, err = w.Any()
			}
		case "content-type":
			err = p.str(w, e, fContentType, false)
		case "content-encoding":
			err = p.str(w, e, fContentEncoding, false)
		case "headers":
			e.Headers, e.Compression, p.hdrRed = nil, "", false
			var v any
			v, err = w.Any()
			if h, ok := v.(map[string]any); ok {
				e.Headers = h
				if c, ok := h["compression"].(string); ok {
					e.Compression = c
				}
				if r, ok := h["redelivered"].(bool); ok && r {
					p.hdrRed = true
				}
			}
		case "redelivered":
			var v any
			v, err = w.Any()
			r, ok := v.(bool)
			p.topRed = ok && r
		case "properties":
			e.Properties, p.infoRed = entity.Properties{}, false
			for _, f := range []int{fCorrelationID, fReplyTo, fExpiration, fDeliveryTag, fBodyEncoding, fExchange, fRoutingKey} {
				p.clear(e, f)
			}
			if w.Kind() == '{' {
				err = p.properties(w, e)
			} else {
				err = w.Skip()
			}
		default:
			err = w.Skip()
		}
		if err != nil {
			return err
		}
	}
}

func (p *envelopeParse) properties(w *pyjson.Walker, e *Envelope) error {
	if err := w.Enter(); err != nil {
		return err
	}
	for {
		key, ok, err := w.Next()
		if err != nil || !ok {
			return err
		}
		switch string(key) {
		case "correlation_id":
			err = p.str(w, e, fCorrelationID, true)
		case "reply_to":
			err = p.str(w, e, fReplyTo, true)
		case "expiration":
			err = p.str(w, e, fExpiration, true)
		case "delivery_tag":
			err = p.str(w, e, fDeliveryTag, true)
		case "priority":
			e.Properties.Priority, err = walkInt(w)
		case "delivery_mode":
			var m int
			m, err = walkInt(w)
			e.Properties.DeliveryMode = entity.DeliveryMode(m)
		case "body_encoding":
			err = p.str(w, e, fBodyEncoding, false)
		case "delivery_info":
			p.clear(e, fExchange)
			p.clear(e, fRoutingKey)
			p.infoRed = false
			if w.Kind() == '{' {
				err = p.deliveryInfo(w, e)
			} else {
				err = w.Skip()
			}
		default:
			k := string(key)
			var v any
			v, err = w.Any()
			if e.Properties.Extra == nil {
				e.Properties.Extra = map[string]any{}
			}
			e.Properties.Extra[k] = v
		}
		if err != nil {
			return err
		}
	}
}

func (p *envelopeParse) deliveryInfo(w *pyjson.Walker, e *Envelope) error {
	if err := w.Enter(); err != nil {
		return err
	}
	for {
		key, ok, err := w.Next()
		if err != nil || !ok {
			return err
		}
		switch string(key) {
		case "exchange":
			err = p.str(w, e, fExchange, true)
		case "routing_key":
			err = p.str(w, e, fRoutingKey, true)
		case "redelivered":
			var v any
			v, err = w.Any()
			r, ok := v.(bool)
			p.infoRed = ok && r
		default:
			err = w.Skip()
		}
		if err != nil {
			return err
		}
	}
}

// The envelope's string fields. A string read without escapes is kept as
// its bytes in the text until the walk ends; then all of them become one
// string (one allocation) that the fields share.
const (
	fContentType = iota
	fContentEncoding
	fCorrelationID
	fReplyTo
	fExpiration
	fDeliveryTag
	fBodyEncoding
	fExchange
	fRoutingKey
	nFields
)

func (e *Envelope) field(f int) *string {
	switch f {
	case fContentType:
		return &e.ContentType
	case fContentEncoding:
		return &e.ContentEncoding
	case fCorrelationID:
		return &e.Properties.CorrelationID
	case fReplyTo:
		return &e.Properties.ReplyTo
	case fExpiration:
		return &e.Properties.Expiration
	case fDeliveryTag:
		return &e.DeliveryTag
	case fBodyEncoding:
		return &e.BodyEncoding
	case fExchange:
		return &e.Exchange
	default:
		return &e.RoutingKey
	}
}

// str reads string field f: a string as it is; another value as anyString
// converts it if conv is set (Kombu's str()), else as "".
func (p *envelopeParse) str(w *pyjson.Walker, e *Envelope, f int, conv bool) error {
	p.clear(e, f)
	switch {
	case w.Kind() == '"':
		s, raw, err := w.String()
		if raw != nil {
			p.raw[f], p.pending = raw, true
		} else {
			*e.field(f) = s
		}
		return err
	case conv:
		v, err := w.Any()
		*e.field(f) = anyString(v)
		return err
	default:
		return w.Skip()
	}
}

// clear empties string field f.
func (p *envelopeParse) clear(e *Envelope, f int) {
	p.raw[f] = nil
	*e.field(f) = ""
}

// strings gives the fields read as bytes their strings, which share one
// allocation.
func (p *envelopeParse) strings(e *Envelope) {
	if !p.pending {
		return
	}
	n := 0
	for _, r := range p.raw {
		n += len(r)
	}
	var b strings.Builder
	b.Grow(n)
	for _, r := range p.raw {
		b.Write(r)
	}
	all := b.String()
	at := 0
	for f, r := range p.raw {
		if r != nil {
			*e.field(f) = all[at : at+len(r)]
			at += len(r)
		}
	}
}

// walkInt reads a value as anyInt converts it, small integers without
// allocating.
func walkInt(w *pyjson.Walker) (int, error) {
	if text, ok := w.Number(); ok {
		if n, ok := smallInt(text); ok {
			return n, nil
		}
		return anyInt(pyjson.AsNumber(text)), nil
	}
	v, err := w.Any()
	return anyInt(v), err
}

// smallInt parses an integer of at most 9 digits (no fraction or
// exponent).
func smallInt(text []byte) (int, bool) {
	neg := len(text) > 0 && text[0] == '-'
	if neg {
		text = text[1:]
	}
	if len(text) == 0 || len(text) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func decodeBase64Bytes(b []byte) ([]byte, error) {
	dst := make([]byte, base64.RawStdEncoding.DecodedLen(len(b))) // >= StdEncoding's
	n, err := base64.StdEncoding.Decode(dst, b)
	if err == nil {
		return dst[:n:n], nil
	}
	if n, err2 := base64.RawStdEncoding.Decode(dst, b); err2 == nil {
		return dst[:n:n], nil
	}
	return nil, err
}

func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return b, nil
	}
	if b, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
		return b, nil
	}
	return nil, err
}

func anyString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case nil:
		return ""
	case json.Number:
		return s.String()
	default:
		b, _ := pyjson.Marshal(v)
		return string(b)
	}
}

func anyInt(v any) int {
	switch n := v.(type) {
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return clampInt(i)
		}
		if f, err := n.Float64(); err == nil {
			return clampFloat(f)
		}
	case float64:
		return clampFloat(n)
	case int:
		return n
	case int64:
		return clampInt(n)
	case bool:
		// Python's int(True) is 1.
		if n {
			return 1
		}
	case string:
		// Python's int() accepts digit strings with surrounding spaces, of
		// any size.
		if i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
			return clampInt(i)
		}
	}
	return 0
}

// clampFloat truncates f toward zero, as Python's int() does, clamped to
// the int32 range (converting an out-of-range float to an integer is
// undefined in Go); NaN and infinities give 0.
func clampFloat(f float64) int {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return 0
	case f >= math.MaxInt32:
		return math.MaxInt32
	case f <= math.MinInt32:
		return math.MinInt32
	}
	return int(f)
}

func clampInt(i int64) int {
	if i > math.MaxInt32 {
		return math.MaxInt32
	}
	if i < math.MinInt32 {
		return math.MinInt32
	}
	return int(i)
}

// Priority returns properties.priority clamped to 0..9, as Kombu's Redis
// transport does when it picks a priority list.
func (e *Envelope) Priority() int { return ClampPriority(e.Properties.Priority) }

// ClampPriority clamps p to Kombu's 0..9.
func ClampPriority(p int) int {
	if p < 0 {
		return 0
	}
	if p > 9 {
		return 9
	}
	return p
}

// MarkRedelivered returns raw with headers.redelivered and
// properties.delivery_info.redelivered set to true, every other byte laid
// out as Python's json.dumps would after json.loads (key order kept), as
// Kombu's restore does. Where Kombu would crash and lose the message
// (headers null) the headers become {"redelivered": true}; where headers are
// missing nothing is marked, and where delivery_info is missing only the
// header is, as in Kombu.
func MarkRedelivered(raw []byte) ([]byte, error) {
	v, err := pyjson.UnmarshalOrdered(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	top, ok := v.(pyjson.Object)
	if !ok {
		return nil, fmt.Errorf("%w: envelope is not a JSON object", ErrMalformed)
	}
	h, present := top.Get("headers")
	if !present {
		// Kombu: KeyError on headers, neither flag is set.
		return pyjson.Marshal(top)
	}
	hdr, _ := h.(pyjson.Object)
	hdr.Set("redelivered", true)
	top.Set("headers", hdr)
	p, _ := top.Get("properties")
	props, ok := p.(pyjson.Object)
	if !ok {
		return nil, errors.Join(ErrMalformed, errors.New("kombu: envelope has no properties object"))
	}
	di, present := props.Get("delivery_info")
	dinfo, ok := di.(pyjson.Object)
	if !present || !ok {
		// Kombu: KeyError on delivery_info, only the header flag is set.
		return pyjson.Marshal(top)
	}
	dinfo.Set("redelivered", true)
	props.Set("delivery_info", dinfo)
	top.Set("properties", props)
	return pyjson.Marshal(top)
}

// EnvelopeRoute returns the exchange and routing key of a raw envelope
// (properties.delivery_info) and its delivery tag, as the unacked record
// needs them.
func Route(raw []byte) (tag, exchange, routingKey string, err error) {
	e, err := Parse(raw)
	if err != nil {
		return "", "", "", err
	}
	return e.DeliveryTag, e.Exchange, e.RoutingKey, nil
}

// ExtractTag finds properties.delivery_tag in a raw envelope that may not
// parse as a whole, so a malformed message can still be settled.
func ExtractTag(raw []byte) (string, bool) {
	if v, err := pyjson.Unmarshal(raw); err == nil {
		if top, ok := v.(map[string]any); ok {
			if p, ok := top["properties"].(map[string]any); ok {
				if tag, ok := p["delivery_tag"].(string); ok && tag != "" {
					return tag, true
				}
			}
		}
		return "", false
	}
	m := tagRe.FindSubmatch(raw)
	if m == nil {
		return "", false
	}
	return string(m[1]), true
}

var tagRe = regexp.MustCompile(`"delivery_tag"\s*:\s*"([0-9A-Za-z_.:-]{1,128})"`)
