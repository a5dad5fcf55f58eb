// Package serialization is Kombu's serializer registry, accept-list check and
// compression, so that message bodies written in Go decode in Python Kombu and
// Celery, and bodies Python writes decode here, with the same refusals.
//
// How it maps onto Kombu 5.2 (kombu/serialization.py, kombu/compression.py):
//
//	Kombu                                     kombu-go
//	SerializerRegistry                        Registry
//	registry (module global)                  Default
//	register(name, enc, dec, ctype, cenc)     Registry.Register(name, Codec, aliases...)
//	dumps(data, serializer)                   Registry.Encode
//	Producer._prepare                         Registry.Prepare
//	loads(data, ctype, cenc, accept)          Registry.Decode, Registry.DecodeInto
//	prepare_accept_content(accept)            Registry.PrepareAccept
//	compression.register / compress /         Registry.RegisterCompression / Compress /
//	  decompress                                Decompress, DecompressLimit
//	ContentDisallowed                         *ContentDisallowedError, ErrContentDisallowed
//	SerializerNotInstalled                    *UnknownSerializerError, ErrUnknownSerializer
//	EncodeError, DecodeError                  *EncodeError, *DecodeError
//
// Serializers in a new Registry:
//
//	name      content type                     encoding  notes
//	json      application/json                 utf-8     default; bytes identical to Python's json.dumps
//	msgpack   application/x-msgpack            binary    hand-written, msgpack-python compatible
//	raw       application/data                 binary    or utf-8 for strings; alias "binary" (Go only)
//	yaml      application/x-yaml               utf-8     NOT implemented: errors match ErrUnknownSerializer
//	pickle    application/x-python-serialize   binary    never encoded, never decoded
//
// Encode without a serializer sends a []byte as application/data (binary)
// and a string as text/plain (utf-8), exactly as Kombu's dumps does; any
// other value becomes JSON. JSON is written as Kombu 5.2 writes it (plain
// json.dumps, no 5.3 "__type__" envelopes) unless Registry.EnableTypeMarkers
// is called: then time.Time, Date, TimeOfDay, Decimal, uuid.UUID and []byte
// values are written as Kombu 5.5's {"__type__", "__value__"} markers (for
// Kombu 5.3+ peers only). Decoding always reads those markers into the Go
// types, as Kombu 5.5 does; an unknown marker type is a DecodeError
// (Kombu 5.2, which predates markers, reads them as plain dicts).
//
// Decode checks the content type before anything else, and never runs a
// decoder for a refused one. With an accept list (names or content types),
// only listed types pass, plus application/data and application/text, which
// Kombu always trusts (a missing content type means application/data).
// text/plain is not trusted: a Python consumer with accept=['json'] refuses an
// unserialized string message, and so does Decode. Without an accept list
// (nil) Decode follows Kombu's default: msgpack, yaml and pickle are
// disabled, everything else passes. Celery consumers use accept_content,
// ['json'] by default. Pickle is refused in every case, even when an accept
// list names it: deserializing pickle runs arbitrary code in Python and
// cannot be done in Go.
//
// msgpack is written as msgpack-python's packb(v, use_bin_type=True) writes
// it and read as unpackb(data, raw=False) reads it. Encoding: nil; bool;
// every int and uint kind in the smallest form (non-negative values in the
// uint family, negative ones in the int family); float32 and float64 as
// float 64 (Python has only doubles); string as str (valid UTF-8 only);
// []byte as bin; json.Number as an int if it parses as one, else a float;
// time.Time as the timestamp extension; MsgpackExt; encoding.TextMarshaler
// values as str; pyjson.Object as a map in its order; slices and arrays as
// arrays; maps with string keys as maps, keys sorted; structs as maps with
// encoding/json's field names and rules ("-", omitempty, embedding);
// pointers and interfaces by what they hold. Decoding gives nil, bool, int64
// (uint64 above math.MaxInt64), float64, string, []byte, []any,
// map[string]any (str or bin keys only, like msgpack-python's
// strict_map_key), time.Time in UTC for timestamps and MsgpackExt for other
// extensions. Nesting deeper than 1024 levels (msgpack-python's limit) and
// trailing bytes are errors.
//
// Bodies with no decoder registered for their content type come back as a
// string decoded with their content encoding (utf-8, ascii or latin-1), or as
// []byte when the content encoding is "binary" or "ascii-8bit".
//
// Compression happens after serializing and before the transport's base64,
// and its canonical content type goes in headers["compression"]. Kombu's
// "gzip" and "zlib" both mean application/x-gzip, which is a zlib stream
// (RFC 1950), not gzip framing; kombu-go does the same and has no real gzip
// method. bzip2 (application/x-bz2) can be decompressed but not compressed,
// because the Go standard library has no bzip2 writer. lzma/xz, brotli and
// zstd, which Kombu offers when their Python modules are installed, are not
// available: using them returns an *UnknownCompressionError naming the
// method. Use DecompressLimit for bodies from untrusted producers: it stops
// at a size limit and returns ErrTooLarge.
package serialization
