package serialization

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// jsonCodec is Kombu 5.2's json serializer: json.dumps with default
// arguments on the way out, UTF-8 then json.loads on the way in.
type jsonCodec struct{}

func (jsonCodec) ContentType() string     { return ContentTypeJSON }
func (jsonCodec) ContentEncoding() string { return "utf-8" }

func (jsonCodec) Marshal(v any) ([]byte, error) { return pyjson.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte) (any, error) {
	// Kombu decodes the bytes as strict UTF-8 before parsing.
	if !utf8.Valid(data) {
		return nil, errInvalidUTF8Body
	}
	v, err := pyjson.Unmarshal(data)
	if err != nil || !bytes.Contains(data, []byte(`"__type__"`)) {
		return v, err
	}
	return fromMarkers(v) // Kombu 5.3+ type markers (markers.go)
}

// UnmarshalInto decodes into v. Into an *any, *map[string]any or *[]any it
// decodes as Unmarshal does (json.loads: Python's NaN and Infinity tokens
// too, which json.dumps writes for float('nan') and float('inf'), as
// json.Number); into anything else with encoding/json, numbers stored in
// interface values as json.Number, which cannot hold NaN or Infinity: such
// a body is refused with an error that says so.
func (c jsonCodec) UnmarshalInto(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errInvalidUTF8Body
	}
	switch p := v.(type) {
	case *any:
		x, err := c.Unmarshal(data)
		if err == nil {
			*p = x
		}
		return err
	case *map[string]any:
		x, err := c.Unmarshal(data)
		if err != nil {
			return err
		}
		if m, ok := x.(map[string]any); ok || x == nil {
			*p = m
			return nil
		}
		return fmt.Errorf("cannot store a JSON %s in a map[string]any", jsonKind(x))
	case *[]any:
		x, err := c.Unmarshal(data)
		if err != nil {
			return err
		}
		if l, ok := x.([]any); ok || x == nil {
			*p = l
			return nil
		}
		return fmt.Errorf("cannot store a JSON %s in a []any", jsonKind(x))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) && pyjson.Valid(data) {
			return fmt.Errorf("the body holds Python's NaN or Infinity, which %T cannot hold (decode into an any or map[string]any): %w", v, err)
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("extra data after the JSON value")
	}
	return nil
}

var errInvalidUTF8Body = errors.New("body is not valid UTF-8")

// jsonKind names a decoded JSON value's kind for errors.
func jsonKind(x any) string {
	switch x.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	}
	return "number"
}

// rawCodec is what Lookup("raw") returns. Encode handles raw itself (the
// content encoding depends on the value), and no decoder is registered for
// application/data: Decode returns such bodies as text or bytes.
type rawCodec struct{}

func (rawCodec) ContentType() string     { return ContentTypeData }
func (rawCodec) ContentEncoding() string { return "binary" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	e, err := rawEncode(v, "raw")
	return e.Body, err
}

func (rawCodec) Unmarshal(data []byte) (any, error) { return data, nil }

// pickleCodec registers the name "pickle". kombu-go never writes pickle and
// Decode refuses it before any decoder could run.
type pickleCodec struct{}

func (pickleCodec) ContentType() string     { return ContentTypePickle }
func (pickleCodec) ContentEncoding() string { return "binary" }

func (pickleCodec) Marshal(any) ([]byte, error) {
	return nil, &UnknownSerializerError{Name: "pickle", Op: OpEncode, Reason: "kombu-go never produces pickle"}
}

func (pickleCodec) Unmarshal([]byte) (any, error) {
	return nil, &ContentDisallowedError{ContentType: ContentTypePickle, Name: "pickle", Reason: ReasonUnsafe}
}

// yamlCodec registers the name "yaml" the way Kombu does when PyYAML is not
// installed: known, but every use is an error matching ErrUnknownSerializer.
type yamlCodec struct{}

func (yamlCodec) ContentType() string     { return ContentTypeYAML }
func (yamlCodec) ContentEncoding() string { return "utf-8" }

const yamlReason = "YAML is not implemented in kombu-go"

func (yamlCodec) Marshal(any) ([]byte, error) {
	return nil, &UnknownSerializerError{Name: "yaml", Op: OpEncode, Reason: yamlReason}
}

func (yamlCodec) Unmarshal([]byte) (any, error) {
	return nil, &UnknownSerializerError{Name: "yaml", Op: OpDecode, Reason: yamlReason}
}

// charset is one of the Python codecs kombu-go implements.
type charset int

const (
	csUnknown charset = iota
	csUTF8
	csASCII
	csLatin1
)

// lookupCharset maps a Python codec name to a charset, normalizing as
// Python's encodings.normalize_encoding does (case, '-' and ' ' as '_').
func lookupCharset(name string) charset {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.NewReplacer("-", "_", " ", "_").Replace(n)
	switch n {
	case "utf_8", "utf8", "u8", "utf", "cp65001":
		return csUTF8
	case "ascii", "us_ascii", "646", "us", "ansi_x3.4_1968", "ansi_x3_4_1968", "cp367", "csascii", "ibm367", "iso646_us":
		return csASCII
	case "latin_1", "latin1", "latin", "l1", "iso_8859_1", "iso8859_1", "8859", "cp819", "ibm819", "iso_ir_100", "csisolatin1":
		return csLatin1
	}
	return csUnknown
}

// decodeCharset is Python's codecs.decode(data, name) for the charsets above,
// with strict error handling.
func decodeCharset(data []byte, name string) (string, error) {
	switch lookupCharset(name) {
	case csUTF8:
		if !utf8.Valid(data) {
			return "", errInvalidUTF8Body
		}
		return string(data), nil
	case csASCII:
		for i, b := range data {
			if b >= 0x80 {
				return "", fmt.Errorf("ascii codec can't decode byte 0x%02x in position %d", b, i)
			}
		}
		return string(data), nil
	case csLatin1:
		var sb strings.Builder
		sb.Grow(len(data))
		for _, b := range data {
			sb.WriteRune(rune(b))
		}
		return sb.String(), nil
	}
	return "", fmt.Errorf("unknown or unsupported content encoding %q", name)
}

// encodeCharset is Python's s.encode(name), strict.
func encodeCharset(s, name string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, errInvalidUTF8
	}
	switch lookupCharset(name) {
	case csUTF8:
		return []byte(s), nil
	case csASCII:
		for i, c := range s {
			if c >= 0x80 {
				return nil, fmt.Errorf("ascii codec can't encode character %U in position %d", c, i)
			}
		}
		return []byte(s), nil
	case csLatin1:
		out := make([]byte, 0, len(s))
		for _, c := range s {
			if c > 0xff {
				return nil, fmt.Errorf("latin-1 codec can't encode character %U", c)
			}
			out = append(out, byte(c))
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown or unsupported content encoding %q", name)
}
