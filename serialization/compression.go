package serialization

import (
	"bytes"
	"compress/bzip2"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
)

// Compression content types: the values Kombu writes in
// headers["compression"].
const (
	// ContentTypeZlib is Kombu's "gzip"/"zlib" method. Despite the name the
	// body is a zlib stream (RFC 1950), what Python's zlib.compress writes,
	// not gzip (RFC 1952).
	ContentTypeZlib   = "application/x-gzip"
	ContentTypeBzip2  = "application/x-bz2"
	ContentTypeLZMA   = "application/x-lzma"
	ContentTypeBrotli = "application/x-brotli"
	ContentTypeZstd   = "application/zstd"
)

// Compressor is one compression method, Kombu's (encoder, decoder) pair.
// It must be safe for concurrent use.
type Compressor interface {
	Compress(src []byte) ([]byte, error)
	Decompress(src []byte) ([]byte, error)
}

// LimitedDecompressor is an optional Compressor method that stops
// decompressing once the output would exceed max bytes, returning an error
// matching ErrTooLarge; max < 0 means no limit. Compressors without it are checked only after
// Decompress returns, which protects callers from large results but not from
// the memory used to make them.
type LimitedDecompressor interface {
	DecompressLimit(src []byte, max int64) ([]byte, error)
}

// unavailable lists the methods Kombu registers when their Python module is
// installed but kombu-go cannot run: name or content type -> content type.
var unavailable = map[string]string{
	ContentTypeLZMA: ContentTypeLZMA, "lzma": ContentTypeLZMA, "xz": ContentTypeLZMA,
	ContentTypeBrotli: ContentTypeBrotli, "brotli": ContentTypeBrotli,
	ContentTypeZstd: ContentTypeZstd, "zstd": ContentTypeZstd, "zstandard": ContentTypeZstd,
}

// RegisterCompression installs c as the method for contentType, also found
// under aliases, replacing what was there, as kombu.compression.register
// does. It panics if contentType is empty or c is nil.
func (r *Registry) RegisterCompression(contentType string, c Compressor, aliases ...string) {
	if contentType == "" {
		panic("serialization: RegisterCompression with an empty content type")
	}
	if c == nil {
		panic("serialization: RegisterCompression of a nil compressor for " + contentType)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.compressors[contentType] = c
	for _, a := range aliases {
		r.compAliases[a] = contentType
	}
}

func (r *Registry) compressor(name, op string) (string, Compressor, error) {
	r.mu.RLock()
	ct, ok := r.compAliases[name]
	if !ok {
		ct = name
	}
	c := r.compressors[ct]
	r.mu.RUnlock()
	if c != nil {
		return ct, c, nil
	}
	if known, ok := unavailable[name]; ok {
		return "", nil, &UnknownCompressionError{Name: name, ContentType: known, Op: op, Reason: "not available in kombu-go"}
	}
	return "", nil, &UnknownCompressionError{Name: name, Op: op}
}

// Compress is kombu.compression.compress: name is a content type or an alias
// ("zlib", "gzip", ...); it returns the canonical content type to put in
// headers["compression"] and the compressed body. "bzip2" is known but
// read-only in kombu-go (the Go standard library has no bzip2 writer);
// lzma/xz, brotli and zstd are not available. Both cases return an
// *UnknownCompressionError naming the method.
//
// The output decodes with Python's decompressor but is not byte-identical to
// Python's: Go's deflate differs from zlib's.
func (r *Registry) Compress(name string, body []byte) (contentType string, out []byte, err error) {
	ct, c, err := r.compressor(name, OpCompress)
	if err != nil {
		return "", nil, err
	}
	out, err = c.Compress(body)
	if err != nil {
		var ue *UnknownCompressionError
		if errors.As(err, &ue) {
			e := *ue
			e.Name = name
			return "", nil, &e
		}
		return "", nil, fmt.Errorf("kombu: %s compress: %w", ct, err)
	}
	return ct, out, nil
}

// Decompress is kombu.compression.decompress: contentType is the
// headers["compression"] value, or an alias. The output size is not limited;
// use DecompressLimit for bodies from untrusted producers.
func (r *Registry) Decompress(contentType string, body []byte) ([]byte, error) {
	ct, c, err := r.compressor(contentType, OpDecompress)
	if err != nil {
		return nil, err
	}
	out, err := c.Decompress(body)
	if err != nil {
		return nil, decompressErr(ct, err)
	}
	return out, nil
}

// DecompressLimit is Decompress refusing to produce more than max bytes: a
// larger result is an error matching ErrTooLarge, and the built-in methods
// stop reading as soon as the limit is passed. max <= 0 means no limit, as
// in Decompress.
func (r *Registry) DecompressLimit(contentType string, body []byte, max int64) ([]byte, error) {
	ct, c, err := r.compressor(contentType, OpDecompress)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = -1
	}
	var out []byte
	if l, ok := c.(LimitedDecompressor); ok {
		out, err = l.DecompressLimit(body, max)
	} else if out, err = c.Decompress(body); err == nil && max >= 0 && int64(len(out)) > max {
		err = tooLarge(max)
	}
	if err != nil {
		return nil, decompressErr(ct, err)
	}
	return out, nil
}

