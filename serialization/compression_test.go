package serialization

import (
	"bytes"
	"compress/zlib"
	"errors"
	"strings"
	"testing"
)

// TestZlibRoundTrip proves every name for Kombu's zlib method compresses to
// an RFC 1950 zlib stream (not gzip framing) under the header value
// application/x-gzip, and decompresses back by header value or alias.
func TestZlibRoundTrip(t *testing.T) {
	r := NewRegistry()
	body := []byte(strings.Repeat(`{"hello": "world"} `, 100))
	for _, name := range []string{"zlib", "gzip", ContentTypeZlib} {
		ct, z, err := r.Compress(name, body)
		if err != nil {
			t.Fatalf("Compress(%q): %v", name, err)
		}
		if ct != ContentTypeZlib {
			t.Errorf("Compress(%q) content type %q", name, ct)
		}
		if !bytes.HasPrefix(z, []byte{0x78, 0x9c}) || bytes.HasPrefix(z, []byte{0x1f, 0x8b}) {
			t.Errorf("Compress(%q) header % x: want zlib 78 9c, not gzip 1f 8b", name, z[:2])
		}
		if zr, err := zlib.NewReader(bytes.NewReader(z)); err != nil {
			t.Errorf("not a zlib stream: %v", err)
		} else {
			zr.Close()
		}
		for _, key := range []string{ct, "zlib", "gzip"} {
			out, err := r.Decompress(key, z)
			if err != nil || !bytes.Equal(out, body) {
				t.Errorf("Decompress(%q): %v", key, err)
			}
		}
	}
	// Python's zlib.decompress ignores bytes after the end of the stream;
	// so does Decompress.
	_, z, _ := r.Compress("zlib", []byte("abc"))
	if out, err := r.Decompress("zlib", append(z, "garbage"...)); err != nil || string(out) != "abc" {
		t.Errorf("trailing garbage: %q, %v", out, err)
	}
	// An empty body round-trips.
	_, z, _ = r.Compress("zlib", nil)
	if out, err := r.Decompress("zlib", z); err != nil || len(out) != 0 {
		t.Errorf("empty: %q, %v", out, err)
	}
}

// TestCompressionErrors proves unavailable and unknown methods are
// ErrUnknownCompression (with the canonical type for methods Kombu knows),
// bzip2 is decompress-only, and corrupt data is an error of its own.
func TestCompressionErrors(t *testing.T) {
	r := NewRegistry()
	for _, c := range []struct{ name, ct string }{
		{"bzip2", ContentTypeBzip2}, {"bzip", ContentTypeBzip2}, {ContentTypeBzip2, ContentTypeBzip2},
		{"xz", ContentTypeLZMA}, {"lzma", ContentTypeLZMA}, {"brotli", ContentTypeBrotli},
		{"zstd", ContentTypeZstd}, {"zstandard", ContentTypeZstd}, {"snappy", ""}, {"application/x-snappy", ""},
	} {
		_, _, err := r.Compress(c.name, []byte("x"))
		var ue *UnknownCompressionError
		if !errors.Is(err, ErrUnknownCompression) || !errors.As(err, &ue) || ue.ContentType != c.ct || ue.Name != c.name || ue.Op != OpCompress {
			t.Errorf("Compress(%q) err = %#v", c.name, err)
		}
		if c.ct == ContentTypeBzip2 {
			continue
		}
		_, err = r.Decompress(c.name, []byte("x"))
		if !errors.As(err, &ue) || ue.Op != OpDecompress || ue.ContentType != c.ct {
			t.Errorf("Decompress(%q) err = %v", c.name, err)
		}
		_, err = r.DecompressLimit(c.name, []byte("x"), 10)
		if !errors.Is(err, ErrUnknownCompression) {
			t.Errorf("DecompressLimit(%q) err = %v", c.name, err)
		}
	}
	for _, name := range []string{"zlib", "bzip2"} {
		_, err := r.Decompress(name, []byte("not compressed at all"))
		if err == nil || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnknownCompression) || !strings.HasPrefix(err.Error(), "kombu: ") {
			t.Errorf("corrupt %s: %v", name, err)
		}
	}
	_, z, _ := r.Compress("zlib", bytes.Repeat([]byte("a"), 1000))
	if _, err := r.Decompress("zlib", z[:len(z)-6]); err == nil {
		t.Error("truncated zlib stream accepted")
	}
}

// countingCompressor is a custom method without DecompressLimit.
type countingCompressor struct{}

func (countingCompressor) Compress(b []byte) ([]byte, error) {
	return append([]byte("C"), b...), nil
}
func (countingCompressor) Decompress(b []byte) ([]byte, error) {
	return bytes.Repeat(b[1:], 2), nil
}

// TestDecompressLimit proves the zip-bomb guard: a 16 MiB zlib bomb of a few
// KiB stops at the limit with ErrTooLarge, output exactly at the limit is
// allowed, max <= 0 means no limit, and custom compressors are checked after
// the fact.
func TestDecompressLimit(t *testing.T) {
	r := NewRegistry()
	_, bomb, err := r.Compress("zlib", make([]byte, 16<<20))
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	if _, err := r.DecompressLimit("gzip", bomb, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("bomb: %v", err)
	}
	_, z, _ := r.Compress("zlib", []byte("0123456789"))
	if out, err := r.DecompressLimit("zlib", z, 10); err != nil || string(out) != "0123456789" {
		t.Errorf("at the limit: %q, %v", out, err)
	}
	if _, err := r.DecompressLimit("zlib", z, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one over: %v", err)
	}
	// No limit at all for max <= 0, the convention consumers use for "unset".
	for _, max := range []int64{0, -5} {
		if out, err := r.DecompressLimit("zlib", bomb, max); err != nil || len(out) != 16<<20 {
			t.Errorf("limit %d: %d bytes, %v", max, len(out), err)
		}
	}

	r.RegisterCompression("application/x-counting", countingCompressor{}, "count")
	ct, c, err := r.Compress("count", []byte("abc"))
	if err != nil || ct != "application/x-counting" || string(c) != "Cabc" {
		t.Fatalf("custom: %q %q %v", ct, c, err)
	}
	if out, err := r.DecompressLimit("count", c, 6); err != nil || string(out) != "abcabc" {
		t.Errorf("custom at limit: %q, %v", out, err)
	}
	if _, err := r.DecompressLimit("application/x-counting", c, 5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("custom over: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("RegisterCompression with an empty content type did not panic")
			}
		}()
		r.RegisterCompression("", countingCompressor{})
	}()
}
