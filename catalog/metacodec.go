package catalog

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
)

// EncodeMeta encodes an instance's index values as one value a backend
// stores: for each key in byte order, uvarint length + key,
// uvarint length + value.
func EncodeMeta(m map[string]string) []byte {
	n := 0
	for k, v := range m {
		n += len(k) + len(v) + 2*binary.MaxVarintLen32
	}
	b := make([]byte, 0, n)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(m[k])))
		b = append(b, m[k]...)
	}
	return b
}

var errBadMeta = errors.New("malformed metadata encoding")

// DecodeMeta is EncodeMeta's inverse. keys, if not nil, interns the key
// strings (a few dozen distinct ones over a whole catalog).
func DecodeMeta(b []byte, keys map[string]string) (map[string]string, error) {
	m := make(map[string]string, 32)
	for len(b) > 0 {
		k, rest, err := metaField(b)
		if err != nil {
			return nil, err
		}
		v, rest, err := metaField(rest)
		if err != nil {
			return nil, err
		}
		b = rest
		key, ok := keys[string(k)]
		if !ok {
			key = string(k)
			if keys != nil {
				keys[key] = key
			}
		}
		m[key] = string(v)
	}
	return m, nil
}

// MetaValue is one value of an encoded metadata, without decoding the rest.
func MetaValue(b []byte, key string) (string, bool, error) {
	for len(b) > 0 {
		k, rest, err := metaField(b)
		if err != nil {
			return "", false, err
		}
		v, rest, err := metaField(rest)
		if err != nil {
			return "", false, err
		}
		if string(k) == key {
			return string(v), true, nil
		}
		b = rest
	}
	return "", false, nil
}

func metaField(b []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, errBadMeta
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}