func decompressErr(ct string, err error) error {
	if errors.Is(err, ErrUnknownCompression) {
		return err
	}
	return fmt.Errorf("kombu: %s decompress: %w", ct, err)
}

func tooLarge(max int64) error {
	return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
}

// readLimit reads r to the end, failing once more than max bytes come out.
// max < 0 means no limit.
func readLimit(r io.Reader, max int64) ([]byte, error) {
	if max < 0 {
		return io.ReadAll(r)
	}
	out, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > max {
		return nil, tooLarge(max)
	}
	return out, nil
}

// zlibCompressor is Python's zlib.compress / zlib.decompress. Like Python,
// it ignores data after the end of the zlib stream.
type zlibCompressor struct{}

func (zlibCompressor) Compress(src []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(src); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (z zlibCompressor) Decompress(src []byte) ([]byte, error) { return z.DecompressLimit(src, -1) }

func (zlibCompressor) DecompressLimit(src []byte, max int64) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return readLimit(zr, max)
}

// bzip2Compressor is Python's bz2.decompress (concatenated streams are
// joined, as in Python). Unlike Python it refuses non-bzip2 data after the
// last stream. It cannot compress.
type bzip2Compressor struct{}

func (bzip2Compressor) Compress([]byte) ([]byte, error) {
	return nil, &UnknownCompressionError{Name: "bzip2", ContentType: ContentTypeBzip2, Op: OpCompress,
		Reason: "kombu-go can only decompress bzip2 (the Go standard library has no bzip2 writer)"}
}

func (b bzip2Compressor) Decompress(src []byte) ([]byte, error) { return b.DecompressLimit(src, -1) }

func (bzip2Compressor) DecompressLimit(src []byte, max int64) ([]byte, error) {
	return readLimit(bzip2.NewReader(bytes.NewReader(src)), max)
}

// RegisterCompression installs a compression method in Default; see
// Registry.RegisterCompression.
func RegisterCompression(contentType string, c Compressor, aliases ...string) {
	Default.RegisterCompression(contentType, c, aliases...)
}

// Compress compresses body with Default; see Registry.Compress.
func Compress(name string, body []byte) (contentType string, out []byte, err error) {
	return Default.Compress(name, body)
}

// Decompress decompresses body with Default; see Registry.Decompress.
func Decompress(contentType string, body []byte) ([]byte, error) {
	return Default.Decompress(contentType, body)
}

// DecompressLimit decompresses body with Default, at most max bytes; see
// Registry.DecompressLimit.
func DecompressLimit(contentType string, body []byte, max int64) ([]byte, error) {
	return Default.DecompressLimit(contentType, body, max)
}
