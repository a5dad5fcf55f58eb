package serialization

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// Content types Kombu uses.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/x-msgpack"
	ContentTypeYAML    = "application/x-yaml"
	ContentTypePickle  = "application/x-python-serialize"
	// ContentTypeData is raw data: what a missing content type means, and
	// what the "raw" serializer and unserialized []byte bodies produce.
	// Always trusted.
	ContentTypeData = "application/data"
	// ContentTypeAppText is always trusted, like ContentTypeData. Kombu never
	// produces it.
	ContentTypeAppText = "application/text"
	// ContentTypeText is what an unserialized string body gets. It is NOT
	// always trusted: a consumer with an accept list must list it.
	ContentTypeText = "text/plain"
)

// Codec encodes and decodes one content type; Kombu registers the same thing
// as an (encoder, decoder, content_type, content_encoding) tuple.
//
// A Codec must be safe for concurrent use. Marshal may return an error that
// matches ErrUnknownSerializer to say that it cannot encode at all (Kombu's
// encoder None); Unmarshal likewise. Such errors are passed through as they
// are; other errors are wrapped in *EncodeError or *DecodeError.
type Codec interface {
	// ContentType is the MIME type written to the message, e.g. "application/json".
	ContentType() string
	// ContentEncoding is the character set of the encoded bytes: "utf-8",
	// or "binary" for byte formats.
	ContentEncoding() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data (never empty) into a generic Go value.
	Unmarshal(data []byte) (any, error)
}

// IntoUnmarshaler is an optional Codec method used by DecodeInto to decode
// straight into a Go value (for example a struct) instead of a generic value.
type IntoUnmarshaler interface {
	UnmarshalInto(data []byte, v any) error
}

// Registry is a set of serializers and compression methods, Kombu's
// SerializerRegistry and the tables of kombu.compression in one value.
// It is safe for concurrent use. Create one with NewRegistry; the zero value
// is not usable.
type Registry struct {
	mu       sync.RWMutex
	byName   map[string]Codec  // names and aliases (Kombu's _encoders and name_to_type)
	byType   map[string]Codec  // content type -> decoder (Kombu's _decoders)
	typeName map[string]string // content type -> first registered name (type_to_name)
	disabled map[string]bool   // refused when Decode gets no accept list

	compressors map[string]Compressor // canonical content type -> compressor
	compAliases map[string]string     // alias -> canonical content type
}

// Default is the registry the package-level functions use, as Kombu's
// module-level dumps/loads/compress use its global registry.
var Default = NewRegistry()

// NewRegistry returns a registry holding what Kombu 5.2 registers:
//
//   - "json": application/json, utf-8, written exactly as Python's json.dumps;
//   - "msgpack": application/x-msgpack, binary, a hand-written codec
//     compatible with msgpack-python's packb(use_bin_type=True) and
//     unpackb(raw=False);
//   - "yaml": application/x-yaml, known by name but not implemented: encoding
//     and decoding return an error matching ErrUnknownSerializer;
//   - "pickle": application/x-python-serialize, known by name only: it cannot
//     be encoded and is always refused on decode;
//   - "raw" (and the Go-only alias "binary"): application/data, handled
//     specially by Encode as Kombu's dumps does;
//   - compression "application/x-gzip" (aliases "gzip", "zlib"; a zlib
//     stream) and "application/x-bz2" (aliases "bzip2", "bzip"; decompress
//     only).
//
// As in Kombu, msgpack, yaml and pickle are disabled: Decode without an accept
// list refuses them.
func NewRegistry() *Registry {
	r := &Registry{
		byName:      map[string]Codec{},
		byType:      map[string]Codec{},
		typeName:    map[string]string{},
		disabled:    map[string]bool{},
		compressors: map[string]Compressor{},
		compAliases: map[string]string{},
	}
	r.Register("json", jsonCodec{})
	r.Register("pickle", pickleCodec{})
	r.Register("yaml", yamlCodec{})
	r.Register("msgpack", msgpackCodec{})
	// Kombu's disable_insecure_serializers(): every decoder but json.
	r.disabled[ContentTypePickle] = true
	r.disabled[ContentTypeYAML] = true
	r.disabled[ContentTypeMsgpack] = true

	r.RegisterCompression(ContentTypeZlib, zlibCompressor{}, "gzip", "zlib")
	r.RegisterCompression(ContentTypeBzip2, bzip2Compressor{}, "bzip2", "bzip")
	return r
}

