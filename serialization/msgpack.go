package serialization

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// MsgpackExt is a msgpack extension value other than the timestamp (type -1),
// msgpack-python's ExtType.
type MsgpackExt struct {
	Type int8
	Data []byte
}

// msgpackCodec is the "msgpack" serializer; the package documentation lists
// the Go types it writes and reads.
//
// It is hand-written rather than built on github.com/vmihailenco/msgpack/v5
// (v5.4.1 was tried against this file's byte vectors, December 2026): that
// library writes packb's bytes for most values, but it writes a Go float32
// as a msgpack float 32 (Python has only doubles: packb writes float 64),
// refuses to decode an extension type it has no decoder registered for
// ("unknown ext id=5", where unpackb returns ExtType(5, ...)), decodes
// integers into the smallest Go type (uint8, int8, ...) rather than the
// int64 Kombu's values need, and knows nothing of pyjson.Object's key order
// or json.Number. Adapting all four would leave most of this file in place
// around a second codec, so the hand-written one stays.
type msgpackCodec struct{}

func (msgpackCodec) ContentType() string     { return ContentTypeMsgpack }
func (msgpackCodec) ContentEncoding() string { return "binary" }

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	return mpAppend(nil, reflect.ValueOf(v), 0)
}

func (msgpackCodec) Unmarshal(data []byte) (any, error) {
	d := mpDecoder{data: data}
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	if d.pos != len(data) {
		return nil, fmt.Errorf("msgpack: %d bytes of extra data", len(data)-d.pos)
	}
	return v, nil
}

const mpMaxDepth = 1024

var errMpDepth = errors.New("msgpack: nesting too deep")

var (
	typeTime      = reflect.TypeFor[time.Time]()
	typeNumber    = reflect.TypeFor[json.Number]()
	typeExt       = reflect.TypeFor[MsgpackExt]()
	typeObject    = reflect.TypeFor[pyjson.Object]()
	typeTextMarsh = reflect.TypeFor[encoding.TextMarshaler]()
)

func mpAppend(b []byte, v reflect.Value, depth int) ([]byte, error) {
	if depth > mpMaxDepth {
		return nil, errMpDepth
	}
	if !v.IsValid() {
		return append(b, 0xc0), nil
	}
	switch v.Type() {
	case typeTime:
		return mpAppendTime(b, v.Interface().(time.Time)), nil
	case typeNumber:
		n := v.Interface().(json.Number)
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return mpAppendInt(b, i), nil
		}
		if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
			return mpAppendUint(b, u), nil
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, fmt.Errorf("msgpack: invalid json.Number %q", n)
		}
		return mpAppendFloat(b, f), nil
	case typeExt:
		e := v.Interface().(MsgpackExt)
		return mpAppendExt(b, e.Type, e.Data), nil
	case typeObject:
		o := v.Interface().(pyjson.Object)
		b = mpAppendLen(b, len(o), 0x80, 0xde, 0xdf)
		for _, m := range o {
			var err error
			if b, err = mpAppendString(b, m.Key); err != nil {
				return nil, err
			}
			if b, err = mpAppend(b, reflect.ValueOf(m.Value), depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	if v.Kind() != reflect.Pointer && v.Kind() != reflect.Interface && v.Type().Implements(typeTextMarsh) {
		text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return mpAppendString(b, string(text))
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return mpAppendInt(b, v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return mpAppendUint(b, v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return mpAppendFloat(b, v.Float()), nil
	case reflect.String:
		return mpAppendString(b, v.String())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(b, 0xc0), nil
		}
		return mpAppend(b, v.Elem(), depth+1)
	case reflect.Slice:
		if v.IsNil() {
			return append(b, 0xc0), nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return mpAppendBin(b, v.Bytes()), nil
		}
		return mpAppendArray(b, v, depth)
	case reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			data := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(data), v)
			return mpAppendBin(b, data), nil
		}
		return mpAppendArray(b, v, depth)
	case reflect.Map:
		if v.IsNil() {
			return append(b, 0xc0), nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("msgpack: unsupported map key type %s (msgpack-python only reads str keys)", v.Type().Key())
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		b = mpAppendLen(b, len(keys), 0x80, 0xde, 0xdf)
		for _, k := range keys {
			var err error
			if b, err = mpAppendString(b, k.String()); err != nil {
				return nil, err
			}
			if b, err = mpAppend(b, v.MapIndex(k), depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case reflect.Struct:
		fields := mpStructFields(v.Type())
		type kv struct {
			name string
			val  reflect.Value
		}
		out := make([]kv, 0, len(fields))
		for _, f := range fields {
			fv, ok := fieldByIndex(v, f.index)
			if !ok || (f.omitEmpty && fv.IsZero()) {
				continue
			}
			out = append(out, kv{f.name, fv})
		}
		b = mpAppendLen(b, len(out), 0x80, 0xde, 0xdf)
		for _, e := range out {
			var err error
			if b, err = mpAppendString(b, e.name); err != nil {
				return nil, err
			}
			if b, err = mpAppend(b, e.val, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("msgpack: unsupported type %s", v.Type())
}

func mpAppendArray(b []byte, v reflect.Value, depth int) ([]byte, error) {
	n := v.Len()
	b = mpAppendLen(b, n, 0x90, 0xdc, 0xdd)
	for i := range n {
		var err error
		if b, err = mpAppend(b, v.Index(i), depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// mpAppendLen writes an array or map header: fix form below 16, else 16 or
// 32 bit.
func mpAppendLen(b []byte, n int, fix, c16, c32 byte) []byte {
	switch {
	case n < 16:
		return append(b, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
	}
}

func mpAppendInt(b []byte, i int64) []byte {
	if i >= 0 {
		return mpAppendUint(b, uint64(i))
	}
	switch {
	case i >= -32:
		return append(b, byte(i))
	case i >= math.MinInt8:
		return append(b, 0xd0, byte(i))
	case i >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(i))
	case i >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(i))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(i))
	}
}

func mpAppendUint(b []byte, u uint64) []byte {
	switch {
	case u < 0x80:
		return append(b, byte(u))
	case u <= math.MaxUint8:
		return append(b, 0xcc, byte(u))
	case u <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(u))
	case u <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(u))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), u)
	}
}

func mpAppendFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

func mpAppendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("msgpack: %w", errInvalidUTF8)
	}
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...), nil
}

