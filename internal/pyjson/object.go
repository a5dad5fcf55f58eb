package pyjson

import (
	"errors"
	"slices"
)

// Member is one key/value pair of an Object.
type Member struct {
	Key   string
	Value any
}

// Object is a JSON object that keeps its keys in order, as a Python dict keeps
// insertion order. Marshal writes the members in slice order; UnmarshalOrdered
// produces Objects for every JSON object it reads. Keys are expected to be
// unique; Marshal writes duplicates as they are.
type Object []Member

// Get returns the value of the first member named key, and whether there is
// one.
func (o Object) Get(key string) (any, bool) {
	for i := range o {
		if o[i].Key == key {
			return o[i].Value, true
		}
	}
	return nil, false
}

// Set gives key the value v: it replaces the value of the first member named
// key in place, keeping its position, or appends a new member at the end, as
// assigning to a Python dict does.
func (o *Object) Set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Member{Key: key, Value: v})
}

// Delete removes every member named key, keeping the order of the others.
func (o *Object) Delete(key string) {
	*o = slices.DeleteFunc(*o, func(m Member) bool { return m.Key == key })
}

// MarshalJSON implements json.Marshaler so that an Object inside a value that
// encoding/json encodes is written as a JSON object with its keys in order
// (in Python's style; encoding/json then compacts it).
func (o Object) MarshalJSON() ([]byte, error) {
	return Marshal(o)
}

// UnmarshalJSON implements json.Unmarshaler so that encoding/json can decode a
// JSON object into an Object, keeping key order; nested objects become
// Objects too, as with UnmarshalOrdered. A JSON null leaves o unchanged.
func (o *Object) UnmarshalJSON(data []byte) error {
	v, err := UnmarshalOrdered(data)
	if err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		return nil
	case Object:
		*o = x
		return nil
	default:
		return errors.New("pyjson: cannot decode a JSON value that is not an object into an Object")
	}
}
