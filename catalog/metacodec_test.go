package catalog

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestMetaCodec(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		m := map[string]string{}
		for k := r.IntN(40); k > 0; k-- {
			m[strings.Repeat("K", 1+r.IntN(300))+string(rune('A'+r.IntN(26)))] = strings.Repeat("v\x00é", r.IntN(100))
		}
		b := EncodeMeta(m)
		got, err := DecodeMeta(b, map[string]string{})
		if err != nil || !maps.Equal(got, m) {
			t.Fatalf("case %d: decode(encode(m)) = %v, %v", i, got, err)
		}
		for k, v := range m {
			if got, ok, err := MetaValue(b, k); err != nil || !ok || got != v {
				t.Fatalf("MetaValue(%q) = %q %v %v, want %q", k, got, ok, err, v)
			}
		}
		if _, ok, err := MetaValue(b, "absent"); ok || err != nil {
			t.Fatalf("MetaValue(absent) = %v %v", ok, err)
		}
		// Every truncation is an error, never a panic or a wrong value.
		for cut := 1; cut < len(b) && cut < 50; cut++ {
			if got, err := DecodeMeta(b[:len(b)-cut], nil); err == nil && maps.Equal(got, m) {
				t.Fatalf("decode of %d of %d bytes gave the whole", len(b)-cut, len(b))
			}
		}
	}
	if _, err := DecodeMeta([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil); err == nil {
		t.Error("a length beyond the bytes decoded")
	}
}