func mpAppendBin(b, data []byte) []byte {
	n := len(data)
	switch {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, data...)
}

func mpAppendExt(b []byte, typ int8, data []byte) []byte {
	n := len(data)
	switch n {
	case 1:
		b = append(b, 0xd4)
	case 2:
		b = append(b, 0xd5)
	case 4:
		b = append(b, 0xd6)
	case 8:
		b = append(b, 0xd7)
	case 16:
		b = append(b, 0xd8)
	default:
		switch {
		case n <= math.MaxUint8:
			b = append(b, 0xc7, byte(n))
		case n <= math.MaxUint16:
			b = binary.BigEndian.AppendUint16(append(b, 0xc8), uint16(n))
		default:
			b = binary.BigEndian.AppendUint32(append(b, 0xc9), uint32(n))
		}
	}
	return append(append(b, byte(typ)), data...)
}

// mpAppendTime writes the timestamp extension in its smallest form, as
// msgpack-python's Timestamp.to_bytes does.
func mpAppendTime(b []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), uint32(t.Nanosecond())
	if sec>>34 == 0 {
		data64 := uint64(nsec)<<34 | uint64(sec)
		if data64&0xffffffff00000000 == 0 {
			return mpAppendExt(b, -1, binary.BigEndian.AppendUint32(nil, uint32(data64)))
		}
		return mpAppendExt(b, -1, binary.BigEndian.AppendUint64(nil, data64))
	}
	data := binary.BigEndian.AppendUint32(nil, nsec)
	return mpAppendExt(b, -1, binary.BigEndian.AppendUint64(data, uint64(sec)))
}

type mpField struct {
	name      string
	index     []int
	omitEmpty bool
}

var mpFieldCache sync.Map // reflect.Type -> []mpField

// mpStructFields lists the fields encoding/json would write, with its rules:
// exported fields, the json tag's name, "-" to skip, omitempty, untagged
// embedded structs flattened; when names collide the shallowest field wins,
// then a tagged one, and a tie hides the name; order is field order.
func mpStructFields(t reflect.Type) []mpField {
	if f, ok := mpFieldCache.Load(t); ok {
		return f.([]mpField)
	}
	type cand struct {
		mpField
		tagged bool
	}
	var all []cand
	var walk func(t reflect.Type, index []int, visited map[reflect.Type]bool)
	walk = func(t reflect.Type, index []int, visited map[reflect.Type]bool) {
		if visited[t] {
			return
		}
		visited[t] = true
		defer delete(visited, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			idx := append(slices.Clone(index), i)
			if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				walk(ft, idx, visited)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			tagged := name != ""
			if !tagged {
				name = sf.Name
			}
			all = append(all, cand{mpField{name: name, index: idx,
				omitEmpty: strings.Contains(","+opts+",", ",omitempty,")}, tagged})
		}
	}
	walk(t, nil, map[reflect.Type]bool{})
	byName := map[string][]cand{}
	for _, c := range all {
		byName[c.name] = append(byName[c.name], c)
	}
	var fields []mpField
	for _, cs := range byName {
		minDepth := len(cs[0].index)
		for _, c := range cs {
			minDepth = min(minDepth, len(c.index))
		}
		var top []cand
		for _, c := range cs {
			if len(c.index) == minDepth {
				top = append(top, c)
			}
		}
		if len(top) > 1 {
			var tagged []cand
			for _, c := range top {
				if c.tagged {
					tagged = append(tagged, c)
				}
			}
			top = tagged
		}
		if len(top) == 1 {
			fields = append(fields, top[0].mpField)
		}
	}
	slices.SortFunc(fields, func(a, b mpField) int { return slices.Compare(a.index, b.index) })
	mpFieldCache.Store(t, fields)
	return fields
}

