package serialization

import (
	"errors"
	"fmt"
)

// Sentinel errors. Check them with errors.Is; the typed errors below wrap them
// and carry the details (use errors.As).
var (
	// ErrContentDisallowed is Kombu's ContentDisallowed: the body's content
	// type is not in the accept list, is disabled by default, or is pickle.
	// The decoder was not run.
	ErrContentDisallowed = errors.New("kombu: content disallowed")

	// ErrUnknownSerializer is Kombu's SerializerNotInstalled: no encoder or
	// decoder is installed under the name, or the format (yaml, pickle) is
	// not implemented in kombu-go.
	ErrUnknownSerializer = errors.New("kombu: serializer not installed")

	// ErrUnknownCompression is the KeyError Kombu raises for a compression
	// method it has no codec for. In kombu-go it also covers the methods
	// Kombu knows but kombu-go cannot run (lzma, brotli, zstd, and bzip2
	// compression).
	ErrUnknownCompression = errors.New("kombu: unknown compression method")

	// ErrTooLarge is returned by DecompressLimit when the decompressed body
	// would exceed the limit.
	ErrTooLarge = errors.New("kombu: decompressed body too large")
)

// Reasons a ContentDisallowedError gives.
const (
	// ReasonUntrusted: an accept list was given and the content type is
	// neither in it nor always trusted (Kombu's "untrusted").
	ReasonUntrusted = "untrusted"
	// ReasonDisabled: no accept list was given and the content type is
	// disabled by default (pickle, yaml, msgpack; Kombu's "disabled").
	ReasonDisabled = "disabled"
	// ReasonUnsafe: the content is pickle, which kombu-go never deserializes,
	// whatever the accept list says.
	ReasonUnsafe = "unsafe"
)

// ContentDisallowedError reports a body whose content type was refused before
// any decoder ran. It matches ErrContentDisallowed with errors.Is.
type ContentDisallowedError struct {
	ContentType string // the refused content type, e.g. "application/x-msgpack"
	Name        string // its registered serializer name, or "" if none
	Reason      string // ReasonUntrusted, ReasonDisabled or ReasonUnsafe
}

func (e *ContentDisallowedError) Error() string {
	what := e.ContentType
	if e.Name != "" {
		what = e.Name + " (" + e.ContentType + ")"
	}
	msg := "kombu: refusing to deserialize " + e.Reason + " content of type " + what
	if e.Reason == ReasonUnsafe {
		msg += ": pickle is never deserialized by kombu-go"
	}
	return msg
}

// Unwrap returns ErrContentDisallowed.
func (e *ContentDisallowedError) Unwrap() error { return ErrContentDisallowed }

// Operations named by UnknownSerializerError and UnknownCompressionError.
const (
	OpEncode     = "encode"
	OpDecode     = "decode"
	OpAccept     = "accept"
	OpCompress   = "compress"
	OpDecompress = "decompress"
)

// UnknownSerializerError reports a serializer name (or content type) with no
// encoder or decoder. It matches ErrUnknownSerializer with errors.Is.
type UnknownSerializerError struct {
	Name   string // the name or content type asked for
	Op     string // OpEncode, OpDecode or OpAccept
	Reason string // optional explanation
}

func (e *UnknownSerializerError) Error() string {
	var what string
	switch e.Op {
	case OpEncode:
		what = "encoder"
	case OpDecode:
		what = "decoder"
	default:
		what = "encoder/decoder"
	}
	msg := "kombu: no " + what + " installed for " + e.Name
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns ErrUnknownSerializer.
func (e *UnknownSerializerError) Unwrap() error { return ErrUnknownSerializer }

// UnknownCompressionError reports a compression method kombu-go cannot run.
// It matches ErrUnknownCompression with errors.Is.
type UnknownCompressionError struct {
	Name        string // the name or content type asked for, e.g. "xz"
	ContentType string // the canonical content type if Kombu knows the method, e.g. "application/x-lzma"
	Op          string // OpCompress or OpDecompress
	Reason      string // why, if the method is known
}

func (e *UnknownCompressionError) Error() string {
	if e.ContentType == "" {
		return fmt.Sprintf("kombu: unknown compression method %q", e.Name)
	}
	msg := fmt.Sprintf("kombu: cannot %s %q (%s)", e.Op, e.Name, e.ContentType)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Unwrap returns ErrUnknownCompression.
func (e *UnknownCompressionError) Unwrap() error { return ErrUnknownCompression }

// DecodeError is Kombu's DecodeError: the decoder for ContentType (or the
// character set decoding of a body without a decoder) failed.
type DecodeError struct {
	ContentType string
	Err         error
}

func (e *DecodeError) Error() string {
	return "kombu: cannot decode " + e.ContentType + " body: " + e.Err.Error()
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// EncodeError is Kombu's EncodeError: the encoder for Serializer failed.
type EncodeError struct {
	Serializer string
	Err        error
}

func (e *EncodeError) Error() string {
	return "kombu: cannot encode with " + e.Serializer + ": " + e.Err.Error()
}

// Unwrap returns the encoder's error.
func (e *EncodeError) Unwrap() error { return e.Err }
