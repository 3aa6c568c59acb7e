package api

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/standbyd/standbyd/client"
)

// DecodeCallBody turns a request body into the payload: raw bytes, or the
// JSON form when contentType is application/json. Errors are for the
// caller (bad_request).
func DecodeCallBody(contentType string, body []byte) ([]byte, error) {
	if !isJSON(contentType) {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req client.CallRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("invalid JSON call: %w", err)
	}
	if dec.More() {
		return nil, errors.New("invalid JSON call: more than one value")
	}
	set := 0
	for _, p := range []bool{req.Text != nil, req.Base64 != nil, req.Hex != nil, req.Int32 != nil} {
		if p {
			set++
		}
	}
	if set > 1 {
		return nil, errors.New("invalid JSON call: give one of text, base64, hex, int32")
	}
	switch {
	case req.Text != nil:
		return []byte(*req.Text), nil
	case req.Base64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.Base64)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON call: base64: %w", err)
		}
		return b, nil
	case req.Hex != nil:
		b, err := hex.DecodeString(*req.Hex)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON call: hex: %w", err)
		}
		return b, nil
	case req.Int32 != nil:
		out := make([]byte, 0, 4*len(*req.Int32))
		for _, v := range *req.Int32 {
			out = append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		}
		return out, nil
	}
	return nil, nil
}

// encodeCallResponse builds the JSON form of a reply.
func encodeCallResponse(name string, code uint16, payload []byte) client.CallResponse {
	r := client.CallResponse{Op: name, Code: code, Base64: base64.StdEncoding.EncodeToString(payload)}
	if utf8.Valid(payload) {
		t := string(payload)
		r.Text = &t
	}
	if len(payload) > 0 && len(payload)%4 == 0 && len(payload) <= 4096 {
		for i := 0; i < len(payload); i += 4 {
			r.Int32 = append(r.Int32, int32(uint32(payload[i])<<24|uint32(payload[i+1])<<16|uint32(payload[i+2])<<8|uint32(payload[i+3])))
		}
	}
	return r
}
