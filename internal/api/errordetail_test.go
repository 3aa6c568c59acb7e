package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/standbyd/standbyd/client"
	"github.com/standbyd/standbyd/internal/protocol"
)

// The HTTP error body carries the primary's detail and hint, and omits
// them when the primary gave none.
// claim: api.error-detail-hint
func TestHTTPErrorCarriesDetailAndHint(t *testing.T) {
	var se *protocol.ServerError
	sock := serveCfg(t, ServerConfig{}, &stubChannel{reply: func(uint16, []byte) ([]byte, error) { return nil, se }})
	hc := unixHTTP(sock)
	defer hc.CloseIdleConnections()
	post := func() (int, string) {
		t.Helper()
		resp, err := hc.Post("http://standbyd/v1/call/N", "application/octet-stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	se = &protocol.ServerError{SQLState: "P0001", Message: "no stock", Detail: "item 7 has 0 left", Hint: "order less"}
	code, body := post()
	var eb client.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || code != http.StatusUnprocessableEntity {
		t.Fatalf("%d %s %v", code, body, err)
	}
	want := client.ErrorDetail{Kind: client.KindPrimaryError, Message: "no stock", SQLState: "P0001", Detail: "item 7 has 0 left", Hint: "order less"}
	if eb.Error != want {
		t.Fatalf("%+v", eb.Error)
	}
	se = &protocol.ServerError{SQLState: "P0001", Message: "no stock"}
	if _, body := post(); strings.Contains(body, `"detail"`) || strings.Contains(body, `"hint"`) {
		t.Fatalf("empty detail and hint are omitted: %s", body)
	}
}
