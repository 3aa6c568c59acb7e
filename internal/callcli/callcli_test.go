package callcli

import (
	"fmt"
	"testing"

	"github.com/standbyd/standbyd/internal/protocol"
)

// --direct's own session gives the primary's error as a ServerError: its
// detail and hint are printed as the daemon's are.
// claim: api.call-detail-hint
func TestExitPrintsServerErrorDetailAndHint(t *testing.T) {
	err := fmt.Errorf("call: %w", &protocol.ServerError{SQLState: "P0042", Message: "out of stock", Detail: "item 7 has 0 left", Hint: "order fewer"})
	ee := Exit(err, nil)
	want := "call: primary replied ERROR P0042: out of stock\nDETAIL:  item 7 has 0 left\nHINT:  order fewer"
	if ee.Code != ExitPrimaryErr || ee.Error() != want {
		t.Fatalf("exit %d, %q; want %q", ee.Code, ee.Error(), want)
	}
	ee = Exit(&protocol.ServerError{SQLState: "P0042", Message: "m", Hint: "h"}, nil)
	if ee.Error() != "primary replied ERROR P0042: m\nHINT:  h" {
		t.Fatalf("hint only: %q", ee.Error())
	}
}
