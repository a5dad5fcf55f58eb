// Package pyjson reads and writes JSON exactly as Python's json module does.
//
// Python Kombu serializes every message envelope with json.dumps(obj) using the
// default arguments, and reads envelopes with json.loads. To interoperate byte
// for byte with Python producers and consumers we must write the same bytes
// that json.dumps writes, which Go's encoding/json does not:
//
//   - Python separates items with ", " and keys from values with ": ";
//     encoding/json writes no spaces.
//   - Python (ensure_ascii=True) writes every character outside printable
//     ASCII as a \uXXXX escape with lowercase hex digits, characters outside
//     the Basic Multilingual Plane as a UTF-16 surrogate pair, and DEL (0x7f)
//     as \u007f; encoding/json writes raw UTF-8.
//   - Python writes <, > and & as they are; encoding/json escapes them as
//     \u003c, \u003e and \u0026.
//   - Python keeps a dict's insertion order; encoding/json sorts map keys.
//     Object keeps keys in order on both the encode and the decode side.
//   - Python writes floats with repr: 1.0 for integral values, 1e+16, 1.5e-05,
//     and NaN, Infinity and -Infinity (which json.loads also accepts);
//     encoding/json writes 1, 1e+16 and 0.000015, and refuses NaN and infinities.
//
// Marshal, Append and AppendString write Python's format. Unmarshal and
// UnmarshalOrdered read anything json.loads accepts, with a hand-written
// scanner that allocates little and never panics on malformed input.
package pyjson