// fieldByIndex is v.FieldByIndex that reports false through a nil embedded
// pointer instead of panicking.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

type mpDecoder struct {
	data []byte
	pos  int
}

var errMpShort = errors.New("msgpack: unexpected end of data")

func (d *mpDecoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.data)-d.pos < n {
		return nil, errMpShort
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *mpDecoder) uint(n int) (uint64, error) {
	b, err := d.take(n)
	if err != nil {
		return 0, err
	}
	var u uint64
	for _, c := range b {
		u = u<<8 | uint64(c)
	}
	return u, nil
}

func (d *mpDecoder) value(depth int) (any, error) {
	if depth > mpMaxDepth {
		return nil, errMpDepth
	}
	cb, err := d.take(1)
	if err != nil {
		return nil, err
	}
	c := cb[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c&0xf0 == 0x80:
		return d.mapv(int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return d.array(int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return d.str(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6:
		n, err := d.uint(1 << (c - 0xc4))
		if err != nil {
			return nil, err
		}
		b, err := d.take(int(n))
		if err != nil {
			return nil, err
		}
		return slices.Clone(b), nil
	case 0xc7, 0xc8, 0xc9:
		n, err := d.uint(1 << (c - 0xc7))
		if err != nil {
			return nil, err
		}
		return d.ext(int(n))
	case 0xca:
		u, err := d.uint(4)
		return float64(math.Float32frombits(uint32(u))), err
	case 0xcb:
		u, err := d.uint(8)
		return math.Float64frombits(u), err
	case 0xcc, 0xcd, 0xce, 0xcf:
		u, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return nil, err
		}
		if u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size := 1 << (c - 0xd0)
		u, err := d.uint(size)
		if err != nil {
			return nil, err
		}
		shift := 64 - 8*size
		return int64(u<<shift) >> shift, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return d.ext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb:
		n, err := d.uint(1 << (c - 0xd9))
		if err != nil {
			return nil, err
		}
		return d.str(int(n))
	case 0xdc, 0xdd:
		n, err := d.uint(2 << (c - 0xdc))
		if err != nil {
			return nil, err
		}
		return d.array(int(n), depth)
	case 0xde, 0xdf:
		n, err := d.uint(2 << (c - 0xde))
		if err != nil {
			return nil, err
		}
		return d.mapv(int(n), depth)
	}
	return nil, fmt.Errorf("msgpack: invalid type byte 0x%02x at offset %d", c, d.pos-1)
}

func (d *mpDecoder) str(n int) (any, error) {
	b, err := d.take(n)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("msgpack: str is not valid UTF-8")
	}
	return string(b), nil
}

func (d *mpDecoder) ext(n int) (any, error) {
	tb, err := d.take(1)
	if err != nil {
		return nil, err
	}
	data, err := d.take(n)
	if err != nil {
		return nil, err
	}
	typ := int8(tb[0])
	if typ != -1 {
		return MsgpackExt{Type: typ, Data: slices.Clone(data)}, nil
	}
	switch n {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(data)), 0).UTC(), nil
	case 8:
		u := binary.BigEndian.Uint64(data)
		nsec := u >> 34
		if nsec > 999999999 {
			return nil, errors.New("msgpack: timestamp nanoseconds out of range")
		}
		return time.Unix(int64(u&(1<<34-1)), int64(nsec)).UTC(), nil
	case 12:
		nsec := binary.BigEndian.Uint32(data)
		if nsec > 999999999 {
			return nil, errors.New("msgpack: timestamp nanoseconds out of range")
		}
		return time.Unix(int64(binary.BigEndian.Uint64(data[4:])), int64(nsec)).UTC(), nil
	}
	return nil, fmt.Errorf("msgpack: timestamp extension of %d bytes", n)
}

// capHint bounds a preallocation by what the remaining input could hold.
func (d *mpDecoder) capHint(n int) int {
	return min(n, len(d.data)-d.pos)
}

func (d *mpDecoder) array(n int, depth int) (any, error) {
	out := make([]any, 0, d.capHint(n))
	for range n {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (d *mpDecoder) mapv(n int, depth int) (any, error) {
	out := make(map[string]any, d.capHint(n)/2)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		var key string
		switch k := k.(type) {
		case string:
			key = k
		case []byte:
			key = string(k)
		default:
			return nil, fmt.Errorf("msgpack: map key of type %T (only str and bin keys are allowed)", k)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}
