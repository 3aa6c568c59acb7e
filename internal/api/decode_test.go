package api

import (
	"bytes"
	"testing"
)

func TestDecodeCallBody(t *testing.T) {
	cases := []struct {
		ct, body string
		want     []byte
		bad      bool
	}{
		{"application/octet-stream", "raw\x00", []byte("raw\x00"), false},
		{"", "raw", []byte("raw"), false},
		{"application/json", `{"text":"hi"}`, []byte("hi"), false},
		{"application/json; charset=utf-8", `{"base64":"AAE="}`, []byte{0, 1}, false},
		{"application/json", `{"hex":"cafe"}`, []byte{0xca, 0xfe}, false},
		{"application/json", `{"int32":[100,-1]}`, []byte{0, 0, 0, 100, 0xff, 0xff, 0xff, 0xff}, false},
		{"application/json", `{}`, nil, false},
		{"application/json", `{"text":"a","hex":"00"}`, nil, true},
		{"application/json", `{"txt":"a"}`, nil, true},
		{"application/json", `{"text":"a"} {}`, nil, true},
		{"application/json", `{"hex":"zz"}`, nil, true},
		{"application/json", `{"int32":[4294967296]}`, nil, true},
		{"application/json", `not json`, nil, true},
	}
	for _, c := range cases {
		got, err := DecodeCallBody(c.ct, []byte(c.body))
		if c.bad != (err != nil) || !bytes.Equal(got, c.want) {
			t.Errorf("%s %q: got % x, %v", c.ct, c.body, got, err)
		}
	}
}

func FuzzDecodeCallBody(f *testing.F) {
	f.Add(`{"text":"hi"}`)
	f.Add(`{"int32":[1,2,3]}`)
	f.Add(`{"base64":"AAE="}`)
	f.Add(`{"hex":"00ff"}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, body string) {
		out, err := DecodeCallBody("application/json", []byte(body))
		if err != nil && out != nil {
			t.Fatalf("error with a payload: %v", err)
		}
		r := encodeCallResponse("x", 1, out)
		if len(r.Int32) > 0 && len(r.Int32)*4 != len(out) {
			t.Fatal("int32 view does not cover the payload")
		}
	})
}
