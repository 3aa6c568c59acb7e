package api

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/standbyd/standbyd/client"
)

// claim: api.json-form
// claim: api.json-body
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

// FuzzDecodeCallBody: a payload written in any JSON form decodes to the
// same bytes; any body that decodes gives bytes that the reply's JSON form
// shows faithfully.
func FuzzDecodeCallBody(f *testing.F) {
	f.Add(`{"text":"hi"}`, []byte("hi"), uint8(0))
	f.Add(`{"int32":[1,2,3]}`, []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe}, uint8(3))
	f.Add(`{"base64":"AAE="}`, []byte{0, 1}, uint8(1))
	f.Add(`{"hex":"00ff"}`, []byte{0xca, 0xfe}, uint8(2))
	f.Add(`[1,2]`, []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, body string, payload []byte, form uint8) {
		out, err := DecodeCallBody("application/json", []byte(body))
		if err != nil && out != nil {
			t.Fatalf("error with a payload: %v", err)
		}
		if err == nil {
			checkResponseShows(t, out)
		}

		// The payload in one of the four forms.
		var req client.CallRequest
		switch form % 4 {
		case 0:
			if !utf8.Valid(payload) {
				return // JSON text cannot carry invalid UTF-8
			}
			s := string(payload)
			req.Text = &s
		case 1:
			s := base64.StdEncoding.EncodeToString(payload)
			req.Base64 = &s
		case 2:
			s := hex.EncodeToString(payload)
			req.Hex = &s
		case 3:
			if len(payload)%4 != 0 {
				return
			}
			v := make([]int32, 0, len(payload)/4)
			for i := 0; i < len(payload); i += 4 {
				v = append(v, int32(binary.BigEndian.Uint32(payload[i:])))
			}
			req.Int32 = &v
		}
		js, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCallBody("application/json", js)
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("%s decoded to % x, want % x", js, got, payload)
		}
	})
}

// checkResponseShows checks the reply's JSON form of payload: base64 always
// decodes to it, text (when set) is it, int32 (when set) re-encodes to it.
func checkResponseShows(t *testing.T, payload []byte) {
	t.Helper()
	r := encodeCallResponse("x", 1, payload)
	if b, err := base64.StdEncoding.DecodeString(r.Base64); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("base64 view % x (%v), payload % x", b, err, payload)
	}
	if r.Text != nil && *r.Text != string(payload) {
		t.Fatalf("text view %q, payload % x", *r.Text, payload)
	}
	if r.Text == nil && utf8.Valid(payload) {
		t.Fatalf("no text view for valid UTF-8 % x", payload)
	}
	if len(r.Int32) > 0 {
		var b []byte
		for _, v := range r.Int32 {
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		}
		if !bytes.Equal(b, payload) {
			t.Fatalf("int32 view % x, payload % x", b, payload)
		}
	}
}
