package serialization_test

import (
	"errors"
	"fmt"

	"github.com/kombu-go/kombu/internal/pyjson"
	"github.com/kombu-go/kombu/serialization"
)

// Encode writes what Python Kombu's dumps writes; an ordered object keeps
// its keys in order, like a Python dict.
func ExampleRegistry_Encode() {
	r := serialization.NewRegistry()
	e, err := r.Encode(pyjson.Object{{Key: "hello", Value: "wörld"}, {Key: "n", Value: 1}}, "json")
	if err != nil {
		panic(err)
	}
	fmt.Println(e.ContentType, e.ContentEncoding)
	fmt.Println(string(e.Body))

	e, _ = r.Encode("plain text", "")
	fmt.Println(e.ContentType, e.ContentEncoding)
	e, _ = r.Encode([]byte{0, 1}, "")
	fmt.Println(e.ContentType, e.ContentEncoding)
	// Output:
	// application/json utf-8
	// {"hello": "w\u00f6rld", "n": 1}
	// text/plain utf-8
	// application/data binary
}

// Decode checks the accept list before decoding, as Kombu's loads does.
func ExampleRegistry_Decode() {
	r := serialization.NewRegistry()
	v, err := r.Decode([]byte(`{"a": [1, 2]}`), "application/json", "utf-8", []string{"json"})
	fmt.Println(v, err)

	_, err = r.Decode([]byte{0x81, 0xa1, 'a', 0x01}, "application/x-msgpack", "binary", []string{"json"})
	fmt.Println(errors.Is(err, serialization.ErrContentDisallowed))
	fmt.Println(err)
	// Output:
	// map[a:[1 2]] <nil>
	// true
	// kombu: refusing to deserialize untrusted content of type msgpack (application/x-msgpack)
}

// Prepare serializes and compresses; Compression is the value for
// headers["compression"]. Kombu's "gzip" is a zlib stream.
func ExampleRegistry_Prepare() {
	r := serialization.NewRegistry()
	e, err := r.Prepare(map[string]any{"x": 1}, serialization.PrepareOptions{Compression: "gzip"})
	if err != nil {
		panic(err)
	}
	fmt.Println(e.ContentType, e.Compression, fmt.Sprintf("% x", e.Body[:2]))
	body, err := r.DecompressLimit(e.Compression, e.Body, 1<<20)
	fmt.Println(string(body), err)
	// Output:
	// application/json application/x-gzip 78 9c
	// {"x": 1} <nil>
}