// Register installs c under name and aliases for encoding, and as the decoder
// of c.ContentType(), replacing what was there, as Kombu's register does. A
// newly registered content type is enabled (accepted without an accept list)
// unless it was disabled before. Registering a codec for the pickle content
// type does not make pickle decodable.
//
// Register panics if name is empty, c is nil, c.ContentType() is empty, or
// the name is "raw" or "binary", which Encode handles itself.
func (r *Registry) Register(name string, c Codec, aliases ...string) {
	if name == "" {
		panic("serialization: Register with an empty name")
	}
	if c == nil {
		panic("serialization: Register of a nil codec for " + name)
	}
	ct := c.ContentType()
	if ct == "" {
		panic("serialization: Register of a codec with no content type for " + name)
	}
	names := append([]string{name}, aliases...)
	for _, n := range names {
		if n == "" {
			panic("serialization: Register with an empty alias for " + name)
		}
		if isRawName(n) {
			panic("serialization: Register: the name " + n + " is reserved")
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		r.byName[n] = c
	}
	r.byType[ct] = c
	r.typeName[ct] = name
}

func isRawName(name string) bool { return name == "raw" || name == "binary" }

// Lookup finds a codec by serializer name or alias ("json") or, if the
// argument contains a slash, by the content type it decodes
// ("application/json"). "raw" and "binary" return the raw codec; no codec is
// registered for the content type application/data, whose bodies Decode
// returns as text or bytes.
func (r *Registry) Lookup(nameOrContentType string) (Codec, bool) {
	if isRawName(nameOrContentType) {
		return rawCodec{}, true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var c Codec
	var ok bool
	if strings.Contains(nameOrContentType, "/") {
		c, ok = r.byType[nameOrContentType]
	} else {
		c, ok = r.byName[nameOrContentType]
	}
	return c, ok
}

// Encoded is a serialized body with the content type and content encoding to
// put in the message, and the compression header value if it was compressed.
type Encoded struct {
	ContentType     string
	ContentEncoding string
	Body            []byte
	// Compression is the canonical compression content type to send in
	// headers["compression"], or "" if Body is not compressed. Only Prepare
	// sets it.
	Compression string
}

// Encode serializes v as Kombu's dumps(v, serializer) does:
//
//   - serializer "raw" (or "binary"): a []byte is sent as is with content
//     encoding "binary", a string as UTF-8 with "utf-8"; the content type is
//     application/data; other types are an error;
//   - serializer "" and v a []byte: application/data, binary, as is;
//   - serializer "" and v a string: text/plain, utf-8;
//   - serializer "": otherwise json;
//   - any other serializer: the registered codec, or an error matching
//     ErrUnknownSerializer (also for "yaml" and "pickle").
//
// A []byte body is not copied. Strings must be valid UTF-8.
func (r *Registry) Encode(v any, serializer string) (Encoded, error) {
	if isRawName(serializer) {
		return rawEncode(v, serializer)
	}
	var c Codec
	if serializer != "" {
		r.mu.RLock()
		c = r.byName[serializer]
		r.mu.RUnlock()
		if c == nil {
			return Encoded{}, &UnknownSerializerError{Name: serializer, Op: OpEncode}
		}
	} else {
		switch b := v.(type) {
		case []byte:
			return Encoded{ContentType: ContentTypeData, ContentEncoding: "binary", Body: b}, nil
		case string:
			if !utf8.ValidString(b) {
				return Encoded{}, &EncodeError{Serializer: "text", Err: errInvalidUTF8}
			}
			return Encoded{ContentType: ContentTypeText, ContentEncoding: "utf-8", Body: []byte(b)}, nil
		}
		serializer = "json"
		r.mu.RLock()
		c = r.byName[serializer]
		r.mu.RUnlock()
		if c == nil {
			return Encoded{}, &UnknownSerializerError{Name: serializer, Op: OpEncode}
		}
	}
	body, err := c.Marshal(v)
	if err != nil {
		if errors.Is(err, ErrUnknownSerializer) {
			return Encoded{}, err
		}
		return Encoded{}, &EncodeError{Serializer: serializer, Err: err}
	}
	return Encoded{ContentType: c.ContentType(), ContentEncoding: c.ContentEncoding(), Body: body}, nil
}

var errInvalidUTF8 = errors.New("string is not valid UTF-8")

func rawEncode(v any, serializer string) (Encoded, error) {
	switch b := v.(type) {
	case []byte:
		return Encoded{ContentType: ContentTypeData, ContentEncoding: "binary", Body: b}, nil
	case string:
		if !utf8.ValidString(b) {
			return Encoded{}, &EncodeError{Serializer: serializer, Err: errInvalidUTF8}
		}
		return Encoded{ContentType: ContentTypeData, ContentEncoding: "utf-8", Body: []byte(b)}, nil
	}
	return Encoded{}, &EncodeError{Serializer: serializer, Err: fmt.Errorf("raw needs a []byte or string, not %T", v)}
}

// PrepareOptions are the publish arguments Kombu's Producer._prepare looks at.
type PrepareOptions struct {
	// Serializer is used when ContentType is empty (see Encode).
	Serializer string
	// ContentType, if set, means the body is already serialized: it must be
	// a []byte (sent as is) or a string (encoded with ContentEncoding).
	ContentType string
	// ContentEncoding goes with ContentType. Default: "utf-8" for a string
	// body, "binary" for a []byte body.
	ContentEncoding string
	// Compression, if set, is a compression name or content type applied
	// after serializing (see Compress).
	Compression string
}

// Prepare is Kombu's Producer._prepare: it serializes body (unless
// opts.ContentType says it already is) and then compresses it. The result's
// Compression field is the value for headers["compression"].
func (r *Registry) Prepare(body any, opts PrepareOptions) (Encoded, error) {
	var e Encoded
	if opts.ContentType == "" {
		var err error
		if e, err = r.Encode(body, opts.Serializer); err != nil {
			return Encoded{}, err
		}
	} else {
		e.ContentType = opts.ContentType
		e.ContentEncoding = opts.ContentEncoding
		switch b := body.(type) {
		case string:
			if e.ContentEncoding == "" {
				e.ContentEncoding = "utf-8"
			}
			out, err := encodeCharset(b, e.ContentEncoding)
			if err != nil {
				return Encoded{}, &EncodeError{Serializer: opts.ContentType, Err: err}
			}
			e.Body = out
		case []byte:
			if e.ContentEncoding == "" {
				e.ContentEncoding = "binary"
			}
			e.Body = b
		default:
			return Encoded{}, &EncodeError{Serializer: opts.ContentType,
				Err: fmt.Errorf("a body with an explicit content type must be a []byte or string, not %T", body)}
		}
	}
	if opts.Compression != "" {
		ct, out, err := r.Compress(opts.Compression, e.Body)
		if err != nil {
			return Encoded{}, err
		}
		e.Body, e.Compression = out, ct
	}
	return e, nil
}

var trustedContent = map[string]bool{ContentTypeData: true, ContentTypeAppText: true}

// PrepareAccept is Kombu's prepare_accept_content: it turns an accept list of
// serializer names ("json") and content types (anything containing a slash,
// taken as is) into content types. An unknown name is an error matching
// ErrUnknownSerializer. nil stays nil. "raw" and "binary" mean
// application/data.
func (r *Registry) PrepareAccept(accept []string) ([]string, error) {
	if accept == nil {
		return nil, nil
	}
	out := make([]string, 0, len(accept))
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, a := range accept {
		t := a
		if !strings.Contains(a, "/") {
			if isRawName(a) {
				t = ContentTypeData
			} else if c, ok := r.byName[a]; ok {
				t = c.ContentType()
			} else {
				return nil, &UnknownSerializerError{Name: a, Op: OpAccept}
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// check applies Kombu's refusal rules, plus kombu-go's own: pickle is refused
// whatever accept says.
func (r *Registry) check(ct string, accept []string) error {
	if ct == "" {
		ct = ContentTypeData
	}
	if ct == ContentTypePickle {
		return &ContentDisallowedError{ContentType: ct, Name: r.name(ct), Reason: ReasonUnsafe}
	}
	if accept != nil {
		types, err := r.PrepareAccept(accept)
		if err != nil {
			return err
		}
		if trustedContent[ct] {
			return nil
		}
		for _, t := range types {
			if t == ct {
				return nil
			}
		}
		return &ContentDisallowedError{ContentType: ct, Name: r.name(ct), Reason: ReasonUntrusted}
	}
	r.mu.RLock()
	off := r.disabled[ct]
	r.mu.RUnlock()
	if off {
		return &ContentDisallowedError{ContentType: ct, Name: r.name(ct), Reason: ReasonDisabled}
	}
	return nil
}

func (r *Registry) name(ct string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.typeName[ct]
}

// Decode is Kombu's loads (with prepare_accept_content applied to accept).
// The content type is checked first and no decoder runs for a refused one:
//
//   - an empty contentType means application/data;
//   - pickle is always refused (*ContentDisallowedError, ReasonUnsafe);
//   - accept != nil: the content type must be in accept (names or content
//     types, see PrepareAccept), unless it is application/data or
//     application/text, which are always trusted. An empty non-nil accept
//     list therefore refuses everything else. Celery's default is
//     []string{"json"};
//   - accept == nil (Kombu's default when a consumer gives no accept list):
//     everything is accepted except the disabled types, which are msgpack,
//     yaml and pickle.
//
// Then, as Kombu does:
//
//   - an empty body is returned as is, as a []byte, without decoding;
//   - if a codec is registered for the content type, its Unmarshal result;
//   - otherwise, if contentEncoding (lower-cased; "" means utf-8) is not
//     "binary" or "ascii-8bit", the body decoded with that character set as a
//     string (utf-8, ascii and latin-1 with their Python aliases are
//     supported; an invalid body or another character set is a *DecodeError);
//   - otherwise the body as a []byte (not copied).
//
// Content types are compared exactly, as Kombu does: "application/json;
// charset=utf-8" is not application/json.
//
// JSON decodes to map[string]any, []any, string, json.Number, bool and nil;
// msgpack as the package documentation describes.
func (r *Registry) Decode(body []byte, contentType, contentEncoding string, accept []string) (any, error) {
	ct := contentType
	if ct == "" {
		ct = ContentTypeData
	}
	if err := r.check(ct, accept); err != nil {
		return nil, err
	}
	return r.decodeChecked(body, ct, contentEncoding)
}

func (r *Registry) decodeChecked(body []byte, ct, contentEncoding string) (any, error) {
	if len(body) == 0 {
		if body == nil {
			body = []byte{}
		}
		return body, nil
	}
	r.mu.RLock()
	c := r.byType[ct]
	r.mu.RUnlock()
	if c != nil {
		v, err := c.Unmarshal(body)
		if err != nil {
			return nil, wrapDecodeErr(ct, err)
		}
		return v, nil
	}
	enc := strings.ToLower(contentEncoding)
	if enc == "" {
		enc = "utf-8"
	}
	if enc == "binary" || enc == "ascii-8bit" {
		return body, nil
	}
	s, err := decodeCharset(body, enc)
	if err != nil {
		return nil, &DecodeError{ContentType: ct, Err: err}
	}
	return s, nil
}

func wrapDecodeErr(ct string, err error) error {
	if errors.Is(err, ErrUnknownSerializer) || errors.Is(err, ErrContentDisallowed) {
		return err
	}
	return &DecodeError{ContentType: ct, Err: err}
}

// DecodeInto is Decode storing the result in v, which must be a non-nil
// pointer. The accept check comes first, exactly as in Decode. If the codec
// implements IntoUnmarshaler (json does, with encoding/json rules, numbers
// in interface values as json.Number) it decodes straight into v; otherwise
// the value Decode would return must be assignable to *v (a string to a
// *string, a []byte to a *[]byte, anything to an *any, ...).
func (r *Registry) DecodeInto(body []byte, contentType, contentEncoding string, accept []string, v any) error {
	ct := contentType
	if ct == "" {
		ct = ContentTypeData
	}
	if err := r.check(ct, accept); err != nil {
		return err
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &DecodeError{ContentType: ct, Err: fmt.Errorf("DecodeInto needs a non-nil pointer, not %T", v)}
	}
	if len(body) > 0 {
		r.mu.RLock()
		c := r.byType[ct]
		r.mu.RUnlock()
		if u, ok := c.(IntoUnmarshaler); ok {
			if err := u.UnmarshalInto(body, v); err != nil {
				return wrapDecodeErr(ct, err)
			}
			return nil
		}
	}
	x, err := r.decodeChecked(body, ct, contentEncoding)
	if err != nil {
		return err
	}
	dst := rv.Elem()
	if x == nil {
		dst.SetZero()
		return nil
	}
	xv := reflect.ValueOf(x)
	switch {
	case xv.Type().AssignableTo(dst.Type()):
		dst.Set(xv)
	case dst.Kind() == reflect.String && xv.Kind() == reflect.Slice && xv.Type().Elem().Kind() == reflect.Uint8:
		// Text and binary bodies convert between string and []byte, as
		// Python's str and bytes do for an empty or text body.
		dst.SetString(string(xv.Bytes()))
	case dst.Kind() == reflect.Slice && dst.Type().Elem().Kind() == reflect.Uint8 && xv.Kind() == reflect.String:
		dst.SetBytes([]byte(xv.String()))
	default:
		return &DecodeError{ContentType: ct, Err: fmt.Errorf("cannot store a %T in a %s", x, dst.Type())}
	}
	return nil
}

// Register installs a codec in Default; see Registry.Register.
func Register(name string, c Codec, aliases ...string) { Default.Register(name, c, aliases...) }

// Lookup finds a codec in Default; see Registry.Lookup.
func Lookup(nameOrContentType string) (Codec, bool) { return Default.Lookup(nameOrContentType) }

// Encode serializes v with Default; see Registry.Encode.
func Encode(v any, serializer string) (Encoded, error) { return Default.Encode(v, serializer) }

// Prepare serializes and compresses body with Default; see Registry.Prepare.
func Prepare(body any, opts PrepareOptions) (Encoded, error) { return Default.Prepare(body, opts) }

// PrepareAccept resolves an accept list with Default; see Registry.PrepareAccept.
func PrepareAccept(accept []string) ([]string, error) { return Default.PrepareAccept(accept) }

// Decode deserializes body with Default; see Registry.Decode.
func Decode(body []byte, contentType, contentEncoding string, accept []string) (any, error) {
	return Default.Decode(body, contentType, contentEncoding, accept)
}

// DecodeInto deserializes body into v with Default; see Registry.DecodeInto.
func DecodeInto(body []byte, contentType, contentEncoding string, accept []string, v any) error {
	return Default.DecodeInto(body, contentType, contentEncoding, accept, v)
}
