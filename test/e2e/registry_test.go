package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/standbyd/standbyd/internal/protocol"
)

// Every kind of change to standbyd.handlers reaches a channel that stays
// open, at its next call: the registry's statement trigger tells the
// channel's cache, whether the change comes from register_handler,
// unregister_handler or plain DML (as a restore or a DBA's script does).
// claim: extension.handler-cache
func TestRegistryChangesReachAnOpenChannel(t *testing.T) {
	needEnv(t)
	freshDB(t, "registry_e2e")
	pc := dbConn(t, "registry_e2e")
	sqlOn(t, pc, "CREATE EXTENSION standbyd")
	sqlOn(t, pc, upgradeHandlerSQL)
	sess := channelTo(t, "registry_e2e")
	ctx := ctxT(t, 30*time.Second)
	want := func(op uint16, payload, reply string, what string) {
		t.Helper()
		out, err := sess.Call(ctx, op, []byte(payload))
		if err != nil || string(out) != reply {
			t.Fatalf("%s: op %d: %q %v, want %q", what, op, out, err, reply)
		}
	}
	wantUnknown := func(op uint16, what string) {
		t.Helper()
		_, err := sess.Call(ctx, op, nil)
		var se *protocol.ServerError
		if !errors.As(err, &se) || se.SQLState != "42883" || !strings.Contains(se.Message, "unknown op") {
			t.Fatalf("%s: op %d: want 42883 unknown op, got %v", what, op, err)
		}
	}
	want(300, "a", "up:a", "registered")

	sqlOn(t, pc, "SELECT standbyd.unregister_handler(300)")
	wantUnknown(300, "after unregister_handler")

	sqlOn(t, pc, "INSERT INTO standbyd.handlers (op, name, handler) VALUES (300, 'up', 'app.up')")
	want(300, "b", "up:b", "after INSERT")

	sqlOn(t, pc, `UPDATE standbyd.handlers SET handler = 'app."Odd Name"' WHERE op = 300`)
	want(300, "c", "odd:c", "after UPDATE")

	// A row in the 1.1 form is normalised on its way in.
	sqlOn(t, pc, "UPDATE standbyd.handlers SET handler = 'app.up(bytea)' WHERE op = 300")
	if got := sqlOn(t, pc, "SELECT handler FROM standbyd.handlers WHERE op = 300"); got != "app.up" {
		t.Fatalf("stored name after an UPDATE in the 1.1 form: %q", got)
	}
	want(300, "d", "up:d", "after UPDATE in the 1.1 form")

	sqlOn(t, pc, "DELETE FROM standbyd.handlers WHERE op = 301")
	wantUnknown(301, "after DELETE")
	want(300, "e", "up:e", "the other op after DELETE")

	sqlOn(t, pc, "TRUNCATE standbyd.handlers")
	wantUnknown(300, "after TRUNCATE")
	if _, err := sess.Call(ctx, protocol.OpPing, nil); err != nil {
		t.Fatalf("ping after the changes: %v", err)
	}
}
